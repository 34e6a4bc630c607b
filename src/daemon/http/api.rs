//! Status, history, control and metrics routes.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error;
use crate::daemon::App;
use crate::mlflow::MlflowError;
use crate::webhook::{Mlflow, Source};

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready = configuration loaded, MLflow answering, and the state store answering (without it
/// a replica can take no lease, so it acts on nothing).
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    let r = app.health.snapshot();
    if let Some(e) = app.cluster.store_error() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": format!("state store: {e}")})),
        )
            .into_response();
    }
    if r.reachable {
        Json(json!({"status": "ready"})).into_response()
    } else {
        let why = r
            .last_error
            .unwrap_or_else(|| "MLflow not reached yet".into());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": why})),
        )
            .into_response()
    }
}

/// A store that cannot answer: 503 when it may come back (MLflow-style clients retry), else 500.
pub(super) fn store_failure(e: crate::store::StoreError) -> Response {
    let code = if e.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error(code, e.to_string())
}

/// The scoring host's processes and models, read from `/proc` off the async threads.
async fn host_snapshot(app: &App) -> Option<crate::serving::host::Snapshot> {
    let host = app.live().engine.host()?.clone();
    tokio::task::spawn_blocking(move || host.snapshot())
        .await
        .ok()
}

pub async fn status(State(app): State<Arc<App>>) -> Response {
    let host = host_snapshot(&app).await;
    let live = app.live();
    let cfg = &live.loaded.config;
    // The flat `enabled` and `secrets` are the MLflow source's; `sources` has every one.
    let mlflow_secrets = cfg.webhooks.secrets_of(Mlflow::SECRETS_KEY);
    let poll = app.poll.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let generation = app.seen.generation();
    // The cluster's view: every replica reads the same store.
    let store = &app.store;
    let (totals, recent, audit, paused, replicas) = tokio::join!(
        store.totals(),
        store.evaluations(None, 20),
        store.last_audit_id(),
        store.paused(),
        store.replicas(app.cluster.heartbeat_window()),
    );
    let store_error = [
        totals.as_ref().err(),
        recent.as_ref().err(),
        paused.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(|e| e.to_string());
    let mode = match paused {
        Ok(true) => "paused",
        Ok(false) => "running",
        Err(_) => "unknown",
    };
    let policies: Vec<_> = cfg
        .policies
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "models": p.models, "mode": p.mode, "digest": p.digest(),
                "candidate": p.candidate().to_string(), "promote": p.promote.target().to_string(),
                "gates": p.gates.iter().map(|g| json!({"name": g.name, "type": g.kind.type_name(), "enforce": g.enforce})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": app.started.elapsed().as_secs(),
        "mode": mode,
        "replica": {"id": app.cluster.replica(), "lease": humantime::format_duration(app.cluster.lease()).to_string()},
        "store": {"backend": store.describe(), "reachable": store_error.is_none(), "last_error": store_error},
        "replicas": replicas.unwrap_or_default(),
        "config": live.loaded.path.display().to_string(),
        "mlflow": {"tracking_uri": live.engine.client.shown_uri(), "reachable": app.health.snapshot().reachable, "last_error": app.health.snapshot().last_error},
        "poll": {"schedule": cfg.poll.schedule, "here": poll.here, "last_started": poll.last_started, "last_duration_ms": poll.last_duration_ms,
                 "last_models": poll.last_models, "last_enqueued": poll.last_enqueued, "last_waiting": poll.last_waiting,
                 "completed": poll.completed, "last_error": poll.last_error, "next": poll.next},
        "queue": {"depth": app.scheduler.depth(), "in_flight": app.scheduler.in_flight(), "delayed": app.scheduler.delayed(), "workers": cfg.workers.count},
        "serving": {"mode": cfg.serving.mode, "host": host},
        // `enabled` and `secrets` are the MLflow source's (as before sources existed).
        "webhooks": {"enabled": !mlflow_secrets.is_empty(), "secrets": mlflow_secrets.len(),
                     "sources": super::webhooks::status(&cfg.webhooks)},
        "totals": totals.unwrap_or_default(),
        "policies": policies,
        "recent": recent.unwrap_or_default(),
        "changes": {"audit": audit.unwrap_or_default(), "registry": generation},
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub model: Option<String>,
    limit: Option<u64>,
}

impl ListQuery {
    /// The page size asked for, refused rather than clamped: the documented range is the
    /// contract, and a client asking for 5000 rows should learn it gets at most 1000, not
    /// silently fewer.
    pub fn limit(&self) -> Result<usize, String> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {limit}"
            ));
        }
        Ok(limit as usize)
    }
}

/// Most rows one page of history returns (and the default page size).
pub const MAX_LIMIT: u64 = 1000;
const DEFAULT_LIMIT: u64 = 50;

pub async fn list_evaluations(State(app): State<Arc<App>>, Query(q): Query<ListQuery>) -> Response {
    let limit = match q.limit() {
        Ok(l) => l,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match app.store.evaluations(q.model.as_deref(), limit).await {
        Ok(rows) => Json(json!({"evaluations": rows})).into_response(),
        Err(e) => store_failure(e),
    }
}

pub async fn get_evaluation(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("evaluation id {id:?} is not a number"),
        );
    };
    match app.store.evaluation(id).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no evaluation {id}")),
        Err(e) => store_failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluationRequest {
    model: String,
    version: Option<String>,
}

/// MLflow numbers a model's versions 1, 2, 3…: a version that is not a decimal number is the
/// client's mistake (400), and one that cannot exist (0, or beyond the 32-bit integer column
/// of MLflow's SQL stores) is unknown (404) without asking MLflow, which would answer the
/// first with a 400 of its own and the second with a database error. `Ok(Some)` is the
/// canonical spelling ("007" is version "7"), so a request matches the version MLflow reports.
pub(super) fn canonical_version(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "version {v:?} is not a version number such as \"3\""
        ));
    }
    let digits = v.trim_start_matches('0');
    Ok(match digits.parse::<i32>() {
        Ok(n) if n >= 1 => Some(n.to_string()),
        _ => None,
    })
}

/// The status for an MLflow failure while checking a request. MLflow's 404 and 400 (an
/// unknown or invalid name) are the client's; an unreachable or overloaded MLflow is "try
/// again later"; anything else MLflow answered is a bad gateway, not a fault of the request.
pub(super) fn mlflow_failure(e: &MlflowError) -> StatusCode {
    if e.is_not_found() {
        StatusCode::NOT_FOUND
    } else if e.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if matches!(e, MlflowError::Api { status: 400, .. }) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// `POST /v1/evaluations {"model", "version"?}`: queue a (re-)evaluation.
pub async fn request_evaluation(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let mut req: EvaluationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"model\": \"…\", \"version\": \"…\"}}: {e}"),
            );
        }
    };
    if req.model.is_empty() {
        return error(StatusCode::BAD_REQUEST, "model must not be empty");
    }
    if let Some(v) = &req.version {
        match canonical_version(v) {
            Ok(Some(canonical)) => req.version = Some(canonical),
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("model {:?} has no version {v}", req.model),
                );
            }
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        }
    }
    let live = app.live();
    if live.loaded.config.policy_for(&req.model).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no policy matches model {:?}", req.model),
        );
    }
    let client = &live.engine.client;
    let found = match &req.version {
        Some(v) => client.model_version(&req.model, v).await.map(|_| ()),
        None => client.registered_model(&req.model).await.map(|_| ()),
    };
    match found {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {
            let what = match &req.version {
                Some(v) => format!("model {:?} has no version {v}", req.model),
                None => format!("model {:?} does not exist", req.model),
            };
            return error(StatusCode::NOT_FOUND, what);
        }
        Err(e) => return error(mlflow_failure(&e), e.to_string()),
    }
    if let Some(v) = &req.version
        && let Err(e) = app.store.request_evaluation(&req.model, v).await
    {
        return store_failure(e);
    }
    app.enqueue(&req.model, "api").await;
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "queued", "model": req.model, "version": req.version})),
    )
        .into_response()
}

/// Pause acting on every replica: the mode lives in the shared store.
pub async fn pause(State(app): State<Arc<App>>) -> Response {
    if let Err(e) = app.set_paused(true).await {
        return store_failure(e);
    }
    Json(json!({"paused": true})).into_response()
}

pub async fn resume(State(app): State<Arc<App>>) -> Response {
    if let Err(e) = app.set_paused(false).await {
        return store_failure(e);
    }
    // Work held back while paused is picked up now (by this replica), not at the next poll:
    // candidates, analyses that waited to measure, and failed ones that waited to roll back.
    let analyses = app.store.analyses(None, 100).await.unwrap_or_default();
    for a in analyses
        .iter()
        .filter(|a| matches!(a.status.as_str(), "running" | "failed"))
    {
        app.enqueue(&a.model, "resume").await;
    }
    let recent = app.store.evaluations(None, 1000).await.unwrap_or_default();
    for row in recent {
        if row
            .action
            .as_deref()
            .is_some_and(|a| a.starts_with("skipped: paused"))
        {
            app.enqueue(&row.model, "resume").await;
        }
    }
    Json(json!({"paused": false})).into_response()
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.host(host_snapshot(&app).await.as_ref());
    app.metrics.queue_depth.set(app.scheduler.depth() as i64);
    app.metrics.in_flight.set(app.scheduler.in_flight() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}
