//! Load generator for the webhook receiver benchmark: sends N signed MLflow deliveries (each
//! with its own delivery id) from C concurrent keep-alive connections and prints one JSON line
//! with throughput and latency percentiles.
//!
//!     cargo run --release --example webhook_load -- URL SECRET N C MODEL_PREFIX MODELS

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use stagegate::webhook::signature_header;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        eprintln!("usage: webhook_load URL SECRET N CONCURRENCY MODEL_PREFIX MODELS");
        std::process::exit(2);
    }
    let (url, secret) = (args[1].clone(), args[2].clone());
    let n: usize = args[3].parse().expect("N");
    let c: usize = args[4].parse().expect("CONCURRENCY");
    let (prefix, models): (String, usize) = (args[5].clone(), args[6].parse().expect("MODELS"));
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();

    // Sign everything up front: the generator measures the receiver, not its own HMACs.
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let requests: Vec<(String, String, String)> = (0..n)
        .map(|i| {
            let id = format!("load-{run}-{i}");
            let body = format!(
                r#"{{"entity":"model_version_alias","action":"created","timestamp":"x","data":{{"name":"{prefix}{}","alias":"challenger","version":"1"}}}}"#,
                i % models
            );
            let sig = signature_header(&secret, &id, &ts, body.as_bytes());
            (id, body, sig)
        })
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (requests, next, url, ts) = (requests.clone(), next.clone(), url.clone(), ts.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let (mut ok, mut failed) = (0usize, 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, body, sig)) = requests.get(i) else {
                    break;
                };
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-mlflow-delivery-id", id)
                    .header("x-mlflow-timestamp", &ts)
                    .header("x-mlflow-signature", sig)
                    .body(body.clone())
                    .send()
                    .await;
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                match resp {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
            }
            (hist, ok, failed)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (h, o, f) = t.await.unwrap();
        hist.add(h).unwrap();
        ok += o;
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"sent\": {n}, \"ok\": {ok}, \"failed\": {failed}, \"seconds\": {secs:.3}, \"per_second\": {:.0}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        n as f64 / secs,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
}
