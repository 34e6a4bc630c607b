//! A `stagegate run` process for integration tests: its own port, config and state file, real
//! signals, and helpers to wait for it to converge.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::postgres::PgCluster;

pub const SECRET: &str = "test-secret";

/// How long the test MLflow server caches its webhook list (`MLFLOW_WEBHOOK_CACHE_TTL`, whole
/// seconds), as scripts/test.sh and [`super::PrivateMlflow`] start it.
pub const MLFLOW_WEBHOOK_CACHE_TTL_S: usize = 1;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub mlflow: String,
    child: Option<Child>,
    webhook_id: Option<String>,
    /// Extra environment for the daemon process.
    pub env: Vec<(String, String)>,
    /// The daemon's own PostgreSQL, when the suite runs on that backend (see [`on_postgres`]).
    pg: Option<PgCluster>,
}

/// Whether this run puts every daemon's state in PostgreSQL (`STAGEGATE_TEST_STORE=postgres`,
/// set by scripts/test.sh for its second pass over the daemon tests) instead of SQLite.
pub fn on_postgres() -> bool {
    std::env::var("STAGEGATE_TEST_STORE").as_deref() == Ok("postgres")
}

impl Daemon {
    /// Write `stagegate.toml` (`body` holds everything but `[mlflow]`, `[server]`, `[state]`)
    /// and start the daemon against `mlflow`.
    pub fn start(mlflow: &str, body: &str) -> Daemon {
        Daemon::start_on(mlflow, free_port(), body)
    }

    /// Like [`Daemon::start`], listening on `port` (known before the daemon starts).
    pub fn start_on(mlflow: &str, port: u16, body: &str) -> Daemon {
        Daemon::start_env(mlflow, port, body, &[])
    }

    /// Like [`Daemon::start_on`], with extra environment (e.g. `STAGEGATE_STATE__URL`, to
    /// share one PostgreSQL store between several daemons).
    pub fn start_env(mlflow: &str, port: u16, body: &str, env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::prepared(mlflow, port, body, env);
        d.spawn();
        d
    }

    /// A daemon with its config written, not started ([`Daemon::launch`] or [`Daemon::spawn`]).
    pub fn prepared(mlflow: &str, port: u16, body: &str, env: &[(&str, &str)]) -> Daemon {
        let d = Daemon::new(mlflow, port, env);
        d.write_config(body);
        d
    }

    /// Like [`Daemon::start_text`], on the SQLite file the config names whatever
    /// `STAGEGATE_TEST_STORE` says: for a test whose subject is that file.
    pub fn start_sqlite_text(mlflow: &str, port: u16, text: &str) -> Daemon {
        let mut d = Daemon::on_store(mlflow, port, &[], false);
        std::fs::write(d.config(), text).unwrap();
        d.spawn();
        d
    }

    fn new(mlflow: &str, port: u16, env: &[(&str, &str)]) -> Daemon {
        let shared = env.iter().any(|(k, _)| *k == "STAGEGATE_STATE__URL");
        Daemon::on_store(mlflow, port, env, on_postgres() && !shared)
    }

    /// A daemon not yet started; `own_postgres`: its state in a PostgreSQL of its own.
    fn on_store(mlflow: &str, port: u16, env: &[(&str, &str)], own_postgres: bool) -> Daemon {
        let mut d = Daemon {
            dir: tempfile::tempdir().unwrap(),
            port,
            mlflow: mlflow.to_string(),
            child: None,
            webhook_id: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pg: None,
        };
        if own_postgres {
            let pg = PgCluster::start();
            let url = pg.create_database("stagegate");
            d.env.push(("STAGEGATE_STATE__URL".into(), url));
            d.pg = Some(pg);
        }
        d
    }

    /// Where this daemon keeps its state: its PostgreSQL database, else its SQLite file.
    pub fn store_target(&self) -> stagegate::store::Target {
        match self.env.iter().find(|(k, _)| k == "STAGEGATE_STATE__URL") {
            Some((_, url)) => stagegate::store::Target::Postgres(url.clone()),
            None => stagegate::store::Target::Sqlite(self.state_path()),
        }
    }

    /// Start with `text` as the whole `stagegate.toml` (its own `[server]`, listening on
    /// `port`), for settings the standard sections fix.
    pub fn start_text(mlflow: &str, port: u16, text: &str, env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::new(mlflow, port, env);
        std::fs::write(d.config(), text).unwrap();
        d.spawn();
        d
    }

    pub fn config_text(&self, body: &str) -> String {
        format!(
            "[mlflow]\nrequest_timeout = \"5s\"\nretries = 1\n\n[server]\nlisten = \"127.0.0.1:{}\"\nshutdown_grace = \"10s\"\n\n[state]\npath = \"state.db\"\n\n{body}\n",
            self.port
        )
    }

    pub fn write_config(&self, body: &str) {
        std::fs::write(self.config(), self.config_text(body)).unwrap();
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("stagegate.toml")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Start the process and wait until it answers `/healthz`.
    pub fn spawn(&mut self) {
        self.launch();
        self.wait_for(
            "the daemon to answer /healthz",
            Duration::from_secs(20),
            || self.get("/healthz").is_some_and(|(s, _)| s == 200),
        );
    }

    /// Start the process without waiting for it to listen.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .args(["run", "--config"])
            .arg(self.config())
            .env("MLFLOW_TRACKING_URI", &self.mlflow)
            .env("RUST_LOG", "stagegate=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn stagegate run");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET a route: `(status, JSON body)`; `None` if nothing answered.
    pub fn get(&self, path: &str) -> Option<(u16, Value)> {
        let resp = reqwest::blocking::get(format!("{}{path}", self.url())).ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().unwrap_or(Value::Null)))
    }

    pub fn post(&self, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.url()))
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().expect("daemon answers");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// Deliver a webhook as MLflow would, signed with `secret`.
    pub fn deliver(&self, id: &str, ts: u64, secret: &str, body: &str) -> (u16, Value) {
        self.deliver_on(&reqwest::blocking::Client::new(), id, ts, secret, body)
    }

    /// [`Daemon::deliver`] on a kept-alive `client`, for many deliveries.
    pub fn deliver_on(
        &self,
        client: &reqwest::blocking::Client,
        id: &str,
        ts: u64,
        secret: &str,
        body: &str,
    ) -> (u16, Value) {
        let ts = ts.to_string();
        let resp = client
            .post(format!("{}/webhooks/mlflow", self.url()))
            .header("content-type", "application/json")
            .header("x-mlflow-delivery-id", id)
            .header("x-mlflow-timestamp", &ts)
            .header(
                "x-mlflow-signature",
                stagegate::webhook::signature_header(secret, id, &ts, body.as_bytes()),
            )
            .body(body.to_string())
            .send()
            .expect("daemon answers");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    pub fn status(&self) -> Value {
        self.get("/status").expect("status").1
    }

    pub fn evaluations(&self, model: &str) -> Vec<Value> {
        let (_, v) = self
            .get(&format!("/v1/evaluations?model={model}&limit=100"))
            .expect("evaluations");
        v["evaluations"].as_array().cloned().unwrap_or_default()
    }

    /// Register this daemon's MLflow webhook (a unique name, deleted on drop), and return once
    /// MLflow announces events to it. Each MLflow worker caches its list of webhooks per event
    /// for [`MLFLOW_WEBHOOK_CACHE_TTL_S`]: an event raised while a list fetched before the
    /// registration is still cached goes to nobody here. Which worker serves an event cannot
    /// be chosen, so no probe event can show that every cache has turned over; MLflow's own
    /// clock can. Its `Date` header (whole seconds) is read once the webhook exists; after
    /// TTL + 1 further ticks of it, every list cached before the registration has expired.
    pub fn register_webhook(&mut self) {
        let name = format!("stagegate-test-{}", self.port);
        let out = Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .args([
                "webhook",
                "register",
                "--url",
                &format!("{}/webhooks/mlflow", self.url()),
                "--name",
                &name,
                "--config",
            ])
            .arg(self.config())
            .env("MLFLOW_TRACKING_URI", &self.mlflow)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "webhook register failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = stdout
            .split('(')
            .nth(1)
            .and_then(|s| s.split(')').next())
            .expect("webhook id in output");
        self.webhook_id = Some(id.to_string());
        let registered = mlflow_date(&self.mlflow);
        let mut seen = vec![registered];
        self.wait_for(
            "MLflow's webhook cache to turn over (its Date header to tick)",
            Duration::from_secs(30 + 2 * MLFLOW_WEBHOOK_CACHE_TTL_S as u64),
            || {
                let now = mlflow_date(&self.mlflow);
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
                seen.len() > MLFLOW_WEBHOOK_CACHE_TTL_S + 1
            },
        );
    }

    /// The value of the series `series` (name and labels as `/metrics` spells them, e.g.
    /// `stagegate_promotions_total`); `None` when the daemon does not export it.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::blocking::get(format!("{}/metrics", self.url()))
            .and_then(|r| r.text())
            .expect("/metrics answers");
        text.lines().find_map(|l| {
            let value = l.strip_prefix(series)?.strip_prefix(' ')?;
            Some(value.trim().parse().expect("a number after the series"))
        })
    }

    /// MLflow deliveries this daemon accepted and queued (its `/metrics`).
    pub fn queued_deliveries(&self) -> u64 {
        self.metric(r#"stagegate_webhook_deliveries_total{source="mlflow",outcome="queued"}"#)
            .map_or(0, |n| n as u64)
    }

    /// Poll `cond` ([`super::eventually`]) until it holds; panic with the daemon's log after
    /// `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !super::eventually(timeout, cond) {
            panic!(
                "timed out waiting for {what}\n--- daemon log ---\n{}",
                tail(&self.log(), 60)
            );
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Wait for the process to exit (bounded); its exit code.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's process id (what it starts is labelled with it: the scoring host).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(id) = self.webhook_id.take() {
            // Deleted while the daemon still answers: deliveries MLflow already queued for a
            // dead port are retried for minutes and delay everyone else's.
            let mlflow = self.mlflow.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { super::client_at(&mlflow).delete_webhook(&id).await })
            })
            .join();
        }
        self.kill9();
    }
}

/// MLflow's clock at `mlflow`, as the `Date` header of its `/health` answer says (whole seconds).
fn mlflow_date(mlflow: &str) -> String {
    let resp = reqwest::blocking::get(format!("{mlflow}/health")).expect("MLflow answers /health");
    resp.headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .expect("MLflow's answer has a Date header")
        .to_string()
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
