//! A dataset in an object store. Parquet goes through the parquet crate's push decoder: the
//! footer is fetched by range, and then, a row group at a time, only the chunks of the
//! selected columns, each range requested side by side. CSV is one streamed body. Memory is
//! bounded by a row group's selected chunks and a batch, not by the object's size.

use std::sync::Arc;

use arrow::array::RecordBatch;
use parquet::DecodeResult;
use parquet::arrow::push_decoder::{ParquetPushDecoder, ParquetPushDecoderBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataPushDecoder};

use super::{Batches, Format, Reader, footer_is_possible, format, projected};
use crate::location::Location;
use crate::objects::Blocking;

/// The footer is usually small: one request fetches this much of the end, and a second
/// follows only for a footer larger than that.
const TAIL: u64 = 64 * 1024;
const TRAILER: u64 = 8;

impl Reader {
    /// Open an object as CSV or Parquet, by the extension of its name. On a blocking thread.
    pub fn open_object(
        obj: Blocking,
        location: &Location,
        batch_size: usize,
    ) -> Result<Reader, String> {
        let shown = obj.object().shown.clone();
        match format(&location.extension(), &shown)? {
            Format::Csv => {
                let body = obj.reader().map_err(|e| format!("dataset {e}"))?;
                Reader::csv(body, batch_size, &shown)
            }
            Format::Parquet => parquet_object(obj, batch_size)
                .map_err(|e| format!("dataset {shown} is not readable Parquet: {e}")),
        }
    }
}

fn parquet_object(obj: Blocking, batch_size: usize) -> Result<Reader, String> {
    let meta = metadata(&obj)?;
    let builder =
        ParquetPushDecoderBuilder::try_new_decoder(Arc::new(meta)).map_err(|e| e.to_string())?;
    let schema = builder.schema().clone();
    Ok(Reader::new(
        schema,
        Box::new(move |projection| {
            let decoder = projected(builder, projection, batch_size)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Box::new(Pushed { decoder, obj }) as Batches)
        }),
    ))
}

/// The footer, fetched by range and walked ([`super::footer_walk`]'s check) before the parquet
/// crate decodes it.
fn metadata(obj: &Blocking) -> Result<ParquetMetaData, String> {
    let len = obj.object().size();
    if len < 12 {
        return Err(format!("it has {len} bytes, too few for Parquet"));
    }
    let fetch = |r: std::ops::Range<u64>| -> Result<bytes::Bytes, String> {
        let mut got = obj
            .ranges(std::slice::from_ref(&r))
            .map_err(|e| e.to_string())?;
        Ok(got.pop().unwrap_or_default())
    };
    let tail_start = len - TAIL.min(len);
    let tail = fetch(tail_start..len)?;
    let trailer = &tail[tail.len() - TRAILER as usize..];
    if &trailer[4..] != b"PAR1" {
        return Err("it does not end as Parquet does (PAR1): truncated, or another format".into());
    }
    let meta_len = u64::from(u32::from_le_bytes([
        trailer[0], trailer[1], trailer[2], trailer[3],
    ]));
    let start = len
        .checked_sub(TRAILER + meta_len)
        .ok_or("its footer claims more bytes than the object has (truncated?)")?;
    let footer = if start >= tail_start {
        tail.slice((start - tail_start) as usize..)
    } else {
        fetch(start..len)?
    };
    if let super::super::footer::Walk::Impossible { claimed, room } =
        super::super::footer::check(&footer)
    {
        return Err(format!(
            "its footer is damaged: a collection claims {claimed} elements where at most {room} fit"
        ));
    }
    let mut decoder = ParquetMetaDataPushDecoder::try_new(len).map_err(|e| e.to_string())?;
    decoder
        .push_range(start..len, footer)
        .map_err(|e| e.to_string())?;
    loop {
        match decoder.try_decode().map_err(|e| e.to_string())? {
            DecodeResult::Data(meta) => {
                footer_is_possible(&meta, len)?;
                return Ok(meta);
            }
            DecodeResult::NeedsData(ranges) => {
                let got = obj.ranges(&ranges).map_err(|e| e.to_string())?;
                decoder
                    .push_ranges(ranges, got)
                    .map_err(|e| e.to_string())?;
            }
            DecodeResult::Finished => return Err("it has no footer".into()),
        }
    }
}

/// Batches from the push decoder, fetching what it asks for as it asks.
struct Pushed {
    decoder: ParquetPushDecoder,
    obj: Blocking,
}

impl Iterator for Pushed {
    type Item = Result<RecordBatch, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.decoder.try_decode() {
                Ok(DecodeResult::Data(batch)) => return Some(Ok(batch)),
                Ok(DecodeResult::Finished) => return None,
                Ok(DecodeResult::NeedsData(ranges)) => {
                    let pushed = self
                        .obj
                        .ranges(&ranges)
                        .map_err(|e| e.to_string())
                        .and_then(|got| {
                            self.decoder
                                .push_ranges(ranges, got)
                                .map_err(|e| e.to_string())
                        });
                    if let Err(e) = pushed {
                        return Some(Err(e));
                    }
                }
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }
}
