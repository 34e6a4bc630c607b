//! The host process itself (`host.py`, the zygote): started from the configured MLflow
//! environment in a guarded process group (see `crate::process`), it imports once and forks a
//! child per model. This module owns its control channel: requests go as JSON lines on its
//! stdin (one writer task, so dropping a model can ask for its kill without awaiting), events
//! come back as JSON lines on its stdout (one reader task, which wakes whoever waits for a
//! child's start or exit).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};

use crate::process::Group;
use crate::serving::root_cause::root_cause;

const SCRIPT: &str = include_str!("host.py");

/// How a model's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The host itself is gone, and its children with it.
    HostGone,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(9) => f.write_str("was killed (SIGKILL: out of memory, or stopped)"),
            Exit::Signal(6) => f.write_str("aborted (SIGABRT)"),
            Exit::Signal(11) => f.write_str("crashed (SIGSEGV)"),
            Exit::Signal(s) => write!(f, "was killed by signal {s}"),
            Exit::HostGone => f.write_str("ended with the scoring host"),
        }
    }
}

/// A child the host forked for one model.
pub struct Spawned {
    pub id: u64,
    pub pid: i32,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub exit: watch::Receiver<Option<Exit>>,
}

pub struct Zygote {
    /// The `ready` event: versions of Python, MLflow and the rest, the import time.
    pub info: Value,
    pub pid: i32,
    dir: tempfile::TempDir,
    lines: mpsc::UnboundedSender<String>,
    spawned: Mutex<HashMap<u64, oneshot::Sender<Option<i32>>>>,
    exits: Mutex<HashMap<u64, watch::Sender<Option<Exit>>>>,
    next_id: AtomicU64,
    gone: AtomicBool,
    log: tempfile::NamedTempFile,
    group: Mutex<Group>,
}

impl Zygote {
    /// Start the host with `python` (of the environment `serving.command` belongs to) and wait
    /// until it has imported everything, within `timeout`.
    pub async fn start(
        python: &Path,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<std::sync::Arc<Zygote>, String> {
        let dir = tempfile::Builder::new()
            .prefix("stagegate-host-")
            .tempdir()
            .map_err(|e| format!("cannot create the scoring host's directory: {e}"))?;
        let script = dir.path().join("stagegate_host.py");
        std::fs::write(&script, SCRIPT)
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        let log = tempfile::NamedTempFile::new()
            .map_err(|e| format!("cannot create the scoring host's log: {e}"))?;
        let err = log.reopen().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .arg(dir.path())
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Inherited by every model process: lets anyone (tests, an operator) find them,
            // and tell one stagegate's host from another's.
            .env(
                "STAGEGATE_SERVING",
                format!("scoring-host:{}", std::process::id()),
            )
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let label = format!("scoring-host:{}", std::process::id());
        let mut group = Group::spawn(cmd, &label)
            .await
            .map_err(|e| format!("cannot run {} for the scoring host: {e}", python.display()))?;
        let child = group.child();
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err("the scoring host has no stdin or stdout".into()),
        };
        let mut events = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(timeout, events.next_line()).await;
        let ready: Value = match first {
            Ok(Ok(Some(line))) => serde_json::from_str(&line).unwrap_or(Value::Null),
            Ok(_) => Value::Null,
            Err(_) => {
                return Err(format!(
                    "the scoring host did not finish its imports within {} (serving.startup_timeout); {}",
                    humantime::format_duration(timeout),
                    diagnosis(&read_end(log.path()))
                ));
            }
        };
        if ready["event"] != "ready" {
            let text = ready["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| read_end(log.path()));
            return Err(format!(
                "the scoring host could not start ({}): {}",
                python.display(),
                diagnosis(&text)
            ));
        }
        let (lines, rx) = mpsc::unbounded_channel();
        let zygote = std::sync::Arc::new(Zygote {
            info: ready,
            pid,
            dir,
            lines,
            spawned: Mutex::new(HashMap::new()),
            exits: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            gone: AtomicBool::new(false),
            log,
            group: Mutex::new(group),
        });
        tokio::spawn(write_lines(stdin, rx));
        tokio::spawn(read_events(std::sync::Arc::downgrade(&zygote), events));
        Ok(zygote)
    }

    /// Whether the host process has ended (its event stream closed).
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Fork a child that loads `uri`; returns once the child exists (its socket listens).
    pub async fn spawn(&self, uri: &str, env: &[(String, String)]) -> Result<Spawned, String> {
        if self.gone() {
            return Err(self.gone_message());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let (exit_tx, exit) = watch::channel(None);
        lock(&self.spawned).insert(id, tx);
        lock(&self.exits).insert(id, exit_tx);
        let env: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let line = json!({"op": "load", "id": id, "uri": uri, "env": env}).to_string();
        if self.lines.send(line).is_err() {
            return Err(self.gone_message());
        }
        let pid = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Some(pid))) => pid,
            Ok(Ok(None)) => {
                return Err(format!(
                    "the scoring host could not fork a process for {uri}"
                ));
            }
            Ok(Err(_)) => return Err(self.gone_message()),
            Err(_) => {
                return Err(format!(
                    "the scoring host did not fork a process for {uri} within 30s"
                ));
            }
        };
        Ok(Spawned {
            id,
            pid,
            socket: self.dir.path().join(format!("m{id}.sock")),
            log: self.dir.path().join(format!("m{id}.log")),
            exit,
        })
    }

    /// Ask the host to SIGKILL child `id` (it knows whether that pid is still its child).
    pub fn kill(&self, id: u64) {
        let _ = self.lines.send(json!({"op": "kill", "id": id}).to_string());
    }

    /// Why the host is gone, from its log.
    pub fn gone_message(&self) -> String {
        format!(
            "the scoring host has ended; {}",
            diagnosis(&read_end(self.log.path()))
        )
    }

    fn event(&self, e: Value) {
        let id = e["id"].as_u64();
        match (e["event"].as_str(), id) {
            (Some("spawned"), Some(id)) => {
                if let Some(tx) = lock(&self.spawned).remove(&id) {
                    let _ = tx.send(e["pid"].as_i64().and_then(|p| i32::try_from(p).ok()));
                }
            }
            (Some("exit"), Some(id)) => {
                if let Some(tx) = lock(&self.spawned).remove(&id) {
                    let _ = tx.send(None);
                }
                let exit = match (e["code"].as_i64(), e["signal"].as_i64()) {
                    (_, Some(s)) => Exit::Signal(s as i32),
                    (Some(c), None) => Exit::Code(c as i32),
                    (None, None) => Exit::Code(-1),
                };
                if let Some(tx) = lock(&self.exits).remove(&id) {
                    let _ = tx.send(Some(exit));
                }
            }
            _ => tracing::debug!(event = %e, "scoring host event"),
        }
    }

    fn ended(&self) {
        self.gone.store(true, Ordering::Release);
        // Its model processes would be orphans: they go with it, at once.
        lock(&self.group).kill();
        lock(&self.spawned).clear();
        for (_, tx) in lock(&self.exits).drain() {
            let _ = tx.send(Some(Exit::HostGone));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn write_lines(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

async fn read_events(
    zygote: std::sync::Weak<Zygote>,
    mut events: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    while let Ok(Some(line)) = events.next_line().await {
        let Some(z) = zygote.upgrade() else { return };
        match serde_json::from_str(&line) {
            Ok(e) => z.event(e),
            Err(_) => tracing::debug!(line, "scoring host said something that is not an event"),
        }
    }
    if let Some(z) = zygote.upgrade() {
        tracing::warn!("the scoring host has ended; {}", z.gone_message());
        z.ended();
    }
}

/// The last 64 KiB of a log.
pub fn read_end(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `root cause: LINE; log: TAIL` (or just the tail) for a log's text.
pub fn diagnosis(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
    let tail = if tail.is_empty() {
        "(empty)".to_string()
    } else {
        tail
    };
    match root_cause(log) {
        Some(c) => format!("root cause: {c}; log: {tail}"),
        None => format!("log: {tail}"),
    }
}

/// The Python of the environment `command` (`serving.command`, `mlflow` by default) belongs
/// to: the interpreter beside it, else the one its `#!` line names.
pub fn python_of(command: &str) -> Result<PathBuf, String> {
    let path = if command.contains('/') {
        PathBuf::from(command)
    } else {
        std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(command))
                    .find(|c| c.is_file())
            })
            .ok_or_else(|| format!("`{command}` (serving.command) is not on PATH"))?
    };
    if let Some(dir) = path.parent() {
        for name in ["python3", "python"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let head = std::fs::read(&path)
        .map_err(|e| format!("cannot read {} (serving.command): {e}", path.display()))?;
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(first);
    let shebang = line.strip_prefix("#!").map(str::trim);
    match shebang.map(|s| s.split_whitespace().collect::<Vec<_>>()) {
        Some(words) if words.first().is_some_and(|w| w.ends_with("/env")) && words.len() > 1 => {
            Ok(PathBuf::from(words[1]))
        }
        Some(words) if !words.is_empty() && words[0].contains("python") => {
            Ok(PathBuf::from(words[0]))
        }
        _ => Err(format!(
            "cannot tell which Python runs {} (serving.command): no python3 beside it and no Python in its #! line",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_beside_the_command_or_in_its_shebang() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let mlflow = bin.join("mlflow");
        std::fs::write(&mlflow, "#!/opt/py/bin/python3.11\nimport mlflow\n").unwrap();
        assert_eq!(
            python_of(mlflow.to_str().unwrap()).unwrap(),
            PathBuf::from("/opt/py/bin/python3.11")
        );
        std::fs::write(&mlflow, "#!/usr/bin/env python3\n").unwrap();
        assert_eq!(
            python_of(mlflow.to_str().unwrap()).unwrap(),
            PathBuf::from("python3")
        );
        std::fs::write(bin.join("python3"), "").unwrap();
        assert_eq!(
            python_of(mlflow.to_str().unwrap()).unwrap(),
            bin.join("python3")
        );
        std::fs::write(&mlflow, "#!/bin/sh\nexec something\n").unwrap();
        std::fs::remove_file(bin.join("python3")).unwrap();
        assert!(
            python_of(mlflow.to_str().unwrap())
                .unwrap_err()
                .contains("serving.command")
        );
        assert!(
            python_of("no-such-command-here")
                .unwrap_err()
                .contains("not on PATH")
        );
    }

    #[test]
    fn exits_read_as_causes() {
        assert_eq!(Exit::Code(3).to_string(), "exited with code 3");
        assert!(Exit::Signal(9).to_string().contains("out of memory"));
        let log = "Traceback (most recent call last):\n  File \"m.py\", line 3, in predict\nValueError: boom\n";
        assert!(
            diagnosis(log).starts_with("root cause: ValueError: boom"),
            "{}",
            diagnosis(log)
        );
    }
}
