//! stagegate against an MLflow 2.22 server: everything but webhooks must work. The server, the
//! fixture's Python and `mlflow models serve` all come from the MLflow 2 venv of
//! `requirements-mlflow2.txt`, which scripts/test.sh creates and names in
//! `STAGEGATE_MLFLOW2_VENV`. Models are registered in the MLflow 2 form (`runs:/` sources).
//!
//! One test, one server, run in order: stage and alias promotion with `evaluate --promote`
//! (the alias one through latency and edge-case gates served by the scoring host, which runs
//! the MLflow 2 venv's Python, then by its `mlflow models serve`), `check` and `webhook register`
//! saying the server has no webhooks, `rollback`, and the daemon promoting by its poll alone.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::block;
use common::daemon::Daemon;
use common::served::{assert_no_host_left, assert_no_serving_left, gate, served_models};
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// The MLflow 2 venv. Missing is a failure, never a skip: a suite that silently stops checking
/// MLflow 2 would still claim to support it.
fn mlflow2_venv() -> PathBuf {
    let venv = std::env::var("STAGEGATE_MLFLOW2_VENV").unwrap_or_default();
    assert!(
        !venv.is_empty(),
        "STAGEGATE_MLFLOW2_VENV is not set: run the suite with `bash scripts/test.sh`, which \
         creates the MLflow 2 venv (scripts/setup.sh requirements-mlflow2.txt) and exports it"
    );
    let venv = PathBuf::from(venv);
    assert!(
        venv.join("bin/mlflow").exists(),
        "STAGEGATE_MLFLOW2_VENV={} has no bin/mlflow",
        venv.display()
    );
    venv
}

/// Two policies: stage targets with the seed's registry gates and the champion gate, and
/// alias targets that also serve the candidate (latency, edge cases) with the venv's MLflow 2.
fn cli_config(prefix: &str, venv: &Path) -> String {
    format!(
        r#"
[mlflow]
request_timeout = "10s"

[webhooks]
secrets = ["compat-secret"]

[[policies]]
name = "stages"
models = ["{prefix}-stage*"]
{STAGE_TARGETS}
{SEED_GATES}
{CHAMPION_GATE}

[[policies]]
name = "aliases"
models = ["{prefix}-alias*"]
{ALIAS_TARGETS}
{SEED_GATES}

  [[policies.gates]]
  name = "latency"
  type = "latency"
  p99_ms = 5000.0
  warmup = 2
  requests = 20

  [[policies.gates]]
  name = "edge-cases"
  type = "edge_cases"
  # The fixture's LogisticRegression has no imputer: the default `nan` family would fail it.
  cases = ["zeros", "large", "one_row"]

[serving]
command = "{mlflow}"
startup_timeout = "120s"
"#,
        mlflow = venv.join("bin/mlflow").display()
    )
}

/// A good model in the MLflow 2 form (metrics as given, the seed's tags), placed by `extra`.
fn good(name: &str, accuracy: f64, extra: Value) -> Value {
    let mut op = json!({
        "op": "register", "name": name, "form": "mlflow2",
        "metrics": {"val_accuracy": accuracy, "val_f1": accuracy},
        "tags": good_tags(),
    });
    op.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    op
}

#[test]
fn mlflow_2_22_runs_everything_but_webhooks() {
    let venv = mlflow2_venv();
    let mlflow = PrivateMlflow::start_from(&venv);
    let uri = mlflow.uri();
    let server_version = reqwest::blocking::get(format!("{uri}/version"))
        .and_then(|r| r.text())
        .expect("GET /version");
    assert!(
        server_version.starts_with("2.22."),
        "the compatibility server is MLflow {server_version}, not 2.22"
    );
    let mlflow_client = client_at(&uri);

    let prefix = unique("compat2");
    let (stage_m, alias_m, daemon_m) = (
        format!("{prefix}-stage"),
        format!("{prefix}-alias"),
        format!("{prefix}-daemon"),
    );
    // One Python process registers everything (its mlflow import costs seconds).
    let made = fixtures_with(
        &venv,
        &uri,
        json!([
            good(&stage_m, 0.90, json!({"stage": "Staging"})),
            good(&stage_m, 0.91, json!({})),
            good(&alias_m, 0.90, json!({"alias": "challenger"})),
            good(&daemon_m, 0.90, json!({})),
        ]),
    );
    let v: Vec<&str> = made
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert!(
        made.iter()
            .all(|r| r["source"].as_str().unwrap().starts_with("runs:/")),
        "MLflow 2 sources: {made:?}"
    );
    let w = Workdir::new(&cli_config(&prefix, &venv));

    // `check`: reachable, and says plainly that this server has no webhooks but the poll works.
    let r = w.run_at(&uri, &["check"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("no webhooks API") && r.stdout.contains("MLflow 3.3"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("poll"), "{}", r.stdout);
    // `webhook register` refuses with the same explanation, not the server's HTML.
    let r = w.run_at(
        &uri,
        &[
            "webhook",
            "register",
            "--url",
            "http://127.0.0.1:9/webhooks/mlflow",
        ],
    );
    r.expect_code(2);
    assert!(
        r.stderr.contains("no webhooks API") && r.stderr.contains("poll"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("<html"), "{}", r.stderr);

    // Stage promotion: v1 Staging -> Production.
    w.run_at(&uri, &["evaluate", &stage_m, "--promote"])
        .expect_code(0);
    let got = block(mlflow_client.model_version(&stage_m, v[0])).unwrap();
    assert_eq!(got.current_stage, "Production");
    assert_eq!(got.tag("stagegate.action"), Some("promoted"));

    // v2 becomes a candidate, passes the champion gate against v1 and replaces it.
    block(mlflow_client.transition_stage(&stage_m, v[1], "Staging", false)).unwrap();
    let r = w.run_at(&uri, &["evaluate", &stage_m, "--promote", "--json"]);
    r.expect_code(0);
    assert_eq!(gate(&r.json(), "no-regression")["outcome"], json!("pass"));
    let stage_versions = || {
        let read = |n: &str| block(mlflow_client.model_version(&stage_m, n)).unwrap();
        (read(v[0]), read(v[1]))
    };
    let (v1, v2) = stage_versions();
    assert_eq!(
        (v1.current_stage.as_str(), v2.current_stage.as_str()),
        ("Archived", "Production")
    );
    assert_eq!(v2.tag("stagegate.replaced_version"), Some(v[0]));

    // Rollback restores v1.
    let r = w.run_at(&uri, &["rollback", &stage_m]);
    r.expect_code(0);
    let (v1, v2) = stage_versions();
    assert_eq!(
        (v1.current_stage.as_str(), v2.current_stage.as_str()),
        ("Production", "Archived")
    );
    assert!(v2.tag("stagegate.rolled_back").is_some());

    // The served gates through MLflow 2.22's Python: the scoring host (the default), then
    // `mlflow models serve` (local mode). Both judge alike; the first promotes.
    let local = w.dir.path().join("local.toml");
    std::fs::write(
        &local,
        std::fs::read_to_string(w.config())
            .unwrap()
            .replace("[serving]\n", "[serving]\nmode = \"local\"\n"),
    )
    .unwrap();
    let local = local.display().to_string();
    for (mode, args) in [
        ("host", vec!["evaluate", &alias_m, "--promote", "--json"]),
        (
            "local",
            vec!["evaluate", &alias_m, &v[2], "--json", "--config", &local],
        ),
    ] {
        let r = w.run_at(&uri, &args);
        let doc = r.json();
        assert_eq!(
            doc["verdict"],
            json!("passed"),
            "{mode}: {doc}\n{}",
            r.stderr
        );
        r.expect_code(0);
        let latency = gate(&doc, "latency");
        assert_eq!(latency["outcome"], json!("pass"), "{mode}: {latency}");
        assert!(latency["observed"]["p99_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(gate(&doc, "edge-cases")["outcome"], json!("pass"), "{mode}");
        assert_eq!(served_models(&doc), 1, "{mode}: {}", doc["serving"]);
        assert_no_host_left(r.pid);
    }
    let alias_model = block(mlflow_client.registered_model(&alias_m)).unwrap();
    assert_eq!(alias_model.alias("champion"), Some(v[2]));
    assert_no_serving_left(&alias_m);

    // The daemon with webhooks off: its cron poll notices a candidate that appears while it
    // runs, and promotes it.
    let d = Daemon::start(
        &uri,
        &format!(
            "[poll]\nschedule = \"*/2 * * * * *\"\n\n[[policies]]\nname = \"polled\"\n\
             models = [\"{daemon_m}\"]\n{STAGE_TARGETS}\n{SEED_GATES}\n"
        ),
    );
    let polls = || d.status()["poll"]["completed"].as_u64().unwrap_or(0);
    d.wait_for("the start-up poll", WAIT, || polls() >= 1);
    block(mlflow_client.transition_stage(&daemon_m, v[3], "Staging", false)).unwrap();
    d.wait_for("promotion by the poll", WAIT, || {
        block(mlflow_client.model_version(&daemon_m, v[3]))
            .is_ok_and(|mv| mv.current_stage == "Production")
    });
    let evals = d.evaluations(&daemon_m);
    assert!(
        !evals.is_empty() && evals.iter().all(|e| e["trigger"] == json!("poll")),
        "{evals:?}"
    );
    assert_eq!(d.status()["poll"]["last_error"], Value::Null);
}
