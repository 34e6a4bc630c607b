//! `/v1/analyses`: post-promotion analyses, and a person's way to end one early.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::api::{ListQuery, store_failure};
use super::error;
use crate::daemon::App;

pub async fn list(State(app): State<Arc<App>>, Query(q): Query<ListQuery>) -> Response {
    let limit = match q.limit() {
        Ok(l) => l,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match app.store.analyses(q.model.as_deref(), limit).await {
        Ok(rows) => Json(json!({"analyses": rows})).into_response(),
        Err(e) => store_failure(e),
    }
}

/// The id in the path, or a 400 saying it is not one.
fn parse_id(id: &str) -> Result<i64, String> {
    id.parse::<i64>()
        .map_err(|_| format!("analysis id {id:?} is not a number"))
}

pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match app.store.analysis(id).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no analysis {id}")),
        Err(e) => store_failure(e),
    }
}

/// What a person decides: the analysis passed or failed, and why.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndRequest {
    outcome: Ended,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Ended {
    Passed,
    Failed,
}

/// `POST /v1/analyses/{id} {"outcome": "passed"|"failed", "reason"?}`: end a running analysis
/// now. The outcome is set once (a round that finishes it at the same moment wins or loses
/// as a whole); the model's reconcile then writes the tag and, for `failed` under
/// `on_failure = "rollback"`, rolls back as an analysis that failed on its own would.
pub async fn end(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let req: EndRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"outcome\": \"passed\" or \"failed\", \"reason\": \"…\"}}: {e}"
                ),
            );
        }
    };
    let row = match app.store.analysis(id).await {
        Ok(Some(row)) => row,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no analysis {id}")),
        Err(e) => return store_failure(e),
    };
    let status = match req.outcome {
        Ended::Passed => "passed",
        Ended::Failed => "failed",
    };
    let reason = match req.reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => format!("ended by hand: {}", crate::tags::clip(r, 500)),
        _ => "ended by hand".to_string(),
    };
    match app.store.finish_analysis(id, status, &reason).await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::CONFLICT,
                format!("analysis {id} has already ended ({})", row.status),
            );
        }
        Err(e) => return store_failure(e),
    }
    // The model's reconcile settles it (audit row, notification, tag, rollback); the
    // background round queues it too, should this process die before the next line.
    app.enqueue(&row.model, "api").await;
    Json(json!({"id": id, "model": row.model, "version": row.version, "status": status, "reason": reason}))
        .into_response()
}
