//! The Python fixtures (tests/fixtures/registry.py): really trained models registered in MLflow,
//! tags, stages, aliases, holdout datasets. The tests ask the fixture server
//! (tests/fixtures/server.py), which imports mlflow and scikit-learn once and forks per request,
//! rather than start an interpreter per call (seconds of CPU each, hundreds of calls a run).
//! scripts/test.sh starts the server and names its socket in `STAGEGATE_TEST_FIXTURES`; without
//! it (`cargo nextest run --test X` by hand) the first test starts one that every test of the
//! same checkout and venv shares, and that leaves after ten idle minutes.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{mlflow_uri, root, venv};

/// Run fixture operations (see tests/fixtures/registry.py) against `uri`; one result per op.
pub fn fixtures_at(uri: &str, ops: Value) -> Vec<Value> {
    fixtures_env(uri, &[], ops)
}

/// [`fixtures_at`] with `extra` environment (an artifact store's credentials).
pub fn fixtures_env(uri: &str, extra: &[(&str, String)], ops: Value) -> Vec<Value> {
    let mut env: serde_json::Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| {
            let v = v.to_string_lossy().into_owned();
            (k.to_string_lossy().into_owned(), Value::String(v))
        })
        .collect();
    env.insert("MLFLOW_TRACKING_URI".into(), uri.into());
    env.insert("MLFLOW_DISABLE_TELEMETRY".into(), "true".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.clone().into());
    }
    let cwd = std::env::current_dir().expect("the test's working directory");
    let request = serde_json::json!({"ops": ops, "env": env, "cwd": cwd});
    let mut conn = connect();
    conn.write_all(request.to_string().as_bytes())
        .and_then(|()| conn.shutdown(std::net::Shutdown::Write))
        .expect("send the request to the fixture server");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply)
        .expect("read the fixture server's reply");
    let reply: Value = serde_json::from_slice(&reply).unwrap_or_else(|e| {
        panic!(
            "the fixture server gave no reply ({e}; it died?): {ops}\n{}",
            String::from_utf8_lossy(&reply)
        )
    });
    let text = |key: &str| reply[key].as_str().unwrap_or_default().to_string();
    results(
        &ops,
        reply["status"] == 0,
        &text("stdout"),
        &format!("(exit status {})\n{}", reply["status"], text("stderr")),
    )
}

/// [`fixtures_at`] run by another venv's Python (e.g. the MLflow 2 one of
/// tests/compat_mlflow2.rs): the script itself, an interpreter per call.
pub fn fixtures_with(venv: &Path, uri: &str, ops: Value) -> Vec<Value> {
    let out = Command::new(venv.join("bin/python"))
        .arg(root().join("tests/fixtures/registry.py"))
        .arg(ops.to_string())
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .output()
        .expect("run python fixtures");
    results(
        &ops,
        out.status.success(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

pub fn fixtures(ops: Value) -> Vec<Value> {
    fixtures_at(&mlflow_uri(), ops)
}

/// [`fixtures`] for independent batches of operations, sent at once (the server runs requests
/// side by side: most of a registration is waiting on MLflow); each batch's results. A batch
/// keeps its order; batches have none among them.
pub fn fixtures_concurrently(batches: Vec<Value>) -> Vec<Vec<Value>> {
    std::thread::scope(|s| {
        let running: Vec<_> = batches
            .into_iter()
            .map(|ops| s.spawn(move || fixtures(ops)))
            .collect();
        running
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The `FIXTURE <json>` lines of a run that succeeded; a failed one fails the test with both
/// streams.
fn results(ops: &Value, success: bool, stdout: &str, stderr: &str) -> Vec<Value> {
    assert!(success, "fixtures failed: {ops}\n{stdout}\n{stderr}");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FIXTURE "))
        .map(|l| serde_json::from_str(l).expect("fixture result JSON"))
        .collect()
}

/// A connection to the fixture server: scripts/test.sh's, or one shared with the other tests
/// of this checkout, started if none answers. (Not waited for: the server outlives this test.)
#[allow(clippy::zombie_processes)]
fn connect() -> UnixStream {
    if let Some(path) = std::env::var_os("STAGEGATE_TEST_FIXTURES") {
        return UnixStream::connect(&path).unwrap_or_else(|e| {
            panic!(
                "no fixture server at STAGEGATE_TEST_FIXTURES={} ({e}): scripts/test.sh starts it \
                 (its log: fixtures.log beside the socket); unset the variable and the tests start one",
                Path::new(&path).display()
            )
        });
    }
    let path = shared_socket();
    if let Ok(conn) = UnixStream::connect(&path) {
        return conn;
    }
    // It imports mlflow and scikit-learn first: seconds, more on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(180);
    let log = path.with_extension("log");
    let mut server = start_server(&path, &log);
    let mut started = Instant::now();
    loop {
        if let Ok(conn) = UnixStream::connect(&path) {
            return conn;
        }
        let exited = server.try_wait().expect("wait for the fixture server");
        if let Some(status) = exited {
            assert!(
                status.success(),
                "the fixture server exited ({status}); its log, {}:\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the fixture server did not listen on {} within 180 s; its log, {}:\n{}",
            path.display(),
            log.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Ours left because another held the socket: starting (it will listen) or leaving idle
        // (it will not). So ask again now and then, starting another.
        if exited.is_some() && started.elapsed() > Duration::from_secs(2) {
            server = start_server(&path, &log);
            started = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start a fixture server for `path`, in its own process group: a signal to this test's group
/// (a timeout) leaves alone the server other tests are using.
fn start_server(path: &Path, log: &Path) -> std::process::Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the fixture server's log");
    Command::new(venv().join("bin/python"))
        .arg(root().join("tests/fixtures/server.py"))
        .arg(path)
        .args(["--idle-exit", "600"])
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .expect("start the fixture server")
}

/// The socket of the server this checkout's tests share: named after the venv and the fixture
/// code, so a server that imported other code is not asked.
fn shared_socket() -> PathBuf {
    let mut key = DefaultHasher::new();
    venv().hash(&mut key);
    for file in ["registry.py", "server.py"] {
        let code =
            std::fs::read(root().join("tests/fixtures").join(file)).expect("read the fixture code");
        code.hash(&mut key);
    }
    std::env::temp_dir().join(format!("stagegate-fixtures-{:016x}.sock", key.finish()))
}
