//! `POST /webhooks/mlflow`: verify the signature over the raw bytes, then parse, de-duplicate
//! by delivery id, route, enqueue, and answer 2xx at once. The work happens in the scheduler.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error;
use crate::daemon::App;
use crate::webhook::{self, Headers, Rejection, Route};

/// Bodies above this are refused with 413 before they are read whole.
pub const MAX_BODY: usize = 1024 * 1024;

/// MLflow sends no event when a version moves to Staging, so a new version is looked at again
/// on this schedule after `model_version.created` (the poll remains the guarantee).
pub const RECHECKS: [Duration; 6] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
];

pub async fn mlflow(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match receive(&app, &headers, body).await {
        Ok((outcome, resp)) => {
            app.metrics.delivery(outcome);
            resp
        }
        Err(rej) => {
            let outcome = match &rej {
                Rejection::BadSignature
                | Rejection::MissingHeader(_)
                | Rejection::MalformedHeader(_)
                | Rejection::NoSecrets => "unauthorized",
                Rejection::Stale(_) => "stale",
                Rejection::TooLarge(_) => "too_large",
                Rejection::Malformed(_) => "malformed",
            };
            app.metrics.delivery(outcome);
            let status = StatusCode::from_u16(rej.status()).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, rej.to_string())
        }
    }
}

async fn receive(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'static str, Response), Rejection> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(Rejection::TooLarge(MAX_BODY));
    }
    let raw = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Rejection::TooLarge(MAX_BODY))?;
    let live = app.live();
    let cfg = &live.loaded.config;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Headers {
        delivery_id: header(webhook::DELIVERY_ID),
        timestamp: header(webhook::TIMESTAMP),
        signature: header(webhook::SIGNATURE),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = webhook::verify(
        &signed,
        &raw,
        &cfg.webhooks.secrets,
        cfg.webhooks.tolerance,
        now,
    )?;
    let event = webhook::parse(&raw)?;
    let (d, kind, model) = (id.to_string(), event.kind.clone(), event.model.clone());
    match app
        .store
        .call(move |s| s.record_delivery(&d, &kind, &model))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Ok((
                "duplicate",
                reply(
                    StatusCode::OK,
                    json!({"status": "duplicate", "delivery_id": id}),
                ),
            ));
        }
        // Better to act twice (reconciles are idempotent) than to drop an event.
        Err(e) => tracing::warn!(error = %e, "could not record the delivery id"),
    }
    let route = webhook::route(&event, &cfg.mlflow.tag_prefix);
    if let Route::Ignore(why) = route {
        return Ok((
            "ignored",
            reply(StatusCode::OK, json!({"status": "ignored", "reason": why})),
        ));
    }
    if cfg.policy_for(&event.model).is_none() {
        return Ok((
            "ignored",
            reply(
                StatusCode::OK,
                json!({"status": "ignored", "reason": "no policy matches the model"}),
            ),
        ));
    }
    let model = event.model.as_str();
    match route {
        Route::Created { .. } => {
            app.enqueue(model, "webhook").await;
            app.scheduler.recheck(model, &RECHECKS, "recheck");
        }
        Route::Reconcile => app.enqueue(model, "webhook").await,
        Route::Ignore(_) => {}
    }
    tracing::debug!(model, event = %event.kind, delivery = id, "webhook queued");
    Ok((
        "queued",
        reply(
            StatusCode::ACCEPTED,
            json!({"status": "queued", "model": model, "event": event.kind}),
        ),
    ))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}
