//! The HTTP surface (axum): webhooks, the API, health, metrics, the OpenAPI document and the
//! status page. Handlers read state and enqueue model names; they never write to MLflow.
//! Every API error is a JSON body with the right 4xx/5xx status; the status page's routes
//! (`pages`) answer HTML.

mod analyses;
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
use axum::routing::{MethodRouter, get, post};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::daemon::App;

pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    for (path, handlers) in routes(&app) {
        router = router.route(&path, handlers);
    }
    router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route; see /openapi.json") })
        .layer(middleware::map_response(json_errors))
        .with_state(app)
}

/// Every route the daemon serves, with its handlers: the router is built from this list and
/// nothing else, so a test can hold the OpenAPI document (`openapi.rs`) to it. Mutating
/// handlers sit behind the API-token check.
fn routes(app: &Arc<App>) -> Vec<(String, MethodRouter<Arc<App>>)> {
    let token = || middleware::from_fn_with_state(app.clone(), require_token);
    let mut routes: Vec<(String, MethodRouter<Arc<App>>)> = webhooks::sources()
        .into_iter()
        .map(|source| (format!("/webhooks/{}", source.name), source.handler))
        .collect();
    let fixed = [
        ("/healthz", get(api::healthz)),
        ("/readyz", get(api::readyz)),
        ("/status", get(api::status)),
        (
            "/v1/evaluations",
            get(api::list_evaluations).merge(post(api::request_evaluation).route_layer(token())),
        ),
        ("/v1/evaluations/{id}", get(api::get_evaluation)),
        ("/v1/analyses", get(analyses::list)),
        (
            "/v1/analyses/{id}",
            get(analyses::get).merge(post(analyses::end).route_layer(token())),
        ),
        ("/v1/pause", post(api::pause).route_layer(token())),
        ("/v1/resume", post(api::resume).route_layer(token())),
        ("/metrics", get(api::metrics)),
        ("/openapi.json", get(openapi::document)),
        ("/", get(pages::home)),
        ("/models/{name}", get(pages::model)),
        ("/evaluations/{id}", get(pages::evaluation)),
        ("/assets/status.css", get(pages::css)),
        ("/assets/status.js", get(pages::js)),
    ];
    routes.extend(fixed.into_iter().map(|(path, h)| (path.to_string(), h)));
    routes
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
