//! The status page (issue 9): `GET /`, `/models/{name}`, `/evaluations/{id}` and their two
//! assets. Pages are read-only and built from the store and the daemon's live state (health,
//! poll, queue, what the last read saw); none asks MLflow anything, so they answer the same
//! whether MLflow is up or down. Templates are maud (every value is escaped); charts are SVG
//! drawn here; `status.js` only refreshes what is shown. Each answer carries a strict
//! Content-Security-Policy, so the browser loads nothing from anywhere but the daemon.

mod analyses;
mod chart;
mod evaluation;
mod home;
mod layout;
mod model;
mod series;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::config::GateType;
use crate::daemon::App;
use crate::store::{EvaluationRow, Store, StoreError};
use crate::webhook::{Mlflow, Source};
use layout::Header;

pub const CSS_PATH: &str = concat!("/assets/status.css?v=", env!("CARGO_PKG_VERSION"));
pub const JS_PATH: &str = concat!("/assets/status.js?v=", env!("CARGO_PKG_VERSION"));
const CSS: &str = include_str!("assets/status.css");
const JS: &str = include_str!("assets/status.js");

/// Rows of history on one model page.
pub const HISTORY_PAGE: usize = 50;
/// Versions a model page charts (the newest).
const CHART_VERSIONS: usize = 200;
/// The home page charts each threshold gate of the most recently evaluated models, with fewer
/// versions than a model's own page, so that it stays light.
const HOME_CHART_MODELS: usize = 10;
const HOME_CHART_VERSIONS: usize = 30;
const AUDIT_ROWS: usize = 100;
/// As many as `/status` lists in `recent`: the freshness stamp is computed over the same rows.
///
/// STAMP: each page is read in several store calls, and another writer may land between
/// them. Every handler reads the stamp's parts (the seen generation, then the recent rows and
/// the newest audit id) before the page's own, so the stamp a page carries is never newer
/// than its content: a change that lands in between makes the next `/status` poll see a
/// newer stamp and reload, instead of being vouched for and missed.
const RECENT: usize = 20;
/// Analyses on the home page; a model's page shows its last [`MODEL_ANALYSES`].
const RECENT_ANALYSES: usize = 10;
const MODEL_ANALYSES: usize = 20;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub async fn home(State(app): State<Arc<App>>) -> Response {
    let started = Instant::now();
    let (generation, seen) = app.seen.all();
    let s = &app.store;
    let data: Result<_, StoreError> = async {
        // The freshness stamp's rows first: a change landing during these reads then
        // leaves the stamp older than the page, and the next poll reloads it (see STAMP).
        let fresh = fresh(s, generation).await?;
        let latest = s.latest_per_model().await?;
        let mut newest: Vec<(i64, String)> =
            latest.iter().map(|r| (r.id, r.model.clone())).collect();
        newest.sort_unstable_by_key(|n| std::cmp::Reverse(n.0));
        let mut charted = Vec::new();
        for (_, m) in newest.into_iter().take(HOME_CHART_MODELS) {
            let rows = s.latest_per_version(&m, HOME_CHART_VERSIONS).await?;
            charted.push((m, rows));
        }
        let home = home::Home {
            models: s.models().await?,
            latest: latest.into_iter().map(|r| (r.model.clone(), r)).collect(),
            seen,
            recent: fresh.recent.clone(),
            totals: s.totals().await?,
            charts: Vec::new(),
            chart_versions: HOME_CHART_VERSIONS,
            analyses: s.analyses(None, RECENT_ANALYSES).await?,
        };
        Ok((home, charted, fresh))
    }
    .await;
    match data {
        Ok((mut h, charted, fresh)) => {
            let live = app.live();
            h.charts = charted
                .into_iter()
                .map(|(m, rows)| {
                    let names = charted_gates(live.loaded.config.policy_for(&m), &rows);
                    let series = series_of(&names, &rows);
                    (m, series)
                })
                .filter(|(_, series)| !series.is_empty())
                .collect();
            let header = header(&app, &fresh);
            html_page(started, StatusCode::OK, "status", &header, home::render(&h))
        }
        Err(e) => store_failed(e),
    }
}

#[derive(Deserialize)]
pub struct ModelQuery {
    before: Option<String>,
}

pub async fn model(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    q: Result<Query<ModelQuery>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    // axum's own refusal is JSON; this route answers HTML, whatever the query (schemathesis
    // found `?before=null&before=null`).
    let Ok(Query(q)) = q else {
        return small_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "?before= takes one evaluation id",
        );
    };
    let before = match q.before.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return small_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "?before= takes an evaluation id",
            );
        }
    };
    let live = app.live();
    let policy = live.loaded.config.policy_for(&name);
    let (generation, glance) = app.seen.get(&name);
    let (m, s) = (&name, &app.store);
    let data: Result<_, StoreError> = async {
        let fresh = fresh(s, generation).await?; // first: see STAMP
        // One row past the page says whether there is an older page.
        let mut history = s
            .evaluations_before(Some(m), before, HISTORY_PAGE + 1)
            .await?;
        let more = history.len() > HISTORY_PAGE;
        history.truncate(HISTORY_PAGE);
        Ok((
            history,
            more,
            s.evaluation_count(m).await?,
            s.latest_per_version(m, CHART_VERSIONS).await?,
            s.audit_log(Some(m), AUDIT_ROWS).await?,
            s.analyses(Some(m), MODEL_ANALYSES).await?,
            fresh,
        ))
    }
    .await;
    let (history, more, total, per_version, audit, analyses, fresh) = match data {
        Ok(d) => d,
        Err(e) => return store_failed(e),
    };
    if total == 0 && glance.is_none() && audit.is_empty() {
        return not_found(
            StatusCode::NOT_FOUND,
            &format!("stagegate has not seen a model named {name:?}."),
        );
    }
    let names = charted_gates(policy, &per_version);
    let page = model::ModelPage {
        series: series_of(&names, &per_version),
        charted_at_most: CHART_VERSIONS,
        mlflow_link: model::mlflow_link(&live.engine.client.shown_uri(), &name, None),
        policy: policy.map(|p| p.name.clone()),
        name,
        glance,
        history,
        total,
        paged: before.is_some(),
        more,
        audit,
        analyses,
        analysis: policy.and_then(|p| p.analysis.clone()),
    };
    let header = header(&app, &fresh);
    html_page(
        started,
        StatusCode::OK,
        &page.name,
        &header,
        model::render(&page),
    )
}

/// The gates charted for a model, as (name, type): its policy's now, else those of its
/// newest evaluation (a model no policy matches any more; a type this build does not know is
/// left out).
fn charted_gates(
    policy: Option<&crate::config::Policy>,
    rows: &[EvaluationRow],
) -> Vec<(String, GateType)> {
    match policy {
        Some(p) => p
            .gates
            .iter()
            .map(|g| (g.name.clone(), g.kind.gate_type()))
            .collect(),
        None => rows
            .last()
            .and_then(|r| r.gates.as_array())
            .into_iter()
            .flatten()
            .filter_map(|g| Some((str_of(&g["name"]), GateType::parse(g["type"].as_str()?)?)))
            .collect(),
    }
}

fn series_of(names: &[(String, GateType)], rows: &[EvaluationRow]) -> Vec<series::Series> {
    let refs: Vec<series::GateRef> = names
        .iter()
        .map(|(name, kind)| series::GateRef { name, kind: *kind })
        .collect();
    series::all(&refs, rows)
}

fn str_of(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

pub async fn evaluation(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let started = Instant::now();
    let Ok(id) = id.parse::<i64>() else {
        return not_found(StatusCode::NOT_FOUND, &format!("no evaluation {id:?}."));
    };
    let generation = app.seen.generation();
    let s = &app.store;
    let data: Result<_, StoreError> = async {
        let fresh = fresh(s, generation).await?; // first: see STAMP
        Ok((s.evaluation(id).await?, fresh))
    }
    .await;
    let (row, fresh) = match data {
        Ok((Some(row), fresh)) => (row, fresh),
        Ok((None, _)) => return not_found(StatusCode::NOT_FOUND, &format!("no evaluation {id}.")),
        Err(e) => return store_failed(e),
    };
    let uri = app.live().engine.client.shown_uri();
    let page = evaluation::EvaluationPage {
        mlflow_link: model::mlflow_link(&uri, &row.model, Some(&row.version)),
        row,
    };
    let title = format!("{} v{}", page.row.model, page.row.version);
    let header = header(&app, &fresh);
    html_page(
        started,
        StatusCode::OK,
        &title,
        &header,
        evaluation::render(&page),
    )
}

/// The stamp's parts from the store, `generation` being the seen generation read just before.
async fn fresh(s: &Store, generation: u64) -> Result<layout::Fresh, StoreError> {
    Ok(layout::Fresh {
        recent: s.evaluations(None, RECENT).await?,
        audit: s.last_audit_id().await?,
        seen: generation,
        paused: s.paused().await?,
    })
}

fn header(app: &App, fresh: &layout::Fresh) -> Header {
    let live = app.live();
    let cfg = &live.loaded.config;
    let poll = app.poll.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let health = app.health.snapshot();
    Header {
        uptime_s: app.started.elapsed().as_secs(),
        paused: fresh.paused,
        reachable: health.reachable,
        mlflow_error: health.last_error,
        mlflow_uri: live.engine.client.shown_uri(),
        poll_last: poll.last_started,
        poll_next: poll.next,
        webhooks: !cfg.webhooks.secrets_of(Mlflow::SECRETS_KEY).is_empty(),
        depth: app.scheduler.depth(),
        in_flight: app.scheduler.in_flight(),
        delayed: app.scheduler.delayed(),
        stamp: layout::stamp(fresh),
    }
}

/// A page with the server's render time (`Server-Timing`, which the benchmark reads).
fn html_page(
    started: Instant,
    status: StatusCode,
    title: &str,
    h: &Header,
    main: Markup,
) -> Response {
    let body = layout::page(title, h, main).into_string();
    let took = format!("render;dur={:.3}", started.elapsed().as_secs_f64() * 1000.0);
    let mut resp = respond(status, body);
    if let Ok(v) = HeaderValue::from_str(&took) {
        resp.headers_mut().insert("server-timing", v);
    }
    resp
}

/// HTML with its security headers; never cached (it is live).
fn respond(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A small page of its own for what does not exist (no header: nothing to keep live).
fn not_found(status: StatusCode, what: &str) -> Response {
    small_page(status, "Not found", what)
}

fn small_page(status: StatusCode, heading: &str, what: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (heading) " · stagegate" } link rel="stylesheet" href=(CSS_PATH); link rel="icon" href="data:,"; }
            body { main { h1 { (heading) } p { (what) } p { a href="/" { "← status" } } } }
        }
    };
    respond(status, body.into_string())
}

fn store_failed(e: StoreError) -> Response {
    tracing::warn!(error = %e, "status page: the store could not be read");
    small_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The store could not be read",
        &e.to_string(),
    )
}
