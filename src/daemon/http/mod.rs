//! The HTTP surface (axum): webhooks, the API, health, metrics, the OpenAPI document and the
//! status page. Handlers read state and enqueue model names; they never write to MLflow.
//! Every API error is a JSON body with the right 4xx/5xx status; the status page's routes
//! (`pages`) answer HTML.

mod api;
mod openapi;
mod pages;
#[cfg(test)]
mod tests;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::daemon::App;

pub fn router(app: Arc<App>) -> Router {
    let mutating = Router::new()
        .route("/v1/evaluations", post(api::request_evaluation))
        .route("/v1/pause", post(api::pause))
        .route("/v1/resume", post(api::resume))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    let mut router = Router::new();
    for source in webhooks::sources() {
        router = router.route(&format!("/webhooks/{}", source.name), source.handler);
    }
    router
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/status", get(api::status))
        .route("/v1/evaluations", get(api::list_evaluations))
        .route("/v1/evaluations/{id}", get(api::get_evaluation))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/", get(pages::home))
        .route("/models/{name}", get(pages::model))
        .route("/evaluations/{id}", get(pages::evaluation))
        .route("/assets/status.css", get(pages::css))
        .route("/assets/status.js", get(pages::js))
        .merge(mutating)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route; see /openapi.json") })
        .layer(middleware::map_response(json_errors))
        .with_state(app)
}

/// axum answers some errors itself: its extractors' rejections (a query that does not parse,
/// a path segment that is not UTF-8 once decoded, a body over the limit) in plain text, and a
/// wrong method with an empty 405. Every error of this API is JSON `{"error": …}`, so those
/// are rewritten here, keeping their status and headers (a 405's `Allow`).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    // The status page's own errors are pages, for a person, and stay so.
    let is_own = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if is_own || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Rejection texts are one line; the limit only guards against a surprise.
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        format!(
            "{}; see /openapi.json",
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        text
    };
    let (json, body) = error(status, message).into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.extend(json.headers);
    Response::from_parts(parts, body)
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// Mutating routes need `Authorization: Bearer <server.api_token>` whenever a token is set
/// (it must be set when `server.listen` is not loopback; `run` refuses to start otherwise).
async fn require_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let live = app.live();
    let Some(token) = &live.loaded.config.server.api_token else {
        return next.run(req).await;
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        next.run(req).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "this route needs Authorization: Bearer <server.api_token>",
        )
    }
}
