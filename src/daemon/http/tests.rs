//! Handler tests: the router driven in-process, with paused tokio time (re-check timers are
//! advanced, never slept through).

use std::collections::BTreeSet;
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
    let (app, _dir) = test_app(CONFIG).await;
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
    assert_eq!(
        app.store.queued(i64::MAX).await.unwrap(),
        vec!["fraud-a".to_string()]
    );
}

#[tokio::test(start_paused = true)]
async fn a_replayed_delivery_is_acknowledged_once() {
    let (app, _dir) = test_app(CONFIG).await;
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
    assert_eq!(app.store.delivery_count().await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn forged_stale_oversize_and_malformed_deliveries_are_refused_with_json() {
    let (app, _dir) = test_app(CONFIG).await;
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
        app.store.delivery_count().await.unwrap(),
        0,
        "refused deliveries are not remembered"
    );
    assert!(app.metrics.encode().contains(
        "stagegate_webhook_deliveries_total{source=\"mlflow\",outcome=\"unauthorized\"} 2"
    ));
}

#[tokio::test(start_paused = true)]
async fn own_tags_are_ignored_and_user_tags_queue_the_model_without_a_request() {
    let (app, _dir) = test_app(CONFIG).await;
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
    assert!(app.store.requests("fraud-a").await.unwrap().is_empty());
    // A model no policy matches is acknowledged, not queued.
    let (s, b) = send(&app, delivery("t3", now(), "new-secret", &created("other"))).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ignored")));
    assert_eq!(app.scheduler.depth(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_secrets_webhooks_are_refused() {
    let (app, _dir) =
        test_app(&CONFIG.replace(r#"secrets = ["old-secret", "new-secret"]"#, "")).await;
    let (s, b) = send(
        &app,
        delivery("n1", now(), "new-secret", &created("fraud-a")),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["error"].as_str().unwrap().contains("no webhooks.secrets"));
}

fn databricks(secret: &str, body: &str) -> Request<Body> {
    Request::post("/webhooks/databricks")
        .header(
            "x-databricks-signature",
            crate::webhook::databricks::signature_header(secret, body.as_bytes()),
        )
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn databricks_transitions_queue_the_model_without_rechecks_and_need_their_own_secret() {
    let event = format!(
        r#"{{"event":"MODEL_VERSION_TRANSITIONED_TO_STAGING","webhook_id":"w","event_timestamp":{},"model_name":"fraud-a","version":"3","to_stage":"Staging"}}"#,
        now() * 1000
    );
    let (app, _dir) = test_app(CONFIG).await;
    let (s, b) = send(&app, databricks("new-secret", &event)).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the MLflow secrets do not sign for Databricks"
    );
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("Databricks webhooks are disabled")
    );
    let (app, _dir) =
        test_app(&CONFIG.replace("tolerance", "databricks_secrets = [\"dbx\"]\ntolerance")).await;
    let (s, b) = send(&app, databricks("dbx", &event)).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::ACCEPTED, Some("queued")),
        "{b}"
    );
    assert_eq!(
        (app.scheduler.depth(), app.scheduler.delayed()),
        (1, 0),
        "a transition needs no re-check"
    );
    let (s, b) = send(&app, databricks("dbx", &event)).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    let (_, st) = send(&app, Request::get("/status").body(Body::empty()).unwrap()).await;
    let sources = &st["webhooks"]["sources"];
    assert_eq!(
        sources["databricks"],
        serde_json::json!({"enabled": true, "secrets": 1})
    );
    assert_eq!(
        sources["mlflow"],
        serde_json::json!({"enabled": true, "secrets": 2})
    );
    assert!(!st.to_string().contains("dbx"), "no secret in /status");
}

#[tokio::test(start_paused = true)]
async fn mutating_routes_need_the_token_when_one_is_set() {
    let cfg = CONFIG.replace(
        "[webhooks]",
        "[server]\napi_token = \"t0ken\"\n\n[webhooks]",
    );
    let (app, _dir) = test_app(&cfg).await;
    let (s, _) = send(
        &app,
        Request::post("/v1/pause").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!app.is_paused().await.unwrap());
    let req = Request::post("/v1/pause")
        .header("authorization", "Bearer t0ken")
        .body(Body::empty())
        .unwrap();
    let (s, b) = send(&app, req).await;
    assert_eq!((s, b["paused"].as_bool()), (StatusCode::OK, Some(true)));
    assert!(app.is_paused().await.unwrap());
    // Reads stay open.
    let (s, _) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_get_json_errors() {
    let (app, _dir) = test_app(CONFIG).await;
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
    assert!(b["paths"]["/webhooks/databricks"]["post"].is_object());
}

/// An answer: status, headers and JSON body (`Null` when the body is not JSON).
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn answer(app: &Arc<App>, req: Request<Body>) -> Answer {
    let resp = super::router(app.clone()).oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri).body(body.into()).unwrap()
}

fn assert_json_error(r: &Answer, status: StatusCode, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(r.header("content-type"), "application/json", "{what}");
    assert!(r.body["error"].is_string(), "{what}: {}", r.body);
}

#[tokio::test(start_paused = true)]
async fn history_queries_outside_the_documented_range_get_json_400s() {
    let (app, _dir) = test_app(CONFIG).await;
    // These were axum's plain-text rejections, or silently clamped.
    for uri in [
        "/v1/evaluations?limit=abc",
        "/v1/evaluations?limit=null&limit=null",
        "/v1/evaluations?limit=-1",
        "/v1/evaluations?limit=0",
        "/v1/evaluations?limit=1001",
        "/v1/evaluations?limit=99999999999999999999999",
    ] {
        let r = answer(&app, get(uri)).await;
        assert_json_error(&r, StatusCode::BAD_REQUEST, uri);
    }
    for uri in [
        "/v1/evaluations?limit=1000",
        "/v1/evaluations?limit=1&model=%F0%9F%A6%80%00",
    ] {
        let r = answer(&app, get(uri)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert!(r.body["evaluations"].is_array(), "{uri}");
    }
    // A path segment that is not UTF-8 once decoded.
    let r = answer(&app, get("/v1/evaluations/%FF")).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "non-UTF-8 id");
}

#[tokio::test(start_paused = true)]
async fn a_wrong_method_gets_a_json_405_with_allow() {
    let (app, _dir) = test_app(CONFIG).await;
    for (method, uri, allow) in [
        ("DELETE", "/healthz", "GET,HEAD"),
        ("POST", "/status", "GET,HEAD"),
        ("GET", "/v1/pause", "POST"),
        ("PUT", "/v1/evaluations", "GET,HEAD,POST"),
        ("GET", "/webhooks/mlflow", "POST"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let r = answer(&app, req).await;
        assert_json_error(&r, StatusCode::METHOD_NOT_ALLOWED, uri);
        let mut got: Vec<&str> = r.header("allow").split(',').collect();
        got.sort();
        assert_eq!(got.join(","), allow, "{method} {uri}");
    }
}

#[test]
fn versions_are_canonical_numbers() {
    use super::api::canonical_version as v;
    assert_eq!(v("7"), Ok(Some("7".into())));
    assert_eq!(
        v("007"),
        Ok(Some("7".into())),
        "the spelling MLflow reports"
    );
    assert_eq!(v("0"), Ok(None), "versions start at 1");
    assert_eq!(v("2147483648"), Ok(None), "beyond MLflow's integer column");
    assert_eq!(v("99999999999999999999999"), Ok(None));
    for bad in ["", "¦", "1.0", "+1", "-1", " 1", "v1", "1e3"] {
        assert!(v(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn mlflow_failures_map_to_whose_fault_it_is() {
    use super::api::mlflow_failure;
    use crate::mlflow::MlflowError;
    let api = |status, code: &str| MlflowError::Api {
        endpoint: "model-versions/get".into(),
        status,
        error_code: code.into(),
        message: "m".into(),
    };
    let cases = [
        (api(404, "RESOURCE_DOES_NOT_EXIST"), StatusCode::NOT_FOUND),
        (api(400, "INVALID_PARAMETER_VALUE"), StatusCode::BAD_REQUEST),
        (
            api(503, "TEMPORARILY_UNAVAILABLE"),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (api(500, "INTERNAL_ERROR"), StatusCode::BAD_GATEWAY),
        (api(403, "PERMISSION_DENIED"), StatusCode::BAD_GATEWAY),
        (
            MlflowError::Unreachable {
                url: "u".into(),
                reason: "r".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(mlflow_failure(&e), want, "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn evaluation_requests_are_checked_before_mlflow_is_asked() {
    // MLflow is unreachable in this app: each of these used to be a 503 (or a 400 from MLflow
    // relayed as a 503); they are the request's faults and are answered without MLflow.
    let (app, _dir) = test_app(CONFIG).await;
    let cases = [
        (
            r#"{"model": "fraud-a", "version": "¦"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"model": "fraud-a", "version": ""}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"{"model": "", "version": "1"}"#, StatusCode::BAD_REQUEST),
        (
            r#"{"model": "fraud-a", "version": "0"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            r#"{"model": "fraud-a", "version": "99999999999"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            r#"{"model": "fraud-a", "version": 3}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("[]", StatusCode::BAD_REQUEST),
        ("", StatusCode::BAD_REQUEST),
    ];
    for (body, want) in cases {
        let r = answer(&app, post("/v1/evaluations", body)).await;
        assert_json_error(&r, want, body);
    }
    // Over axum's body limit: JSON too, not its plain-text rejection.
    let big = format!(r#"{{"model": "{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let r = answer(&app, post("/v1/evaluations", big)).await;
    assert_json_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "3 MiB body");
    assert_eq!(app.scheduler.depth(), 0);
}

#[tokio::test]
async fn an_mlflow_400_is_the_requests_fault_not_an_outage() {
    // A stand-in MLflow that refuses every name, as MLflow 3 refuses one containing `:`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mlflow = axum::Router::new().fallback(|| async {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error_code": "INVALID_PARAMETER_VALUE",
                "message": "Invalid model name 'fraud-a:'. Names cannot contain '/' or ':'."})),
        )
    });
    let server = tokio::spawn(async move { axum::serve(listener, mlflow).await });
    let (app, _dir) = test_app(&CONFIG.replace("127.0.0.1:9", &format!("127.0.0.1:{port}"))).await;
    for body in [
        r#"{"model": "fraud-a:"}"#,
        r#"{"model": "fraud-a:", "version": "2"}"#,
    ] {
        let r = answer(&app, post("/v1/evaluations", body)).await;
        assert_json_error(&r, StatusCode::BAD_REQUEST, body);
        assert!(
            r.body["error"]
                .as_str()
                .unwrap()
                .contains("Names cannot contain")
        );
    }
    assert_eq!(app.scheduler.depth(), 0, "nothing refused was queued");
    server.abort();
}

/// The methods a route could serve (HEAD comes with GET and is not documented apart).
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];

/// A request to `path` (a router or OpenAPI path) with its parameters filled in.
fn probe(method: &str, path: &str) -> Request<Body> {
    let uri = path.replace("{id}", "1").replace("{name}", "fraud-a");
    Request::builder()
        .method(method)
        .uri(&uri)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_router_serves_exactly_the_documented_operations() {
    let (app, _dir) = test_app(CONFIG).await;
    let spec = super::openapi::spec();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    // Every method of every route the router is built from, found by asking it: axum answers
    // a method a route does not serve with 405.
    let mut routed = BTreeSet::new();
    for (path, _) in super::routes(&app) {
        for method in METHODS {
            let r = answer(&app, probe(method, &path)).await;
            assert_ne!(
                r.body["error"], "no such route; see /openapi.json",
                "{method} {path} reached the fallback"
            );
            if r.status != StatusCode::METHOD_NOT_ALLOWED {
                routed.insert((path.clone(), method.to_string()));
            }
        }
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.rs: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "in openapi.rs but not served: {unrouted:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_documented_operation_answers_as_documented() {
    let (app, _dir) = test_app(CONFIG).await;
    let spec = super::openapi::spec();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let r = answer(&app, probe(&method.to_uppercase(), path)).await;
            let s = r.status;
            assert!(
                op["responses"][s.as_str()].is_object(),
                "{method} {path} answered {s}, which is not documented"
            );
            let ctype = r.header("content-type");
            let documented = op["responses"][s.as_str()]["content"].as_object().unwrap();
            let want = documented.keys().next().unwrap().as_str();
            assert!(ctype.starts_with(want), "{method} {path}: {ctype}");
        }
    }
}
