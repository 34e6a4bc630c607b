//! `serving.mode = "local"`: `<command> models serve -m models:/NAME/VERSION -h 127.0.0.1 -p
//! <free port> --env-manager local`, in its own guarded process group (see `crate::process`),
//! ready when `GET /ping` answers. A failure names its root cause, then the log's last lines.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::root_cause::root_cause;
use crate::process::Group;

/// How much of the log's end is searched for the root cause: a start-up traceback is a few
/// KiB; a crash after hours of access logs is at the end anyway.
const LOG_SEARCHED: u64 = 64 * 1024;

pub struct LocalServer {
    pub base: String,
    /// From spawn to the first `/ping` answered.
    pub startup: Duration,
    group: std::sync::Mutex<Group>,
    log: tempfile::NamedTempFile,
}

impl LocalServer {
    pub async fn start(
        command: &str,
        model_uri: &str,
        tracking_uri: &str,
        startup_timeout: Duration,
    ) -> Result<LocalServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port for serving: {e}"))?;
        let log = tempfile::NamedTempFile::new()
            .map_err(|e| format!("cannot create the serving log: {e}"))?;
        let out = log.reopen().map_err(|e| e.to_string())?;
        let err = log.reopen().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(command);
        cmd.args([
            "models",
            "serve",
            "-m",
            model_uri,
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--env-manager",
            "local",
        ])
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        // Inherited by every process the server forks: lets anyone find them all.
        .env("STAGEGATE_SERVING", model_uri)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
        // `mlflow models serve` execs `uvicorn` by name: it must find the one beside `mlflow`.
        if let Some(dir) = Path::new(command)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            if let Ok(joined) = std::env::join_paths(dirs) {
                cmd.env("PATH", joined);
            }
        }
        let group = Group::spawn(cmd, model_uri).await.map_err(|e| {
            format!("cannot run `{command} models serve`: {e} (set serving.command)")
        })?;
        let started = Instant::now();
        let mut server = LocalServer {
            base: format!("http://127.0.0.1:{port}"),
            startup: Duration::ZERO,
            group: std::sync::Mutex::new(group),
            log,
        };
        server.wait_ready(startup_timeout).await?;
        server.startup = started.elapsed();
        tracing::debug!(model = model_uri, base = %server.base, "serving");
        Ok(server)
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                let (cause, tail) = self.diagnosis();
                return Err(format!(
                    "{cause}serving exited ({status}) before answering /ping; log: {tail}"
                ));
            }
            if let Ok(r) = http.get(format!("{}/ping", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let (cause, tail) = self.diagnosis();
                return Err(format!(
                    "{cause}serving did not answer /ping within {} (serving.startup_timeout); log: {tail}",
                    humantime::format_duration(timeout),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exit status, if the server's leader process has exited.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.group
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exited()
    }

    pub fn pgid(&self) -> i32 {
        self.group.lock().unwrap_or_else(|p| p.into_inner()).id()
    }

    /// What the log says went wrong: `("root cause: LINE; ", tail)`, or `("", tail)` when no
    /// line stands out; the tail is the log's last lines, on one line.
    pub fn diagnosis(&self) -> (String, String) {
        let log = self.log_end();
        let cause = root_cause(&log)
            .map(|c| format!("root cause: {c}; "))
            .unwrap_or_default();
        (cause, tail(&log))
    }

    fn log_end(&self) -> String {
        let Ok(mut f) = self.log.reopen() else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_SEARCHED)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// The last lines of a log, on one line.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(8)..].join(" | ");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}
