//! Status page benchmark: a daemon state (on disk, as in production) holding one model with
//! N evaluations — metric, champion, latency and dataset gates with slices and a champion
//! interval, as the real gates record them — and the model page requested through the
//! daemon's own router, in process. Prints one JSON line: the page sizes served and the
//! server time of a model page (store read + render), p50/p99 over the requests.
//!
//!     cargo run --release --example status_page -- [EVALUATIONS] [REQUESTS]

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use stagegate::config::{self, Gate, GateKind, MetricGate};
use stagegate::daemon::{self, http};
use stagegate::evaluation::Evaluation;
use stagegate::gates::{GateResult, Judgement, Outcome};
use stagegate::verdict::Verdict;
use tower::ServiceExt;

const MODEL: &str = "fraud-model";

fn result(
    name: &str,
    kind: GateKind,
    outcome: Outcome,
    observed: Value,
    threshold: Value,
) -> GateResult {
    let gate = Gate {
        name: name.into(),
        enforce: true,
        retries: 0,
        kind,
    };
    let message = format!("{name}: {observed}");
    GateResult::new(
        &gate,
        Judgement::new(outcome, observed, threshold, message),
        12,
        1,
    )
}

fn metric() -> GateKind {
    GateKind::Metric(MetricGate {
        metric: "val_accuracy".into(),
        min: Some(0.85),
        max: None,
    })
}

/// The gate results of version `v`, shaped like the real gates' (the kind only names the type
/// on the page, so the metric gate's config stands in for the others).
fn gates(v: usize) -> Vec<GateResult> {
    let acc = 0.80 + (v % 17) as f64 * 0.01;
    let pass = |ok: bool| if ok { Outcome::Pass } else { Outcome::Fail };
    let mut latency = result(
        "latency",
        metric(),
        pass(!v.is_multiple_of(5)),
        json!({"p50_ms": 2.1, "p95_ms": 3.4, "p99_ms": 4.0 + (v % 7) as f64, "max_ms": 12.0,
               "requests": 200, "concurrency": 1, "errors": 0, "champion_p99_ms": 5.0}),
        json!({"p50_ms": null, "p95_ms": null, "p99_ms": 9.0, "max_ratio_to_champion": 1.5}),
    );
    latency.gate_type = "latency";
    let mut champion = result(
        "no-regression",
        metric(),
        Outcome::Pass,
        json!({"candidate": acc, "champion": 0.9, "champion_version": "1", "drop": 0.9 - acc, "drop_ratio": 0.01}),
        json!({"max_drop": 0.02, "max_drop_ratio": null, "greater_is_better": true}),
    );
    champion.gate_type = "champion";
    let mut dataset = result(
        "holdout",
        metric(),
        Outcome::Pass,
        json!({"rows": 1000, "metrics": {"accuracy": acc, "f1": acc - 0.02},
               "slices": {"eu": {"rows": 400, "judged": true, "accuracy": acc},
                          "us": {"rows": 500, "judged": true, "accuracy": acc - 0.03},
                          "apac": {"rows": 100, "judged": true, "accuracy": acc - 0.05}},
               "vs_champion": {"metric": "accuracy", "difference": 0.004, "low": -0.01, "high": 0.02,
                               "champion": "1", "candidate_value": acc, "champion_value": 0.9},
               "dataset": {"path": "/data/holdout.parquet", "sha256": "ab".repeat(32), "rows": 1000}}),
        json!({"metrics": {"accuracy": 0.85, "f1": 0.8},
               "slices": {"column": "region", "max_gap": {"accuracy": 0.1}, "min_rows": 50},
               "vs_champion": {"metric": "accuracy", "max_drop": 0.01}}),
    );
    dataset.gate_type = "dataset";
    vec![
        result(
            "accuracy",
            metric(),
            pass(acc >= 0.85),
            json!(acc),
            json!({"min": 0.85, "max": null}),
        ),
        champion,
        latency,
        dataset,
    ]
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (evaluations, requests) = (
        args.first().copied().unwrap_or(500),
        args.get(1).copied().unwrap_or(300),
    );
    let dir = tempfile::tempdir().expect("scratch directory");
    let path = dir.path().join("stagegate.toml");
    std::fs::write(
        &path,
        "[mlflow]\ntracking_uri = \"http://127.0.0.1:9\"\n[state]\npath = \"state.db\"\n\
         [[policies]]\nname = \"p\"\nmodels = [\"*\"]\n\
         candidate = { stage = \"Staging\" }\npromote = { stage = \"Production\" }\n\
         [[policies.gates]]\nname = \"accuracy\"\ntype = \"metric\"\nmetric = \"val_accuracy\"\nmin = 0.85\n\
         [[policies.gates]]\nname = \"no-regression\"\ntype = \"champion\"\nmetric = \"val_accuracy\"\nmax_drop = 0.02\n\
         [[policies.gates]]\nname = \"holdout\"\ntype = \"dataset\"\npath = \"holdout.parquet\"\nlabel = \"y\"\n\
         metrics = { accuracy = 0.85, f1 = 0.8 }\n",
    )
    .expect("config");
    let loaded = config::load(Some(&path)).expect("config loads");
    let listen = daemon::check_listen(&loaded).expect("listen");
    let app = daemon::prepare(loaded, listen).await.expect("daemon state");
    let mut last = 0;
    for i in 0..evaluations {
        let v = (i + 1).to_string();
        let id = app
            .store
            .begin_evaluation(MODEL, &v, "p", "d", "poll")
            .await
            .expect("store");
        let g = gates(i);
        let e = Evaluation {
            model: MODEL.into(),
            version: v.clone(),
            policy: "p".into(),
            policy_digest: "d".into(),
            verdict: Verdict::of(g.iter().map(|g| (g.enforced, g.outcome))),
            gates: g,
            evaluated_at: "2026-11-01T00:00:00Z".into(),
            duration_ms: 900,
            champion: Some("1".into()),
            fingerprint: "f".into(),
            inputs: Default::default(),
            datasets: vec![],
            serving: json!({"servers_started": 2, "startup_ms": 4100, "requests": 1200, "requests_ms": 800}),
        };
        let row = e.history().expect("gate results serialise");
        app.store.finish_evaluation(id, &row).await.expect("store");
        let action = if e.verdict == Verdict::Passed {
            "promoted"
        } else {
            "kept"
        };
        app.store
            .set_action(MODEL, &v, None, action)
            .await
            .expect("store");
        app.store
            .audit(MODEL, Some(&v), action, "policy p")
            .await
            .expect("store");
        last = id;
    }
    let router = http::router(app.clone());
    let get = |uri: String| {
        let router = router.clone();
        async move {
            let started = Instant::now();
            let resp = router
                .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
                .await
                .expect("answer");
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body");
            (started.elapsed().as_secs_f64() * 1000.0, body.len())
        }
    };
    let model_uri = format!("/models/{MODEL}");
    let mut sizes = serde_json::Map::new();
    for uri in [
        "/".to_string(),
        model_uri.clone(),
        format!("/evaluations/{last}"),
        "/assets/status.css".into(),
        "/assets/status.js".into(),
    ] {
        sizes.insert(uri.clone(), json!(get(uri).await.1));
    }
    for _ in 0..20 {
        get(model_uri.clone()).await; // warm-up
    }
    let mut ms = Vec::with_capacity(requests);
    for _ in 0..requests {
        ms.push(get(model_uri.clone()).await.0);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"evaluations": evaluations, "requests": requests, "bytes": sizes,
               "model_page_ms": {"p50": percentile(&ms, 0.5), "p99": percentile(&ms, 0.99), "max": ms[ms.len() - 1]}})
    );
}
