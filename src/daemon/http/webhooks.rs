//! `POST /webhooks/{source}`: one receiver for every webhook source. Limit the size, let the
//! source verify the signature over the raw bytes and parse, de-duplicate by the delivery's
//! identity within its source, route, enqueue, count, and answer 2xx at once. The work happens
//! in the scheduler; nothing here writes to MLflow.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::json;

use super::error;
use crate::config::{Config, WebhooksConfig};
use crate::daemon::App;
use crate::webhook::{self, Context, Delivery, ForEach, Rejection, Route, Source};

/// Bodies above this are refused with 413 before they are read whole.
pub const MAX_BODY: usize = 1024 * 1024;

/// MLflow OSS sends no event when a version moves to Staging, so a new version is looked at
/// again on this schedule after its creation event (the poll remains the guarantee). Databricks
/// does announce transitions; its creation events keep the same schedule, which costs little.
pub const RECHECKS: [Duration; 6] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
];

/// A webhook source as the daemon mounts it: `POST /webhooks/{name}`.
pub struct Mounted {
    pub name: &'static str,
    pub handler: MethodRouter<Arc<App>>,
}

/// Every webhook source of [`webhook::for_each`], mounted.
pub fn sources() -> Vec<Mounted> {
    struct Mount(Vec<Mounted>);
    impl ForEach for Mount {
        fn source<S: Source>(&mut self) {
            self.0.push(Mounted {
                name: S::NAME,
                handler: post(receive::<S>),
            });
        }
    }
    let mut mount = Mount(Vec::new());
    webhook::for_each(&mut mount);
    mount.0
}

/// The `/status` entry of every source: enabled, and the number of secrets (never the
/// secrets).
pub fn status(w: &WebhooksConfig) -> serde_json::Value {
    struct Status<'a>(
        &'a WebhooksConfig,
        serde_json::Map<String, serde_json::Value>,
    );
    impl ForEach for Status<'_> {
        fn source<S: Source>(&mut self) {
            let n = self.0.secrets_of(S::SECRETS_KEY).len();
            self.1
                .insert(S::NAME.into(), json!({"enabled": n > 0, "secrets": n}));
        }
    }
    let mut status = Status(w, serde_json::Map::new());
    webhook::for_each(&mut status);
    serde_json::Value::Object(status.1)
}

/// The receiver of source `S` (`POST /webhooks/{S::NAME}`).
pub async fn receive<S: Source>(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle::<S>(&app, &headers, body).await {
        Ok((outcome, resp)) => {
            app.metrics.delivery(S::NAME, outcome);
            resp
        }
        Err(rej) => {
            app.metrics.delivery(S::NAME, rej.outcome());
            let status = StatusCode::from_u16(rej.status()).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, rej.to_string())
        }
    }
}

async fn handle<S: Source>(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'static str, Response), Rejection> {
    let raw = read_body(headers, body).await?;
    let live = app.live();
    let cfg = &live.loaded.config;
    let delivery = accept::<S>(cfg, headers, &raw)?;
    Ok(take::<S>(app, cfg, delivery).await)
}

/// The body, refused past [`MAX_BODY`] before it is read whole when its length says so.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(Rejection::TooLarge(MAX_BODY));
    }
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Rejection::TooLarge(MAX_BODY))
}

/// Let the source verify and parse the delivery, with its secrets from `cfg`.
fn accept<S: Source>(cfg: &Config, headers: &HeaderMap, raw: &[u8]) -> Result<Delivery, Rejection> {
    // Header values that are not text are as good as absent.
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cx = Context {
        secrets: cfg.webhooks.secrets_of(S::SECRETS_KEY),
        tolerance: cfg.webhooks.tolerance,
        tag_prefix: &cfg.mlflow.tag_prefix,
        now_unix,
    };
    S::accept(&header, raw, &cx)
}

/// Record the delivery (a repeat is answered as such), then queue its model if a policy
/// wants it: the metrics outcome and the answer.
async fn take<S: Source>(app: &App, cfg: &Config, delivery: Delivery) -> (&'static str, Response) {
    let Delivery {
        identity,
        event,
        model,
        route,
    } = delivery;
    match app
        .store
        .record_delivery(S::NAME, &identity, &event, &model)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            let body = json!({"status": "duplicate", "delivery_id": identity});
            return ("duplicate", reply(StatusCode::OK, body));
        }
        // Without the shared store this replica can neither de-duplicate nor take a lease to
        // act: 503 makes the sender deliver again, to this replica or another.
        Err(e) => {
            tracing::warn!(error = %e, source = S::NAME, "could not record the delivery; answering 503");
            let body = json!({"status": "unavailable", "error": e.to_string()});
            return ("unavailable", reply(StatusCode::SERVICE_UNAVAILABLE, body));
        }
    }
    let ignored = match route {
        Route::Ignore(why) => Some(why),
        _ if cfg.policy_for(&model).is_none() => Some("no policy matches the model"),
        _ => None,
    };
    if let Some(why) = ignored {
        let body = json!({"status": "ignored", "reason": why, "event": event});
        return ("ignored", reply(StatusCode::OK, body));
    }
    match route {
        Route::Created { .. } => {
            app.enqueue(&model, "webhook").await;
            app.scheduler.recheck(&model, &RECHECKS, "recheck");
        }
        Route::Reconcile => app.enqueue(&model, "webhook").await,
        Route::Ignore(_) => {}
    }
    tracing::debug!(
        model,
        event,
        source = S::NAME,
        delivery = identity,
        "webhook queued"
    );
    let body = json!({"status": "queued", "model": model, "event": event});
    ("queued", reply(StatusCode::ACCEPTED, body))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}
