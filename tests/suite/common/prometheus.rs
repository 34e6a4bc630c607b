//! A real Prometheus for one test (Debian's `prometheus` package, installed by
//! `scripts/test.sh`; `STAGEGATE_PROMETHEUS` or `prometheus` on `PATH`), on its own free loopback port with
//! its own storage, scraping an [`Exporter`] every second; stopped on drop. The exporter is a
//! small HTTP server in the test process whose metrics (and a JSON document, for the `web`
//! provider) the test sets.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::daemon::free_port;
use super::eventually;

#[derive(Default)]
struct Shown {
    /// The exposition text `/metrics` answers.
    metrics: String,
    /// What `/json` answers.
    json: Value,
    /// A bearer token `/json` asks for, if any.
    token: Option<String>,
    /// Every JSON body posted to `/notify` (stagegate's `[[notify]]`), in order.
    posted: Vec<Value>,
}

/// A Prometheus exporter and JSON endpoint whose answers the test sets.
pub struct Exporter {
    pub port: u16,
    shown: Arc<Mutex<Shown>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Exporter {
    pub fn start() -> Exporter {
        let shown = Arc::new(Mutex::new(Shown::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shown.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/metrics", get(metrics))
                    .route("/json", get(json))
                    .route("/notify", axum::routing::post(notify))
                    .with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Exporter {
            port,
            shown,
            _stop: stop,
        }
    }

    /// Set a gauge's samples: `(labels, value)`, labels written as PromQL writes them
    /// (`model="m",version="2"`). Samples of other gauges stay.
    pub fn set(&self, gauge: &str, samples: &[(&str, f64)]) {
        let mut s = self.shown.lock().unwrap();
        let kept: Vec<String> = s
            .metrics
            .lines()
            .filter(|l| {
                !l.starts_with(&format!("{gauge}{{")) && !l.starts_with(&format!("# TYPE {gauge} "))
            })
            .map(str::to_string)
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("# TYPE {gauge} gauge\n"));
        for (labels, v) in samples {
            let v = if v.is_nan() {
                "NaN".to_string()
            } else {
                v.to_string()
            };
            text.push_str(&format!("{gauge}{{{labels}}} {v}\n"));
        }
        s.metrics = text;
    }

    pub fn set_json(&self, doc: Value, token: Option<&str>) {
        let mut s = self.shown.lock().unwrap();
        s.json = doc;
        s.token = token.map(str::to_string);
    }

    /// Where a `[[notify]]` posts for [`Exporter::posted`] to see.
    pub fn notify_url(&self) -> String {
        format!("http://127.0.0.1:{}/notify", self.port)
    }

    /// The notifications posted so far whose `event` is `event`.
    pub fn posted(&self, event: &str) -> Vec<Value> {
        let s = self.shown.lock().unwrap();
        s.posted
            .iter()
            .filter(|b| b["event"] == event)
            .cloned()
            .collect()
    }

    pub fn json_url(&self) -> String {
        format!("http://127.0.0.1:{}/json", self.port)
    }
}

async fn metrics(State(s): State<Arc<Mutex<Shown>>>) -> Response {
    let text = s.lock().unwrap().metrics.clone();
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

async fn notify(State(s): State<Arc<Mutex<Shown>>>, body: axum::body::Bytes) -> StatusCode {
    match serde_json::from_slice(&body) {
        Ok(v) => {
            s.lock().unwrap().posted.push(v);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn json(State(s): State<Arc<Mutex<Shown>>>, headers: HeaderMap) -> Response {
    let s = s.lock().unwrap();
    if let Some(t) = &s.token {
        let sent = headers.get("authorization").and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {t}").as_str()) {
            return (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
        }
    }
    axum::Json(s.json.clone()).into_response()
}

/// Prometheus scraping one exporter every second.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(exporter: &Exporter) -> Prometheus {
        let bin = std::env::var("STAGEGATE_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
                exporter.port
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {bin} ({e}): scripts/test.sh installs Debian's prometheus package, or set STAGEGATE_PROMETHEUS")
            });
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let ready = eventually(Duration::from_secs(60), || {
            reqwest::blocking::get(format!("{}/-/ready", p.address()))
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(
            ready,
            "Prometheus did not become ready on {port}: {}",
            p.log()
        );
        p
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Wait until an instant query of `promql` gives `value` (the exporter was scraped).
    pub fn wait_for(&self, promql: &str, value: f64) {
        let ok = eventually(Duration::from_secs(30), || {
            let r = reqwest::blocking::Client::new()
                .get(format!("{}/api/v1/query", self.address()))
                .query(&[("query", promql)])
                .send()
                .and_then(|r| r.json::<Value>());
            r.ok().is_some_and(|j| {
                j["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    == Some(value)
            })
        });
        assert!(
            ok,
            "Prometheus never answered {value} to {promql}: {}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Kill it (a Prometheus that is down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
