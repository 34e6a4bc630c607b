//! `latency`: real requests to the served candidate — warm-up, then `requests` requests at
//! `concurrency`, timed into an HDR histogram. Any failed request fails the gate. With
//! `max_ratio_to_champion`, the champion is served and measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::{Judgement, Outcome, jnum, num};
use crate::config::LatencyGate;
use crate::location::Location;
use crate::objects::Opened;
use std::time::Duration;

use bytes::Bytes;

use crate::serving::{Answer, Connection, Endpoint, Session, Which, server_error};

/// Latencies of one measurement, in microseconds.
pub struct Measured {
    pub hist: Histogram<u64>,
    pub errors: u32,
    pub first_error: Option<String>,
}

impl Measured {
    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    pub fn max_ms(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// One request: on the task's own lean connection when there is one (reconnecting once if it
/// broke), else through the endpoint's general client. `Ok(elapsed)` for a 200.
async fn one(
    e: &Endpoint,
    conn: &mut Option<Connection>,
    body: &Bytes,
) -> Result<Duration, String> {
    if conn.is_none() {
        *conn = e.connect().await;
    }
    let answer = match conn.as_mut() {
        Some(c) => match c.post(body.clone()).await {
            Ok(a) => Ok(a),
            Err(_) => {
                *conn = e.connect().await;
                match conn.as_mut() {
                    Some(c) => c.post(body.clone()).await,
                    None => Err("cannot reconnect to the served model".to_string()),
                }
            }
        },
        None => e
            .invoke(String::from_utf8_lossy(body).into_owned())
            .await
            .map(|a| (a.status, a.body, a.elapsed)),
    };
    match answer {
        Ok((200, _, elapsed)) => {
            e.record(elapsed);
            Ok(elapsed)
        }
        Ok((status, body, elapsed)) => Err(server_error(&Answer {
            status,
            body,
            elapsed,
        })),
        Err(msg) => Err(msg),
    }
}

/// Send `warmup` unrecorded requests, then `requests` recorded ones from `concurrency` tasks,
/// each on its own kept-alive connection.
pub async fn measure(
    e: &Arc<Endpoint>,
    body: &str,
    warmup: u32,
    requests: u32,
    concurrency: u32,
) -> Measured {
    let body = Bytes::from(body.to_string());
    let mut warm = None;
    for _ in 0..warmup {
        let _ = one(e, &mut warm, &body).await;
    }
    drop(warm);
    let next = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (e, next, body) = (e.clone(), next.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut m = Measured {
                hist: histogram(),
                errors: 0,
                first_error: None,
            };
            let mut conn = None;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                match one(&e, &mut conn, &body).await {
                    Ok(elapsed) => {
                        let _ = m.hist.record(elapsed.as_micros().max(1) as u64);
                    }
                    Err(msg) => {
                        m.errors += 1;
                        m.first_error.get_or_insert(msg);
                    }
                }
            }
            m
        }));
    }
    let mut all = Measured {
        hist: histogram(),
        errors: 0,
        first_error: None,
    };
    for t in tasks {
        match t.await {
            Ok(m) => {
                let _ = all.hist.add(&m.hist);
                all.errors += m.errors;
                if all.first_error.is_none() {
                    all.first_error = m.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error
                    .get_or_insert(format!("measuring task failed: {e}"));
            }
        }
    }
    all
}

/// The request body: the gate's `input` file, else the model's serving input example.
/// A request body larger than this is not a latency input.
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

pub async fn input_body(input: Option<&Location>, s: &Session) -> Result<String, String> {
    match input {
        Some(loc) => {
            let opened = Opened::open(loc, &s.env().workdir, s.client(), s.env().inputs)
                .await
                .map_err(|e| format!("input {e}"))?;
            let bytes = opened
                .read_all(MAX_INPUT_BYTES)
                .await
                .map_err(|e| format!("input {e}"))?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("input {loc} is not JSON: {e}"))?;
            Ok(v.to_string())
        }
        None => match s.serving_example().await? {
            Some(v) => Ok(v.to_string()),
            None => Err(format!(
                "v{} has no serving_input_example.json (log it with an input_example) and the gate sets no `input` file",
                s.candidate().version
            )),
        },
    }
}

pub async fn judge(g: &LatencyGate, s: &Session) -> Judgement {
    match run(g, s).await {
        Ok(j) => j,
        Err(e) => Judgement::error(e),
    }
}

async fn run(g: &LatencyGate, s: &Session) -> Result<Judgement, String> {
    let body = input_body(g.input.as_ref(), s).await?;
    let cand = s.endpoint(Which::Candidate).await?;
    let m = measure(&cand, &body, g.warmup, g.requests, g.concurrency).await;
    let mut observed = json!({
        "p50_ms": jnum(m.ms(0.5)), "p95_ms": jnum(m.ms(0.95)), "p99_ms": jnum(m.ms(0.99)), "max_ms": jnum(m.max_ms()),
        "requests": g.requests, "concurrency": g.concurrency, "errors": m.errors,
    });
    let threshold = json!({"p50_ms": g.p50_ms, "p95_ms": g.p95_ms, "p99_ms": g.p99_ms, "max_ratio_to_champion": g.max_ratio_to_champion});
    let summary = format!(
        "p50 {} ms, p95 {} ms, p99 {} ms, max {} ms over {} requests at concurrency {}",
        num(m.ms(0.5)),
        num(m.ms(0.95)),
        num(m.ms(0.99)),
        num(m.max_ms()),
        g.requests,
        g.concurrency
    );
    if m.errors > 0 {
        let first = m.first_error.unwrap_or_default();
        let msg = format!(
            "{} of {} requests failed (first: {first})",
            m.errors, g.requests
        );
        return Ok(Judgement::new(Outcome::Fail, observed, threshold, msg));
    }
    let mut failures = Vec::new();
    let mut within = Vec::new();
    for (label, q, limit) in [
        ("p50", 0.5, g.p50_ms),
        ("p95", 0.95, g.p95_ms),
        ("p99", 0.99, g.p99_ms),
    ] {
        match limit {
            Some(l) if m.ms(q) > l => {
                failures.push(format!("{label} {} ms > {} ms", num(m.ms(q)), num(l)))
            }
            Some(l) => within.push(format!("{label} {} ms <= {} ms", num(m.ms(q)), num(l))),
            None => {}
        }
    }
    let mut notes = Vec::new();
    if let Some(max_ratio) = g.max_ratio_to_champion {
        match versus_champion(g, s, &body, &m, max_ratio, &mut observed).await? {
            Ok(note) => notes.push(note),
            Err(failure) => failures.push(failure),
        }
    }
    let tail = if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join("; "))
    };
    Ok(if failures.is_empty() {
        let msg = if within.is_empty() {
            format!("{summary}{tail}")
        } else {
            format!("{} ({summary}){tail}", within.join(", "))
        };
        Judgement::new(Outcome::Pass, observed, threshold, msg)
    } else {
        let msg = format!("{} ({summary}){tail}", failures.join("; "));
        Judgement::new(Outcome::Fail, observed, threshold, msg)
    })
}

/// The candidate's p99 against the champion's, measured the same way in the same run:
/// `Ok(Ok(note))` within `max_ratio` (or no champion), `Ok(Err(failure))` over it. The
/// figures go into `observed`.
async fn versus_champion(
    g: &LatencyGate,
    s: &Session,
    body: &str,
    m: &Measured,
    max_ratio: f64,
    observed: &mut Value,
) -> Result<Result<String, String>, String> {
    let Some(ch) = s.champion() else {
        return Ok(Ok("no champion: ratio not checked".to_string()));
    };
    let champ = s
        .endpoint(Which::Champion)
        .await
        .map_err(|e| format!("serving the champion v{}: {e}", ch.version))?;
    let c = measure(&champ, body, g.warmup, g.requests, g.concurrency).await;
    if c.errors > 0 {
        return Err(format!(
            "the champion v{} failed {} requests (first: {})",
            ch.version,
            c.errors,
            c.first_error.unwrap_or_default()
        ));
    }
    let ratio = m.ms(0.99) / c.ms(0.99).max(0.001);
    observed["champion_p99_ms"] = jnum(c.ms(0.99));
    observed["ratio_to_champion"] = jnum(ratio);
    let text = format!(
        "p99 {}x the champion v{}'s {} ms",
        num(ratio),
        ch.version,
        num(c.ms(0.99))
    );
    Ok(if ratio > max_ratio {
        Err(format!("{text} > max {}x", num(max_ratio)))
    } else {
        Ok(format!("{text} <= max {}x", num(max_ratio)))
    })
}
