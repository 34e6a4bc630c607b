//! `command`: any existing test suite as a gate. `run` is an argv (no shell), run in the
//! policy's working directory with `MODEL_NAME`, `MODEL_VERSION`, `MODEL_URI`, `RUN_ID` and
//! `MLFLOW_TRACKING_URI` set. Exit 0 passes; at `timeout` the whole process group is killed,
//! and if stagegate itself dies the group's guard kills it (see `crate::process`).

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::error::Elapsed;

use super::{Judgement, Outcome};
use crate::config::CommandGate;
use crate::process::Group;
use crate::serving::Session;

/// How much of each output stream the report keeps.
const TAIL_BYTES: usize = 4096;

async fn tail_of(mut r: impl AsyncRead + Unpin) -> String {
    let mut keep: VecDeque<u8> = VecDeque::with_capacity(TAIL_BYTES);
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        keep.extend(&buf[..n]);
        let excess = keep.len().saturating_sub(TAIL_BYTES);
        keep.drain(..excess);
    }
    String::from_utf8_lossy(keep.make_contiguous()).into_owned()
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

pub async fn judge(g: &CommandGate, s: &Session, tracking_uri: &str) -> Judgement {
    let v = s.candidate();
    let workdir = s.env().workdir.clone();
    // The model's URI; a served model's guard is labelled with it too.
    let uri = format!("models:/{}/{}", v.name, v.version);
    let mut cmd = Command::new(&g.run[0]);
    cmd.args(&g.run[1..])
        .current_dir(&workdir)
        .env("MODEL_NAME", &v.name)
        .env("MODEL_VERSION", &v.version)
        .env("MODEL_URI", &uri)
        .env("RUN_ID", v.run_id().unwrap_or(""))
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .envs(&g.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let argv = g.run.join(" ");
    let started = Instant::now();
    let group = match Group::spawn(cmd, &uri).await {
        Ok(p) => p,
        Err(e) => {
            return Judgement::error(format!("cannot run `{argv}` in {}: {e}", workdir.display()));
        }
    };
    let ran = run(group, g.timeout).await;
    verdict(g, &argv, ran, started.elapsed().as_secs_f64())
}

/// What a command did: how it ended (`Err`: it ran out of time), and its output's tails.
struct Ran {
    status: Result<std::io::Result<ExitStatus>, Elapsed>,
    stdout: String,
    stderr: String,
}

/// Wait for the command up to `timeout`, keeping the tails of its output; then kill whatever
/// it started.
async fn run(mut group: Group, timeout: Duration) -> Ran {
    let out = group
        .child()
        .stdout
        .take()
        .map(|o| tokio::spawn(tail_of(o)));
    let err = group
        .child()
        .stderr
        .take()
        .map(|e| tokio::spawn(tail_of(e)));
    let status = tokio::time::timeout(timeout, group.wait()).await;
    // Whatever happened, nothing the command started may live on.
    group.kill();
    let collect = |h: Option<tokio::task::JoinHandle<String>>| async move {
        match h {
            Some(h) => tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        }
    };
    let (stdout, stderr) = (collect(out).await, collect(err).await);
    Ran {
        status,
        stdout,
        stderr,
    }
}

/// Exit 0 passes; another exit, a signal or the timeout fails, quoting the output's last lines.
fn verdict(g: &CommandGate, argv: &str, ran: Ran, secs: f64) -> Judgement {
    let Ran {
        status,
        stdout,
        stderr,
    } = ran;
    let code = match &status {
        Ok(Ok(s)) => s.code(),
        _ => None,
    };
    let observed = json!({"exit_code": code, "seconds": (secs * 10.0).round() / 10.0});
    let threshold = json!({"exit_code": 0, "timeout_s": g.timeout.as_secs()});
    let tail = last_lines(&format!("{stdout}\n{stderr}"), 3);
    let mut j = match status {
        Err(_) => Judgement::new(
            Outcome::Fail,
            observed,
            threshold,
            format!(
                "`{argv}` timed out after {} and was killed; last output: {tail}",
                humantime::format_duration(g.timeout)
            ),
        ),
        Ok(Err(e)) => Judgement::error(format!("waiting for `{argv}`: {e}")),
        Ok(Ok(st)) if st.success() => Judgement::new(
            Outcome::Pass,
            observed,
            threshold,
            format!("`{argv}` exited 0 in {secs:.1}s"),
        ),
        Ok(Ok(st)) => {
            let how = st
                .code()
                .map(|c| format!("exited {c}"))
                .unwrap_or_else(|| "was killed by a signal".into());
            Judgement::new(
                Outcome::Fail,
                observed,
                threshold,
                format!("`{argv}` {how}: {tail}"),
            )
        }
    };
    j.details = Some(json!({"stdout_tail": stdout, "stderr_tail": stderr}));
    j
}
