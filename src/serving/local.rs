//! `serving.mode = "local"`: `<command> models serve -m models:/NAME/VERSION -h 127.0.0.1 -p
//! <free port> --env-manager local`, in its own process group, ready when `GET /ping` answers.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::process::Group;

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
        let group = Group::spawn(cmd).map_err(|e| {
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
                return Err(format!(
                    "serving exited ({status}) before answering /ping; log: {}",
                    self.log_tail()
                ));
            }
            if let Ok(r) = http.get(format!("{}/ping", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "serving did not answer /ping within {} (serving.startup_timeout); log: {}",
                    humantime::format_duration(timeout),
                    self.log_tail()
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

    /// The last lines of the server's output, on one line.
    pub fn log_tail(&self) -> String {
        let mut f = match self.log.reopen() {
            Ok(f) => f,
            Err(_) => return "(no log)".into(),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let mut buf = String::new();
        let _ = f.read_to_string(&mut buf);
        let lines: Vec<&str> = buf
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
}
