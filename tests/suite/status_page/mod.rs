//! The status page in a real headless Chromium (Debian's, driven over the DevTools protocol
//! with chromiumoxide) against a running daemon whose models were really trained, registered
//! and judged: passing, failing, shadow ("would block") and inconclusive results. Asserts the
//! charts (one point per version, a threshold line), a failed chip's message, a new
//! evaluation arriving without a reload, no request beyond the daemon, no script error, and
//! a model named with HTML metacharacters shown as text, and a rollback made with the CLI
//! reaching the open page. Saves screenshots at desktop and
//! phone widths (`STAGEGATE_SCREENSHOTS=docs` also writes the desktop ones to `docs/`).

mod browser;
use crate::common;

use std::time::Duration;

use browser::Browser;
use common::daemon::Daemon;
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);

/// The threshold gate both policies share.
const ACCURACY: &str = r#"
  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85
"#;

fn body(prefix: &str, holdout: &str) -> String {
    format!(
        r#"
[poll]
schedule = "*/1 * * * * *"

[workers]
count = 4

{serving}

[[policies]]
name = "compared"
models = ["{prefix}-web*"]
{STAGE_TARGETS}
{ACCURACY}
  [[policies.gates]]
  name = "vs-champion"
  type = "dataset"
  path = "{holdout}"
  label = "target"
  vs_champion = {{ metric = "accuracy", max_drop = 0.0, resamples = 200, seed = 7 }}

  [[policies.gates]]
  name = "latency"
  type = "latency"
  p99_ms = 2000
  requests = 30
  warmup = 5
  max_ratio_to_champion = 50
  enforce = false

[[policies]]
name = "gated"
models = ["{prefix}*"]
{STAGE_TARGETS}
{ACCURACY}
  [[policies.gates]]
  name = "owner"
  type = "tags"
  required = ["owner"]
  enforce = false

  [[policies.gates]]
  name = "no-drop"
  type = "champion"
  metric = "val_accuracy"
  max_drop = 0.05
"#,
        serving = serving_section("")
    )
}

fn register(name: &str, acc: f64, owner: bool) -> Value {
    let tags = if owner {
        json!({"owner": "risk-team"})
    } else {
        json!({})
    };
    json!({"op": "register", "name": name, "stage": "Staging",
           "metrics": {"val_accuracy": acc}, "tags": tags, "light": true})
}

/// Finished evaluations of `model` that were acted on (newest first).
fn done(d: &Daemon, model: &str) -> Vec<Value> {
    let (_, v) = d
        .get(&format!(
            "/v1/evaluations?model={}&limit=100",
            path_segment(model)
        ))
        .expect("evaluations");
    v["evaluations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["status"] == "done" && e["action"].is_string())
        .collect()
}

/// Register `ops` (one version of each model) and wait until each model has `n` evaluations
/// acted on.
fn round(d: &Daemon, models: &[&str], ops: Value, n: usize) {
    fixtures(ops);
    for m in models {
        d.wait_for(
            &format!("{m} to have {n} evaluations acted on"),
            WAIT,
            || done(d, m).len() >= n,
        );
    }
}

#[test]
fn the_status_page_in_a_real_browser() {
    let prefix = unique("ui");
    let (fraud, churn, web) = (
        format!("{prefix}-fraud"),
        format!("{prefix}-churn"),
        format!("{prefix}-web"),
    );
    let evil = format!("{prefix}-<img src=x onerror=alert(1)>&\"q\"");
    let holdout_dir = tempfile::tempdir().unwrap();
    let holdout = holdout_dir.path().join("holdout.parquet");
    fixtures(json!([{"op": "dataset", "path": holdout.display().to_string(), "rows": 400}]));
    let config = body(&prefix, &holdout.display().to_string());
    let d = Daemon::start(&mlflow_uri(), &config);

    // v1: all pass (the web model has no champion to compare with yet); the evil one fails.
    let web_v1 = json!({"op": "register", "name": web, "stage": "Staging", "metrics": {"val_accuracy": 0.9}});
    round(
        &d,
        &[&fraud, &churn, &web, &evil],
        json!([
            register(&fraud, 0.90, true),
            register(&churn, 0.88, true),
            web_v1,
            register(&evil, 0.5, true)
        ]),
        1,
    );
    // v2: fraud fails its threshold; churn passes with the shadow tag gate failing ("would
    // block"); web's twin of its champion makes the comparison inconclusive.
    round(
        &d,
        &[&fraud, &churn, &web],
        json!([
            register(&fraud, 0.70, true),
            register(&churn, 0.91, false),
            web_v1
        ]),
        2,
    );
    // v3: fraud passes again, churn fails.
    round(
        &d,
        &[&fraud, &churn],
        json!([register(&fraud, 0.93, true), register(&churn, 0.60, true)]),
        3,
    );
    let web_rows = done(&d, &web);
    assert_eq!(web_rows[0]["verdict"], "failed", "{web_rows:?}");
    assert_eq!(
        web_rows[0]["gates"][1]["inconclusive"], true,
        "{web_rows:?}"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Browser::launch().await;
        let page = b.open(&d.url()).await;

        // Home: every model, its chips; the failed gate's chip carries its message.
        let home = page.eval("document.querySelector('h1').textContent").await;
        assert_eq!(home, json!("Models"));
        page.until("the home page lists the evil model by its name", &format!(
            "[...document.querySelectorAll('table.models td a')].some(a => a.textContent === {})",
            json!(evil)
        )).await;
        let titles = page
            .eval(&format!(
                "[...document.querySelectorAll('tr')].filter(tr => tr.textContent.includes({}))
                  .flatMap(tr => [...tr.querySelectorAll('.chip.fail[data-gate=accuracy]')]).map(c => c.title)",
                json!(fraud)
            ))
            .await;
        assert!(
            titles.as_array().unwrap().iter().any(|t| t == "val_accuracy=0.7 < min 0.85"),
            "failed chip's message: {titles}"
        );
        let shadow = page.eval("[...document.querySelectorAll('.chip.shadow')].map(c => c.textContent)").await;
        assert!(shadow.to_string().contains("would block"), "{shadow}");
        b.screenshots(&page, "home", "status-home.png").await;

        // Model pages: one chart point per evaluated version and a threshold line.
        for (model, versions) in [(&fraud, 3), (&churn, 3), (&web, 2)] {
            page.goto(&format!("{}/models/{}", d.url(), path_segment(model))).await;
            let charts = page
                .eval("[...document.querySelectorAll('figure.chart')].map(f => ({
                    title: f.querySelector('figcaption').textContent,
                    points: f.querySelectorAll('svg > a > g.pt').length,
                    champion: f.querySelectorAll('svg[role=img] > circle.other').length,
                    thresholds: f.querySelectorAll('path.threshold[data-limit]').length}))")
                .await;
            let charts = charts.as_array().unwrap();
            assert!(!charts.is_empty(), "{model}: no chart");
            for c in charts {
                assert_eq!(c["points"], json!(versions), "{model}: {c}");
                assert!(c["thresholds"].as_u64().unwrap() >= 1, "{model}: {c}");
            }
            let titled = |part: &str| {
                charts
                    .iter()
                    .find(|c| c["title"].as_str().unwrap_or("").contains(part))
                    .unwrap_or_else(|| panic!("{model}: no chart titled *{part}*: {charts:?}"))
            };
            if *model == web {
                // The latency chart marks the champion's p99 where it was compared (v2).
                assert_eq!(titled("p99 ms")["champion"], json!(1), "{charts:?}");
            } else {
                titled("drop vs the champion");
            }
        }
        let inconclusive = page.eval("[...document.querySelectorAll('.chip.inconclusive')].map(c => c.title)").await;
        assert!(inconclusive.to_string().contains("inconclusive"), "{inconclusive}");

        // The model page follows a new evaluation without a reload.
        page.goto(&format!("{}/models/{}", d.url(), path_segment(&fraud))).await;
        b.screenshots(&page, "model", "status-model.png").await;
        page.eval("window.__sameDocument = 'yes'").await;
        let f = fraud.clone();
        tokio::task::spawn_blocking(move || fixtures(json!([register(&f, 0.95, true)])))
            .await
            .unwrap();
        page.until(
            "the fourth version to appear on the chart without a reload",
            "document.querySelectorAll('figure.chart g.pt[data-version=\"4\"]').length > 0",
        )
        .await;
        assert_eq!(page.eval("window.__sameDocument").await, json!("yes"), "the page was not reloaded");
        page.until(
            "v4 promoted on the open page",
            "document.querySelector('main').textContent.includes('★ v4')",
        )
        .await;

        // A rollback made with the CLI (no evaluation) reaches the open page too: the audit
        // log gains its row and the champion shown goes back to v3.
        let (cfg, f) = (config.clone(), fraud.clone());
        tokio::task::spawn_blocking(move || Workdir::new(&cfg).run(&["rollback", &f]).expect_code(0).stdout.clone())
            .await
            .unwrap();
        page.until(
            "the rollback in the audit log without a reload",
            "[...document.querySelectorAll('#audit td')].some(td => td.textContent === 'rollback')
             && document.querySelector('main').textContent.includes('★ v3')",
        )
        .await;
        assert_eq!(page.eval("window.__sameDocument").await, json!("yes"), "the page was not reloaded");

        // The evil name is text: no element made of it, no alert, on its page too.
        page.goto(&format!("{}/models/{}", d.url(), path_segment(&evil))).await;
        assert_eq!(page.eval("document.querySelector('h1.name').textContent").await, json!(evil));
        assert_eq!(page.eval("document.querySelectorAll('main img').length").await, json!(0));
        page.goto(&format!("{}/evaluations/{}", d.url(), web_rows[0]["id"])).await;
        assert_eq!(page.eval("document.querySelectorAll('svg.interval line.threshold').length").await, json!(1));

        let (requests, errors) = page.observed();
        assert!(!requests.is_empty());
        for url in &requests {
            assert!(
                url.starts_with(&format!("{}/", d.url())) || url.starts_with("data:"),
                "a request left the daemon: {url}"
            );
        }
        assert!(errors.is_empty(), "console errors: {errors:?}");
        b.close().await;
    });
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
