//! Test harness shared by the integration tests: the real MLflow server that
//! `scripts/test.sh` started, the Python fixtures that train and register models in it, and
//! helpers to run the `stagegate` binary and read what it wrote.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod azure;
pub mod daemon;
mod fixtures;
pub mod postgres;
pub mod prometheus;
pub mod proxy;
pub mod replicas;
pub mod s3;
pub mod served;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use stagegate::mlflow::{Client, ModelVersion, Settings};

#[allow(unused_imports)] // each test binary uses a different part of the harness
pub use fixtures::{fixtures, fixtures_at, fixtures_concurrently, fixtures_env, fixtures_with};

/// The shared MLflow server of this test run (started by scripts/test.sh).
pub fn mlflow_uri() -> String {
    std::env::var("STAGEGATE_TEST_MLFLOW_URI")
        .expect("STAGEGATE_TEST_MLFLOW_URI is not set: run the suite with `bash scripts/test.sh`, which starts MLflow")
}

/// The project's Python venv (scripts/setup.sh).
pub fn venv() -> PathBuf {
    PathBuf::from(
        std::env::var("STAGEGATE_VENV")
            .expect("STAGEGATE_VENV is not set: run the suite with `bash scripts/test.sh`"),
    )
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A model name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory holding a `stagegate.toml`.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new(config: &str) -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stagegate.toml"), config).unwrap();
        Workdir { dir }
    }

    /// The same workdir with `from` replaced by `to` in its config.
    pub fn config_replace(self, from: &str, to: &str) -> Workdir {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "config has no {from:?}");
        std::fs::write(self.config(), text.replace(from, to)).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("stagegate.toml")
    }

    /// Run `stagegate ARGS` in this directory against `uri`.
    pub fn run_at(&self, uri: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagegate"));
        cmd.args(args)
            .current_dir(self.path())
            .env("MLFLOW_TRACKING_URI", uri)
            .env_remove("STAGEGATE_CONFIG")
            .env("RUST_LOG", "stagegate=debug");
        Run::of(cmd)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_at(&mlflow_uri(), args)
    }
}

/// Run `stagegate ARGS` in `w` against `uri`, off the async runtime (so a proxy on it keeps
/// serving meanwhile), with the MLflow credential variables cleared, then `env` set. A
/// background failure ([`watch`]) during the run fails the test here, before any assertion
/// on the run's outcome.
pub async fn run_env(w: &Workdir, uri: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let (uri, args) = (
        uri.to_string(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = w.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"));
        cmd.args(&args)
            .current_dir(dir)
            .env("MLFLOW_TRACKING_URI", uri)
            .env("RUST_LOG", "stagegate=debug")
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD")
            .env_remove("DATABRICKS_HOST")
            .env_remove("DATABRICKS_TOKEN")
            .envs(env);
        Run::of(cmd)
    })
    .await
    .unwrap();
    check_background();
    run
}

/// A finished `stagegate` process.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Its process id: what it started is labelled with it (the scoring host's processes).
    pub pid: u32,
}

impl Run {
    /// Run `cmd` to its end, its output captured.
    pub fn of(mut cmd: Command) -> Run {
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run stagegate");
        let pid = child.id();
        let o: Output = child.wait_with_output().expect("wait for stagegate");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            pid,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
    /// Panic with both streams unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A client for reading what stagegate wrote (tests assert on the registry, not on output).
pub fn client_at(uri: &str) -> Client {
    let cfg = stagegate::config::MlflowConfig {
        tracking_uri: Some(uri.to_string()),
        ..Default::default()
    };
    let mut settings = Settings::from_env(&cfg).unwrap();
    settings.tracking_uri = uri.to_string();
    Client::new(settings).unwrap()
}

pub fn client() -> Client {
    client_at(&mlflow_uri())
}

/// The version `alias` names on model `m`, as MLflow has it now.
pub fn alias_of(m: &str, alias: &str) -> Option<String> {
    block(async {
        let rm = client().registered_model(m).await.ok()?;
        rm.aliases
            .iter()
            .find(|a| a.alias == alias)
            .map(|a| a.version.clone())
    })
}

pub async fn version(name: &str, version: &str) -> ModelVersion {
    client().model_version(name, version).await.unwrap()
}

/// A policy config with the given gates (TOML `[[policies.gates]]` text) and extra policy keys.
pub fn config(policy_keys: &str, gates: &str) -> String {
    format!(
        r#"
[mlflow]
request_timeout = "10s"

[[policies]]
name = "default"
models = ["*"]
{policy_keys}

{gates}
"#
    )
}

pub const STAGE_TARGETS: &str = r#"candidate = { stage = "Staging" }
promote = { stage = "Production", archive_existing = true }"#;

pub const ALIAS_TARGETS: &str = r#"candidate = { alias = "challenger" }
promote = { alias = "champion" }"#;

/// The seed practice's gates: metric, tags and run checks.
pub const SEED_GATES: &str = r#"
  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85

  [[policies.gates]]
  name = "metadata"
  type = "tags"
  required = ["accuracy", "training_dataset_version", "feature_schema_version"]

  [[policies.gates]]
  name = "run-complete"
  type = "run"
  metrics = ["val_accuracy", "val_f1"]
  params = ["seed"]
  model_artifact = true
"#;

pub const CHAMPION_GATE: &str = r#"
  [[policies.gates]]
  name = "no-regression"
  type = "champion"
  metric = "val_accuracy"
  max_drop = 0.01
"#;

/// Tags the seed's metadata gate wants.
pub fn good_tags() -> Value {
    serde_json::json!({"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"})
}

/// A private MLflow server (own database and port), for tests that stop and restart it or
/// need another MLflow version.
pub struct PrivateMlflow {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The venv whose `mlflow server` runs.
    pub venv: PathBuf,
    /// The server's own environment (scripts/mlflow-server.sh's `STAGEGATE_MLFLOW_ARTIFACTS`,
    /// an artifact store's credentials).
    pub env: Vec<(String, String)>,
}

impl PrivateMlflow {
    pub fn start() -> PrivateMlflow {
        PrivateMlflow::start_from(&venv())
    }

    /// A server of the MLflow installed in `venv`.
    pub fn start_from(venv: &Path) -> PrivateMlflow {
        PrivateMlflow::start_env(venv, Vec::new())
    }

    /// A server of the MLflow in `venv`, started with `env` beside its own.
    pub fn start_env(venv: &Path, env: Vec<(String, String)>) -> PrivateMlflow {
        let dir = tempfile::tempdir().unwrap();
        let port = daemon::free_port();
        let m = PrivateMlflow {
            dir,
            port,
            venv: venv.to_path_buf(),
            env,
        };
        m.up();
        m
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(root().join("scripts/mlflow-server.sh"))
            .arg(cmd)
            .arg(self.dir.path().join("mlflow"))
            .arg(self.port.to_string())
            .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
            .env("STAGEGATE_VENV", &self.venv)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mlflow-server.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start (or restart, keeping its data) the server.
    pub fn up(&self) {
        self.script("start");
    }

    pub fn down(&self) {
        self.script("stop");
    }
}

impl Drop for PrivateMlflow {
    fn drop(&mut self) {
        self.down();
    }
}

/// `[serving]` using the venv's `mlflow`.
pub fn serving_section(extra: &str) -> String {
    format!(
        "[serving]\ncommand = \"{}\"\nstartup_timeout = \"120s\"\n{extra}\n",
        venv().join("bin/mlflow").display()
    )
}

/// PIDs of live processes whose environment has `entry` (e.g. `MODEL_NAME=m`): children
/// inherit the environment, so this finds a whole process tree, orphans included. Panics if
/// `/proc` cannot be read: an empty answer would make every "nothing left" check pass.
pub fn processes_with_env(entry: &str) -> Vec<u32> {
    let dir = std::fs::read_dir("/proc")
        .unwrap_or_else(|e| panic!("cannot list /proc to look for processes: {e}"));
    // Other processes' environments are read like our own: if ours cannot be, none can.
    if let Err(e) = std::fs::read("/proc/self/environ") {
        panic!("cannot read /proc/self/environ, so no process can be found by environment: {e}");
    }
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process that exits meanwhile (or is another user's) has nothing to find.
        let Ok(raw) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')));
        if !zombie
            && raw
                .split(|b| *b == 0)
                .any(|kv| kv.starts_with(entry.as_bytes()))
        {
            out.push(pid);
        }
    }
    out
}

/// The scoring host of stagegate process `owner`: the host, its model processes (forked from
/// it, so they carry its environment) and its process guard.
pub fn host_processes(owner: u32) -> Vec<u32> {
    let label = format!("scoring-host:{owner}");
    [
        processes_with_exact_env("STAGEGATE_SERVING", &label),
        processes_with_exact_env("STAGEGATE_GUARD", &label),
    ]
    .concat()
}

/// [`processes_with_env`] for exactly `key=value` (a prefix match would find `…:1234` for
/// `…:123`).
pub fn processes_with_exact_env(key: &str, value: &str) -> Vec<u32> {
    let entry = format!("{key}={value}");
    processes_with_env(&entry)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|raw| raw.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()))
        })
        .collect()
}

/// The serving processes (mlflow models serve and its uvicorn) of any version of `model`.
pub fn serving_processes(model: &str) -> Vec<u32> {
    processes_with_env(&format!("STAGEGATE_SERVING=models:/{model}/"))
}

/// The process guards (see `stagegate::process`) of any served model or command gate of
/// `model`: each is labelled with the model's URI.
pub fn guard_processes(model: &str) -> Vec<u32> {
    processes_with_env(&format!("STAGEGATE_GUARD=models:/{model}/"))
}

/// Run a future to completion on a throwaway runtime (the MLflow client is async; the tests
/// are not).
pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Failures of a test's background tasks (the fault proxy's hooks), which run on other
/// threads, where a panic would only end the task.
#[derive(Clone, Default)]
pub struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    pub fn record(&self, failure: String) {
        self.0.lock().unwrap().push(failure);
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap()
    }
}

thread_local! {
    /// The background failures this (test) thread watches: see [`watch`].
    static WATCHED: RefCell<Vec<Failures>> = const { RefCell::new(Vec::new()) };
}

/// Make every [`eventually`] wait of this thread fail the test with `failures` as soon as
/// there are any, instead of waiting on for something they prevented.
pub fn watch(failures: &Failures) {
    WATCHED.with(|w| w.borrow_mut().push(failures.clone()));
}

/// Panic with the first background failure this thread watches, if any.
fn check_background() {
    let failure = WATCHED.with(|w| w.borrow().iter().find_map(|f| f.lock().first().cloned()));
    if let Some(failure) = failure {
        panic!("a background task of this test failed: {failure}");
    }
}

/// The message of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// Poll `cond` (every 100 ms, slowing to 250) until it holds (true) or `timeout` passes
/// (false). A failure of a background task this thread watches ([`watch`]) fails the test at
/// once.
pub fn eventually(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    // Most conditions ask the shared MLflow server, which every test and daemon of the run
    // share (2 cores in CI): a long wait asks every 250 ms, not every 100.
    let mut pause = std::time::Duration::from_millis(100);
    while std::time::Instant::now() < deadline {
        check_background();
        if cond() {
            return true;
        }
        std::thread::sleep(pause);
        pause = (pause * 5 / 4).min(std::time::Duration::from_millis(250));
    }
    check_background();
    false
}

/// [`eventually`] for async conditions (a store's, say): poll `cond` every 20 ms until it
/// holds (true) or `timeout` passes (false).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    timeout: std::time::Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        check_background();
        if cond().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    check_background();
    false
}

/// A daemon config body (the harness adds [mlflow], [server], [state]): policy `policy` for
/// models `{prefix}*`, a stage candidate promoted to Production when `val_accuracy >= 0.85`,
/// then `extra_gates`; signed webhooks, the poll on `schedule`, `workers` workers.
pub fn metric_policy(
    policy: &str,
    prefix: &str,
    schedule: &str,
    workers: usize,
    extra_gates: &str,
) -> String {
    let secret = daemon::SECRET;
    format!(
        r#"
[webhooks]
secrets = ["{secret}"]

[poll]
schedule = "{schedule}"

[workers]
count = {workers}
backoff = "1s"
max_attempts = 30

[[policies]]
name = "{policy}"
models = ["{prefix}*"]
{STAGE_TARGETS}

  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85
{extra_gates}
"#
    )
}
