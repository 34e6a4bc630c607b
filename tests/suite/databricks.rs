//! Databricks: registry webhooks delivered as Databricks sends them (`X-Databricks-Signature`,
//! the documented JSON payload) to a daemon against the real MLflow server, and
//! `MLFLOW_TRACKING_URI=databricks` pointed at that server (it speaks the same REST API).

use crate::common;

use std::time::Duration;

use common::block;
use common::daemon::{Daemon, now_unix};
use common::proxy::FaultProxy;
use common::*;
use serde_json::{Value, json};
use stagegate::webhook::databricks::signature_header;

const WAIT: Duration = Duration::from_secs(60);
const DBX_SECRET: &str = "dbx-shared-secret";

fn body(prefix: &str) -> String {
    format!(
        r#"
[webhooks]
databricks_secrets = ["{DBX_SECRET}"]

[poll]
schedule = "0 0 0 1 1 *"

[[policies]]
name = "staging"
models = ["{prefix}*"]
{STAGE_TARGETS}

  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85
"#
    )
}

/// A payload as the Databricks documentation shows it.
fn event(event: &str, model: &str, version: &str, at_ms: u64) -> String {
    json!({
        "event": event,
        "webhook_id": "c5596721253c4b429368cf6f4341b88a",
        "event_timestamp": at_ms,
        "model_name": model,
        "version": version,
        "to_stage": "Staging",
        "from_stage": "None",
        "text": format!("Registered model '{model}' version {version} transitioned from None to Staging."),
    })
    .to_string()
}

/// Register a version of `model` (val_accuracy 0.9) in Staging; its version number.
fn register_staging(model: &str) -> String {
    let op = json!({"op": "register", "name": model, "metrics": {"val_accuracy": 0.9}, "stage": "Staging"});
    fixtures(json!([op]))[0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// POST `body` to `/webhooks/databricks` with `signature` as `X-Databricks-Signature`.
fn deliver(d: &Daemon, signature: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/webhooks/databricks", d.url()))
        .header("content-type", "application/json")
        .header("x-databricks-signature", signature)
        .body(body.to_string())
        .send()
        .expect("daemon answers");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn signed(d: &Daemon, body: &str) -> (u16, Value) {
    deliver(d, &signature_header(DBX_SECRET, body.as_bytes()), body)
}

#[test]
fn a_signed_transition_to_staging_promotes_and_bad_deliveries_are_refused() {
    let prefix = unique("dbx-hook");
    let m = format!("{prefix}-m");
    let d = Daemon::start(&mlflow_uri(), &body(&prefix));
    // The start-up poll is over before the model exists: only the webhook can find it (the
    // MLflow server sends no webhook here, none is registered, and the poll is yearly).
    d.wait_for("the start-up poll", WAIT, || {
        d.status()["poll"]["completed"].as_u64() >= Some(1)
    });
    let v = register_staging(&m);

    let transition = event(
        "MODEL_VERSION_TRANSITIONED_STAGE",
        &m,
        &v,
        now_unix() * 1000,
    );
    let (s, b) = signed(&d, &transition);
    assert_eq!((s, b["status"].as_str()), (202, Some("queued")), "{b}");
    // The move comes before stagegate records it: wait for both.
    d.wait_for("promotion to Production, recorded", WAIT, || {
        block(version(&m, &v)).current_stage == "Production"
            && d.evaluations(&m).iter().any(|e| !e["action"].is_null())
    });
    let evals = d.evaluations(&m);
    assert!(
        evals
            .iter()
            .any(|e| e["trigger"] == json!("webhook") && e["action"] == json!("promoted")),
        "{evals:?}"
    );

    // Databricks' retry of the same event is recognised by the event's own identity.
    let (s, b) = signed(&d, &transition);
    assert_eq!((s, b["status"].as_str()), (200, Some("duplicate")), "{b}");
    // A wrong secret, a tampered body, a stale event, garbage and an event from the future.
    let wrong = signature_header("not-the-secret", transition.as_bytes());
    assert_eq!(deliver(&d, &wrong, &transition).0, 401);
    let good = signature_header(DBX_SECRET, transition.as_bytes());
    assert_eq!(deliver(&d, &good, &transition.replace(&m, "other")).0, 401);
    let stale = event("MODEL_VERSION_CREATED", &m, &v, (now_unix() - 3600) * 1000);
    let (s, b) = signed(&d, &stale);
    assert_eq!(s, 401, "{b}");
    assert!(b["error"].as_str().unwrap().contains("tolerance"), "{b}");
    let (s, b) = signed(&d, "{\"event\": ");
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("malformed"), "{b}");
    // An event stagegate does not know is acknowledged, so Databricks does not retry it.
    let unknown = event("MODEL_VERSION_SERVED", &m, &v, now_unix() * 1000);
    let (s, b) = signed(&d, &unknown);
    assert_eq!((s, b["status"].as_str()), (200, Some("ignored")), "{b}");
    assert!(
        b["reason"].as_str().unwrap().contains("unknown event"),
        "{b}"
    );

    let metrics = reqwest::blocking::get(format!("{}/metrics", d.url()))
        .unwrap()
        .text()
        .unwrap();
    for outcome in [
        "queued",
        "duplicate",
        "unauthorized",
        "stale",
        "malformed",
        "ignored",
    ] {
        let needle = format!(
            "stagegate_webhook_deliveries_total{{source=\"databricks\",outcome=\"{outcome}\"}}"
        );
        assert!(metrics.contains(&needle), "{needle} missing from /metrics");
    }
    let hooks = &d.status()["webhooks"];
    assert_eq!(hooks["sources"]["databricks"]["enabled"], json!(true));
    assert_eq!(hooks["sources"]["mlflow"]["enabled"], json!(false));
    assert!(!d.log().contains(DBX_SECRET), "the secret was logged");
}

#[test]
fn without_databricks_secrets_the_route_says_it_is_disabled() {
    let prefix = unique("dbx-off");
    let d = Daemon::start(
        &mlflow_uri(),
        &body(&prefix).replace(&format!("databricks_secrets = [\"{DBX_SECRET}\"]"), ""),
    );
    let e = event(
        "MODEL_VERSION_CREATED",
        &format!("{prefix}-m"),
        "1",
        now_unix() * 1000,
    );
    let (s, b) = signed(&d, &e);
    assert_eq!(s, 401);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("Databricks webhooks are disabled"),
        "{b}"
    );
    assert_eq!(
        d.status()["webhooks"]["sources"]["databricks"]["enabled"],
        json!(false)
    );
}

/// `MLFLOW_TRACKING_URI=databricks` goes to `$DATABRICKS_HOST/api/2.0/mlflow/…` with the
/// workspace token as a Bearer token. The host is a proxy in front of the real server, to see
/// what was sent; the answers are the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_against_a_databricks_tracking_uri_uses_the_host_and_token() {
    let m = unique("dbx-uri");
    let v = register_staging(&m);
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    let w = Workdir::new(&config(STAGE_TARGETS, ACCURACY_GATE));
    let token = "dapi-test-token-0123";
    let r = run_env(
        &w,
        "databricks",
        &["evaluate", &m, "--json"],
        &[("DATABRICKS_HOST", &proxy.url), ("DATABRICKS_TOKEN", token)],
    )
    .await;
    passed_through_the_workspace(&r, &v, &proxy, token);

    // Either variable missing: exit 2, naming it.
    let r = run_env(
        &w,
        "databricks",
        &["evaluate", &m],
        &[("DATABRICKS_HOST", &proxy.url)],
    )
    .await;
    r.expect_code(2);
    assert!(
        r.stderr.contains("DATABRICKS_TOKEN is not set"),
        "{}",
        r.stderr
    );
    let r = run_env(
        &w,
        "databricks",
        &["evaluate", &m],
        &[("DATABRICKS_TOKEN", token)],
    )
    .await;
    r.expect_code(2);
    assert!(
        r.stderr.contains("DATABRICKS_HOST is not set"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(token), "the token was shown");
}

/// `databricks` is a tracking URI wherever it is set: as `mlflow.tracking_uri` in the file
/// (no `MLFLOW_TRACKING_URI`), and as `STAGEGATE_MLFLOW__TRACKING_URI`, which wins over both
/// `MLFLOW_TRACKING_URI` and the file (here both name a closed port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_databricks_tracking_uri_from_the_file_or_its_override_works_alike() {
    let m = unique("dbx-file");
    let v = register_staging(&m);
    let token = "dapi-test-token-4567";
    let with_uri = |uri: &str| {
        config(STAGE_TARGETS, ACCURACY_GATE).replace(
            "[mlflow]\n",
            &format!("[mlflow]\ntracking_uri = \"{uri}\"\n"),
        )
    };

    let proxy = FaultProxy::start(&mlflow_uri()).await;
    let w = Workdir::new(&with_uri("databricks"));
    let workspace = [
        ("DATABRICKS_HOST", proxy.url.as_str()),
        ("DATABRICKS_TOKEN", token),
    ];
    // An empty MLFLOW_TRACKING_URI is no tracking URI: the file's counts.
    let r = run_env(&w, "", &["evaluate", &m, "--json"], &workspace).await;
    passed_through_the_workspace(&r, &v, &proxy, token);
    let r = run_env(&w, "", &["check", "--offline"], &workspace).await;
    r.expect_code(0);

    let proxy = FaultProxy::start(&mlflow_uri()).await;
    let w = Workdir::new(&with_uri("http://127.0.0.1:9"));
    let workspace = [
        ("DATABRICKS_HOST", proxy.url.as_str()),
        ("DATABRICKS_TOKEN", token),
        ("STAGEGATE_MLFLOW__TRACKING_URI", "databricks"),
    ];
    let r = run_env(
        &w,
        "http://127.0.0.1:9",
        &["evaluate", &m, "--json"],
        &workspace,
    )
    .await;
    passed_through_the_workspace(&r, &v, &proxy, token);
}

const ACCURACY_GATE: &str = "  [[policies.gates]]\n  name = \"accuracy\"\n  type = \"metric\"\n  metric = \"val_accuracy\"\n  min = 0.85\n";

/// `evaluate --json` judged `version` through the proxy standing for the workspace: every
/// request to its MLflow API, each with the workspace token, which is shown nowhere.
fn passed_through_the_workspace(r: &Run, version: &str, proxy: &FaultProxy, token: &str) {
    r.expect_code(0);
    assert_eq!(r.json()["version"], json!(version));
    assert_eq!(r.json()["verdict"], json!("passed"));
    let seen = proxy.authorizations();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|a| a.as_deref() == Some(&format!("Bearer {token}"))),
        "{seen:?}"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.contains("/api/2.0/mlflow/")),
        "{:?}",
        proxy.requests()
    );
    assert!(
        !r.stderr.contains(token) && !r.stdout.contains(token),
        "the token was shown"
    );
}
