//! Load generator for the webhook receiver benchmarks: sends N signed MLflow deliveries (each
//! with its own delivery id) from C concurrent keep-alive connections and prints one JSON line
//! with throughput and latency percentiles.
//!
//!     cargo run --release --example webhook_load -- URL SECRET N C MODEL_PREFIX MODELS [RATE [MIX]]
//!
//! - RATE: deliveries per second, paced (open loop: request i is due at i / RATE seconds and
//!   its latency is counted from then, so a stalled receiver cannot hide behind a slow
//!   sender); 0 or absent sends as fast as the connections allow.
//! - MIX: `alias` (default: `model_version_alias.created` only) or `mix` (created, tag set and
//!   alias created in turn, as a busy registry sends them).
//!
//! With `LOAD_LATENCIES=FILE` every latency (µs) is also written to FILE, one per line, so a
//! caller can merge several runs into one distribution.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use stagegate::webhook::signature_header;
use tokio::time::Instant;

struct Delivery {
    id: String,
    body: String,
    signature: String,
}

fn body(mix: bool, i: usize, model: &str) -> String {
    let version = 1 + i % 3;
    let kind = if mix { i % 3 } else { 2 };
    match kind {
        0 => format!(
            r#"{{"entity":"model_version","action":"created","timestamp":"x","data":{{"name":"{model}","version":"{version}","source":"models:/m-load","run_id":null,"tags":{{}},"description":null}}}}"#
        ),
        1 => format!(
            r#"{{"entity":"model_version_tag","action":"set","timestamp":"x","data":{{"name":"{model}","version":"{version}","key":"accuracy","value":"0.9"}}}}"#
        ),
        _ => format!(
            r#"{{"entity":"model_version_alias","action":"created","timestamp":"x","data":{{"name":"{model}","alias":"challenger","version":"{version}"}}}}"#
        ),
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str, default: Option<T>) -> T {
    match args.get(i) {
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("webhook_load: {name} must be a number, got {s:?}");
            std::process::exit(2)
        }),
        None => default.unwrap_or_else(|| {
            eprintln!(
                "usage: webhook_load URL SECRET N CONCURRENCY MODEL_PREFIX MODELS [RATE [MIX]]"
            );
            std::process::exit(2)
        }),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, secret) = (
        arg::<String>(&args, 1, "URL", None),
        arg::<String>(&args, 2, "SECRET", None),
    );
    let n: usize = arg(&args, 3, "N", None);
    let c: usize = arg(&args, 4, "CONCURRENCY", None);
    let prefix: String = arg(&args, 5, "MODEL_PREFIX", None);
    let models: usize = arg(&args, 6, "MODELS", None);
    let rate: f64 = arg(&args, 7, "RATE", Some(0.0));
    let mix = args.get(8).is_some_and(|m| m == "mix");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let run = now.as_nanos();

    // Sign everything up front: the generator measures the receiver, not its own HMACs. The
    // timestamp is refreshed per delivery in paced mode (a long run would leave tolerance).
    let sign_at = |i: usize| {
        let due = if rate > 0.0 { i as f64 / rate } else { 0.0 };
        (now.as_secs() + due as u64).to_string()
    };
    let requests: Vec<(Delivery, String)> = (0..n)
        .map(|i| {
            let id = format!("load-{run}-{i}");
            let body = body(mix, i, &format!("{prefix}{:04}", i % models));
            let ts = sign_at(i);
            let signature = signature_header(&secret, &id, &ts, body.as_bytes());
            (
                Delivery {
                    id,
                    body,
                    signature,
                },
                ts,
            )
        })
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    // Clients first: building one loads the TLS roots, which would otherwise delay the first
    // deliveries of a paced run and show up as the receiver's latency.
    let clients: Vec<reqwest::Client> = (0..c)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("an HTTP client")
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for http in clients {
        let (requests, next, url) = (requests.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
            let (mut ok, mut failed) = (0usize, 0usize);
            let mut all = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((d, ts)) = requests.get(i) else {
                    break;
                };
                let due = if rate > 0.0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    due
                } else {
                    Instant::now()
                };
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-mlflow-delivery-id", &d.id)
                    .header("x-mlflow-timestamp", ts)
                    .header("x-mlflow-signature", &d.signature)
                    .body(d.body.clone())
                    .send()
                    .await;
                let micros = due.elapsed().as_micros().max(1) as u64;
                let _ = hist.record(micros);
                all.push(micros);
                match resp {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
            }
            (hist, ok, failed, all)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let (mut ok, mut failed) = (0, 0);
    let mut all = Vec::new();
    for t in tasks {
        let Ok((h, o, f, a)) = t.await else {
            failed += 1;
            continue;
        };
        let _ = hist.add(h);
        all.extend(a);
        ok += o;
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    if let Ok(path) = std::env::var("LOAD_LATENCIES") {
        let lines: String = all.iter().map(|v| format!("{v}\n")).collect();
        if let Err(e) = std::fs::write(&path, lines) {
            eprintln!("webhook_load: cannot write {path}: {e}");
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{{\"sent\": {n}, \"ok\": {ok}, \"failed\": {failed}, \"seconds\": {secs:.3}, \"per_second\": {:.0}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"p999_ms\": {:.3}, \"max_ms\": {:.3}}}",
        n as f64 / secs,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0
    );
}
