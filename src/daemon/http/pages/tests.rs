//! Handler tests of the status page: the router in-process over a store filled with real
//! evaluation records; what a page shows is read from its HTML.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

use crate::config::{Gate, GateKind, MetricGate};
use crate::daemon::{App, test_app};
use crate::evaluation::Evaluation;
use crate::gates::{GateResult, Judgement, Outcome};
use crate::verdict::Verdict;

const CONFIG: &str = r#"
[mlflow]
tracking_uri = "http://user:hunter2@127.0.0.1:9"

[state]
path = "state.db"

[[policies]]
name = "p"
models = ["*"]
candidate = { alias = "challenger" }
promote = { alias = "champion" }

  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85
"#;

struct Page {
    status: StatusCode,
    ctype: String,
    csp: String,
    body: String,
}

async fn get(app: &Arc<App>, uri: &str) -> Page {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    let resp = crate::daemon::http::router(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (status, ctype, csp) = (
        resp.status(),
        header("content-type"),
        header("content-security-policy"),
    );
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Page {
        status,
        ctype,
        csp,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn accuracy(value: f64, message: &str, enforce: bool) -> GateResult {
    let gate = Gate {
        name: "accuracy".into(),
        enforce,
        retries: 0,
        kind: GateKind::Metric(MetricGate {
            metric: "val_accuracy".into(),
            min: Some(0.85),
            max: None,
        }),
    };
    let outcome = if value >= 0.85 {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    let j = Judgement::new(
        outcome,
        json!(value),
        json!({"min": 0.85, "max": null}),
        message,
    );
    GateResult::new(&gate, j, 3, 1)
}

/// Record a finished evaluation of `model` v`version`; its id.
async fn record(
    app: &App,
    model: &str,
    version: &str,
    gates: Vec<GateResult>,
    action: Option<&str>,
) -> i64 {
    let verdict = Verdict::of(gates.iter().map(|g| (g.enforced, g.outcome)));
    let id = app
        .store
        .begin_evaluation(model, version, "p", "d", "poll")
        .await
        .unwrap();
    let e = Evaluation::for_test(model, version, verdict, gates);
    app.store
        .finish_evaluation(id, &e.history().unwrap())
        .await
        .unwrap();
    if let Some(a) = action {
        app.store
            .set_action(model, version, Some(verdict.as_str()), a)
            .await
            .unwrap();
        app.store
            .audit(model, Some(version), a, "policy p")
            .await
            .unwrap();
    }
    id
}

#[tokio::test]
async fn unknown_models_and_evaluations_are_html_404s() {
    let (app, _dir) = test_app(CONFIG).await;
    for uri in [
        "/models/nobody",
        "/evaluations/42",
        "/evaluations/abc",
        "/evaluations/-1",
    ] {
        let p = get(&app, uri).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(p.ctype.starts_with("text/html"), "{uri}: {}", p.ctype);
        assert!(p.body.contains("Not found"), "{uri}");
    }
    // A bad or repeated `before` is an HTML 400 like the rest of the route, never axum's
    // JSON refusal (schemathesis: `?before=null&before=null`).
    for uri in ["/models/x?before=soon", "/models/x?before=null&before=null"] {
        let p = get(&app, uri).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(p.ctype.starts_with("text/html"), "{uri}: {}", p.ctype);
    }
}

#[tokio::test]
async fn history_is_paged_by_id_fifty_rows_a_page() {
    let (app, _dir) = test_app(CONFIG).await;
    let mut ids: Vec<i64> = Vec::new();
    for v in 1..=60 {
        let id = record(
            &app,
            "fraud-a",
            &v.to_string(),
            vec![accuracy(0.9, "ok", true)],
            None,
        )
        .await;
        ids.push(id);
    }
    record(&app, "other", "1", vec![accuracy(0.9, "ok", true)], None).await;
    let rows = |body: &str| body.matches("<tr data-id=").count();

    let first = get(&app, "/models/fraud-a").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(rows(&first.body), 50);
    // The newest 50 (ids 60..11): the next page starts below the 50th.
    let next = format!("/models/fraud-a?before={}", ids[10]);
    assert!(
        first.body.contains(&format!(r#"href="{next}""#)),
        "older link"
    );
    assert!(!first.body.contains("← newest"));

    let second = get(&app, &next).await;
    assert_eq!(rows(&second.body), 10, "the 10 oldest, nothing of `other`");
    assert!(
        second
            .body
            .contains(&format!(r#"<tr data-id="{}""#, ids[0]))
    );
    assert!(!second.body.contains("older →"), "the last page");
    assert!(second.body.contains("← newest"));
    // The chart has one point per version, whatever the page.
    assert_eq!(second.body.matches("data-version=").count(), 60);
}

#[tokio::test]
async fn names_and_messages_are_text_never_markup() {
    let (app, _dir) = test_app(CONFIG).await;
    let evil = "<script>alert(1)</script>";
    let id = record(
        &app,
        evil,
        "1",
        vec![accuracy(
            0.5,
            "<img src=x onerror=alert(2)> & \"quoted\"",
            true,
        )],
        Some("archived"),
    )
    .await;
    let model_uri = "/models/%3Cscript%3Ealert%281%29%3C%2Fscript%3E";
    for uri in ["/", model_uri, &format!("/evaluations/{id}")] {
        let p = get(&app, uri).await;
        assert_eq!(p.status, StatusCode::OK, "{uri}: {}", p.body);
        assert!(
            p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{uri}"
        );
        assert!(!p.body.contains("<script>alert"), "{uri}");
        assert!(!p.body.contains("<img src=x"), "{uri}");
        assert!(p.csp.contains("default-src 'none'"), "{uri}: {}", p.csp);
        // The only script is the daemon's own.
        assert_eq!(p.body.matches("<script").count(), 1, "{uri}");
    }
    let home = get(&app, "/").await;
    assert!(
        home.body.contains(&format!(r#"href="{model_uri}""#)),
        "the model link is percent-encoded"
    );
}

#[tokio::test]
async fn the_evaluation_page_shows_gates_and_links_mlflow_without_credentials() {
    let (app, _dir) = test_app(CONFIG).await;
    let failed = accuracy(0.5, "val_accuracy=0.5 < min 0.85", true);
    let shadow = GateResult {
        name: "latency".into(),
        ..accuracy(0.5, "p99 80 ms > 50 ms", false)
    };
    let id = record(&app, "fraud-a", "7", vec![failed, shadow], Some("archived")).await;
    let p = get(&app, &format!("/evaluations/{id}")).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("✗ failed"));
    assert!(p.body.contains(r#"title="val_accuracy=0.5 &lt; min 0.85""#));
    assert!(p.body.contains("would block"), "a shadow gate that failed");
    assert!(
        p.body
            .contains("http://127.0.0.1:9/#/models/fraud-a/versions/7")
    );
    assert!(!p.body.contains("hunter2"), "credentials never shown");
    assert!(p.body.contains("No gate served the model."));
}

/// The home page charts each model's threshold gates across versions (the most recently
/// evaluated models), one point per version, against the threshold line.
#[tokio::test]
async fn the_home_page_charts_each_models_thresholds() {
    let (app, _dir) = test_app(CONFIG).await;
    for (model, version, value, action) in [
        ("fraud-a", "1", 0.9, "promoted"),
        ("fraud-a", "2", 0.7, "kept"),
        ("churn-b", "1", 0.88, "promoted"),
    ] {
        record(
            &app,
            model,
            version,
            vec![accuracy(value, "", true)],
            Some(action),
        )
        .await;
    }
    let p = get(&app, "/").await;
    assert_eq!(p.status, StatusCode::OK);
    let charts = &p.body[p
        .body
        .find(r#"id="thresholds""#)
        .expect("a thresholds section")..];
    let a = charts
        .find(r#"href="/models/fraud-a""#)
        .expect("fraud-a charted");
    let b = charts
        .find(r#"href="/models/churn-b""#)
        .expect("churn-b charted");
    // Newest first: churn-b was evaluated last.
    assert!(b < a);
    assert_eq!(
        charts[a..].matches(r#"data-version="#).count(),
        2,
        "fraud-a's two versions"
    );
    assert_eq!(charts[b..a].matches(r#"data-version="#).count(), 1);
    // Threshold lines carry the limit's name; the legend's key does not.
    assert_eq!(charts.matches("data-limit=").count(), 2, "a line per chart");
}

/// A shadow gate that passed is named as shadow in words, not by a dashed border alone; a
/// version whose gate recorded no value is charted as "n/a", not as a very low value.
#[tokio::test]
async fn shadow_passes_and_missing_values_are_said_in_words() {
    let (app, _dir) = test_app(CONFIG).await;
    let shadow_pass = GateResult {
        name: "latency".into(),
        ..accuracy(0.9, "p99 20 ms <= 50 ms", false)
    };
    record(
        &app,
        "fraud-a",
        "1",
        vec![accuracy(0.9, "ok", true), shadow_pass],
        Some("promoted"),
    )
    .await;
    let mut missing = accuracy(0.9, "no metric val_accuracy", true);
    missing.observed = serde_json::Value::Null;
    record(&app, "fraud-a", "2", vec![missing], Some("kept")).await;
    let p = get(&app, "/models/fraud-a").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("<em>shadow</em>"), "{}", p.body);
    assert!(p.body.contains("latency: pass (shadow)"));
    assert!(
        p.body.contains(">n/a</text>"),
        "the v2 point says it has no value"
    );
}

#[tokio::test]
async fn the_home_page_and_its_assets_are_served_from_the_binary() {
    let (app, _dir) = test_app(CONFIG).await;
    record(
        &app,
        "fraud-a",
        "1",
        vec![accuracy(0.9, "ok", true)],
        Some("promoted"),
    )
    .await;
    let home = get(&app, "/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains(r#"href="/models/fraud-a""#));
    assert!(home.body.contains("★ promoted") || home.body.contains(">promoted<"));
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !home.body.contains(attr),
            "nothing loaded from elsewhere: {attr}"
        );
    }
    let css = get(&app, super::CSS_PATH).await;
    assert!(css.ctype.starts_with("text/css"));
    let js = get(&app, super::JS_PATH).await;
    assert!(js.ctype.starts_with("text/javascript"));
    assert!(js.body.contains("/status"));
}

/// The start tag of the element with `id`.
fn start_tag<'a>(body: &'a str, id: &str) -> &'a str {
    let at = body
        .find(&format!(r#"id="{id}""#))
        .expect("element on the page");
    let open = body[..at].rfind('<').unwrap_or(0);
    let close = at + body[at..].find('>').unwrap_or(0);
    &body[open..=close]
}

/// A paused daemon says so in words; the page carries the stamp the script compares.
#[tokio::test]
async fn a_paused_daemon_shows_it_plainly() {
    let (app, _dir) = test_app(CONFIG).await;
    let p = get(&app, "/").await;
    assert!(
        start_tag(&p.body, "b-paused").contains("hidden"),
        "running: no banner"
    );
    assert!(
        p.body.contains(r#"data-stamp="|0|0""#),
        "no evaluations, audit rows or models seen yet"
    );
    app.set_paused(true).await.unwrap();
    let p = get(&app, "/").await;
    assert!(
        !start_tag(&p.body, "b-paused").contains("hidden"),
        "paused: the banner shows"
    );
    assert!(p.body.contains("Paused."));
    assert!(p.body.contains(">paused<"), "the header says paused");
}

/// With MLflow down the pages still answer, from the store, and say why MLflow is missing.
#[tokio::test]
async fn mlflow_down_is_shown_and_the_pages_still_answer() {
    let (app, _dir) = test_app(CONFIG).await;
    let id = record(
        &app,
        "fraud-a",
        "1",
        vec![accuracy(0.9, "ok", true)],
        Some("promoted"),
    )
    .await;
    app.health.record(Ok(()));
    let p = get(&app, "/").await;
    assert!(
        start_tag(&p.body, "b-mlflow").contains("hidden"),
        "up: no banner"
    );
    app.health
        .record(Err("MLflow unreachable on registered-models/get".into()));
    for uri in [
        "/".to_string(),
        "/models/fraud-a".into(),
        format!("/evaluations/{id}"),
    ] {
        let p = get(&app, &uri).await;
        assert_eq!(p.status, StatusCode::OK, "{uri}");
        assert!(
            !start_tag(&p.body, "b-mlflow").contains("hidden"),
            "{uri}: banner shown"
        );
        assert!(
            p.body
                .contains("MLflow unreachable on registered-models/get"),
            "{uri}"
        );
    }
}

/// The stamp, which `status.js` compares with one built from `/status`, moves with a new audit
/// row (a rollback noticed in the registry) and with a champion moved without an evaluation,
/// and `/status` carries the same parts.
#[tokio::test]
async fn the_stamp_follows_audit_rows_and_champion_moves() {
    use crate::config::Target;
    use crate::model_state::tests::{policy, state, version};
    let (app, _dir) = test_app(CONFIG).await;
    let stamp = |body: &str| {
        let at = body.find("data-stamp=\"").expect("stamp") + 12;
        body[at..at + body[at..].find('"').expect("end")].to_string()
    };
    let changes = |app: &Arc<App>| {
        let app = app.clone();
        async move {
            let s: serde_json::Value =
                serde_json::from_str(&get(&app, "/status").await.body).expect("json");
            s["changes"].clone()
        }
    };
    assert_eq!(stamp(&get(&app, "/").await.body), "|0|0");
    assert_eq!(changes(&app).await, json!({"audit": 0, "registry": 0}));

    app.store
        .audit_once("fraud-a", "2", "rollback", "t: rolled back to v1")
        .await
        .unwrap();
    let audit = app.store.last_audit_id().await.unwrap();
    assert_eq!(stamp(&get(&app, "/").await.body), format!("|{audit}|0"));

    let (p, names) = (
        policy(
            Target::Alias("challenger".into()),
            Target::Alias("champion".into()),
        ),
        crate::tags::TagNames::new("stagegate."),
    );
    app.seen.record(
        &state(vec![version(1, "None")], &[("champion", "1")]),
        &p,
        &names,
    );
    let first = app.seen.generation();
    app.seen.record(
        &state(vec![version(2, "None")], &[("champion", "2")]),
        &p,
        &names,
    );
    let moved = app.seen.generation();
    assert!(moved > first, "a champion moved by hand is a change");
    for uri in ["/", "/models/m", "/evaluations/1"] {
        let body = get(&app, uri).await.body;
        if uri != "/evaluations/1" {
            assert_eq!(stamp(&body), format!("|{audit}|{moved}"), "{uri}");
        }
    }
    assert_eq!(
        changes(&app).await,
        json!({"audit": audit, "registry": moved})
    );
    let model = get(&app, "/models/fraud-a").await.body;
    assert!(model.contains("rollback") && model.contains("t: rolled back to v1"));
}
