//! Handler tests: the router driven in-process, with paused tokio time (re-check timers are
//! advanced, never slept through).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::daemon::{App, test_app};
use crate::webhook::signature_header;

const CONFIG: &str = r#"
[mlflow]
tracking_uri = "http://127.0.0.1:9"

[webhooks]
secrets = ["old-secret", "new-secret"]
tolerance = "5m"

[state]
path = "state.db"

[[policies]]
name = "p"
models = ["fraud-*"]
candidate = { alias = "challenger" }
promote = { alias = "champion" }
"#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn created(model: &str) -> String {
    format!(
        r#"{{"entity":"model_version","action":"created","timestamp":"x","data":{{"name":"{model}","version":"3","source":"models:/m-1","run_id":null,"tags":{{}}}}}}"#
    )
}

fn tag_set(model: &str, key: &str) -> String {
    format!(
        r#"{{"entity":"model_version_tag","action":"set","timestamp":"x","data":{{"name":"{model}","version":"2","key":"{key}","value":"v"}}}}"#
    )
}

fn delivery(id: &str, ts: u64, secret: &str, body: &str) -> Request<Body> {
    let ts = ts.to_string();
    Request::post("/webhooks/mlflow")
        .header("content-type", "application/json")
        .header("x-mlflow-delivery-id", id)
        .header("x-mlflow-timestamp", &ts)
        .header(
            "x-mlflow-signature",
            signature_header(secret, id, &ts, body.as_bytes()),
        )
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn send(app: &Arc<App>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = super::router(app.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(start_paused = true)]
async fn a_signed_creation_is_queued_with_one_pending_recheck_series() {
    let (app, _dir) = test_app(CONFIG);
    let (status, body) = send(
        &app,
        delivery("d1", now(), "new-secret", &created("fraud-a")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(app.scheduler.depth(), 1);
    // The re-check series is one pending wake-up for the model, however many creations.
    assert_eq!(app.scheduler.delayed(), 1);
    let (status, _) = send(
        &app,
        delivery("d2", now(), "new-secret", &created("fraud-a")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.scheduler.delayed(), 1);
    assert_eq!(app.scheduler.depth(), 1, "the second creation folds in");
    // And the queue is persisted for a restart.
    assert_eq!(app.store.queued().unwrap(), vec!["fraud-a".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_replayed_delivery_is_acknowledged_once() {
    let (app, _dir) = test_app(CONFIG);
    let (s1, _) = send(
        &app,
        delivery("dup", now(), "old-secret", &created("fraud-a")),
    )
    .await;
    let (s2, b2) = send(
        &app,
        delivery("dup", now(), "old-secret", &created("fraud-a")),
    )
    .await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(b2["status"], "duplicate");
    assert_eq!(app.store.delivery_count().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn forged_stale_oversize_and_malformed_deliveries_are_refused_with_json() {
    let (app, _dir) = test_app(CONFIG);
    let (s, b) = send(
        &app,
        delivery("f1", now(), "wrong-secret", &created("fraud-a")),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["error"].as_str().unwrap().contains("signature"));
    let (s, b) = send(
        &app,
        delivery("f2", now() - 3600, "new-secret", &created("fraud-a")),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["error"].as_str().unwrap().contains("tolerance"));
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1024 * 1024 + 10));
    let (s, b) = send(&app, delivery("f3", now(), "new-secret", &big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(b["error"].is_string());
    let (s, b) = send(&app, delivery("f4", now(), "new-secret", "{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"].as_str().unwrap().contains("malformed"));
    let unsigned = Request::post("/webhooks/mlflow")
        .body(Body::from(created("fraud-a")))
        .unwrap();
    let (s, _) = send(&app, unsigned).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(app.scheduler.depth(), 0, "nothing refused was queued");
    assert_eq!(
        app.store.delivery_count().unwrap(),
        0,
        "refused deliveries are not remembered"
    );
    assert!(
        app.metrics
            .encode()
            .contains("stagegate_webhook_deliveries_total{outcome=\"unauthorized\"} 2")
    );
}

#[tokio::test(start_paused = true)]
async fn own_tags_are_ignored_and_user_tags_queue_the_model_without_a_request() {
    let (app, _dir) = test_app(CONFIG);
    let (s, b) = send(
        &app,
        delivery(
            "t1",
            now(),
            "new-secret",
            &tag_set("fraud-a", "stagegate.verdict"),
        ),
    )
    .await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ignored")));
    assert_eq!(app.scheduler.depth(), 0);
    let (s, _) = send(
        &app,
        delivery("t2", now(), "new-secret", &tag_set("fraud-a", "accuracy")),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(app.scheduler.depth(), 1, "the model is queued");
    // A tag is not a request: whether the version is a candidate with a stale verdict is
    // the reconcile's question, answered from the registry.
    assert!(app.store.requests("fraud-a").unwrap().is_empty());
    // A model no policy matches is acknowledged, not queued.
    let (s, b) = send(&app, delivery("t3", now(), "new-secret", &created("other"))).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ignored")));
    assert_eq!(app.scheduler.depth(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_secrets_webhooks_are_refused() {
    let (app, _dir) = test_app(&CONFIG.replace(r#"secrets = ["old-secret", "new-secret"]"#, ""));
    let (s, b) = send(
        &app,
        delivery("n1", now(), "new-secret", &created("fraud-a")),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["error"].as_str().unwrap().contains("no webhooks.secrets"));
}

#[tokio::test(start_paused = true)]
async fn mutating_routes_need_the_token_when_one_is_set() {
    let cfg = CONFIG.replace(
        "[webhooks]",
        "[server]\napi_token = \"t0ken\"\n\n[webhooks]",
    );
    let (app, _dir) = test_app(&cfg);
    let (s, _) = send(
        &app,
        Request::post("/v1/pause").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!app.is_paused());
    let req = Request::post("/v1/pause")
        .header("authorization", "Bearer t0ken")
        .body(Body::empty())
        .unwrap();
    let (s, b) = send(&app, req).await;
    assert_eq!((s, b["paused"].as_bool()), (StatusCode::OK, Some(true)));
    assert!(app.is_paused());
    // Reads stay open.
    let (s, _) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_get_json_errors() {
    let (app, _dir) = test_app(CONFIG);
    let (s, b) = send(
        &app,
        Request::post("/v1/evaluations")
            .body(Body::from("{\"modl\": 1}"))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"].as_str().unwrap().contains("unknown field"));
    let (s, _) = send(
        &app,
        Request::post("/v1/evaluations")
            .body(Body::from(r#"{"model": "unmatched"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = send(
        &app,
        Request::get("/v1/evaluations/abc")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = send(
        &app,
        Request::get("/v1/evaluations/999")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = send(&app, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b["error"].is_string());
    let (s, _) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "MLflow has not been reached"
    );
    let (s, b) = send(
        &app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["paths"]["/webhooks/mlflow"]["post"].is_object());
}
