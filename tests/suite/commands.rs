//! The `command` gate: any test suite as a gate, the repository's example pytest suite
//! (examples/pytest-gates) included.

use crate::common;

use common::served::*;
use common::*;
use serde_json::json;
#[test]
fn command_gates_pass_fail_time_out_retry_and_shadow_without_leftovers() {
    let m = unique("command");
    let v = register(&m, &[json!({})]);
    let w = workdir(
        &format!(
            r#"
  [[policies.gates]]
  name = "env"
  type = "command"
  run = ["sh", "-c", "test \"$MODEL_NAME\" = {m} && test \"$MODEL_VERSION\" = {v} && test \"$MODEL_URI\" = models:/{m}/{v} && test -n \"$RUN_ID\" && test -n \"$MLFLOW_TRACKING_URI\" && echo env-ok"]

  [[policies.gates]]
  name = "fails"
  type = "command"
  run = ["sh", "-c", "echo checking; echo boom >&2; exit 3"]

  [[policies.gates]]
  name = "hangs"
  type = "command"
  run = ["sh", "-c", "sleep 300 & sleep 300"]
  timeout = "2s"

  [[policies.gates]]
  name = "flaky"
  type = "command"
  run = ["sh", "-c", "if [ -f flaky.flag ]; then exit 0; else touch flaky.flag; exit 1; fi"]
  retries = 1

  [[policies.gates]]
  name = "shadow"
  type = "command"
  run = ["false"]
  enforce = false

  [[policies.gates]]
  name = "not-installed"
  type = "command"
  run = ["no-such-program-xyz"]
  enforce = false
"#,
            v = v[0]
        ),
        "",
    );
    let r = w.run(&["evaluate", &m, &v[0], "--json"]);
    r.expect_code(1);
    let doc = r.json();
    assert_eq!(
        gate(&doc, "env")["outcome"],
        json!("pass"),
        "{}",
        gate(&doc, "env")
    );
    let fails = gate(&doc, "fails");
    assert_eq!(fails["outcome"], json!("fail"));
    assert!(
        fails["message"].as_str().unwrap().contains("exited 3")
            && fails["message"].as_str().unwrap().contains("boom"),
        "{fails}"
    );
    assert!(
        fails["details"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("boom")
    );
    let hangs = gate(&doc, "hangs");
    assert_eq!(hangs["outcome"], json!("fail"));
    assert!(
        hangs["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 2s"),
        "{hangs}"
    );
    let flaky = gate(&doc, "flaky");
    assert_eq!(
        (flaky["outcome"].clone(), flaky["attempts"].clone()),
        (json!("pass"), json!(2)),
        "{flaky}"
    );
    let shadow = block(version(&m, &v[0]))
        .tag("stagegate.gate.shadow")
        .unwrap()
        .to_string();
    assert!(
        shadow.starts_with("fail (shadow, would block): "),
        "{shadow}"
    );
    let missing = gate(&doc, "not-installed");
    assert_eq!(missing["outcome"], json!("error"));
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("cannot run `no-such-program-xyz`")
    );
    // The verdict counts the enforced failures only (the shadow error does not make it `error`).
    assert_eq!(doc["verdict"], json!("failed"));
    // Nothing the hanging command started is left.
    let leftovers = processes_with_env(&format!("MODEL_NAME={m}"));
    assert!(leftovers.is_empty(), "leftover processes {leftovers:?}");
}

/// The repository's example of the hand-made practice (examples/pytest-gates: a pytest suite
/// of model quality gates and a promotion script) as a command gate: it judges the version
/// stagegate evaluates (MODEL_NAME, MODEL_VERSION), reads the model files through the
/// registry whether they are a logged model (MLflow 3) or run artifacts (MLflow 2), and its
/// failures reach the report as pytest printed them.
#[test]
fn the_example_pytest_suite_runs_as_a_command_gate() {
    let example = root().join("examples/pytest-gates");
    let m = unique("pytest-gates");
    let staged = json!({"stage": "Staging", "tags": good_tags()});
    let mut mlflow2 = staged.clone();
    mlflow2["form"] = json!("mlflow2");
    // A really bad model (trained on noise labels) without the metadata tags.
    let bad = json!({"stage": "Staging", "degrade": true});
    let v = register(&m, &[staged, mlflow2, bad]);
    let python = venv().join("bin/python");
    // Its in-process latency test is timing-sensitive, so it is not relied on here.
    let cfg = config(
        &format!("{STAGE_TARGETS}\nworkdir = \"{}\"", example.display()),
        &format!(
            r#"
  [[policies.gates]]
  name = "pytest-gates"
  type = "command"
  run = ["{}", "-m", "pytest", "-k", "not latency"]
  timeout = "5m"
  env = {{ PYTHONDONTWRITEBYTECODE = "1" }}
"#,
            python.display()
        ),
    );
    let w = Workdir::new(&cfg);
    for good in &v[..2] {
        let r = w.run(&["evaluate", &m, good, "--json"]);
        let doc = r.json();
        let g = gate(&doc, "pytest-gates");
        assert_eq!(g["outcome"], json!("pass"), "version {good}: {g}");
        r.expect_code(0);
    }
    let r = w.run(&["evaluate", &m, &v[2], "--json"]);
    r.expect_code(1);
    let doc = r.json();
    let g = gate(&doc, "pytest-gates");
    assert_eq!(g["outcome"], json!("fail"), "{g}");
    assert!(g["message"].as_str().unwrap().contains("exited 1"), "{g}");
    let out = g["details"]["stdout_tail"].as_str().unwrap();
    for failed in ["test_validation_accuracy", "test_required_tags"] {
        assert!(
            out.contains(&format!("FAILED tests/test_model_gates.py::{failed}")),
            "{out}"
        );
    }
    assert!(!out.contains("test_run_is_complete"), "{out}");

    // The practice's promotion step, on the version the suite passed.
    let promoted = std::process::Command::new(&python)
        .arg(example.join("promote_model.py"))
        .args([&m, &v[0]])
        .env("MLFLOW_TRACKING_URI", mlflow_uri())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    assert_eq!(block(version(&m, &v[0])).current_stage, "Production");
}
