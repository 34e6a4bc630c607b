//! Inputs in an object store: holdouts and latency inputs read from a real S3-compatible
//! server (moto), judged as the same files on disk are, and every way of failing named.

use crate::common;

use common::azure::Azurite;
use common::s3::S3;
use common::served::*;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

pub fn dataset_gate(name: &str, path: &str) -> String {
    format!(
        r#"
  [[policies.gates]]
  name = "{name}"
  type = "dataset"
  path = "{path}"
  label = "target"
  batch_size = 128
  metrics = {{ accuracy = 0.8, f1 = 0.8 }}
  slices = {{ column = "segment", max_gap = {{ accuracy = 0.3 }}, min_rows = 30 }}
"#
    )
}

pub fn evaluate(w: &Workdir, s3: &S3, model: &str, version: &str) -> Run {
    evaluate_with(w, &s3.env(), model, version)
}

/// `stagegate evaluate --json` with a store's environment.
pub fn evaluate_with(w: &Workdir, env: &[(&str, String)], model: &str, version: &str) -> Run {
    run_with(w, env, &["evaluate", model, version, "--json"])
}

fn run_with(w: &Workdir, env: &[(&str, String)], args: &[&str]) -> Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    block(run_env(w, &mlflow_uri(), args, &env))
}

/// `holdout.csv` and `holdout.parquet` in `dir`: the same 600 rows, with a slice column. The
/// Parquet file's row groups are smaller than a batch (128 rows), so batches span them.
fn holdouts(dir: &std::path::Path) {
    let d = dir.display();
    fixtures(json!([
        {"op": "dataset", "path": format!("{d}/holdout.csv"), "rows": 600, "segment": true},
        {"op": "dataset", "path": format!("{d}/holdout.parquet"), "rows": 600, "segment": true,
         "row_group_size": 100},
    ]));
}

/// The first data row of a CSV holdout as a scoring request of its feature columns.
fn request_from(csv: &std::path::Path) -> String {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (mut cols, mut data) = (vec![], vec![]);
    for (c, v) in header.iter().zip(row) {
        if *c != "target" && *c != "segment" {
            cols.push(json!(c));
            data.push(json!(v.parse::<f64>().unwrap()));
        }
    }
    json!({"dataframe_split": {"columns": cols, "data": [data]}}).to_string()
}

#[test]
fn objects_a_holdout_in_s3_is_judged_exactly_as_the_same_file_on_disk() {
    let s3 = S3::start(None);
    s3.create_bucket("holdouts");
    let m = unique("objects");
    let gates = [
        dataset_gate("disk-csv", "holdout.csv"),
        dataset_gate("s3-csv", "s3://holdouts/eval/holdout.csv"),
        dataset_gate("disk-parquet", "holdout.parquet"),
        dataset_gate("s3-parquet", "s3://holdouts/eval/holdout.parquet"),
        "\n  [[policies.gates]]\n  name = \"latency\"\n  type = \"latency\"\n  p99_ms = 5000.0\n  requests = 5\n  warmup = 1\n  input = \"s3://holdouts/eval/request.json\"\n".into(),
    ]
    .concat();
    let w = workdir(&gates, "");
    let dir = w.path().to_path_buf();
    holdouts(&dir);
    for f in ["holdout.csv", "holdout.parquet"] {
        s3.put(
            "holdouts",
            &format!("eval/{f}"),
            std::fs::read(dir.join(f)).unwrap(),
        );
    }
    s3.put(
        "holdouts",
        "eval/request.json",
        request_from(&dir.join("holdout.csv")).into_bytes(),
    );
    let v = register(&m, &[json!({})]);

    let r = evaluate(&w, &s3, &m, &v[0]);
    assert_no_host_left(r.pid);
    let doc = r.json();
    r.expect_code(0);
    for (disk, remote) in [("disk-csv", "s3-csv"), ("disk-parquet", "s3-parquet")] {
        let (a, b) = (gate(&doc, disk), gate(&doc, remote));
        assert_eq!(b["outcome"], json!("pass"), "{b}");
        for key in ["accuracy", "f1", "slices"] {
            assert_eq!(a["observed"][key], b["observed"][key], "{key}: {a} vs {b}");
        }
        let ds = &b["observed"]["dataset"];
        assert_eq!(ds["rows"], json!(600), "{b}");
        assert!(
            ds["path"]
                .as_str()
                .unwrap()
                .starts_with("s3://holdouts/eval/holdout.")
        );
        assert!(
            ds["identity"].as_str().unwrap().starts_with("etag:"),
            "an object is known by its ETag: {ds}"
        );
        assert!(
            a["observed"]["dataset"]["identity"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }
    assert_eq!(gate(&doc, "latency")["outcome"], json!("pass"), "{doc}");
    let report: Value =
        serde_json::from_str(block(version(&m, &v[0])).tag("stagegate.report").unwrap()).unwrap();
    assert_eq!(report["datasets"].as_array().unwrap().len(), 4, "{report}");

    // `check` opens each object with the daemon's credentials and says what it found.
    let c = run_with(&w, &s3.env(), &["check"]);
    c.expect_code(0);
    assert!(
        c.stdout
            .contains("input   s3://holdouts/eval/holdout.parquet (gate `s3-parquet`): readable"),
        "{}",
        c.stdout
    );
}

#[test]
fn objects_a_holdout_in_azure_blob_storage_is_judged_exactly_as_the_same_file_on_disk() {
    let az = Azurite::start();
    let m = unique("objects-azure");
    let gates = [
        dataset_gate("disk-parquet", "holdout.parquet"),
        dataset_gate("az-parquet", "az://holdouts/eval/holdout.parquet"),
        dataset_gate("az-csv", "az://holdouts/eval/holdout.csv"),
    ]
    .concat();
    let w = workdir(&gates, "");
    let dir = w.path().to_path_buf();
    holdouts(&dir);
    az.upload(
        "holdouts",
        &[
            ("eval/holdout.csv", &dir.join("holdout.csv")),
            ("eval/holdout.parquet", &dir.join("holdout.parquet")),
        ],
    );
    let v = register(&m, &[json!({})]);

    let r = evaluate_with(&w, &az.env(), &m, &v[0]);
    let doc = r.json();
    r.expect_code(0);
    let disk = gate(&doc, "disk-parquet");
    for name in ["az-parquet", "az-csv"] {
        let g = gate(&doc, name);
        assert_eq!(g["outcome"], json!("pass"), "{g}");
        for key in ["accuracy", "f1", "slices"] {
            assert_eq!(
                disk["observed"][key], g["observed"][key],
                "{key}: {disk} vs {g}"
            );
        }
        let ds = &g["observed"]["dataset"];
        assert_eq!(ds["rows"], json!(600), "{g}");
        assert!(
            ds["identity"].as_str().unwrap().starts_with("etag:"),
            "a blob is known by its ETag: {ds}"
        );
    }
    let c = run_with(&w, &az.env(), &["check"]);
    c.expect_code(0);
    assert!(
        c.stdout
            .contains("input   az://holdouts/eval/holdout.parquet (gate `az-parquet`): readable"),
        "{}",
        c.stdout
    );
}

#[test]
fn objects_every_way_an_object_cannot_be_read_is_a_named_error() {
    let s3 = S3::start(None);
    s3.create_bucket("errs");
    let m = unique("objects-errors");
    let w = workdir(
        &[
            dataset_gate("missing", "s3://errs/nope.parquet"),
            dataset_gate("truncated", "s3://errs/truncated.parquet"),
            dataset_gate("not-parquet", "s3://errs/text.parquet"),
            dataset_gate("no-bucket", "s3://no-such-bucket/h.csv"),
        ]
        .concat(),
        "",
    );
    let local = w.path().join("h.parquet");
    fixtures(
        json!([{"op": "dataset", "path": local.display().to_string(), "rows": 300, "segment": true}]),
    );
    let bytes = std::fs::read(&local).unwrap();
    let truncated = bytes[..bytes.len() / 2].to_vec();
    s3.put("errs", "truncated.parquet", truncated.clone());
    s3.put("errs", "text.parquet", b"target,f0\n1,2\n".to_vec());
    let v = register(&m, &[json!({})]);

    let r = evaluate(&w, &s3, &m, &v[0]);
    assert_no_host_left(r.pid);
    r.expect_code(2);
    let doc = r.json();
    let msg = |doc: &Value, name: &str| {
        let g = gate(doc, name);
        assert_eq!(g["outcome"], json!("error"), "{g}");
        g["message"].as_str().unwrap().to_string()
    };
    let missing = msg(&doc, "missing");
    assert!(
        missing.contains("s3://errs/nope.parquet does not exist"),
        "{missing}"
    );
    let no_bucket = msg(&doc, "no-bucket");
    assert!(
        no_bucket.contains("s3://no-such-bucket/h.csv does not exist"),
        "{no_bucket}"
    );
    for name in ["truncated", "not-parquet"] {
        let text = msg(&doc, name);
        assert!(
            text.contains(&format!(
                "dataset s3://errs/{}.parquet is not readable Parquet",
                if name == "truncated" {
                    "truncated"
                } else {
                    "text"
                }
            )) && text.contains("truncated, or another format"),
            "{name}: {text}"
        );
    }

    // A server that checks credentials (moto's IAM, after the bucket and the object are put)
    // refuses keys it does not know: denied, naming the object, and no key in the message.
    let strict = S3::start(Some(2));
    strict.create_bucket("errs");
    strict.put("errs", "truncated.parquet", truncated);
    let r = evaluate(&w, &strict, &m, &v[0]);
    r.expect_code(2);
    let doc = r.json();
    let denied = msg(&doc, "truncated");
    assert!(
        denied.contains("s3://errs/truncated.parquet: access denied"),
        "{denied}"
    );
    assert!(!r.stderr.contains(common::s3::SECRET) && !r.stdout.contains(common::s3::SECRET));
}

/// `csv` with its `target` column's 0s and 1s swapped: a holdout every good model fails.
#[test]
fn objects_holdouts_in_mlflow_artifacts_are_read_through_the_tracking_server() {
    let m = unique("objects-artifacts");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (csv, parquet) = (format!("{d}/holdout.csv"), format!("{d}/holdout.parquet"));
    fixtures(json!([
        {"op": "dataset", "path": csv, "rows": 500, "segment": true},
        {"op": "dataset", "path": parquet, "rows": 500, "segment": true},
    ]));
    let logged = fixtures(json!([
        {"op": "artifact", "path": csv, "artifact_path": "eval"},
    ]));
    let (run, root) = (
        logged[0]["run_id"].as_str().unwrap().to_string(),
        logged[0]["artifact_uri"].as_str().unwrap().to_string(),
    );
    fixtures(json!([{"op": "artifact", "path": parquet, "artifact_path": "eval", "run_id": run}]));
    assert!(
        root.starts_with("mlflow-artifacts:"),
        "a proxied store: {root}"
    );
    let w = workdir(
        &[
            dataset_gate("disk", &parquet),
            dataset_gate("run-parquet", &format!("runs:/{run}/eval/holdout.parquet")),
            dataset_gate("proxied-csv", &format!("{root}/eval/holdout.csv")),
            dataset_gate("missing", &format!("runs:/{run}/eval/nope.csv")),
        ]
        .concat(),
        "",
    );
    let v = register(&m, &[json!({})]);
    let r = w.run(&["evaluate", &m, &v[0], "--json"]);
    assert_no_host_left(r.pid);
    r.expect_code(2);
    let doc = r.json();
    let disk = gate(&doc, "disk");
    for name in ["run-parquet", "proxied-csv"] {
        let g = gate(&doc, name);
        assert_eq!(g["outcome"], json!("pass"), "{g}");
        for key in ["accuracy", "f1", "slices"] {
            assert_eq!(disk["observed"][key], g["observed"][key], "{key}: {g}");
        }
        assert!(
            g["observed"]["dataset"]["identity"]
                .as_str()
                .unwrap()
                .starts_with("etag:"),
            "{g}"
        );
    }
    let missing = gate(&doc, "missing");
    assert_eq!(missing["outcome"], json!("error"), "{missing}");
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{missing}"
    );
}

#[test]
fn objects_models_in_an_s3_artifact_store_proxied_or_not_are_judged_by_every_gate() {
    let s3 = S3::start(None);
    let client_env = {
        let mut e = s3.env();
        e.push(("MLFLOW_S3_ENDPOINT_URL", s3.endpoint()));
        e
    };
    let owned = |e: &[(&str, String)]| -> Vec<(String, String)> {
        e.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    };
    // Proxied: the server reads and writes the store for its clients. Not proxied: clients
    // read it directly, and this server cannot (its endpoint leads nowhere).
    // One worker each: two servers for one test, and the suite's CPU is the limit.
    let mut proxied_env = owned(&client_env);
    proxied_env.push(("STAGEGATE_MLFLOW_WORKERS".into(), "1".into()));
    proxied_env.push((
        "STAGEGATE_MLFLOW_ARTIFACTS".into(),
        "--artifacts-destination s3://proxied/ --serve-artifacts".into(),
    ));
    let direct_env = vec![
        ("STAGEGATE_MLFLOW_WORKERS".to_string(), "1".to_string()),
        (
            "STAGEGATE_MLFLOW_ARTIFACTS".to_string(),
            "--no-serve-artifacts --default-artifact-root s3://direct/".to_string(),
        ),
        ("MLFLOW_S3_ENDPOINT_URL".into(), "http://127.0.0.1:1".into()),
        ("AWS_MAX_ATTEMPTS".into(), "1".into()),
    ];
    s3.create_bucket("proxied");
    s3.create_bucket("direct");
    let dir = tempfile::tempdir().unwrap();
    let holdout = dir.path().join("holdout.csv");
    fixtures(json!([{"op": "dataset", "path": holdout.display().to_string(), "rows": 300}]));
    let gates = format!(
        r#"
  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.7

  [[policies.gates]]
  name = "files"
  type = "run"
  model_artifact = true

  [[policies.gates]]
  name = "latency"
  type = "latency"
  p99_ms = 5000.0
  requests = 5
  warmup = 1

  [[policies.gates]]
  name = "holdout"
  type = "dataset"
  path = "{}"
  label = "target"
  metrics = {{ accuracy = 0.7 }}
"#,
        holdout.display()
    );
    let w = workdir(&gates, "");
    let env: Vec<(&str, &str)> = client_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Both servers start at once. The proxied store is the usual path, so one form is enough
    // there; the direct read differs between a run's artifacts and a logged model's.
    let servers = std::thread::scope(|t| {
        let proxied = t.spawn(|| PrivateMlflow::start_env(&venv(), proxied_env));
        let direct = t.spawn(|| PrivateMlflow::start_env(&venv(), direct_env));
        [
            ("proxied", proxied.join().unwrap(), &["mlflow3"][..]),
            (
                "not proxied",
                direct.join().unwrap(),
                &["mlflow3", "mlflow2"][..],
            ),
        ]
    });
    for (what, server, forms) in &servers {
        let what = *what;
        let m = unique("objects-store");
        let ops: Vec<Value> = forms
            .iter()
            .map(|f| json!({"op": "register", "name": m, "form": f, "alias": "challenger"}))
            .collect();
        let v = fixtures_env(&server.uri(), &client_env, json!(ops));
        for (form, reg) in forms.iter().zip(&v) {
            let version = reg["version"].as_str().unwrap();
            let r = block(run_env(
                &w,
                &server.uri(),
                &["evaluate", &m, version, "--json"],
                &env,
            ));
            assert_no_host_left(r.pid);
            let doc = r.json();
            assert_eq!(
                doc["verdict"],
                json!("passed"),
                "{what}, {form}: {doc}\n{}",
                r.stderr
            );
            // Where the server cannot read its store, stagegate read the model files itself.
            assert_eq!(
                r.stderr.contains("model file read from the artifact store"),
                what == "not proxied",
                "{what}, {form}: {}",
                r.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_a_stalled_store_is_a_named_timeout_and_a_server_refusing_head_is_read_all_the_same()
 {
    let s3 = tokio::task::spawn_blocking(|| {
        let s3 = S3::start(None);
        s3.create_bucket("stall");
        s3.put("stall", "head.csv", b"target,f0\n1,0.5\n".to_vec());
        s3.put("stall", "body.csv", b"target,f0\n1,0.5\n".to_vec());
        let dir = tempfile::tempdir().unwrap();
        holdouts(dir.path());
        let csv = std::fs::read(dir.path().join("holdout.csv")).unwrap();
        s3.put("stall", "nohead.csv", csv);
        s3.make_public("stall", "nohead.csv");
        s3
    })
    .await
    .unwrap();
    let proxy = common::proxy::FaultProxy::start(&s3.endpoint()).await;
    let stall = || common::proxy::Fault::Stall(Duration::from_secs(120));
    proxy.add(common::proxy::Rule::new(
        Some("HEAD"),
        "/stall/head.csv",
        stall(),
        0,
    ));
    proxy.add(common::proxy::Rule::new(
        Some("GET"),
        "/stall/body.csv",
        stall(),
        0,
    ));
    // A web server that refuses HEAD (as a presigned URL does: it is signed for GET alone).
    proxy.add(common::proxy::Rule::new(
        Some("HEAD"),
        "/stall/nohead.csv",
        common::proxy::Fault::Status(403),
        0,
    ));
    let m = unique("objects-stall");
    let nohead = format!("{}/stall/nohead.csv", proxy.url);
    let w = tokio::task::spawn_blocking(move || {
        let w = workdir(
            &[
                dataset_gate("stalled-head", "s3://stall/head.csv"),
                dataset_gate("stalled-body", "s3://stall/body.csv"),
                dataset_gate("no-head", &nohead),
            ]
            .concat(),
            "",
        );
        let mut text = std::fs::read_to_string(w.config()).unwrap();
        text.push_str("\n[inputs]\ntimeout = \"2s\"\nretries = 1\n");
        std::fs::write(w.config(), text).unwrap();
        (w, register(&m, &[json!({})]), m)
    })
    .await
    .unwrap();
    let (w, v, m) = w;
    let mut env = s3.env();
    env[0].1 = proxy.url.clone();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = run_env(&w, &mlflow_uri(), &["evaluate", &m, &v[0], "--json"], &env).await;
    r.expect_code(2);
    let doc = r.json();
    for (name, url) in [
        ("stalled-head", "s3://stall/head.csv"),
        ("stalled-body", "s3://stall/body.csv"),
    ] {
        let g = gate(&doc, name);
        assert_eq!(g["outcome"], json!("error"), "{g}");
        let msg = g["message"].as_str().unwrap();
        assert!(
            msg.contains(url) && msg.contains("timed out"),
            "{name}: {msg}"
        );
    }
    assert!(
        proxy.count("HEAD", "/stall/head.csv") >= 2,
        "the request was tried again"
    );
    let g = gate(&doc, "no-head");
    assert_eq!(g["outcome"], json!("pass"), "{g}");
    let ds = &g["observed"]["dataset"];
    assert_eq!(ds["rows"], json!(600), "{ds}");
    assert!(
        ds["identity"].as_str().unwrap().starts_with("etag:"),
        "{ds}"
    );
}
