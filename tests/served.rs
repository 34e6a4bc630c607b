//! Gates that exercise the served model — latency and edge_cases — against scikit-learn
//! models really served by `mlflow models serve`; serving failures; cancellation.

mod common;

use std::time::{Duration, Instant};

use common::served::*;
use common::*;
use serde_json::{Value, json};

#[test]
fn latency_gates_pass_and_fail_on_one_served_model_that_does_not_outlive_the_evaluation() {
    let m = unique("latency");
    let v = register(
        &m,
        &[json!({"alias": "champion"}), json!({"alias": "challenger"})],
    );
    let v = [v[1].clone(), v[0].clone()]; // [candidate, champion]
    let w = workdir(
        r#"
  [[policies.gates]]
  name = "vs-champion"
  type = "latency"
  max_ratio_to_champion = 50.0
  requests = 20

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
        let doc = r.json();
        if code != 2 {
            assert_eq!(
                doc["serving"]["servers_started"],
                json!(1),
                "no champion is served without a comparison"
            );
        }
        gate(&doc, "edges").clone()
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

#[test]
fn daemon_shutdown_abandons_an_evaluation_and_stops_its_serving() {
    use common::daemon::Daemon;
    let prefix = unique("daemon-serving");
    let m = format!("{prefix}-m");
    let body = format!(
        "[poll]\nschedule = \"*/2 * * * * *\"\n\n[[policies]]\nname = \"slow\"\nmodels = [\"{prefix}*\"]\n{ALIAS_TARGETS}\n\n  [[policies.gates]]\n  name = \"long\"\n  type = \"latency\"\n  p99_ms = 1000.0\n  requests = 1000000\n\n{}",
        serving_section("")
    );
    let mut d = Daemon::start(&mlflow_uri(), &body);
    register(&m, &[json!({"alias": "challenger"})]);
    d.wait_for(
        "the daemon to serve the candidate",
        Duration::from_secs(120),
        || serving_processes(&m).len() >= 2,
    );
    d.signal("TERM");
    // The grace period (10 s) runs out; the evaluation is abandoned and the process exits 0.
    assert_eq!(d.wait_exit(Duration::from_secs(40)), Some(0), "{}", d.log());
    assert!(d.log().contains("abandoning"), "{}", d.log());
    assert_no_serving_left(&m);
}
