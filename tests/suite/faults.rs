//! Faults a real MLflow server cannot produce on demand — 5xx answers, stalls, dropped
//! connections, a registry that changes at an exact moment — injected by a proxy in front of
//! the real server. The models, tags and promotions are still the real server's.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::{Fault, FaultProxy, Rule};
use common::*;
use futures::FutureExt;
use serde_json::json;

fn register_many(name: &str, ops: &[serde_json::Value]) -> Vec<String> {
    let ops: Vec<_> = ops
        .iter()
        .map(|extra| {
            let mut op = json!({"op": "register", "name": name, "tags": good_tags(), "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}});
            op.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            op
        })
        .collect();
    fixtures(json!(ops))
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect()
}

/// Run the binary off the async runtime, so the proxy keeps serving meanwhile.
async fn run(w: &Workdir, uri: &str, args: &[&str]) -> Run {
    run_env(w, uri, args, &[]).await
}

fn workdir(extra_mlflow: &str) -> Workdir {
    let cfg = config(STAGE_TARGETS, &format!("{SEED_GATES}{CHAMPION_GATE}"))
        .replace("[mlflow]", &format!("[mlflow]\n{extra_mlflow}"));
    Workdir::new(&cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_champion_changed_between_evaluation_and_action_stops_the_promotion() {
    let m = unique("changed-world");
    let v = register_many(
        &m,
        &[
            json!({"stage": "Production"}),
            json!({}),
            json!({"stage": "Staging"}),
        ],
    );
    let (champ, intruder, cand) = (v[0].clone(), v[1].clone(), v[2].clone());
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    // The moment the verdict is written — after the evaluation, before the action — someone
    // else promotes another version.
    let (name, other) = (m.clone(), intruder.clone());
    let hook: common::proxy::Hook = Arc::new(move || {
        let (name, other) = (name.clone(), other.clone());
        async move {
            client()
                .transition_stage(&name, &other, "Production", true)
                .await
                .unwrap();
        }
        .boxed()
    });
    proxy.add(Rule {
        body: Some("stagegate.verdict".into()),
        ..Rule::new(Some("POST"), "set-tag", Fault::Before(hook), 1)
    });

    let r = run(&workdir(""), &proxy.url, &["evaluate", &m, "--promote"]).await;
    r.expect_code(2);
    assert!(
        r.stderr
            .contains(&format!("champion changed from v{champ} to v{intruder}")),
        "{}",
        r.stderr
    );
    let got = version(&m, &cand).await;
    assert_eq!(
        got.current_stage, "Staging",
        "must not act on a changed world"
    );
    assert_eq!(got.tag("stagegate.verdict"), Some("passed"));
    assert!(
        got.tag("stagegate.action")
            .unwrap()
            .starts_with("skipped: the champion changed")
    );
    // The intent written with the verdict announced a move that was not made: it is gone, so
    // a later move by hand is judged as a bypass, not finished as our promotion.
    assert_eq!(got.tag("stagegate.replaced_version"), None);
    assert_eq!(version(&m, &intruder).await.current_stage, "Production");
    assert_eq!(proxy.count("POST", "transition-stage"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_lost_at_the_moment_of_promotion_leaves_no_partial_promotion_and_a_rerun_converges()
{
    let m = unique("lost-at-promotion");
    let v = register_many(
        &m,
        &[json!({"stage": "Production"}), json!({"stage": "Staging"})],
    );
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    proxy.add(Rule::new(Some("POST"), "transition-stage", Fault::Drop, 0));
    let w = workdir("retries = 2");

    let r = run(&w, &proxy.url, &["evaluate", &m, "--promote", "--json"]).await;
    r.expect_code(2);
    assert!(
        r.json()["error"].as_str().unwrap().contains("unreachable"),
        "{}",
        r.stdout
    );
    // Retried (1 + 2 retries), then given up: nothing moved.
    assert_eq!(proxy.count("POST", "transition-stage"), 3);
    assert_eq!(version(&m, &v[1]).await.current_stage, "Staging");
    assert_eq!(version(&m, &v[0]).await.current_stage, "Production");
    assert_eq!(version(&m, &v[0]).await.tag("stagegate.replaced_by"), None);

    // MLflow is back: the same command converges.
    run(&w, &mlflow_uri(), &["evaluate", &m, "--promote"])
        .await
        .expect_code(0);
    assert_eq!(version(&m, &v[1]).await.current_stage, "Production");
    assert_eq!(version(&m, &v[0]).await.current_stage, "Archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_answers_are_retried_and_other_errors_are_not() {
    let m = unique("retry");
    let v = register_many(&m, &[json!({"stage": "Staging"})]);
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    proxy.add(Rule::new(Some("GET"), "runs/get", Fault::Status(503), 2));
    proxy.add(Rule::new(
        Some("GET"),
        "registered-models/get",
        Fault::Status(502),
        1,
    ));
    proxy.add(Rule::new(Some("POST"), "set-tag", Fault::Drop, 1));
    proxy.add(Rule::new(Some("POST"), "set-tag", Fault::Status(429), 1));
    let r = run(&workdir(""), &proxy.url, &["evaluate", &m, "--json"]).await;
    r.expect_code(0);
    assert_eq!(r.json()["verdict"], json!("passed"));
    assert_eq!(proxy.count("GET", "runs/get"), 3);
    assert_eq!(
        version(&m, &v[0]).await.tag("stagegate.verdict"),
        Some("passed")
    );

    // A 500 is MLflow's own bug: not retried; the gate that needed the run errors and says
    // what MLflow said, with its error_code.
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    proxy.add(Rule::new(Some("GET"), "runs/get", Fault::Status(500), 0));
    let r = run(&workdir(""), &proxy.url, &["evaluate", &m, "--json"]).await;
    r.expect_code(2);
    let doc = r.json();
    assert_eq!(doc["verdict"], json!("error"));
    let msg = doc["gates"][0]["message"].as_str().unwrap();
    assert!(msg.contains("INJECTED_500") && msg.contains("500"), "{msg}");
    assert_eq!(proxy.count("GET", "runs/get"), 1);
    assert_eq!(
        version(&m, &v[0]).await.tag("stagegate.verdict"),
        Some("error")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_out_and_exits_2() {
    let m = unique("stall");
    let v = register_many(&m, &[json!({"stage": "Staging"})]);
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    proxy.add(Rule::new(
        Some("GET"),
        "runs/get",
        Fault::Stall(Duration::from_secs(30)),
        0,
    ));
    let w = Workdir::new(&config(STAGE_TARGETS, SEED_GATES).replace(
        "request_timeout = \"10s\"",
        "request_timeout = \"1s\"\nretries = 1",
    ));
    let r = run(&w, &proxy.url, &["evaluate", &m, "--promote", "--json"]).await;
    r.expect_code(2);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(proxy.count("GET", "runs/get"), 2);
    let got = version(&m, &v[0]).await;
    assert_eq!(
        got.tag("stagegate.verdict"),
        None,
        "nothing recorded for an evaluation that could not finish"
    );
    assert_eq!(got.current_stage, "Staging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_mlflow_environment_are_sent_on_every_request() {
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    let w = workdir("");
    // Bearer token.
    run_env(
        &w,
        &proxy.url,
        &["check"],
        &[("MLFLOW_TRACKING_TOKEN", "t0k")],
    )
    .await
    .expect_code(0);
    let seen = proxy.authorizations();
    assert!(
        !seen.is_empty() && seen.iter().all(|a| a.as_deref() == Some("Bearer t0k")),
        "{seen:?}"
    );
    // Basic auth (what the OSS basic-auth app accepts).
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    run_env(
        &w,
        &proxy.url,
        &["check"],
        &[
            ("MLFLOW_TRACKING_USERNAME", "alice"),
            ("MLFLOW_TRACKING_PASSWORD", "s3cret"),
        ],
    )
    .await
    .expect_code(0);
    // base64("alice:s3cret")
    let seen = proxy.authorizations();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|a| a.as_deref() == Some("Basic YWxpY2U6czNjcmV0")),
        "{seen:?}"
    );
    // No credentials: no header; and nothing secret in the output.
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    let r = run_env(&w, &proxy.url, &["check"], &[]).await;
    r.expect_code(0);
    assert!(proxy.authorizations().iter().all(Option::is_none));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_server_certificate_path_is_a_clear_error() {
    let w = workdir("");
    let r = run_env(
        &w,
        "https://127.0.0.1:9",
        &["check"],
        &[("MLFLOW_TRACKING_SERVER_CERT_PATH", "/nonexistent/ca.pem")],
    )
    .await;
    r.expect_code(2);
    assert!(
        r.stderr.contains("MLFLOW_TRACKING_SERVER_CERT_PATH")
            && r.stderr.contains("/nonexistent/ca.pem"),
        "{}",
        r.stderr
    );
}
