//! Registry churn with an oracle (issue 7): Python writers (tests/fixtures/churn.py) register
//! versions of many models the way training jobs do — tags before or after the candidate
//! signal, a missing tag fixed later, bursts, versions that never become candidates, versions
//! that fail for good — while a real `stagegate run` watches. Once the daemon is quiescent, an
//! oracle checks the final registry: the right champion, current and correct verdicts, nothing
//! bad promoted, nothing untouched touched.
//!
//! One test per configuration (stage/alias × webhooks on/off, plus on_fail = archive), so
//! nextest runs them in parallel. Seeds are fixed here, one history per case and the two
//! histories alternating between the cases of each mode (the kill -9 case runs both);
//! `STAGEGATE_CHURN_SEEDS="1,2,3"` overrides them (the soak, bench/churn.sh, runs hundreds).
//! No timing is asserted: the writers' waits on the daemon are bounded, and a bound that
//! expires is a violation.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::{Daemon, SECRET, tail};
use common::*;
use serde_json::Value;

/// Five models a history: every one of the six patterns appears.
const MODELS: &str = "5";
/// How long a writer waits for the daemon to settle one version (seconds). Generous: a fixed
/// daemon settles a candidate in a few seconds even on a loaded 2-core CI machine.
const WAIT_S: &str = "45";
/// The same across a kill -9: a model in flight at the kill waits first for the restart, then,
/// on a shared store, for the dead process's lease on it to run out (15 s).
const RESTART_WAIT_S: &str = "75";
/// How long the quiescence wait may take once the writers are done (seconds).
const QUIESCENCE_S: &str = "120";
/// `workers.settle`, as written to the config and told to the oracle (which expects the
/// daemon to wait that long before archiving).
const SETTLE_S: &str = "3";

struct Case {
    mode: &'static str,
    webhooks: bool,
    on_fail: &'static str,
    workers: usize,
    /// Kill the daemon with SIGKILL once it has recorded this many evaluations and has one
    /// in flight, and start it again.
    restart_after: Option<i64>,
    /// The histories (churn.py seeds), run two at a time.
    seeds: &'static str,
}

const CASE: Case = Case {
    mode: "stage",
    webhooks: false,
    on_fail: "keep",
    workers: 4,
    restart_after: None,
    seeds: "11",
};

/// The policy's gates; the oracle in churn.py judges expected verdicts from the same file.
const GATES: &str = include_str!("../fixtures/churn_gates.toml");

/// Daemon config for models `{prefix}-*` (Daemon::start adds [mlflow], [server], [state]).
fn body(prefix: &str, case: &Case) -> String {
    let (webhooks, schedule) = if case.webhooks {
        // With webhooks the poll is the safety net, not the main path.
        (
            format!("[webhooks]\nsecrets = [\"{SECRET}\"]\n"),
            "*/5 * * * * *",
        )
    } else {
        (String::new(), "* * * * * *")
    };
    let targets = if case.mode == "stage" {
        STAGE_TARGETS
    } else {
        ALIAS_TARGETS
    };
    format!(
        r#"
{webhooks}
[poll]
schedule = "{schedule}"

[workers]
count = {workers}
backoff = "1s"
settle = "{SETTLE_S}s"

[[policies]]
name = "churn"
models = ["{prefix}-*"]
{targets}
on_fail = "{on_fail}"
{GATES}
"#,
        on_fail = case.on_fail,
        workers = case.workers,
    )
}

/// Run the churn histories against a fresh daemon and assert the oracle found nothing wrong.
fn churn(case: Case) {
    let prefix = unique(&format!(
        "churn-{}-{}{}",
        case.mode,
        if case.webhooks { "wh" } else { "poll" },
        if case.on_fail == "archive" { "-ar" } else { "" }
    ));
    let mut d = Daemon::start(&mlflow_uri(), &body(&prefix, &case));
    if case.webhooks {
        // Returns once MLflow announces events to it (its webhook cache has turned over).
        d.register_webhook();
    }
    let seeds = std::env::var("STAGEGATE_CHURN_SEEDS").unwrap_or_else(|_| case.seeds.into());
    let child = Command::new(venv().join("bin/python"))
        .arg(root().join("tests/fixtures/churn.py"))
        // Its telemetry thread rewrites os.environ while the writer threads read it.
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .args([
            "--seed",
            &seeds,
            "--mode",
            case.mode,
            "--on-fail",
            case.on_fail,
        ])
        .args(["--prefix", &format!("{prefix}-"), "--daemon", &d.url()])
        .args([
            "--models",
            MODELS,
            "--wait",
            if case.restart_after.is_some() {
                RESTART_WAIT_S
            } else {
                WAIT_S
            },
            "--timeout",
            QUIESCENCE_S,
            "--settle",
            SETTLE_S,
            // More seeds (STAGEGATE_CHURN_SEEDS) run two histories at a time.
            "--parallel",
            "2",
        ])
        .env("MLFLOW_TRACKING_URI", mlflow_uri())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run churn.py");
    if let Some(after) = case.restart_after {
        // Mid-history: an evaluation in flight, tags half written, the queue full. The store
        // and the registry are all the new process has.
        d.wait_for("evaluations under way", Duration::from_secs(180), || {
            let s = d.status();
            s["totals"]["evaluations"].as_i64() >= Some(after)
                && s["queue"]["in_flight"].as_u64() > Some(0)
        });
        d.kill9();
        d.spawn();
    }
    let out = child.wait_with_output().expect("churn.py finishes");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let Some(line) = stdout.lines().rev().find_map(|l| l.strip_prefix("CHURN ")) else {
        panic!(
            "churn.py printed no CHURN line (exit {:?})\n{}\n--- stderr ---\n{}",
            out.status.code(),
            tail(&stdout, 20),
            tail(&stderr, 40)
        );
    };
    let report: Value = serde_json::from_str(line).expect("CHURN JSON");
    // The figures, without the per-history detail (`--nocapture` shows them).
    let mut summary = report.clone();
    summary.as_object_mut().unwrap().remove("histories");
    println!("CHURN {summary}");
    assert!(
        out.status.success(),
        "churn.py harness error (exit {:?}): {}\n--- stderr ---\n{}",
        out.status.code(),
        report["harness_errors"],
        tail(&stderr, 40)
    );
    let wrong: Vec<&str> = report["wrong"]
        .as_array()
        .expect("wrong is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The first wrong model's own lines of the log, which its tail may not reach.
    let log = d.log();
    let first = wrong
        .first()
        .and_then(|w| w.split_whitespace().next())
        .unwrap_or("-");
    let about_first: Vec<&str> = log.lines().filter(|l| l.contains(first)).collect();
    assert!(
        wrong.is_empty(),
        "{} wrong outcome(s) in {} models / {} versions (seeds {seeds}, models {prefix}-*):\n  {}\n--- daemon log about {first} ---\n{}\n--- daemon log ---\n{}",
        wrong.len(),
        report["models"],
        report["versions"],
        wrong.join("\n  "),
        about_first[about_first.len().saturating_sub(150)..].join("\n"),
        tail(&log, 60)
    );
}

#[test]
fn churn_stage_poll_only() {
    churn(CASE);
}

#[test]
fn churn_stage_webhooks() {
    churn(Case {
        webhooks: true,
        seeds: "12",
        ..CASE
    });
}

#[test]
fn churn_alias_poll_only() {
    churn(Case {
        mode: "alias",
        seeds: "12",
        ..CASE
    });
}

#[test]
fn churn_alias_webhooks() {
    churn(Case {
        mode: "alias",
        webhooks: true,
        seeds: "11",
        ..CASE
    });
}

#[test]
fn churn_stage_webhooks_archive_failures() {
    churn(Case {
        webhooks: true,
        on_fail: "archive",
        seeds: "11",
        ..CASE
    });
}

#[test]
fn churn_alias_webhooks_one_worker() {
    churn(Case {
        mode: "alias",
        webhooks: true,
        workers: 1,
        seeds: "12",
        ..CASE
    });
}

#[test]
fn churn_alias_webhooks_across_a_kill_9_restart() {
    churn(Case {
        mode: "alias",
        webhooks: true,
        restart_after: Some(6),
        seeds: "11,12",
        ..CASE
    });
}
