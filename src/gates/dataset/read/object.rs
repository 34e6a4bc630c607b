//! A dataset in an object store. For Parquet the footer is fetched by range and decoded,
//! and then only the chunks of the selected columns are streamed, page by page
//! ([`super::streamed`]). CSV is one streamed body. Memory is bounded by the batch size (a
//! page per column and a batch), not by the object's size.

use std::sync::Arc;

use std::ops::Range;

use parquet::DecodeResult;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataPushDecoder};

use super::streamed::{self, Streamed};
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
            Format::Parquet => parquet_object(obj, batch_size, streamed::WHOLE)
                .map_err(|e| format!("dataset {shown} is not readable Parquet: {e}")),
        }
    }
}

fn parquet_object(obj: Blocking, batch_size: usize, whole: u64) -> Result<Reader, String> {
    let meta = ArrowReaderMetadata::try_new(Arc::new(metadata(&obj)?), Default::default())
        .map_err(|e| e.to_string())?;
    let schema = meta.schema().clone();
    Ok(Reader::new(
        schema,
        Box::new(move |projection| {
            let groups = selected_chunks(meta.metadata(), projection.as_deref());
            let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
                Streamed::new(obj, groups, whole),
                meta,
            );
            let reader = projected(builder, projection, batch_size)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Box::new(reader.map(|r| r.map_err(|e| e.to_string()))) as Batches)
        }),
    ))
}

/// For each row group, the byte ranges of the chunks of the columns under `roots` (all
/// columns: `None`).
fn selected_chunks(meta: &ParquetMetaData, roots: Option<&[usize]>) -> Vec<Vec<Range<u64>>> {
    let mask = match roots {
        Some(r) => ProjectionMask::roots(meta.file_metadata().schema_descr(), r.iter().copied()),
        None => ProjectionMask::all(),
    };
    meta.row_groups()
        .iter()
        .map(|g| {
            g.columns()
                .iter()
                .enumerate()
                .filter(|(i, _)| mask.leaf_included(*i))
                .map(|(_, c)| {
                    let (start, len) = c.byte_range();
                    start..start.saturating_add(len)
                })
                .collect()
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::objects::Object;

    /// 1,000 rows in row groups of 70, five columns; `target` is the row number.
    fn parquet_file() -> bytes::Bytes {
        let fields: Vec<Field> = (0..4)
            .map(|i| Field::new(format!("f{i}"), DataType::Float64, false))
            .chain([Field::new("target", DataType::Int64, false)])
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(70))
            .set_data_page_row_count_limit(16)
            .build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).unwrap();
        let n = 1000;
        let mut cols: Vec<Arc<dyn arrow::array::Array>> = (0..4)
            .map(|i| {
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|r| (r * (i + 1)) as f64),
                )) as _
            })
            .collect();
        cols.push(Arc::new(Int64Array::from_iter_values(0..n as i64)));
        w.write(&RecordBatch::try_new(schema, cols).unwrap())
            .unwrap();
        w.close().unwrap();
        out.into()
    }

    fn read_all(mut r: Reader, columns: &[&str]) -> Vec<RecordBatch> {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        r.select(&columns).unwrap();
        std::iter::from_fn(|| r.next_batch())
            .map(|b| b.unwrap())
            .collect()
    }

    fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    }

    #[test]
    fn streamed_and_whole_row_groups_read_as_the_file_does() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let file = parquet_file();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = object_store::path::Path::from("h.parquet");
        let obj = rt.block_on(async {
            store
                .put(&path, PutPayload::from(file.clone()))
                .await
                .unwrap();
            Blocking::new(Arc::new(Object::in_store(store, path).await.unwrap()))
        });
        let columns = ["f3", "target", "f1"];
        let expected = concat(&read_all(
            Reader::parquet(file, 128, "local").unwrap(),
            &columns,
        ));
        assert_eq!(expected.num_rows(), 1000);
        // Batches of 128 rows span row groups of 70, so two groups' chunks are open at once;
        // each chunk has several pages.
        for whole in [0, u64::MAX] {
            let batches = read_all(parquet_object(obj.clone(), 128, whole).unwrap(), &columns);
            assert!(batches.iter().all(|b| b.num_rows() <= 128));
            assert_eq!(
                concat(&batches),
                expected,
                "groups up to {whole} bytes whole"
            );
        }
    }
}
