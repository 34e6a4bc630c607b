//! Gates that exercise the served model — latency and edge_cases — against scikit-learn
//! models really served, by the warm scoring host (the default) and, where the test is about
//! it, by `mlflow models serve` (`mode = "local"`); serving failures; cancellation.

use crate::common;

use std::time::Duration;

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
    // One model loaded for the candidate's three gates (and one for the champion the ratio
    // needs), stopped with the evaluation. Every answered request is counted, warm-ups (20 by
    // default, 2 for tiny-p99) included: 2 x (20 + 20) + (20 + 40) + (2 + 20).
    let serving = &doc["serving"];
    assert_eq!(served_models(&doc), 2, "{serving}");
    assert_eq!(serving["requests"], json!(162), "{serving}");
    for key in ["startup_ms", "requests_ms"] {
        assert!(serving[key].as_u64().is_some_and(|ms| ms > 0), "{serving}");
    }
    assert_no_host_left(r.pid);
}

/// The cases the edge-case gate `name` reported, as (case, outcome, error).
fn edge_cases_sent(g: &Value) -> Vec<(String, String, String)> {
    g["details"]["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("no cases in {g}"))
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("case"), s("outcome"), s("error"))
        })
        .collect()
}

fn failing_cases(g: &Value) -> Vec<String> {
    edge_cases_sent(g)
        .into_iter()
        .filter(|(_, outcome, _)| outcome == "fail")
        .map(|(case, _, _)| case)
        .collect()
}

#[test]
fn edge_cases_default_set_sends_nan_to_required_float_columns_and_names_the_failing_case() {
    let m = unique("edges-nan");
    let v = register(
        &m,
        &[
            // LogisticRegression without an imputer, required float columns (no NaN in its
            // example): it passed when NaN went to optional columns only.
            json!({"kind": "classifier"}),
            json!({"kind": "nan_fragile"}),
            json!({"kind": "regressor", "form": "mlflow2"}),
            json!({"light": true}),
        ],
    );
    let w = workdir(
        "\n  [[policies.gates]]\n  name = \"edges\"\n  type = \"edge_cases\"\n",
        "",
    );
    let edges = |version: &str, code: i32| {
        let r = w.run(&["evaluate", &m, version, "--json"]);
        r.expect_code(code);
        assert_no_host_left(r.pid);
        let doc = r.json();
        if code != 2 {
            assert_eq!(
                served_models(&doc),
                1,
                "no champion is served without a comparison"
            );
        }
        gate(&doc, "edges").clone()
    };

    let g = edges(&v[0], 1);
    assert_eq!(g["outcome"], json!("fail"), "{g}");
    let sent = edge_cases_sent(&g);
    let names: Vec<&str> = sent.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "zeros",
            "+1e6",
            "-1e6",
            "NaN in float columns",
            "1-row batch",
            "1000-row batch"
        ],
        "the default set, without dtype limits: {g}"
    );
    for (case, outcome, error) in &sent {
        if case == "NaN in float columns" {
            assert_eq!(outcome, "fail");
            assert!(
                error.starts_with("400") && error.contains("Input X contains NaN"),
                "{error}"
            );
        } else {
            assert_eq!(outcome, "pass", "{case}: {error}");
        }
    }
    assert_eq!(g["observed"]["failing"], json!(["NaN in float columns"]));
    assert_eq!(
        g["details"]["not_applicable"],
        json!(["missing", "strings", "booleans"])
    );
    let msg = g["message"].as_str().unwrap();
    assert!(
        msg.starts_with("1 of 6 cases failed: NaN in float columns [nan] (400")
            && msg.contains("Input X contains NaN"),
        "{msg}"
    );
    // The registry says the same: the gate's tag and the report tag name the failing case.
    let mv = block(version(&m, &v[0]));
    let tag = mv.tag("stagegate.gate.edges").unwrap();
    assert!(
        tag.starts_with("fail: 1 of 6 cases failed: NaN in float columns [nan]"),
        "{tag}"
    );
    let report: Value = serde_json::from_str(mv.tag("stagegate.report").unwrap()).unwrap();
    assert_eq!(
        gate(&report, "edges")["observed"]["failing"],
        json!(["NaN in float columns"])
    );

    // An optional column adds the missing-value case; this model takes neither.
    let g = edges(&v[1], 1);
    assert_eq!(
        failing_cases(&g),
        ["NaN in float columns", "missing optional values"]
    );
    assert!(
        edge_cases_sent(&g)
            .iter()
            .filter(|(_, o, _)| o == "fail")
            .all(|(_, _, e)| e.starts_with("400") && e.contains("Input X contains NaN")),
        "{g}"
    );

    // MLflow 2 form (signature in the run's artifacts): LinearRegression fails on NaN only.
    let g = edges(&v[2], 1);
    assert_eq!(failing_cases(&g), ["NaN in float columns"], "{g}");

    let none = edges(&v[3], 2);
    assert_eq!(none["outcome"], json!("error"));
    assert!(
        none["message"]
            .as_str()
            .unwrap()
            .contains("has no signature"),
        "{none}"
    );
}

#[test]
fn edge_cases_default_set_passes_nan_tolerant_models_and_dtype_limits_are_opt_in() {
    let m = unique("edges-pass");
    let v = register(
        &m,
        &[
            json!({"kind": "forest"}),
            json!({"kind": "strings"}),
            json!({"kind": "tensor"}),
        ],
    );
    let default = "\n  [[policies.gates]]\n  name = \"edges\"\n  type = \"edge_cases\"\n";
    let limits = format!(
        "{default}\n  [[policies.gates]]\n  name = \"limits\"\n  type = \"edge_cases\"\n  cases = [\"dtype_limits\", \"zeros\"]\n"
    );

    // A RandomForest takes NaN and ±1e6 but works in float32: it passes the default set and
    // fails the opt-in dtype limits, both gates on one served model.
    let r = workdir(&limits, "").run(&["evaluate", &m, &v[0], "--json"]);
    r.expect_code(1);
    assert_no_host_left(r.pid);
    let doc = r.json();
    assert_eq!(served_models(&doc), 1);
    let g = gate(&doc, "edges");
    assert_eq!(g["outcome"], json!("pass"), "{g}");
    assert!(
        g["message"]
            .as_str()
            .unwrap()
            .starts_with("all 6 cases answered"),
        "{g}"
    );
    assert!(
        edge_cases_sent(g)
            .iter()
            .any(|(c, o, _)| c == "NaN in float columns" && o == "pass"),
        "{g}"
    );
    let g = gate(&doc, "limits");
    assert_eq!(g["outcome"], json!("fail"), "{g}");
    assert_eq!(failing_cases(g), ["dtype minimum", "dtype maximum"], "{g}");
    assert!(
        edge_cases_sent(g)
            .iter()
            .any(|(c, o, _)| c == "zeros" && o == "pass"),
        "{g}"
    );
    let msg = g["message"].as_str().unwrap();
    assert!(
        msg.contains("dtype maximum [dtype_limits] (400")
            && msg.contains("too large for dtype('float32')"),
        "{msg}"
    );
    let tag = block(version(&m, &v[0]))
        .tag("stagegate.gate.limits")
        .unwrap()
        .to_string();
    assert!(
        tag.starts_with("fail: 2 of 3 cases failed: dtype minimum [dtype_limits]"),
        "{tag}"
    );

    let w = workdir(default, "");
    // A pipeline that imputes its numeric columns, with a string column.
    let r = w.run(&["evaluate", &m, &v[1], "--json"]);
    r.expect_code(0);
    let g = gate(&r.json(), "edges").clone();
    let sent = edge_cases_sent(&g);
    for c in [
        "NaN in float columns",
        "empty strings",
        "long strings",
        "unicode strings",
    ] {
        assert!(
            sent.iter().any(|(case, o, _)| case == c && o == "pass"),
            "{c} not sent and passed: {g}"
        );
    }

    // A tensor signature: NaN goes to the float tensor too.
    let r = w.run(&["evaluate", &m, &v[2], "--json"]);
    r.expect_code(0);
    let g = gate(&r.json(), "edges").clone();
    let names: Vec<String> = edge_cases_sent(&g).into_iter().map(|(c, _, _)| c).collect();
    assert_eq!(
        names,
        [
            "zeros",
            "+1e6",
            "-1e6",
            "NaN in float tensors",
            "1-row batch",
            "1000-row batch"
        ],
        "{g}"
    );
}

#[test]
fn serving_that_cannot_start_or_crashes_mid_gate_is_reported_with_its_log() {
    let m = unique("serving-fail");
    let v = register(
        &m,
        &[
            json!({}),
            json!({"kind": "crashy"}),
            json!({"form": "mlflow2", "no_model_files": true}),
        ],
    );
    let edges = "\n  [[policies.gates]]\n  name = \"edges\"\n  type = \"edge_cases\"\n";
    let local = "mode = \"local\"";
    // The gate's message when serving v1 fails: the evaluation ends in `error`.
    let error_message = |w: &Workdir| {
        let r = w.run(&["evaluate", &m, &v[0], "--json"]);
        r.expect_code(2);
        let g = gate(&r.json(), "edges").clone();
        assert_eq!(g["outcome"], json!("error"));
        g["message"].as_str().unwrap().to_string()
    };
    // A start-up timeout shorter than any start-up, in both modes.
    let w = workdir(edges, local)
        .config_replace("startup_timeout = \"120s\"", "startup_timeout = \"1s\"");
    let msg = error_message(&w);
    assert!(
        msg.contains("did not answer /ping within 1s") && msg.contains("log:"),
        "{msg}"
    );
    assert_no_serving_left(&m);
    let w =
        workdir(edges, "").config_replace("startup_timeout = \"120s\"", "startup_timeout = \"1s\"");
    let msg = error_message(&w);
    assert!(
        msg.contains(
            "the scoring host did not finish its imports within 1s (serving.startup_timeout)"
        ),
        "{msg}"
    );

    // The host: a model that cannot be loaded is named, with why.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        r#"{"dataframe_split": {"columns": ["f0"], "data": [[1.0]]}}"#,
    )
    .unwrap();
    let latency = format!(
        "\n  [[policies.gates]]\n  name = \"latency\"\n  type = \"latency\"\n  p99_ms = 1000.0\n  input = \"{}\"\n",
        input.display()
    );
    let r = workdir(&latency, "").run(&["evaluate", &m, &v[2], "--json"]);
    r.expect_code(2);
    let msg = gate(&r.json(), "latency")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with(&format!("loading models:/{m}/{} failed: ", v[2]))
            && msg.contains("root cause:"),
        "{msg}"
    );
    assert_no_host_left(r.pid);

    // uvicorn fails to import the scoring app (a library raises on import, as an incompatible
    // starlette does): the message leads with that exception, not MLflow's wrapper, which
    // ends the log.
    let broken = tempfile::tempdir().unwrap();
    let fake = broken.path().join("site");
    std::fs::create_dir_all(fake.join("sklearn")).unwrap();
    std::fs::write(
        fake.join("sklearn/__init__.py"),
        "import types\ntypes.ModuleType('sklearn_stub').missing_attribute\n",
    )
    .unwrap();
    let bin = venv().join("bin");
    let wrapper = broken.path().join("mlflow");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nPYTHONPATH={fake} PATH={bin}:$PATH exec {bin}/mlflow \"$@\"\n",
            fake = fake.display(),
            bin = bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let w = workdir(edges, local).config_replace(
        &format!("command = \"{}\"", bin.join("mlflow").display()),
        &format!("command = \"{}\"", wrapper.display()),
    );
    let msg = error_message(&w);
    assert!(
        msg.starts_with(
            "root cause: AttributeError: module 'sklearn_stub' has no attribute 'missing_attribute'; serving exited (exit status: 1) before answering /ping; log: "
        ),
        "{msg}"
    );
    assert!(msg.contains("returned non zero return code"), "{msg}");
    assert_no_serving_left(&m);

    // A model whose serving process dies on large values: the +1e6 case kills it, in both
    // modes; in the host, only that model's process.
    for (mode, died) in [
        (local, "the serving process died"),
        ("", "its process exited with code 3"),
    ] {
        let r = workdir(edges, mode).run(&["evaluate", &m, &v[1], "--json"]);
        r.expect_code(1);
        let g = gate(&r.json(), "edges").clone();
        let msg = g["message"].as_str().unwrap();
        assert!(msg.contains("+1e6") && msg.contains(died), "{mode}: {msg}");
        assert_no_host_left(r.pid);
    }
    assert_no_serving_left(&m);
}

/// `stagegate evaluate` of a latency gate that does not end on its own (a million requests),
/// served as `mode` says, returned once the server answered /ping (stagegate logs its base
/// URL): requests are flowing.
fn long_served_evaluation(prefix: &str, mode: &str) -> (String, Workdir, std::process::Child) {
    use std::io::BufRead;
    let m = unique(prefix);
    let v = register(&m, &[json!({})]);
    let w = workdir(
        "\n  [[policies.gates]]\n  name = \"long\"\n  type = \"latency\"\n  p99_ms = 1000.0\n  requests = 1000000\n",
        &format!("mode = \"{mode}\""),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["evaluate", &m, &v[0], "--json"])
        .current_dir(w.path())
        .env("MLFLOW_TRACKING_URI", mlflow_uri())
        .env("RUST_LOG", "stagegate=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads to the end, so the pipe never fills.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if strip_colour(&line).contains("base=http://127.0.0.1:") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        panic!("serving never answered");
    }
    let running = match mode {
        "local" => serving_processes(&m),
        _ => host_processes(child.id()),
    };
    assert!(
        running.len() >= 2,
        "{mode}: the server and what it runs: {running:?}"
    );
    (m, w, child)
}

/// A log line without its colour codes (`ESC [ … m`), which may wrap field names.
fn strip_colour(line: &str) -> String {
    let mut parts = line.split('\x1b');
    let first = parts.next().unwrap_or_default().to_string();
    parts.fold(first, |acc, p| {
        acc + p.split_once('m').map_or(p, |(_, rest)| rest)
    })
}

/// `kill -9` runs no destructor: the process guards alone must stop the served model's whole
/// process tree (mlflow, the shell it runs, uvicorn). The host's: tests/suite/host.rs.
#[test]
fn kill_9_of_evaluate_during_a_served_gate_leaves_no_serving_process() {
    let (m, _w, mut child) = long_served_evaluation("kill9-serving", "local");
    assert!(!guard_processes(&m).is_empty(), "a guard watches them");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_no_serving_left(&m);
}

#[test]
fn sigterm_during_an_evaluation_stops_its_serving() {
    let (_m, _w, mut child) = long_served_evaluation("sigterm", "host");
    let owner = child.id();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &owner.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("interrupted by SIGTERM"), "{out}");
    assert_no_host_left(owner);
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
    let owner = d.pid();
    register(&m, &[json!({"alias": "challenger"})]);
    d.wait_for(
        "the daemon to serve the candidate",
        Duration::from_secs(120),
        || d.log().contains("serving over HTTP from the scoring host"),
    );
    d.signal("TERM");
    // The grace period (10 s) runs out; the evaluation is abandoned and the process exits 0.
    assert_eq!(d.wait_exit(Duration::from_secs(40)), Some(0), "{}", d.log());
    assert!(d.log().contains("abandoning"), "{}", d.log());
    assert_no_host_left(owner);
}
