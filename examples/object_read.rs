//! Reads a dataset the way the `dataset` gate does (open, select the columns, batches) from a
//! local path or a URL, and prints one JSON line: rows, seconds, rows/s, and the process's
//! resident memory before and at its peak, and for an object its size and the bytes fetched. `bench/objects.sh` runs it on the same file on disk
//! and in an S3-compatible store.
//!
//!     object_read LOCATION BATCH_ROWS COLUMN...

use std::time::Instant;

use stagegate::gates::dataset::read::Reader;
use stagegate::location::Location;
use stagegate::objects::{Blocking, NoArtifacts, Opened};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [loc, batch, columns @ ..] = args.as_slice() else {
        return Err("usage: object_read LOCATION BATCH_ROWS COLUMN...".into());
    };
    let loc = Location::parse(loc)?;
    let batch: usize = batch.parse().map_err(|e| format!("BATCH_ROWS: {e}"))?;
    let columns = columns.to_vec();
    let before = rss_kib("VmRSS:");
    let started = Instant::now();
    let here = std::env::current_dir().map_err(|e| e.to_string())?;
    let opened = Opened::open(&loc, &here, &NoArtifacts, Default::default()).await?;
    let object = match &opened {
        Opened::Remote(o) => Some(o.clone()),
        Opened::Local(_) => None,
    };
    let rows = tokio::task::spawn_blocking(move || -> Result<usize, String> {
        let mut reader = match opened {
            Opened::Local(p) => Reader::open(&p, batch)?,
            Opened::Remote(o) => Reader::open_object(Blocking::new(o), &loc, batch)?,
        };
        reader.select(&columns)?;
        let mut rows = 0;
        while let Some(b) = reader.next_batch() {
            rows += b?.num_rows();
        }
        Ok(rows)
    })
    .await
    .map_err(|e| e.to_string())??;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "rows": rows, "seconds": secs, "rows_per_s": rows as f64 / secs,
            "rss_before_mib": before as f64 / 1024.0, "rss_peak_mib": rss_kib("VmHWM:") as f64 / 1024.0,
            "object_bytes": object.as_ref().map(|o| o.size()),
            "fetched_bytes": object.as_ref().map(|o| o.fetched()),
        })
    );
    Ok(())
}
