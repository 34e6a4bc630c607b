//! Gates that exercise the model itself — latency, edge_cases, dataset, command — against
//! scikit-learn models really served by `mlflow models serve`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn register(name: &str, ops: &[Value]) -> Vec<String> {
    let ops: Vec<Value> = ops
        .iter()
        .map(|extra| {
            let mut op = json!({"op": "register", "name": name});
            op.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            op
        })
        .collect();
    fixtures(json!(ops))
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect()
}

/// A workdir whose policy has `gates` and the venv's serving.
fn workdir(gates: &str, serving_extra: &str) -> Workdir {
    Workdir::new(&format!(
        "{}\n{}",
        config(ALIAS_TARGETS, gates),
        serving_section(serving_extra)
    ))
}

fn gate<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == json!(name))
        .unwrap_or_else(|| panic!("no gate {name} in {doc}"))
}

fn assert_no_serving_left(model: &str) {
    // Killing is immediate, but reaping orphans takes the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if serving_processes(model).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "serving processes of {model} outlived the evaluation: {:?}",
        serving_processes(model)
    );
}

#[test]
fn latency_gates_pass_and_fail_on_one_served_model_that_does_not_outlive_the_evaluation() {
    let m = unique("latency");
    let v = register(&m, &[json!({"alias": "challenger"})]);
    let w = workdir(
        r#"
  [[policies.gates]]
  name = "fast-enough"
  type = "latency"
  p99_ms = 1000.0
  requests = 40
  concurrency = 2

  [[policies.gates]]
  name = "tiny-p99"
  type = "latency"
  p99_ms = 0.001
  requests = 20
  warmup = 2
"#,
        "",
    );
    let r = w.run(&["evaluate", &m, &v[0], "--json"]);
    r.expect_code(1);
    let doc = r.json();
    let fast = gate(&doc, "fast-enough");
    assert_eq!(fast["outcome"], json!("pass"), "{fast}");
    assert!(fast["observed"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(fast["observed"]["errors"], json!(0));
    let tiny = gate(&doc, "tiny-p99");
    assert_eq!(tiny["outcome"], json!("fail"));
    assert!(
        tiny["message"].as_str().unwrap().starts_with("p99 "),
        "{tiny}"
    );
    assert!(
        tiny["message"].as_str().unwrap().contains("> 0.001 ms"),
        "{tiny}"
    );
    assert_eq!(
        block(version(&m, &v[0]))
            .tag("stagegate.gate.tiny-p99")
            .map(|t| t.starts_with("fail: p99")),
        Some(true)
    );
    // One server for both gates, stopped with the evaluation.
    assert!(r.stderr.matches("serving").count() >= 1, "{}", r.stderr);
    assert_no_serving_left(&m);
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn edge_cases_pass_good_models_catch_a_nan_failure_and_refuse_a_model_without_signature() {
    let m = unique("edges");
    let v = register(
        &m,
        &[
            json!({"kind": "classifier"}),
            json!({"kind": "nan_fragile"}),
            json!({"kind": "strings"}),
            json!({"kind": "regressor", "form": "mlflow2"}),
            json!({"light": true}),
        ],
    );
    let w = workdir(
        "\n  [[policies.gates]]\n  name = \"edges\"\n  type = \"edge_cases\"\n  batch_rows = 1000\n",
        "",
    );
    let edges = |version: &str, code: i32| {
        let r = w.run(&["evaluate", &m, version, "--json"]);
        r.expect_code(code);
        gate(&r.json(), "edges").clone()
    };
    let good = edges(&v[0], 0);
    assert!(
        good["message"].as_str().unwrap().starts_with("all "),
        "{good}"
    );
    let cases: Vec<&str> = good["details"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case"].as_str().unwrap())
        .collect();
    for c in [
        "zeros",
        "+1e6",
        "-1e6",
        "type minimum",
        "type maximum",
        "1-row batch",
        "1000-row batch",
    ] {
        assert!(cases.contains(&c), "{c} missing from {cases:?}");
    }

    let nan = edges(&v[1], 1);
    let msg = nan["message"].as_str().unwrap();
    assert!(
        msg.contains("NaN in optional columns") && msg.contains("Input X contains NaN"),
        "{msg}"
    );
    let failing: Vec<&Value> = nan["details"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == json!(false))
        .collect();
    assert!(
        failing
            .iter()
            .all(|c| c["error"].as_str().unwrap().starts_with("400")),
        "{failing:?}"
    );

    let strings = edges(&v[2], 0);
    let cases = strings["details"]["cases"].to_string();
    assert!(
        cases.contains("unicode strings")
            && cases.contains("long strings")
            && cases.contains("empty strings"),
        "{cases}"
    );

    edges(&v[3], 0); // a regressor, MLflow 2 form

    let none = edges(&v[4], 2);
    assert_eq!(none["outcome"], json!("error"));
    assert!(
        none["message"]
            .as_str()
            .unwrap()
            .contains("has no signature"),
        "{none}"
    );
    assert_no_serving_left(&m);
}

fn dataset_gates(csv: &str, parquet: &str) -> String {
    format!(
        r#"
  [[policies.gates]]
  name = "holdout-csv"
  type = "dataset"
  path = "{csv}"
  label = "target"
  metrics = {{ accuracy = 0.8, f1 = 0.8, f1_macro = 0.8 }}
  slices = {{ column = "segment", max_gap = {{ accuracy = 0.15 }}, min_rows = 30 }}

  [[policies.gates]]
  name = "holdout-parquet"
  type = "dataset"
  path = "{parquet}"
  label = "target"
  batch_size = 128
  metrics = {{ accuracy = 0.8 }}

  [[policies.gates]]
  name = "vs-champion"
  type = "dataset"
  path = "{parquet}"
  label = "target"
  vs_champion = {{ metric = "accuracy", max_drop = 0.0, confidence = 0.95, resamples = 300, seed = 7 }}
"#
    )
}

#[test]
fn dataset_gates_score_csv_and_parquet_slices_and_compare_with_the_champion() {
    let m = unique("dataset");
    let w = workdir(&dataset_gates("holdout.csv", "holdout.parquet"), "");
    let dir = w.path().display().to_string();
    fixtures(json!([
        {"op": "dataset", "path": format!("{dir}/holdout.csv"), "rows": 1000, "segment": true},
        {"op": "dataset", "path": format!("{dir}/holdout.parquet"), "rows": 1000, "segment": true},
    ]));
    let v = register(
        &m,
        &[
            json!({"alias": "champion"}),
            json!({"degrade": true}),
            json!({}),
        ],
    );
    let (good, bad, twin) = (&v[0], &v[1], &v[2]);

    // The degraded model fails its thresholds and loses to the champion.
    let r = w.run(&["evaluate", &m, bad, "--json"]);
    r.expect_code(1);
    let doc = r.json();
    let csv = gate(&doc, "holdout-csv");
    assert_eq!(csv["outcome"], json!("fail"));
    assert!(
        csv["message"].as_str().unwrap().contains("accuracy 0."),
        "{csv}"
    );
    assert_eq!(csv["observed"]["dataset"]["rows"], json!(1000));
    assert!(
        csv["observed"]["slices"]["C"]["judged"] == json!(false),
        "the small segment is reported, not judged: {csv}"
    );
    let vs = gate(&doc, "vs-champion");
    assert_eq!(vs["outcome"], json!("fail"), "{vs}");
    assert!(
        vs["message"]
            .as_str()
            .unwrap()
            .contains(&format!("vs champion v{good}")),
        "{vs}"
    );
    assert!(vs["observed"]["vs_champion"]["high"].as_f64().unwrap() < 0.0);

    // A twin of the champion: the thresholds pass, the comparison cannot tell: inconclusive, exit 2.
    let r = w.run(&["evaluate", &m, twin, "--json"]);
    r.expect_code(2);
    let doc = r.json();
    assert_eq!(gate(&doc, "holdout-csv")["outcome"], json!("pass"), "{doc}");
    assert_eq!(gate(&doc, "holdout-parquet")["outcome"], json!("pass"));
    let vs = gate(&doc, "vs-champion");
    assert_eq!(vs["inconclusive"], json!(true), "{vs}");
    assert!(vs["message"].as_str().unwrap().starts_with("inconclusive"));
    let report: Value =
        serde_json::from_str(block(version(&m, twin)).tag("stagegate.report").unwrap()).unwrap();
    let datasets = report["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 3);
    assert!(
        datasets
            .iter()
            .all(|d| d["sha256"].as_str().unwrap().len() == 64)
    );

    // The other way round: against a degraded champion the good model wins.
    fixtures(json!([{"op": "alias", "name": m, "alias": "champion", "version": bad}]));
    let r = w.run(&["evaluate", &m, good, "--json"]);
    r.expect_code(0);
    let vs = gate(&r.json(), "vs-champion").clone();
    assert_eq!(vs["outcome"], json!("pass"), "{vs}");
    assert!(vs["observed"]["vs_champion"]["low"].as_f64().unwrap() > 0.0);
    assert_no_serving_left(&m);
}

#[test]
fn dataset_errors_name_what_is_wrong() {
    let m = unique("dataset-errors");
    let w = workdir(
        r#"
  [[policies.gates]]
  name = "missing-file"
  type = "dataset"
  path = "nope.csv"
  label = "target"
  metrics = { accuracy = 0.5 }

  [[policies.gates]]
  name = "missing-label"
  type = "dataset"
  path = "holdout.csv"
  label = "outcome"
  metrics = { accuracy = 0.5 }

  [[policies.gates]]
  name = "mismatch"
  type = "dataset"
  path = "no-f0.csv"
  label = "target"
  metrics = { accuracy = 0.5 }
"#,
        "",
    );
    let dir = w.path().display().to_string();
    fixtures(json!([
        {"op": "dataset", "path": format!("{dir}/holdout.csv"), "rows": 50},
        {"op": "dataset", "path": format!("{dir}/no-f0.csv"), "rows": 50, "drop": ["f0"]},
    ]));
    let v = register(&m, &[json!({})]);
    let r = w.run(&["evaluate", &m, &v[0], "--json"]);
    r.expect_code(2);
    let doc = r.json();
    let msg = |name: &str| {
        let g = gate(&doc, name);
        assert_eq!(g["outcome"], json!("error"), "{g}");
        g["message"].as_str().unwrap().to_string()
    };
    assert!(msg("missing-file").contains("nope.csv does not exist"));
    assert!(msg("missing-label").contains("label column \"outcome\" is not in dataset"));
    assert!(
        msg("mismatch").contains("requires: f0"),
        "{}",
        msg("mismatch")
    );
}

#[test]
fn an_external_url_endpoint_is_used_as_is() {
    let m = unique("external");
    let v = register(&m, &[json!({"kind": "regressor"})]);
    let dir = tempfile::tempdir().unwrap();
    let holdout = format!("{}/reg.parquet", dir.path().display());
    fixtures(json!([{"op": "dataset", "kind": "regressor", "path": holdout, "rows": 500}]));
    // Someone else's server: started here, not by stagegate.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(stagegate::serving::LocalServer::start(
            venv().join("bin/mlflow").to_str().unwrap(),
            &format!("models:/{m}/{}", v[0]),
            &mlflow_uri(),
            Duration::from_secs(120),
        ))
        .unwrap();
    let w = workdir(
        &format!(
            r#"
  [[policies.gates]]
  name = "latency"
  type = "latency"
  p99_ms = 1000.0
  requests = 20

  [[policies.gates]]
  name = "regression"
  type = "dataset"
  path = "{holdout}"
  label = "target"
  metrics = {{ rmse = 10.0, r2 = 0.9 }}
"#
        ),
        &format!("url = \"{}/invocations\"", server.base),
    );
    let r = w.run(&["evaluate", &m, &v[0], "--json"]);
    r.expect_code(0);
    let doc = r.json();
    assert!(
        gate(&doc, "regression")["message"]
            .as_str()
            .unwrap()
            .contains("rmse"),
        "{doc}"
    );
    assert!(
        serving_processes(&m).len() >= 1,
        "the external server is still ours to stop"
    );
    drop(server);
    assert_no_serving_left(&m);
}

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

/// The seed's own pytest suite, as a command gate, on a model registered by the seed's own
/// training script.
#[test]
fn the_seed_pytest_suite_runs_as_a_command_gate() {
    let Some(seed) = seed_pipeline() else {
        panic!("the seed pipeline (../shared/seed_pipeline) is needed; set STAGEGATE_SEED_DIR");
    };
    let m = unique("seed");
    let out = std::process::Command::new(venv().join("bin/python"))
        .arg(seed.join("train_register.py"))
        .arg(&m)
        .env("MLFLOW_TRACKING_URI", mlflow_uri())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = venv().join("bin/python").display().to_string();
    let cfg = config(
        &format!("{STAGE_TARGETS}\nworkdir = \"{}\"", seed.display()),
        &format!(
            r#"
  [[policies.gates]]
  name = "seed-suite"
  type = "command"
  run = ["{python}", "-m", "pytest", "tests/model", "-q", "-p", "no:cacheprovider"]
  timeout = "5m"
  env = {{ PYTHONDONTWRITEBYTECODE = "1" }}

  [[policies.gates]]
  name = "seed-suite-without-run-data"
  type = "command"
  run = ["{python}", "-m", "pytest", "tests/model", "-q", "-p", "no:cacheprovider", "-k", "not run_data"]
  timeout = "5m"
  env = {{ PYTHONDONTWRITEBYTECODE = "1" }}
"#
        ),
    );
    let w = Workdir::new(&cfg);
    let r = w.run(&["evaluate", &m, "--json"]);
    r.expect_code(1);
    let doc = r.json();
    // On MLflow 3 the seed's run-data test fails (the model is a logged model, not a run
    // artifact); the gate reports it as pytest said it.
    let full = gate(&doc, "seed-suite");
    assert_eq!(full["outcome"], json!("fail"), "{full}");
    assert!(
        full["message"]
            .as_str()
            .unwrap()
            .contains("1 failed, 4 passed"),
        "{full}"
    );
    let rest = gate(&doc, "seed-suite-without-run-data");
    assert_eq!(rest["outcome"], json!("pass"), "{rest}");
}

fn seed_pipeline() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var("STAGEGATE_SEED_DIR")
            .ok()
            .map(std::path::PathBuf::from),
        Some(root().join("../shared/seed_pipeline")),
        Some(std::path::PathBuf::from("/work/shared/seed_pipeline")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("tests/model/test_gates.py").is_file())
        .map(|p| p.canonicalize().unwrap())
}

#[test]
fn serving_that_cannot_start_or_crashes_mid_gate_is_reported_with_its_log() {
    let m = unique("serving-fail");
    let v = register(&m, &[json!({}), json!({"kind": "crashy"})]);
    let edges = "\n  [[policies.gates]]\n  name = \"edges\"\n  type = \"edge_cases\"\n";
    // A start-up timeout shorter than any start-up.
    let w =
        workdir(edges, "").config_replace("startup_timeout = \"120s\"", "startup_timeout = \"1s\"");
    let r = w.run(&["evaluate", &m, &v[0], "--json"]);
    r.expect_code(2);
    let g = gate(&r.json(), "edges").clone();
    assert_eq!(g["outcome"], json!("error"));
    let msg = g["message"].as_str().unwrap();
    assert!(
        msg.contains("did not answer /ping within 1s") && msg.contains("log:"),
        "{msg}"
    );
    assert_no_serving_left(&m);

    // A model whose serving process dies on large values: the +1e6 case kills it.
    let w = workdir(edges, "");
    let r = w.run(&["evaluate", &m, &v[1], "--json"]);
    r.expect_code(1);
    let g = gate(&r.json(), "edges").clone();
    let msg = g["message"].as_str().unwrap();
    assert!(
        msg.contains("+1e6") && msg.contains("the serving process died"),
        "{msg}"
    );
    assert_no_serving_left(&m);
}

#[test]
fn sigterm_during_an_evaluation_stops_its_serving() {
    let m = unique("sigterm");
    let v = register(&m, &[json!({})]);
    let w = workdir(
        "\n  [[policies.gates]]\n  name = \"long\"\n  type = \"latency\"\n  p99_ms = 1000.0\n  requests = 1000000\n",
        "",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["evaluate", &m, &v[0], "--json"])
        .current_dir(w.path())
        .env("MLFLOW_TRACKING_URI", mlflow_uri())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while serving_processes(&m).len() < 2 {
        assert!(Instant::now() < deadline, "serving never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("interrupted by SIGTERM"), "{out}");
    assert_no_serving_left(&m);
}
