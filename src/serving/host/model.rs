//! One model version loaded in the scoring host: its own process (forked by the host) and the
//! socket stagegate talks to it on. Requests go one at a time, each within the request
//! timeout; a model that does not answer in time is killed. Whatever ends the process — a
//! crash, `os._exit`, the kernel's OOM killer, our memory cap or timeout — the error names the
//! model, how it ended, and the root cause from its own log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::UnixStream;

use super::arrow_io::{self, Shape};
use super::frame;
use super::zygote::{Exit, Spawned, Zygote, diagnosis, read_end};

/// A model's answer to rows: predictions, or the error the scoring server would have sent.
#[derive(Debug)]
pub enum Answer {
    Predictions(Vec<Value>),
    /// Status and body of the scoring server's error (`{"error_code", "message", …}`).
    Refused(u16, Vec<u8>),
}

pub struct HostModel {
    /// `models:/NAME/VERSION`.
    pub uri: String,
    /// Whether the model takes rows as a table (a column signature, or none).
    pub columnar: bool,
    pub pid: i32,
    pub loaded: Instant,
    pub load_ms: u64,
    id: u64,
    zygote: Arc<Zygote>,
    log: std::path::PathBuf,
    exit: tokio::sync::watch::Receiver<Option<Exit>>,
    conn: tokio::sync::Mutex<UnixStream>,
    http: tokio::sync::Mutex<Option<String>>,
    /// Why stagegate killed it (timeout, memory), for the message of whoever asks next.
    killed_for: Mutex<Option<String>>,
    timeout: Duration,
    /// Requests answered and the wall time spent in them (the report's serving figures).
    requests: AtomicU64,
    busy_us: AtomicU64,
    /// Of that, the time the model's process spent on them (decode, predict, encode).
    python_us: AtomicU64,
}

impl HostModel {
    /// Fork a process for `uri` and wait until its model is loaded, within `startup`.
    pub async fn open(
        zygote: Arc<Zygote>,
        uri: &str,
        env: &[(String, String)],
        startup: Duration,
        timeout: Duration,
    ) -> Result<HostModel, String> {
        let started = Instant::now();
        let Spawned {
            id,
            pid,
            socket,
            log,
            exit,
        } = zygote.spawn(uri, env).await?;
        let mut model = HostModel {
            uri: uri.to_string(),
            columnar: true,
            pid,
            loaded: started,
            load_ms: 0,
            id,
            zygote: zygote.clone(),
            log,
            exit,
            conn: tokio::sync::Mutex::new(
                UnixStream::connect(&socket)
                    .await
                    .map_err(|e| format!("cannot reach the process of {uri}: {e}"))?,
            ),
            http: tokio::sync::Mutex::new(None),
            killed_for: Mutex::new(None),
            timeout,
            requests: AtomicU64::new(0),
            busy_us: AtomicU64::new(0),
            python_us: AtomicU64::new(0),
        };
        let hello = {
            let mut conn = model.conn.lock().await;
            tokio::time::timeout(startup, frame::read(&mut *conn)).await
        };
        let hello = match hello {
            Err(_) => {
                model.kill(format!(
                    "it did not load within {} (serving.startup_timeout)",
                    humantime::format_duration(startup)
                ));
                return Err(model.failure("loading").await);
            }
            Ok(Ok(Some(f))) => f.header,
            Ok(_) => return Err(model.failure("loading").await),
        };
        if hello["ok"] != true {
            let text = hello["trace"].as_str().unwrap_or_default();
            let error = hello["error"].as_str().unwrap_or("no reason given");
            let cause = diagnosis(text);
            return Err(format!("loading {uri} failed: {error} ({cause})"));
        }
        model.columnar = hello["columnar"] != false;
        model.load_ms = started.elapsed().as_millis() as u64;
        model.loaded = Instant::now();
        Ok(model)
    }

    /// Whether its process still runs.
    pub fn alive(&self) -> bool {
        self.exit.borrow().is_none() && !self.zygote.gone()
    }

    /// Resident memory of its process, from `/proc` (Linux).
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid)
    }

    /// `(requests answered, total time in them, of which in the model's process)` over its
    /// life.
    pub fn usage(&self) -> (u64, Duration, Duration) {
        (
            self.requests.load(Ordering::Relaxed),
            Duration::from_micros(self.busy_us.load(Ordering::Relaxed)),
            Duration::from_micros(self.python_us.load(Ordering::Relaxed)),
        )
    }

    /// Kill its process, saying why (the next error names the reason).
    pub fn kill(&self, why: String) {
        *self.killed_for.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.zygote.kill(self.id);
    }

    /// Score a batch of rows (columnar models).
    pub async fn predict(
        &self,
        batch: &arrow::record_batch::RecordBatch,
    ) -> Result<Answer, String> {
        // Encoding and decoding a bulk batch takes milliseconds of CPU: off the async threads,
        // which serve webhooks meanwhile.
        let owned = batch.clone();
        let body = off_thread(move || arrow_io::encode(&owned)).await?;
        tracing::debug!(model = %self.uri, rows = batch.num_rows(), bytes = body.len(), "scoring in bulk");
        let f = self.request(json!({"op": "predict"}), &body, true).await?;
        self.answer(f).await
    }

    /// Score a JSON request, as `POST /invocations` takes it.
    pub async fn invoke(&self, body: &str) -> Result<Answer, String> {
        let f = self
            .request(json!({"op": "invoke"}), body.as_bytes(), true)
            .await?;
        self.answer(f).await
    }

    /// The address of MLflow's scoring server app for this model (started on first use).
    pub async fn http_base(&self) -> Result<String, String> {
        let mut http = self.http.lock().await;
        if let Some(base) = http.as_ref() {
            return Ok(base.clone());
        }
        let f = self.request(json!({"op": "http"}), &[], false).await?;
        let port = f.header["port"].as_u64().ok_or_else(|| {
            format!(
                "{} could not start its HTTP server: {}",
                self.uri,
                body_text(&f.body)
            )
        })?;
        let base = format!("http://127.0.0.1:{port}");
        tracing::debug!(model = %self.uri, base = %base, "serving over HTTP from the scoring host");
        *http = Some(base.clone());
        Ok(base)
    }

    async fn answer(&self, f: frame::Frame) -> Result<Answer, String> {
        let status = f.header["status"].as_u64().unwrap_or(500) as u16;
        if f.header["host_error"] == true {
            return Err(format!(
                "the scoring host failed on {}: {}",
                self.uri,
                body_text(&f.body)
            ));
        }
        if status != 200 {
            return Ok(Answer::Refused(status, f.body));
        }
        let body = f.body;
        let decoded = match f.header["format"].as_str() {
            Some("arrow") => {
                let shape = if f.header["shape"] == "records" {
                    Shape::Records
                } else {
                    Shape::List
                };
                off_thread(move || arrow_io::predictions(&body, shape)).await
            }
            _ => off_thread(move || crate::serving::predictions(&body)).await,
        };
        decoded.map(Answer::Predictions)
    }

    /// One exchange on the socket; `scoring` ones count in the figures.
    async fn request(
        &self,
        header: Value,
        body: &[u8],
        scoring: bool,
    ) -> Result<frame::Frame, String> {
        let mut conn = self.conn.lock().await;
        if !self.alive() {
            return Err(self.failure("scoring").await);
        }
        let started = Instant::now();
        let exchange = async {
            frame::write(&mut *conn, &header, body).await?;
            frame::read(&mut *conn).await
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(Some(f))) if !scoring => Ok(f),
            Ok(Ok(Some(f))) => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.busy_us
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                self.python_us.fetch_add(
                    f.header["python_us"].as_u64().unwrap_or(0),
                    Ordering::Relaxed,
                );
                Ok(f)
            }
            Ok(_) => Err(self.failure("scoring").await),
            Err(_) => {
                self.kill(format!(
                    "it did not answer within {} (serving.request_timeout), so it was stopped",
                    humantime::format_duration(self.timeout)
                ));
                Err(self.failure("scoring").await)
            }
        }
    }

    /// Why the process stopped answering (for a failed HTTP request to its scoring server).
    pub async fn failure_now(&self) -> String {
        self.failure("answering over HTTP").await
    }

    /// Why the process stopped answering: how it ended (waiting a moment for the host to reap
    /// it), why we killed it if we did, and the root cause from its log.
    async fn failure(&self, doing: &str) -> String {
        let mut exit = self.exit.clone();
        let ended = tokio::time::timeout(Duration::from_secs(3), exit.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|e| e.clone()));
        let how = match ended {
            Some(Exit::HostGone) => {
                format!("the scoring host ended ({})", self.zygote.gone_message())
            }
            Some(e) => format!("its process {e}"),
            None => "its process stopped answering".to_string(),
        };
        let why = self
            .killed_for
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        format!(
            "{} failed while {doing}: {how}{why}; {}",
            self.uri,
            diagnosis(&read_end(&self.log))
        )
    }
}

impl Drop for HostModel {
    fn drop(&mut self) {
        self.zygote.kill(self.id);
    }
}

/// Run CPU-bound work on tokio's blocking pool.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("a scoring worker ended abnormally: {e}"))?
}

fn body_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(300).collect()
}

/// Resident memory of process `pid` (`/proc/PID/statm`, in pages).
pub fn rss_of(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes no pointers.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}
