//! A dataset file's header and columns matched against the gate's config and the model's
//! signature, then (CSV) read batch by batch into request cells and labels, as the `dataset`
//! gate does before sending anything (`stagegate::gates::dataset`).
//!
//! Input: a flags byte (bit 0: Parquet, else CSV; bits 2–7: batch size 1–64), then
//! `label \n slice \n signature-inputs-json`, a NUL byte, and the file's bytes. An empty slice
//! means no `slices`; an empty signature means the model has none.
#![cfg_attr(fuzzing, no_main)]

use std::io::Cursor;

#[cfg(fuzzing)]
use libfuzzer_sys::fuzz_target;
use stagegate::gates::dataset::{feature_columns, read};
use stagegate::model_files::parse_inputs;
use stagegate::serving::host::project;
use stagegate::serving::{batch_cells, dataframe_split};

/// Enough batches to cover a file the fuzzer can make at small batch sizes.
const MAX_BATCHES: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some(nul) = rest.iter().position(|b| *b == 0) else {
        return;
    };
    let (head, file) = (&rest[..nul], &rest[nul + 1..]);
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.splitn(3, '\n');
    let label = lines.next().unwrap_or_default();
    let slice = lines.next().filter(|s| !s.is_empty());
    let sig = match lines.next().filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(json) => match parse_inputs(json) {
            Ok(sig) => Some(sig),
            Err(_) => return,
        },
    };
    let batch_size = 1 + usize::from(flags >> 2);
    let reader = if flags & 1 != 0 {
        read::Reader::parquet(
            bytes::Bytes::copy_from_slice(file),
            batch_size,
            "fuzz.parquet",
        )
    } else {
        read::Reader::csv(Cursor::new(file.to_vec()), batch_size, "fuzz.csv")
    };
    let Ok(mut reader) = reader else {
        return;
    };
    // The gate's own checks, in its order: the label, the slice column, then the signature.
    let columns = reader.columns();
    if label.is_empty() || !columns.iter().any(|c| c == label) {
        return;
    }
    if slice.is_some_and(|s| !columns.iter().any(|c| c == s)) {
        return;
    }
    let Ok(features) = feature_columns(sig.as_ref(), &columns, label, slice) else {
        return;
    };
    assert!(
        features.iter().all(|f| columns.contains(f)),
        "a feature column not in the file: {features:?} vs {columns:?}"
    );
    // Parquet stops at its header (footer and schema, checked when opened): its page data is
    // the parquet crate's to decode, which panics on some corrupt pages. The library turns
    // such a panic into the gate's error (`Reader::next_batch`, with a test), but libFuzzer's
    // panic hook aborts on any panic, caught or not, so decoding here would only report the
    // parquet crate's bugs again. CSV rows are read and converted in full.
    if flags & 1 != 0 {
        return;
    }
    for _ in 0..MAX_BATCHES {
        let Some(Ok(batch)) = reader.next_batch() else {
            return;
        };
        let n = batch.num_rows();
        let Ok(cols) = features
            .iter()
            .map(|f| batch_cells(&batch, f))
            .collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        assert!(
            cols.iter().all(|c| c.len() == n),
            "a column of the wrong length"
        );
        let rows: Vec<Vec<_>> = (0..n)
            .map(|i| cols.iter().map(|c| c[i].clone()).collect())
            .collect();
        let _ = dataframe_split(&features, &rows);
        // The warm host's columnar path takes the same columns, or says why not.
        if let Ok(t) = project(&batch, &features) {
            assert_eq!(t.num_rows(), n, "a projected batch of the wrong length");
        }
        if let Ok(labels) = read::text_column(&batch, label) {
            assert_eq!(labels.len(), n, "labels of the wrong length");
        }
        if let Some(s) = slice {
            let _ = read::text_column(&batch, s);
        }
    }
});
