//! Reading a labelled dataset (CSV or Parquet) a batch at a time with arrow, so a file of any
//! size is never held, or sent, whole. A reader is opened first (its columns known), then
//! told which columns the gate needs ([`Reader::select`]): Parquet decodes only those.
//! Objects in a store are read by [`object`]: ranges for Parquet, one stream for CSV.

mod object;
mod streamed;

use std::fs::File;
use std::io::{Cursor, Read};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;

use crate::location::ext_of;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>;
/// Starts the batches once the columns to read are known (indices into the schema; `None`:
/// all of them).
type Start = Box<dyn FnOnce(Option<Vec<usize>>) -> Result<Batches, String> + Send>;

/// Records to infer a CSV file's column types from.
const CSV_INFER_RECORDS: usize = 10_000;

pub struct Reader {
    schema: SchemaRef,
    start: Option<Start>,
    batches: Option<Batches>,
    /// A decoder panicked: the file is damaged and nothing more is read from it.
    damaged: bool,
}

impl Reader {
    /// Open `path` as CSV (header row) or Parquet, by its extension.
    pub fn open(path: &Path, batch_size: usize) -> Result<Reader, String> {
        let file = File::open(path).map_err(|e| format!("dataset {}: {e}", path.display()))?;
        Reader::open_file(file, path, batch_size)
    }

    /// Read `file`, opened from `path` (which names it and gives its format).
    pub fn open_file(file: File, path: &Path, batch_size: usize) -> Result<Reader, String> {
        let shown = path.display().to_string();
        match format(&ext_of(path), &shown)? {
            Format::Csv => Reader::csv(file, batch_size, &shown),
            Format::Parquet => Reader::parquet(file, batch_size, &shown),
        }
    }

    fn new(schema: SchemaRef, start: Start) -> Reader {
        Reader {
            schema,
            start: Some(start),
            batches: None,
            damaged: false,
        }
    }

    /// CSV with a header row, read as a stream: the column types are inferred from the first
    /// records, which are kept and read again. `shown` names the source in errors.
    pub fn csv<R: Read + Send + 'static>(
        src: R,
        batch_size: usize,
        shown: &str,
    ) -> Result<Reader, String> {
        let format = arrow::csv::reader::Format::default().with_header(true);
        let mut tee = Tee {
            inner: src,
            seen: Vec::new(),
        };
        let (schema, _) = format
            .infer_schema(&mut tee, Some(CSV_INFER_RECORDS))
            .map_err(|e| format!("dataset {shown} is not readable CSV: {e}"))?;
        let schema = Arc::new(schema);
        let (s, shown) = (schema.clone(), shown.to_string());
        let src = Cursor::new(tee.seen).chain(tee.inner);
        Ok(Reader::new(
            schema,
            Box::new(move |projection| {
                let mut b = arrow::csv::ReaderBuilder::new(s)
                    .with_format(format)
                    .with_batch_size(batch_size);
                if let Some(p) = projection {
                    b = b.with_projection(p);
                }
                let reader = b
                    .build(src)
                    .map_err(|e| format!("dataset {shown} is not readable CSV: {e}"))?;
                Ok(Box::new(reader.map(|r| r.map_err(|e| e.to_string()))) as Batches)
            }),
        ))
    }

    /// Parquet from a file or bytes (the fuzzer). `shown` names it in errors.
    pub fn parquet<R: ChunkReader + 'static>(
        src: R,
        batch_size: usize,
        shown: &str,
    ) -> Result<Reader, String> {
        let len = src.len();
        footer_walk(&src).map_err(|e| format!("dataset {shown} is not readable Parquet: {e}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(src)
            .map_err(|e| format!("dataset {shown} is not readable Parquet: {e}"))?;
        footer_is_possible(builder.metadata(), len)
            .map_err(|e| format!("dataset {shown} is not readable Parquet: {e}"))?;
        let schema = builder.schema().clone();
        let shown = shown.to_string();
        Ok(Reader::new(
            schema,
            Box::new(move |projection| {
                let reader = projected(builder, projection, batch_size)
                    .build()
                    .map_err(|e| format!("dataset {shown}: {e}"))?;
                Ok(Box::new(reader.map(|r| r.map_err(|e| e.to_string()))) as Batches)
            }),
        ))
    }

    /// Read only `columns` (each must be one of [`Reader::columns`]). Without this, the
    /// first batch starts a read of every column.
    pub fn select(&mut self, columns: &[String]) -> Result<(), String> {
        let mut at = columns
            .iter()
            .map(|c| {
                self.schema
                    .index_of(c)
                    .map_err(|_| format!("the dataset has no column {c:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        at.sort_unstable();
        at.dedup();
        self.begin(Some(at))
    }

    fn begin(&mut self, projection: Option<Vec<usize>>) -> Result<(), String> {
        if let Some(start) = self.start.take() {
            self.batches = Some(start(projection)?);
        }
        Ok(())
    }

    pub fn columns(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The next batch. The parquet crate's page decoders panic on some corrupt pages instead
    /// of returning an error (definition levels running past their buffer: found by the
    /// dataset fuzz target; no check of ours can foresee every such page). A panic there is a
    /// damaged file, reported as the gate's error rather than unwinding through the
    /// evaluation, and the reader stops. The panic's own message still goes to the log.
    pub fn next_batch(&mut self) -> Option<Result<RecordBatch, String>> {
        if self.damaged {
            return None;
        }
        if let Err(e) = self.begin(None) {
            self.damaged = true;
            return Some(Err(e));
        }
        let batches = self.batches.as_mut()?;
        match std::panic::catch_unwind(AssertUnwindSafe(|| batches.next())) {
            Ok(r) => r.map(|r| r.map_err(|e| format!("reading the dataset: {e}"))),
            Err(panic) => {
                self.damaged = true;
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Some(Err(format!(
                    "reading the dataset: the file is damaged (the decoder failed: {why})"
                )))
            }
        }
    }
}

/// The footer walked before the parquet crate decodes it ([`super::footer`]): a collection
/// claiming more elements than its bytes can hold is refused. A file whose trailer cannot be
/// read is left to the parquet crate to describe.
fn footer_walk<R: ChunkReader>(src: &R) -> Result<(), String> {
    let len = src.len();
    let Some(trailer_at) = len.checked_sub(8) else {
        return Ok(());
    };
    let Ok(trailer) = src.get_bytes(trailer_at, 8) else {
        return Ok(());
    };
    let meta = u64::from(u32::from_le_bytes([
        trailer[0], trailer[1], trailer[2], trailer[3],
    ]));
    let Some(start) = trailer_at.checked_sub(meta) else {
        return Ok(());
    };
    let Ok(tail) = src.get_bytes(start, meta as usize + 8) else {
        return Ok(());
    };
    match super::footer::check(&tail) {
        super::footer::Walk::Plausible => Ok(()),
        super::footer::Walk::Impossible { claimed, room } => Err(format!(
            "its footer is damaged: a collection claims {claimed} elements where at most \
             {room} fit"
        )),
    }
}

/// The footer's row counts and column chunks are possible: every count non-negative with a
/// total that fits, every chunk within the file. The parquet crate trusts them while reading
/// (`ColumnChunkMetaData::byte_range` asserts a non-negative start and length; the reader sums
/// the row counts as `usize`, which a negative count overflows), so a damaged footer panicked
/// the gate instead of being refused. Both found by the dataset fuzz target.
fn footer_is_possible(meta: &ParquetMetaData, file_len: u64) -> Result<(), String> {
    let mut rows: u64 = 0;
    for (g, group) in meta.row_groups().iter().enumerate() {
        rows = u64::try_from(group.num_rows())
            .ok()
            .and_then(|n| rows.checked_add(n))
            .filter(|r| usize::try_from(*r).is_ok())
            .ok_or_else(|| format!("row group {g}: impossible row count {}", group.num_rows()))?;
        for c in group.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(c.compressed_size()).ok())
                .and_then(|(s, n)| s.checked_add(n));
            if end.is_none_or(|e| e > file_len) {
                return Err(format!(
                    "row group {g}, column {}: chunk at {start} of {} bytes lies outside the file ({file_len} bytes)",
                    c.column_path(),
                    c.compressed_size()
                ));
            }
        }
    }
    Ok(())
}

/// `builder` reading only the `projection` columns (roots of the schema; `None`: all), in
/// batches of `batch_size` rows: a file's and an object's Parquet readers alike.
fn projected<T>(
    builder: ArrowReaderBuilder<T>,
    projection: Option<Vec<usize>>,
    batch_size: usize,
) -> ArrowReaderBuilder<T> {
    let b = match projection {
        Some(p) => {
            let mask = ProjectionMask::roots(builder.parquet_schema(), p);
            builder.with_projection(mask)
        }
        None => builder,
    };
    b.with_batch_size(batch_size)
}

/// The file formats a dataset can be in.
enum Format {
    Csv,
    Parquet,
}

fn format(ext: &str, shown: &str) -> Result<Format, String> {
    match ext {
        "csv" => Ok(Format::Csv),
        "parquet" | "pq" => Ok(Format::Parquet),
        _ => Err(format!(
            "dataset {shown}: unknown format (expected a .csv or .parquet file)"
        )),
    }
}

/// A reader that keeps what it read, so CSV type inference can look at the first records of
/// a stream that cannot seek back.
struct Tee<R> {
    inner: R,
    seen: Vec<u8>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("the dataset has no column {name:?}"))
}

/// A column as text (labels, slice groups); nulls are `None`.
pub fn strings(a: &ArrayRef, name: &str) -> Result<Vec<Option<String>>, String> {
    let c = cast(a, &DataType::Utf8)
        .map_err(|e| format!("column {name:?} cannot be read as text: {e}"))?;
    let s = c.as_string::<i32>();
    Ok((0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect())
}

pub fn text_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, String> {
    strings(column(batch, name)?, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_in_batches_with_types() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        let mut text = String::from("f0,seg,target\n");
        for i in 0..25 {
            text.push_str(&format!(
                "{}.5,{},{}\n",
                i,
                if i % 2 == 0 { "a" } else { "b" },
                i % 2
            ));
        }
        std::fs::write(&p, text).unwrap();
        let mut r = Reader::open(&p, 10).unwrap();
        assert_eq!(r.columns(), vec!["f0", "seg", "target"]);
        let mut rows = 0;
        let mut batches = 0;
        while let Some(b) = r.next_batch() {
            let b = b.unwrap();
            assert!(b.num_rows() <= 10);
            use crate::serving::{Cell, batch_cells};
            let f0 = batch_cells(&b, "f0").unwrap();
            assert!(matches!(f0[0], Cell::Float(_)));
            assert!(matches!(
                batch_cells(&b, "target").unwrap()[0],
                Cell::Int(_)
            ));
            assert!(matches!(batch_cells(&b, "seg").unwrap()[0], Cell::Str(_)));
            rows += b.num_rows();
            batches += 1;
        }
        assert_eq!((rows, batches), (25, 3));
        assert_eq!(crate::objects::sha256(&p).unwrap().len(), 64);
        assert!(Reader::open(&dir.path().join("d.txt"), 10).is_err());
        assert!(
            Reader::open(&dir.path().join("missing.csv"), 10)
                .err()
                .unwrap()
                .contains("missing.csv")
        );
    }

    /// Page data the parquet crate's decoder panics on (a fuzzed seed): an error, then no more.
    #[test]
    fn a_parquet_page_the_decoder_panics_on_is_an_error() {
        let bad = include_bytes!("../../../tests/fixtures/parquet/levels-past-page.parquet");
        let mut r = Reader::parquet(bytes::Bytes::from_static(bad), 4, "bad.parquet").unwrap();
        let mut errors = Vec::new();
        while let Some(b) = r.next_batch() {
            if let Err(e) = b {
                errors.push(e);
            }
        }
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("the file is damaged"), "{errors:?}");
    }

    /// A footer with a negative row count: the reader's `usize` sum of the counts overflowed.
    #[test]
    fn a_negative_parquet_row_count_is_an_error_not_a_panic() {
        let bad = include_bytes!("../../../tests/fixtures/parquet/negative-row-count.parquet");
        let e = Reader::parquet(bytes::Bytes::from_static(bad), 4, "bad.parquet")
            .err()
            .expect("refused when opened");
        assert!(e.contains("impossible row count"), "{e}");
    }

    /// A Parquet file whose footer puts a column chunk at a negative offset (a seed with bytes
    /// changed by the dataset fuzz target): the parquet crate panicked reading it.
    #[test]
    fn a_parquet_chunk_outside_the_file_is_an_error_not_a_panic() {
        let bad = include_bytes!("../../../tests/fixtures/parquet/negative-column-start.parquet");
        // Read in batches of 4, as the fuzzer did: the damaged chunk is in a later row group.
        let e = Reader::parquet(bytes::Bytes::from_static(bad), 4, "bad.parquet")
            .err()
            .expect("refused when opened, before any batch is read");
        assert!(
            e.contains("bad.parquet is not readable Parquet") && e.contains("outside the file"),
            "{e}"
        );
    }

    /// `file` with its footer (`FileMetaData`, without the trailer) edited.
    fn with_footer(file: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let n = file.len();
        let meta_len = u32::from_le_bytes(file[n - 8..n - 4].try_into().unwrap()) as usize;
        let mut meta = file[n - 8 - meta_len..n - 8].to_vec();
        edit(&mut meta);
        let mut out = file[..n - 8 - meta_len].to_vec();
        out.extend(&meta);
        out.extend((meta.len() as u32).to_le_bytes());
        out.extend(b"PAR1");
        out
    }

    /// Field 100 (long form: header 0x09, then the zigzag id) holding a list of booleans
    /// claiming i32::MAX elements, put before `FileMetaData`'s final stop byte.
    fn add_bomb(meta: &mut Vec<u8>) {
        let stop = meta.pop();
        assert_eq!(stop, Some(0));
        meta.extend([0x09, 0xc8, 0x01, 0xf1, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00]);
    }

    fn one_column_file() -> Vec<u8> {
        use arrow::array::Int64Array;
        use parquet::arrow::ArrowWriter;
        let col: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_from_iter([("target", col)]).unwrap();
        let mut file = Vec::new();
        let mut w = ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        file
    }

    /// A footer with an extra field the parquet crate does not know: a list of booleans
    /// claiming i32::MAX elements. Its skipper turned two billion times on five bytes (47 s
    /// in a debug build); the walk refuses the file at once (the dataset fuzz target's
    /// timeout).
    #[test]
    fn a_parquet_footer_list_claiming_more_than_it_holds_is_refused() {
        let file = one_column_file();
        assert!(Reader::parquet(bytes::Bytes::from(file.clone()), 4, "good.parquet").is_ok());
        let bad = with_footer(&file, add_bomb);
        let e = Reader::parquet(bytes::Bytes::from(bad), 4, "bad.parquet")
            .err()
            .expect("refused when opened");
        assert!(
            e.contains("bad.parquet is not readable Parquet") && e.contains("2147483647 elements"),
            "{e}"
        );
    }

    /// The fuzz smoke test's finding: field 2's header (the schema list, 0x19) damaged to
    /// 0x11 (a boolean). The crate still reads the schema list there; a walk by wire types
    /// lost step with it and missed the bomb after it.
    #[test]
    fn a_bomb_after_a_field_whose_type_lies_is_refused() {
        let file = one_column_file();
        for lie in [0x11, 0x16, 0x18] {
            let bad = with_footer(&file, |meta| {
                assert_eq!(
                    (meta[0], meta[2]),
                    (0x15, 0x19),
                    "the version, then the schema"
                );
                meta[2] = lie;
                add_bomb(meta);
            });
            let e = Reader::parquet(bytes::Bytes::from(bad), 4, "bad.parquet")
                .err()
                .expect("refused when opened");
            assert!(e.contains("2147483647 elements"), "{lie:#x}: {e}");
        }
        // The lie alone: the crate reads the file as before (its schema by the field's id).
        let lied = with_footer(&file, |meta| meta[2] = 0x11);
        assert!(Reader::parquet(bytes::Bytes::from(lied), 4, "lied.parquet").is_ok());
    }

    /// Real footers are walked to their last byte (the walk in step with the crate) and read:
    /// pyarrow's (the fuzz seeds, and a fixture with nested, dictionary, decimal, timestamp,
    /// map and fixed-size columns, three row groups, page indexes, sorting columns and
    /// key-value metadata) and the parquet crate's own.
    #[test]
    fn real_parquet_footers_are_walked_whole_and_accepted() {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dataset");
        for name in ["parquet-plain", "parquet-snappy"] {
            // A dataset fuzz input: flags byte, label/slice/signature, NUL, then the file.
            let input = std::fs::read(corpus.join(name)).unwrap();
            let nul = input.iter().position(|b| *b == 0).unwrap();
            files.push((name.into(), input[nul + 1..].to_vec()));
        }
        // Written by pyarrow 25.0.1 (ParquetWriter, write_page_index, sorting_columns, snappy).
        let rich = include_bytes!("../../../tests/fixtures/parquet/pyarrow-rich.parquet");
        files.push(("pyarrow-rich".into(), rich.to_vec()));
        files.push(("arrow-writer".into(), arrow_writer_file()));
        for (name, file) in files {
            assert!(super::super::footer::walks_to_the_end(&file), "{name}");
            let mut r = Reader::parquet(bytes::Bytes::from(file), 4, &name).unwrap();
            while let Some(b) = r.next_batch() {
                b.unwrap();
            }
        }
    }

    /// The parquet crate's writer at its most detailed: page statistics, row groups of 4
    /// rows, key-value metadata, sorting columns, nullable and nested (list, struct) columns,
    /// dictionary-encoded strings.
    fn arrow_writer_file() -> Vec<u8> {
        use arrow::array::{Float64Array, Int32Array, Int64Array, ListArray, StringArray};
        use arrow::array::{StructArray, TimestampMillisecondArray};
        use arrow::datatypes::{Field, Int32Type};
        use parquet::arrow::ArrowWriter;
        use parquet::file::metadata::{KeyValue, SortingColumn};
        use parquet::file::properties::{EnabledStatistics, WriterProperties};
        let n = 10;
        let target: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
        let f0: ArrayRef = Arc::new(Float64Array::from_iter(
            (0..n).map(|i| (i % 3 != 0).then_some(i as f64 / 2.0)),
        ));
        let seg: ArrayRef = Arc::new(StringArray::from_iter(
            (0..n).map(|i| (i % 4 != 0).then_some(["a", "b"][i as usize % 2])),
        ));
        let tags: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
            (0..n).map(|i| (i % 2 == 0).then(|| vec![Some(i as i32), None])),
        ));
        let point: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("x", DataType::Int32, true)),
                Arc::new(Int32Array::from_iter((0..n).map(|i| Some(i as i32)))) as ArrayRef,
            ),
            (
                Arc::new(Field::new(
                    "at",
                    DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                    true,
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(0..n)) as ArrayRef,
            ),
        ]));
        let batch = RecordBatch::try_from_iter([
            ("target", target),
            ("f0", f0),
            ("seg", seg),
            ("tags", tags),
            ("point", point),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(4))
            .set_dictionary_enabled(true)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "origin".into(),
                "test".to_string(),
            )]))
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: true,
            }]))
            .build();
        let mut file = Vec::new();
        let mut w = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        file
    }
}
