//! The `dataset` gate: a labelled CSV or Parquet holdout scored through the really served
//! model (the warm scoring host's bulk path), with slices and a paired-bootstrap comparison
//! against the champion.

use crate::common;

use std::time::Duration;

use common::served::*;
use common::*;
use serde_json::{Value, json};
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
    assert_no_host_left(r.pid);
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
    assert_eq!(gate(&doc, "holdout-parquet")["outcome"], json!("fail"));
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
    assert_no_host_left(r.pid);
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
    assert_no_host_left(r.pid);
    r.expect_code(0);
    let vs = gate(&r.json(), "vs-champion").clone();
    assert_eq!(vs["outcome"], json!("pass"), "{vs}");
    assert!(vs["observed"]["vs_champion"]["low"].as_f64().unwrap() > 0.0);
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
    assert_no_host_left(r.pid);
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
    assert_no_host_left(r.pid);
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
        !serving_processes(&m).is_empty(),
        "the external server is still ours to stop"
    );
    drop(server);
    assert_no_serving_left(&m);
}
