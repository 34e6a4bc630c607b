//! The warm scoring host (`serving.mode = "host"`) against really trained models: its answers
//! equal what `mlflow models serve` answers, its verdicts equal local mode's, models that
//! crash, abort, hang or eat memory are errors naming the cause while the host serves on,
//! and nothing it starts outlives stagegate.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use common::served::*;
use common::*;
use serde_json::{Value, json};
use stagegate::config::{ServingConfig, ServingMode};
use stagegate::gates::dataset::read::Reader;
use stagegate::serving::host::{Host, Settings, project};
use stagegate::serving::{Environment, Payload, ScoreError, Session, Which};

fn serving(mode: ServingMode) -> ServingConfig {
    ServingConfig {
        mode: Some(mode),
        command: venv().join("bin/mlflow").display().to_string(),
        request_timeout: Duration::from_secs(5),
        model_memory: Some(512 << 20),
        ..ServingConfig::default()
    }
}

fn host(config: &ServingConfig) -> Arc<Host> {
    Host::new(Settings::of(config, &mlflow_uri()))
}

/// A session serving `name` v`version` as `config` says (with `host` in host mode).
async fn session(
    config: &ServingConfig,
    host: Option<&Arc<Host>>,
    name: &str,
    version: &str,
) -> Session {
    let env = Environment {
        serving: config.clone(),
        workdir: std::env::temp_dir(),
        host: host.cloned(),
        inputs: Default::default(),
    };
    Session::new(client(), env, common::version(name, version).await, None)
}

/// Predictions agree: classes and integers exactly, floats to 1e-12 relative.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(f64::MIN_POSITIVE)
            }
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The first batch of a fixture dataset, as the dataset gate reads it.
fn rows(path: &std::path::Path) -> RecordBatch {
    Reader::open(path, 10_000)
        .unwrap()
        .next_batch()
        .unwrap()
        .unwrap()
}

fn with_column(b: &RecordBatch, name: &str, col: ArrayRef) -> RecordBatch {
    let mut cols: Vec<(String, ArrayRef)> = b
        .schema()
        .fields()
        .iter()
        .zip(b.columns())
        .filter(|(f, _)| f.name() != name)
        .map(|(f, c)| (f.name().clone(), c.clone()))
        .collect();
    cols.push((name.to_string(), col));
    RecordBatch::try_from_iter(cols).unwrap()
}

#[test]
fn the_host_answers_as_mlflow_models_serve_on_every_fixture_model() {
    let m = unique("fidelity");
    let dir = tempfile::tempdir().unwrap();
    let data = |kind: &str| dir.path().join(format!("{kind}.parquet"));
    let kinds = [
        ("classifier", "mlflow3", "classifier"),
        ("classifier", "mlflow2", "classifier"),
        ("proba", "mlflow3", "classifier"),
        ("regressor", "mlflow3", "regressor"),
        ("strings", "mlflow3", "strings"),
    ];
    let mut ops: Vec<Value> = kinds
        .iter()
        .map(|(kind, form, _)| json!({"op": "register", "name": m, "kind": kind, "form": form}))
        .collect();
    ops.push(json!({"op": "register", "name": m, "kind": "tensor"}));
    for kind in ["classifier", "regressor", "strings"] {
        ops.push(json!({"op": "dataset", "path": data(kind), "kind": kind, "rows": 2000}));
    }
    fixtures(json!(ops));
    let (local, hosted) = (serving(ServingMode::Local), serving(ServingMode::Host));
    let h = host(&hosted);
    block(async {
        for (i, (kind, form, data_kind)) in kinds.iter().enumerate() {
            let v = (i + 1).to_string();
            let what = format!("{kind} ({form}) v{v}");
            let (a, b) = (
                session(&local, None, &m, &v).await,
                session(&hosted, Some(&h), &m, &v).await,
            );
            let (http, bulk) = (
                a.scorer(Which::Candidate).await.unwrap(),
                b.scorer(Which::Candidate).await.unwrap(),
            );
            assert!(
                bulk.columnar(),
                "{what}: a column signature goes as a table"
            );
            let files = b.files().await.unwrap();
            let batch = rows(&data(data_kind));
            let columns: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let features = stagegate::gates::dataset::feature_columns(
                files.signature.as_ref(),
                &columns,
                "target",
                None,
            )
            .unwrap();
            let table = project(&batch, &features).unwrap();
            let (x, y) = (
                http.score(Payload::Table(&table)).await.unwrap(),
                bulk.score(Payload::Table(&table)).await.unwrap(),
            );
            assert_eq!(x.len(), 2000, "{what}");
            let differ = x.iter().zip(&y).position(|(p, q)| !same(p, q));
            assert!(
                differ.is_none(),
                "{what}: row {differ:?}: {:?} vs {:?}",
                differ.map(|i| &x[i]),
                differ.map(|i| &y[i])
            );
            if *kind == "proba" {
                assert!(
                    y[0].as_array().is_some_and(|p| p.len() == 2),
                    "{what}: probabilities: {}",
                    y[0]
                );
            }

            // Schema enforcement, both ways the same. An extra column: as MLflow handles it.
            let extra = with_column(
                &table,
                "unexpected",
                Arc::new(Float64Array::from(vec![1.5; 2000])),
            );
            let (x, y) = (
                http.score(Payload::Table(&extra)).await,
                bulk.score(Payload::Table(&extra)).await,
            );
            match (&x, &y) {
                (Ok(p), Ok(q)) => assert!(
                    p.iter().zip(q).all(|(p, q)| same(p, q)),
                    "{what}: extra column"
                ),
                (Err(ScoreError::Refused(_)), Err(ScoreError::Refused(_))) => {}
                _ => panic!("{what}: an extra column: {x:?} vs {y:?}"),
            }
            // Integers where the signature says double: cast as the signature says.
            if *data_kind != "strings" {
                let ints = Arc::new(Int64Array::from(
                    (0..2000).map(|i| i % 3 - 1).collect::<Vec<i64>>(),
                ));
                let cast = with_column(&table, "f0", ints);
                let cast = project(&cast, &features).unwrap();
                let (x, y) = (
                    http.score(Payload::Table(&cast)).await.unwrap(),
                    bulk.score(Payload::Table(&cast)).await.unwrap(),
                );
                assert!(
                    x.iter().zip(&y).all(|(p, q)| same(p, q)),
                    "{what}: integer column"
                );
            }
            // A missing required column: refused by both, naming it.
            let missing = project(&table, &features[1..]).unwrap();
            for r in [
                http.score(Payload::Table(&missing)).await,
                bulk.score(Payload::Table(&missing)).await,
            ] {
                match r {
                    Err(ScoreError::Refused(msg)) => {
                        assert!(msg.starts_with("400"), "{what}: {msg}")
                    }
                    other => panic!("{what}: a missing column must be refused: {other:?}"),
                }
            }
        }
        // A tensor signature: no columnar form; the same JSON through both.
        let v = (kinds.len() + 1).to_string();
        let (a, b) = (
            session(&local, None, &m, &v).await,
            session(&hosted, Some(&h), &m, &v).await,
        );
        let (http, bulk) = (
            a.scorer(Which::Candidate).await.unwrap(),
            b.scorer(Which::Candidate).await.unwrap(),
        );
        assert!(!bulk.columnar(), "tensors go as JSON");
        let body = json!({"inputs": (0..50).map(|i| vec![i as f64 / 7.0; 5]).collect::<Vec<_>>()})
            .to_string();
        let (x, y) = (
            http.score(Payload::Json(&body)).await.unwrap(),
            bulk.score(Payload::Json(&body)).await.unwrap(),
        );
        assert!(
            x.len() == 50 && x.iter().zip(&y).all(|(p, q)| same(p, q)),
            "tensor: {x:?} vs {y:?}"
        );
    });
}

/// The outcome and message of every gate, with each edge case's outcome.
fn verdicts(doc: &Value) -> Vec<(String, String, Value)> {
    doc["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let detail = match g["type"].as_str() {
                Some("edge_cases") => json!(
                    g["details"]["cases"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| (c["case"].clone(), c["outcome"].clone()))
                        .collect::<Vec<_>>()
                ),
                Some("dataset") => g["observed"]["metrics"].clone(),
                _ => Value::Null,
            };
            (
                g["name"].as_str().unwrap().to_string(),
                g["outcome"].as_str().unwrap().to_string(),
                detail,
            )
        })
        .collect()
}

#[test]
fn served_gates_give_the_same_verdicts_in_host_and_local_mode() {
    let m = unique("modes");
    let dir = tempfile::tempdir().unwrap();
    let holdout = dir.path().join("holdout.csv");
    let v = register(
        &m,
        &[
            json!({"kind": "classifier"}),
            json!({"kind": "forest"}),
            json!({"kind": "strings"}),
        ],
    );
    fixtures(
        json!([{"op": "dataset", "path": holdout, "kind": "classifier", "rows": 1500, "segment": true}]),
    );
    let gates = format!(
        r#"
  [[policies.gates]]
  name = "latency"
  type = "latency"
  p99_ms = 5000.0
  requests = 20

  [[policies.gates]]
  name = "edges"
  type = "edge_cases"
  cases = ["zeros", "large", "nan", "missing", "strings", "one_row", "batch", "dtype_limits"]

  [[policies.gates]]
  name = "holdout"
  type = "dataset"
  path = "{}"
  label = "target"
  metrics = {{ accuracy = 0.8, f1 = 0.8 }}
  slices = {{ column = "segment", max_gap = {{ accuracy = 0.2 }}, min_rows = 30 }}
"#,
        holdout.display()
    );
    for (i, version) in v.iter().enumerate() {
        // The strings model takes a `segment` column the classifier's holdout has too.
        let run = |mode: &str| {
            let w = workdir(&gates, &format!("mode = \"{mode}\""));
            let r = w.run(&["evaluate", &m, version, "--json"]);
            assert!(
                r.code == 0 || r.code == 1,
                "{mode} v{version}: {}\n{}",
                r.stdout,
                r.stderr
            );
            let doc = r.json();
            assert_no_host_left(r.pid);
            (verdicts(&doc), doc["serving"].clone())
        };
        let (local, local_serving) = run("local");
        let (hosted, host_serving) = run("host");
        assert_eq!(
            local, hosted,
            "model {i} (v{version}): the same verdicts in both modes"
        );
        assert_eq!(
            local_serving["servers_started"],
            json!(1),
            "{local_serving}"
        );
        assert_eq!(host_serving["servers_started"], json!(0), "{host_serving}");
        assert_eq!(
            host_serving["host_models_loaded"],
            json!(1),
            "{host_serving}"
        );
    }
    assert_no_serving_left(&m);
}

#[test]
fn misbehaving_models_are_errors_naming_the_cause_and_the_host_serves_on() {
    let m = unique("misbehave");
    let kinds = ["raises", "exits", "aborts", "hangs", "hog"];
    let mut specs: Vec<Value> = kinds.iter().map(|k| json!({"kind": k})).collect();
    specs.push(json!({"kind": "classifier"}));
    let v = register(&m, &specs);
    let config = serving(ServingMode::Host);
    let h = host(&config);
    let table = RecordBatch::try_from_iter((0..5).map(|i| {
        (
            format!("f{i}"),
            Arc::new(Float64Array::from(vec![0.25; 5])) as ArrayRef,
        )
    }))
    .unwrap();
    block(async {
        h.start().await.unwrap();
        let host_pid = h.snapshot().pid.expect("the host runs");
        let good = |h: Arc<Host>| {
            let (m, v, t, c) = (m.clone(), v[5].clone(), table.clone(), config.clone());
            async move {
                let s = session(&c, Some(&h), &m, &v).await;
                let p = s
                    .scorer(Which::Candidate)
                    .await
                    .unwrap()
                    .score(Payload::Table(&t))
                    .await;
                assert_eq!(
                    p.map(|p| p.len()),
                    Ok(5),
                    "a good model scores beside the bad ones"
                );
            }
        };
        for (kind, version) in kinds.iter().zip(&v) {
            let s = session(&config, Some(&h), &m, version).await;
            let scorer = s.scorer(Which::Candidate).await.unwrap();
            let err = scorer.score(Payload::Table(&table)).await.unwrap_err();
            let uri = format!("models:/{m}/{version}");
            let expect: &[&str] = match *kind {
                "raises" => &["400", "RuntimeError: this model always fails to predict"],
                "exits" => &[&uri, "exited with code 7"],
                "aborts" => &[&uri, "aborted (SIGABRT)"],
                "hangs" => &[&uri, "did not answer within 5s (serving.request_timeout)"],
                "hog" => &[&uri, "over serving.model_memory (512 MiB)"],
                _ => unreachable!(),
            };
            let text = err.to_string();
            for needle in expect {
                assert!(text.contains(needle), "{kind}: {needle:?} not in {text}");
            }
            if *kind != "raises" {
                assert!(matches!(err, ScoreError::Failed(_)), "{kind}: {err:?}");
                assert!(text.contains("log:"), "{kind}: the model's own log: {text}");
            }
            good(h.clone()).await;
            assert_eq!(h.snapshot().pid, Some(host_pid), "{kind}: the host went on");
        }
        // The host itself killed while a model hangs: that request fails naming it, its models
        // go with it, and the next request gets a new host.
        let s = session(&config, Some(&h), &m, &v[3]).await;
        let scorer = s.scorer(Which::Candidate).await.unwrap();
        let model_pid = h
            .snapshot()
            .models
            .iter()
            .find(|x| x.version == v[3])
            .map(|x| x.pid)
            .unwrap();
        let (err, killed) = tokio::join!(scorer.score(Payload::Table(&table)), async {
            std::process::Command::new("kill")
                .args(["-KILL", &host_pid.to_string()])
                .status()
        });
        assert!(killed.unwrap().success());
        let text = err.unwrap_err().to_string();
        assert!(text.contains("the scoring host ended"), "{text}");
        let gone = || !std::path::Path::new(&format!("/proc/{model_pid}")).exists();
        assert!(
            common::eventually(Duration::from_secs(10), gone),
            "the model's process went with its host"
        );
        good(h.clone()).await;
        let new_pid = h.snapshot().pid.expect("a new host");
        assert_ne!(new_pid, host_pid);
    });
    // As a gate: an `error` whose message leads with the model's exception.
    let w = workdir(
        "\n  [[policies.gates]]\n  name = \"edges\"\n  type = \"edge_cases\"\n  cases = [\"one_row\"]\n",
        "",
    );
    let r = w.run(&["evaluate", &m, &v[1], "--json"]);
    r.expect_code(1);
    let g = gate(&r.json(), "edges").clone();
    let msg = g["message"].as_str().unwrap();
    assert!(
        msg.contains("exited with code 7") && msg.contains(&format!("models:/{m}/{}", v[1])),
        "{msg}"
    );
    assert_no_host_left(r.pid);
}

#[test]
fn kill_9_of_evaluate_during_bulk_scoring_leaves_nothing_running() {
    use std::io::BufRead;
    let m = unique("kill9-host");
    let v = register(&m, &[json!({"kind": "hangs"})]);
    let dir = tempfile::tempdir().unwrap();
    let holdout = dir.path().join("holdout.parquet");
    fixtures(json!([{"op": "dataset", "path": holdout, "rows": 3000}]));
    let w = workdir(
        &format!(
            "\n  [[policies.gates]]\n  name = \"holdout\"\n  type = \"dataset\"\n  path = \"{}\"\n  label = \"target\"\n  metrics = {{ accuracy = 0.5 }}\n",
            holdout.display()
        ),
        "request_timeout = \"10m\"",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["evaluate", &m, &v[0], "--json"])
        .current_dir(w.path())
        .env("MLFLOW_TRACKING_URI", mlflow_uri())
        .env("RUST_LOG", "stagegate=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let owner = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("scoring in bulk") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(180)).is_err() {
        let _ = child.kill();
        panic!("the rows never went to the model");
    }
    assert!(
        host_processes(owner).len() >= 3,
        "host, model and guard run: {:?}",
        host_processes(owner)
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert_no_host_left(owner);
}

#[test]
fn check_says_whether_the_environment_can_run_the_host() {
    let w = workdir("", "");
    let r = w.run(&["check"]);
    r.expect_code(0);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("serving host:"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        line.contains("Python 3.") && line.contains("mlflow 3.17.2"),
        "{line}"
    );
    assert_no_host_left(r.pid);
    // A command whose environment has no Python: named, exit 2 (a policy serves models).
    let fake = w.path().join("mlflow");
    std::fs::write(&fake, "#!/bin/sh\nexit 1\n").unwrap();
    let gates = "\n  [[policies.gates]]\n  name = \"edges\"\n  type = \"edge_cases\"\n";
    let w = workdir(gates, "").config_replace(
        &format!("command = \"{}\"", venv().join("bin/mlflow").display()),
        &format!("command = \"{}\"", fake.display()),
    );
    let r = w.run(&["check"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("serving.command") && r.stderr.contains("cannot tell which Python"),
        "{}",
        r.stderr
    );
}

/// The versions the daemon's host has loaded, with their processes.
fn loaded(d: &common::daemon::Daemon) -> Vec<(String, i64)> {
    d.status()["serving"]["host"]["models"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["version"].as_str().unwrap_or("").to_string(),
                m["pid"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn champion(m: &str) -> Option<String> {
    alias_of(m, "champion")
}

fn report(m: &str, v: &str) -> Value {
    let mv = block(version(m, v));
    serde_json::from_str(mv.tag("stagegate.report").expect("a report")).unwrap()
}

/// A poll-driven daemon whose policy serves the candidate and the champion (a latency gate
/// that compares the two).
fn serving_daemon(prefix: &str, serving_extra: &str) -> common::daemon::Daemon {
    common::daemon::Daemon::start(
        &mlflow_uri(),
        &format!(
            "[poll]\nschedule = \"*/2 * * * * *\"\n\n[[policies]]\nname = \"warm\"\nmodels = [\"{prefix}*\"]\n{ALIAS_TARGETS}\n\n  [[policies.gates]]\n  name = \"latency\"\n  type = \"latency\"\n  p99_ms = 5000.0\n  warmup = 2\n  requests = 10\n  max_ratio_to_champion = 100.0\n\n{}",
            serving_section(serving_extra)
        ),
    )
}

#[test]
fn the_daemon_keeps_the_champion_warm_and_lets_go_of_a_replaced_one() {
    let prefix = unique("warm");
    let m = format!("{prefix}-m");
    let d = serving_daemon(&prefix, "");
    d.wait_for(
        "the host to start with the daemon",
        Duration::from_secs(120),
        || d.status()["serving"]["host"]["running"] == json!(true),
    );
    let host_pid = d.status()["serving"]["host"]["pid"].clone();
    register(
        &m,
        &[json!({"alias": "champion"}), json!({"alias": "challenger"})],
    );
    d.wait_for("v2 promoted", Duration::from_secs(120), || {
        champion(&m).as_deref() == Some("2")
    });
    // Both served for v2's evaluation (v1 may have been loaded before, when the daemon judged
    // the champion nobody had promoted through it).
    let first = &report(&m, "2")["serving"];
    let served =
        first["host_models_loaded"].as_u64().unwrap() + first["host_models_warm"].as_u64().unwrap();
    assert_eq!(served, 2, "{first}");
    assert!(
        first["requests"].as_u64().is_some_and(|n| n >= 24),
        "warm-ups and requests, for both: {first}"
    );
    let warm = loaded(&d);
    let v2_pid = warm
        .iter()
        .find(|(v, _)| v == "2")
        .map(|(_, p)| *p)
        .expect("v2 stays loaded");
    assert!(warm.iter().any(|(v, _)| v == "1"), "{warm:?}");

    // The next candidate is compared with v2, still loaded from its own evaluation; v1, the
    // replaced champion, is let go of when an evaluation of the model begins.
    register(&m, &[json!({"alias": "challenger"})]);
    d.wait_for("v3 promoted", Duration::from_secs(120), || {
        champion(&m).as_deref() == Some("3")
    });
    let next = report(&m, "3");
    assert_eq!(
        next["serving"]["host_models_warm"],
        json!(1),
        "{}",
        next["serving"]
    );
    assert_eq!(
        next["serving"]["host_models_loaded"],
        json!(1),
        "{}",
        next["serving"]
    );
    let warm = loaded(&d);
    assert!(
        !warm.iter().any(|(v, _)| v == "1"),
        "the replaced champion was let go: {warm:?}"
    );
    assert!(
        warm.contains(&("2".to_string(), v2_pid)),
        "v2 kept its process: {warm:?}"
    );
    assert_eq!(
        d.status()["serving"]["host"]["pid"],
        host_pid,
        "one host all along"
    );
    assert!(
        d.status()["serving"]["host"]["rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 10 << 20)
    );

    let text = reqwest::blocking::get(format!("{}/metrics", d.url()))
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("stagegate_host_up 1"), "{text}");
    assert!(
        text.contains(&format!("stagegate_host_models {}", warm.len())),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("stagegate_host_model_memory_bytes{")
                && l.contains(&format!("model=\"{m}\",version=\"3\""))),
        "{text}"
    );
}

#[test]
fn a_reload_that_changes_serving_restarts_the_host_between_evaluations_never_during_one() {
    let prefix = unique("reload-host");
    let m = format!("{prefix}-m");
    let mut d = common::daemon::Daemon::start(
        &mlflow_uri(),
        &format!(
            "[poll]\nschedule = \"*/2 * * * * *\"\n\n[[policies]]\nname = \"long\"\nmodels = [\"{prefix}*\"]\n{ALIAS_TARGETS}\n\n  [[policies.gates]]\n  name = \"latency\"\n  type = \"latency\"\n  p99_ms = 5000.0\n  requests = 1000\n\n{}",
            serving_section("")
        ),
    );
    d.wait_for("the host", Duration::from_secs(120), || {
        d.status()["serving"]["host"]["running"] == json!(true)
    });
    let old = d.status()["serving"]["host"]["pid"].as_i64().unwrap();
    register(&m, &[json!({"alias": "challenger"})]);
    d.wait_for(
        "the evaluation to use the host",
        Duration::from_secs(120),
        || {
            d.status()["serving"]["host"]["models"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|x| x["in_use"] == json!(true)))
        },
    );
    // Mid-evaluation: a new [serving].
    let body = std::fs::read_to_string(d.config())
        .unwrap()
        .replace("startup_timeout = \"120s\"", "startup_timeout = \"121s\"");
    std::fs::write(d.config(), body).unwrap();
    d.signal("HUP");
    d.wait_for("the reload", Duration::from_secs(30), || {
        d.log()
            .contains("the scoring host restarts once the evaluations using it end")
    });
    d.wait_for("v1 promoted", Duration::from_secs(300), || {
        champion(&m).as_deref() == Some("1")
    });
    let r = report(&m, "1");
    let g = gate(&r, "latency");
    assert_eq!(
        g["outcome"],
        json!("pass"),
        "the evaluation ran to its end on its host: {g}"
    );
    assert_eq!(g["observed"]["errors"], json!(0), "{g}");
    d.wait_for(
        "the old host to end after its evaluation",
        Duration::from_secs(30),
        || !std::path::Path::new(&format!("/proc/{old}")).exists(),
    );
    d.wait_for("the new host", Duration::from_secs(120), || {
        d.status()["serving"]["host"]["running"] == json!(true)
            && d.status()["serving"]["host"]["pid"]
                .as_i64()
                .is_some_and(|p| p != old)
    });
    let pid = d.pid();
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(40)), Some(0), "{}", d.log());
    assert_no_host_left(pid);
}
