//! Post-promotion analysis, end to end: a real MLflow server, a real Prometheus scraping an
//! exporter whose values each test sets, and `stagegate run`. The oracle is what the registry
//! and the store say at the end (aliases, tags, the `analyses` and `audit` tables), not what
//! the daemon logs.

use crate::common;

use std::time::Duration;

use common::daemon::{Daemon, SECRET};
use common::prometheus::{Exporter, Prometheus};
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const GAUGE: &str = "model_error_rate";

/// One test's world: the exporter, the Prometheus scraping it, and a daemon whose policy
/// watches each promotion of models `<prefix>*` with one metric, `error-rate` (max 0.05).
struct World {
    exporter: Exporter,
    prom: Prometheus,
    d: Daemon,
    model: String,
    /// The error rate the exporter shows per version (every version's, each time).
    rates: std::cell::RefCell<std::collections::BTreeMap<String, f64>>,
}

/// The daemon's config: alias targets, one gate, an analysis of `count` rounds 1 s apart
/// (`analysis` adds keys to `[policies.analysis]`).
fn body(prefix: &str, prom: &str, notify: &str, count: u32, analysis: &str) -> String {
    r#"
[webhooks]
secrets = ["SECRET"]

[poll]
schedule = "*/10 * * * * *"

[workers]
count = 2
backoff = "1s"

[[notify]]
url = "NOTIFY"
on = ["analysis", "rollback", "promoted"]

[[policies]]
name = "watched"
models = ["PREFIX*"]
candidate = { alias = "challenger" }
promote = { alias = "champion" }

  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85

  [policies.analysis]
  interval = "1s"
  count = COUNT
  failure_limit = 0
  inconclusive_limit = 1
  ANALYSIS

  [[policies.analysis.metrics]]
  name = "error-rate"
  provider = "prometheus"
  address = "PROM"
  query = 'model_error_rate{model="{model}",version="{version}"}'
  max = 0.05
"#
    .replace("SECRET", SECRET)
    .replace("NOTIFY", notify)
    .replace("PREFIX", prefix)
    .replace("COUNT", &count.to_string())
    .replace("ANALYSIS", analysis)
    .replace("PROM", prom)
}

impl World {
    fn start(prefix: &str, count: u32, analysis: &str) -> World {
        let prefix = unique(prefix);
        let exporter = Exporter::start();
        let prom = Prometheus::start(&exporter);
        let text = body(
            &prefix,
            &prom.address(),
            &exporter.notify_url(),
            count,
            analysis,
        );
        let mut d = Daemon::start(&mlflow_uri(), &text);
        d.register_webhook();
        World {
            exporter,
            prom,
            d,
            model: format!("{prefix}-m"),
            rates: Default::default(),
        }
    }

    /// Set the error rate Prometheus reports for `version` of the model, and wait until a
    /// query sees it.
    fn error_rate(&self, version: &str, value: f64) {
        let labels = |v: &str| format!("model=\"{}\",version=\"{v}\"", self.model);
        self.rates.borrow_mut().insert(version.to_string(), value);
        let all: Vec<(String, f64)> = self
            .rates
            .borrow()
            .iter()
            .map(|(v, x)| (labels(v), *x))
            .collect();
        let samples: Vec<(&str, f64)> = all.iter().map(|(l, x)| (l.as_str(), *x)).collect();
        self.exporter.set(GAUGE, &samples);
        let q = format!("{GAUGE}{{{}}}", labels(version));
        self.prom.wait_for(&q, value);
    }

    /// Register a version (really trained, `form` mlflow3 or mlflow2) with `alias`; its number.
    fn register(&self, alias: &str, form: &str) -> String {
        let mut op = json!({"op": "register", "name": self.model, "form": form,
            "metrics": {"val_accuracy": 0.95}});
        if !alias.is_empty() {
            op["alias"] = json!(alias);
        }
        let r = fixtures(json!([op]));
        r[0]["version"].as_str().unwrap().to_string()
    }

    /// A champion v1 set by hand, then a good challenger v2 that stagegate promotes; waits
    /// for v2's analysis to begin.
    fn promote_second(&self, v2_rate: f64) -> (String, String) {
        self.error_rate("2", v2_rate);
        let v1 = self.register("champion", "mlflow3");
        let v2 = self.register("challenger", "mlflow3");
        assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
        self.d.wait_for("v2's analysis to begin", WAIT, || {
            self.analysis(&v2).is_some()
        });
        (v1, v2)
    }

    fn analyses(&self) -> Vec<Value> {
        let (code, doc) = self
            .d
            .get(&format!("/v1/analyses?model={}", self.model))
            .expect("the daemon answers");
        assert_eq!(code, 200, "{doc}");
        doc["analyses"].as_array().cloned().unwrap_or_default()
    }

    /// The (only) analysis of `version`.
    fn analysis(&self, version: &str) -> Option<Value> {
        let of: Vec<Value> = self
            .analyses()
            .into_iter()
            .filter(|a| a["version"] == version)
            .collect();
        assert!(of.len() <= 1, "one analysis per promotion: {of:?}");
        of.into_iter().next()
    }

    fn wait_status(&self, version: &str, status: &str) -> Value {
        self.d.wait_for(
            &format!("v{version}'s analysis to be {status}"),
            WAIT,
            || {
                self.analysis(version)
                    .is_some_and(|a| a["status"] == status)
            },
        );
        self.analysis(version).unwrap()
    }

    fn champion(&self) -> Option<String> {
        alias_of(&self.model, "champion")
    }

    fn tag(&self, version: &str, key: &str) -> Option<String> {
        block(common::version(&self.model, version))
            .tag(key)
            .map(str::to_string)
    }

    /// The audit rows of `action` for the model, read from the store itself, read-only (a
    /// `Store` opened here would take the running daemon's leases as a crash's leftovers).
    fn audit(&self, action: &str) -> Vec<(Option<String>, String)> {
        let stagegate::store::Target::Sqlite(path) = self.d.store_target() else {
            panic!("these tests run on SQLite");
        };
        let db =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut q = db
            .prepare("SELECT version, coalesce(detail, '') FROM audit WHERE model = ?1 AND action = ?2 ORDER BY id")
            .unwrap();
        q.query_map([self.model.as_str(), action], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }
}

/// Run `stagegate ARGS --config <d's config>` as a person or CI would; it must succeed. Its
/// standard output.
fn stagegate(d: &Daemon, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(args)
        .arg("--config")
        .arg(d.config())
        .env("MLFLOW_TRACKING_URI", mlflow_uri())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stagegate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The measurements of `metric` in an analysis, in order.
fn points(a: &Value, metric: &str) -> Vec<Value> {
    a["measurements"][metric]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn outcomes(a: &Value) -> Vec<String> {
    points(a, "error-rate")
        .iter()
        .map(|p| p["outcome"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_healthy_champion_passes_its_analysis_and_stays() {
    let w = World::start("an-healthy", 3, "");
    let (_, v2) = w.promote_second(0.01);
    let a = w.wait_status(&v2, "passed");
    assert_eq!(outcomes(&a), ["pass", "pass", "pass"], "{a}");
    assert_eq!(points(&a, "error-rate")[0]["value"], json!(0.01));
    assert_eq!(a["previous"], "1");
    assert_eq!(a["target"], "alias:champion");
    w.d.wait_for("the tag to say passed", WAIT, || {
        w.tag(&v2, "stagegate.analysis").as_deref() == Some("passed")
    });
    assert_eq!(w.champion().as_deref(), Some(v2.as_str()));
    assert_eq!(w.tag(&v2, "stagegate.rolled_back"), None);
    assert_eq!(w.audit("analysis").len(), 1);
    assert!(w.audit("rollback").is_empty());
    let sent = w.exporter.posted("analysis");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["analysis"], "passed");
    assert_eq!(sent[0]["version"], json!(v2));
    assert_eq!(
        w.d.metric(r#"stagegate_analyses_total{outcome="passed"}"#),
        Some(1.0)
    );
    // v1 was set by hand before stagegate ran: nothing watched it.
    assert!(w.analysis("1").is_none());
}

#[test]
fn an_error_rate_that_breaches_after_two_rounds_is_rolled_back_at_the_next_round() {
    let w = World::start("an-breach", 30, "");
    let (v1, v2) = w.promote_second(0.01);
    w.d.wait_for("two healthy rounds", WAIT, || {
        w.analysis(&v2)
            .is_some_and(|a| a["step"].as_i64() >= Some(2))
    });
    w.error_rate(&v2, 0.3);
    // Prometheus reports the breach from here: a round that starts after this reads it.
    let seen = stagegate::evaluation::now_rfc3339();
    let a = w.wait_status(&v2, "failed");
    w.d.wait_for("the replaced champion to be restored", WAIT, || {
        w.champion().as_deref() == Some(v1.as_str())
    });

    let outs = outcomes(&a);
    assert_eq!(outs.last().map(String::as_str), Some("fail"), "{a}");
    assert_eq!(outs.iter().filter(|o| *o == "fail").count(), 1, "{a}");
    assert!(outs.iter().filter(|o| *o == "pass").count() >= 2, "{a}");
    // Within one interval: at most the failing round started after the breach was visible.
    let after: Vec<Value> = points(&a, "error-rate")
        .into_iter()
        .filter(|p| p["at"].as_str().unwrap_or_default() > seen.as_str())
        .collect();
    assert!(
        after.len() <= 1,
        "rounds after the breach was visible: {after:?}"
    );
    assert_eq!(a["reason"], "error-rate 0.3 vs > max 0.05");

    w.d.wait_for("the failure tags", WAIT, || {
        w.tag(&v2, "stagegate.analysis").as_deref() == Some("failed: error-rate 0.3 vs > max 0.05")
    });
    let rolled = w.tag(&v2, "stagegate.rolled_back").expect("rolled_back");
    assert!(
        rolled.contains("rolled back to v1") && rolled.contains("analysis failed: error-rate 0.3"),
        "{rolled}"
    );
    w.d.wait_for("the rollback's audit row and notification", WAIT, || {
        !w.audit("rollback").is_empty() && !w.exporter.posted("rollback").is_empty()
    });
    w.d.wait_for("the rollback's audit row", WAIT, || {
        w.audit("analysis").len() == 2
    });
    let audit = w.audit("analysis");
    assert!(
        audit
            .iter()
            .any(|(_, d)| d.contains("failed: error-rate 0.3")),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|(_, d)| d.contains("rolled back to v1")),
        "{audit:?}"
    );
    assert_eq!(w.audit("rollback").len(), 1);
    let sent = w.exporter.posted("analysis");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["analysis"], "failed");
    assert!(sent[0]["text"].as_str().unwrap().contains("error-rate 0.3"));
    // The status page charts the rounds against the threshold, and says how it ended.
    let page = reqwest::blocking::get(format!("{}/models/{}", w.d.url(), w.model))
        .and_then(|r| r.text())
        .unwrap();
    assert!(page.contains(r#"id="analyses""#), "{page}");
    assert_eq!(page.matches(r#"data-outcome="fail""#).count(), 1);
    assert!(page.contains(r#"data-limit="max""#) && page.contains("max 0.05"));
    let home = reqwest::blocking::get(w.d.url())
        .and_then(|r| r.text())
        .unwrap();
    assert!(
        home.contains("failed: error-rate 0.3 vs &gt; max 0.05"),
        "{home}"
    );
    // The failed version is never promoted again, though it still holds `challenger`.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.champion().as_deref(), Some(v1.as_str()));
    assert_eq!(w.audit("rollback").len(), 1);
    // A person puts it back on purpose: it was rolled back once, and stays.
    fixtures(json!([{"op": "alias", "name": w.model, "alias": "champion", "version": v2}]));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(w.champion().as_deref(), Some(v2.as_str()));
    assert_eq!(w.audit("rollback").len(), 1);
}

#[test]
fn prometheus_down_mid_analysis_is_inconclusive_and_nothing_is_rolled_back() {
    let mut w = World::start("an-promdown", 30, "");
    let (_, v2) = w.promote_second(0.01);
    w.d.wait_for("a healthy round", WAIT, || {
        w.analysis(&v2)
            .is_some_and(|a| a["step"].as_i64() >= Some(1))
    });
    w.prom.stop();
    let a = w.wait_status(&v2, "inconclusive");
    let outs = outcomes(&a);
    assert_eq!(
        outs.iter().filter(|o| *o == "inconclusive").count(),
        2,
        "inconclusive_limit = 1 tolerates one: {a}"
    );
    assert!(!outs.contains(&"fail".to_string()), "{a}");
    w.d.wait_for("the tag to say inconclusive", WAIT, || {
        w.tag(&v2, "stagegate.analysis")
            .is_some_and(|t| t.starts_with("inconclusive: error-rate: "))
    });
    assert_eq!(w.champion().as_deref(), Some(v2.as_str()));
    assert_eq!(w.tag(&v2, "stagegate.rolled_back"), None);
    assert!(w.audit("rollback").is_empty());
    assert_eq!(w.exporter.posted("analysis")[0]["analysis"], "inconclusive");
}

#[test]
fn kill_9_mid_analysis_then_a_restart_resumes_it_with_one_outcome() {
    let mut w = World::start("an-kill9", 8, "");
    let (_, v2) = w.promote_second(0.01);
    w.d.wait_for("three rounds", WAIT, || {
        w.analysis(&v2)
            .is_some_and(|a| a["step"].as_i64() >= Some(3))
    });
    w.d.kill9();
    let before = block(async {
        let store = stagegate::store::Store::open(&w.d.store_target())
            .await
            .unwrap();
        store.analyses(Some(&w.model), 10).await.unwrap()
    });
    assert_eq!(before.len(), 1);
    let taken = before[0].step;
    assert!((3..8).contains(&taken), "{before:?}");
    w.d.spawn();
    let a = w.wait_status(&v2, "passed");
    // Resumed where it was: the rounds taken before the kill are kept, none taken twice.
    assert_eq!(a["step"], 8, "{a}");
    assert_eq!(outcomes(&a).len(), 8, "{a}");
    assert_eq!(a["id"], before[0].id, "the same analysis, not a new one");
    assert_eq!(w.analyses().len(), 1);
    w.d.wait_for("the audit row", WAIT, || w.audit("analysis").len() == 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.audit("analysis").len(), 1, "one outcome");
    assert_eq!(w.champion().as_deref(), Some(v2.as_str()));
}

#[test]
fn a_manual_rollback_ends_the_analysis_and_nothing_is_rolled_back_twice() {
    let w = World::start("an-manual", 60, "");
    let (v1, v2) = w.promote_second(0.01);
    w.d.wait_for("a round", WAIT, || {
        w.analysis(&v2)
            .is_some_and(|a| a["step"].as_i64() >= Some(1))
    });
    // Then the metric breaches, and a person rolls back by hand before a round fails it
    // (or after: either way one rollback).
    stagegate(&w.d, &["rollback", &w.model]);
    w.error_rate(&v2, 0.9);
    let a = w.wait_status(&v2, "ended");
    assert_eq!(a["reason"], format!("v{v2} was rolled back"));
    w.d.wait_for("the tag to say why it ended", WAIT, || {
        w.tag(&v2, "stagegate.analysis") == Some(format!("ended: v{v2} was rolled back"))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.champion().as_deref(), Some(v1.as_str()));
    assert_eq!(w.audit("rollback").len(), 1, "one rollback: the person's");
    assert!(
        w.analysis(&v1).is_none(),
        "the restored champion is not analysed"
    );
}

#[test]
fn a_second_promotion_ends_the_first_analysis_and_begins_its_own() {
    let w = World::start("an-second", 60, "");
    let (_, v2) = w.promote_second(0.01);
    w.error_rate("3", 0.02);
    // The next candidate in MLflow 2's form (a `runs:/` source).
    let v3 = w.register("challenger", "mlflow2");
    let first = w.wait_status(&v2, "ended");
    assert_eq!(first["reason"], format!("superseded by v{v3}"));
    let second = w.wait_status(&v3, "running");
    assert_eq!(second["previous"], json!(v2));
    w.d.wait_for("v3's analysis to measure", WAIT, || {
        w.analysis(&v3)
            .is_some_and(|a| outcomes(&a).first().map(String::as_str) == Some("pass"))
    });
    w.d.wait_for("the tags", WAIT, || {
        w.tag(&v2, "stagegate.analysis") == Some(format!("ended: superseded by v{v3}"))
            && w.tag(&v3, "stagegate.analysis").as_deref() == Some("running")
    });
    assert_eq!(w.champion().as_deref(), Some(v3.as_str()));
    assert!(w.audit("rollback").is_empty());
}

#[test]
fn a_person_fails_an_analysis_while_paused_and_the_rollback_waits_for_resume() {
    let w = World::start("an-byhand", 60, "");
    let (v1, v2) = w.promote_second(0.01);
    let a = w.wait_status(&v2, "running");
    let id = a["id"].as_i64().unwrap();
    let (code, _) = w.d.post("/v1/pause", "", None);
    assert_eq!(code, 200);
    // Bad input first: a clear 4xx, nothing ended.
    for (body, want) in [
        (r#"{"outcome": "maybe"}"#, 400),
        (r#"not json"#, 400),
        (r#"{"outcome": "failed", "extra": 1}"#, 400),
    ] {
        let (code, doc) = w.d.post(&format!("/v1/analyses/{id}"), body, None);
        assert_eq!(code, want, "{body}: {doc}");
        assert!(doc["error"].is_string(), "{doc}");
    }
    assert_eq!(
        w.d.post("/v1/analyses/999999", r#"{"outcome": "passed"}"#, None)
            .0,
        404
    );
    assert_eq!(
        w.d.post("/v1/analyses/x", r#"{"outcome": "passed"}"#, None)
            .0,
        400
    );
    assert_eq!(w.analysis(&v2).unwrap()["status"], "running");

    let (code, doc) = w.d.post(
        &format!("/v1/analyses/{id}"),
        r#"{"outcome": "failed", "reason": "complaints from support"}"#,
        None,
    );
    assert_eq!(code, 200, "{doc}");
    let (code, doc) = w.d.post(
        &format!("/v1/analyses/{id}"),
        r#"{"outcome": "passed"}"#,
        None,
    );
    assert_eq!(code, 409, "one outcome: {doc}");
    let a = w.analysis(&v2).unwrap();
    assert_eq!(a["status"], "failed");
    assert_eq!(a["reason"], "ended by hand: complaints from support");
    w.d.wait_for("the tag", WAIT, || {
        w.tag(&v2, "stagegate.analysis").as_deref()
            == Some("failed: ended by hand: complaints from support")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        w.champion().as_deref(),
        Some(v2.as_str()),
        "paused: nothing moves"
    );
    assert_eq!(w.tag(&v2, "stagegate.rolled_back"), None);

    // As if a replica died between the rollback's first write (the tag) and the move: the
    // tag is there, the champion has not moved. The rollback is still to be made.
    fixtures(
        json!([{"op": "tag", "name": w.model, "version": v2, "key": "stagegate.rolled_back",
                     "value": "2026-12-07T00:00:00Z: rolled back to v1 (analysis failed: ended by hand)"}]),
    );
    assert_eq!(w.d.post("/v1/resume", "", None).0, 200);
    w.d.wait_for("the rollback after resume", WAIT, || {
        w.champion().as_deref() == Some(v1.as_str())
    });
    // The mark the cut-short attempt left stays: it says when the rollback began.
    let rolled = w.tag(&v2, "stagegate.rolled_back").unwrap();
    assert!(
        rolled.starts_with("2026-12-07T00:00:00Z: rolled back to v1"),
        "{rolled}"
    );
    w.d.wait_for("the rollback's audit row", WAIT, || {
        w.audit("analysis").len() == 2
    });
    let audit = w.audit("analysis");
    assert!(
        audit.iter().any(|(_, d)| d.contains("rolled back to v1")),
        "{audit:?}"
    );
}

#[test]
fn three_replicas_on_postgres_run_one_analysis_with_one_outcome_through_a_kill_9() {
    use common::replicas::Replicas;
    let prefix = unique("an-replicas");
    let exporter = Exporter::start();
    let prom = Prometheus::start(&exporter);
    // No webhook: the replicas hear of the candidate from their polls, every 2 s.
    let text = body(&prefix, &prom.address(), &exporter.notify_url(), 8, "")
        .replace("*/10 * * * * *", "*/2 * * * * *");
    let mut r = Replicas::start(3, &prefix, &text, "3s");
    let model = format!("{prefix}-m");
    let labels = format!("model=\"{model}\",version=\"2\"");
    exporter.set(GAUGE, &[(labels.as_str(), 0.01)]);
    prom.wait_for(&format!("{GAUGE}{{{labels}}}"), 0.01);
    fixtures(json!([
        {"op": "register", "name": model, "metrics": {"val_accuracy": 0.95}, "alias": "champion", "light": true},
        {"op": "register", "name": model, "metrics": {"val_accuracy": 0.95}, "alias": "challenger", "light": true},
    ]));
    let of_model = format!("FROM analyses WHERE model = '{model}'");
    r.wait_for("two rounds", WAIT, || {
        r.count(&format!("SELECT coalesce(max(step), 0) {of_model}")) >= 2
    });
    // The replica that took the last round dies; another takes the analysis over.
    r.daemons[0].kill9();
    r.wait_for("the analysis to pass", WAIT, || {
        r.count(&format!("SELECT count(*) {of_model} AND status = 'passed'")) == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        r.count(&format!("SELECT count(*) {of_model}")),
        1,
        "one analysis"
    );
    assert_eq!(r.count(&format!("SELECT max(step) {of_model}")), 8);
    assert_eq!(
        r.count(&format!(
            "SELECT count(*) FROM audit WHERE model = '{model}' AND action = 'analysis'"
        )),
        1,
        "one outcome"
    );
    assert_eq!(exporter.posted("analysis").len(), 1);
    assert_eq!(alias_of(&model, "champion").as_deref(), Some("2"));
    r.wait_for("the tag", WAIT, || {
        block(common::version(&model, "2")).tag("stagegate.analysis") == Some("passed")
    });
}

#[test]
fn a_failed_first_promotion_has_nothing_to_restore_and_stays_for_a_person() {
    let w = World::start("an-first", 5, "");
    w.error_rate("1", 0.3);
    let v1 = w.register("challenger", "mlflow3");
    let a = w.wait_status(&v1, "failed");
    assert_eq!(a["previous"], Value::Null);
    w.d.wait_for("the audit log to say why nothing moved", WAIT, || {
        w.audit("analysis")
            .iter()
            .any(|(_, d)| d.contains("not rolled back: it replaced no version"))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.champion().as_deref(), Some(v1.as_str()));
    assert_eq!(w.tag(&v1, "stagegate.rolled_back"), None);
    assert_eq!(
        w.audit("analysis").len(),
        2,
        "the outcome, and once why nothing moved"
    );
}

#[test]
fn with_after_bypass_a_champion_moved_by_hand_is_watched_and_rolled_back_to_the_last_promoted() {
    let w = World::start("an-bypass", 2, "after_bypass = true");
    w.error_rate("1", 0.01);
    let v1 = w.register("challenger", "mlflow3");
    w.wait_status(&v1, "passed");
    w.error_rate("2", 0.3);
    // A person moves the champion alias to a version stagegate never judged.
    let v2 = w.register("", "mlflow3");
    fixtures(json!([{"op": "alias", "name": w.model, "alias": "champion", "version": v2}]));
    let a = w.wait_status(&v2, "failed");
    assert_eq!(
        a["previous"],
        json!(v1),
        "the last version stagegate promoted"
    );
    w.d.wait_for("the bypass to be rolled back", WAIT, || {
        w.champion().as_deref() == Some(v1.as_str())
    });
    assert!(w.tag(&v2, "stagegate.bypass").is_some());
    assert!(
        w.tag(&v2, "stagegate.rolled_back")
            .unwrap()
            .contains("rolled back to v1")
    );
}

#[test]
fn a_rollback_cut_short_after_its_move_gets_its_tags_and_audit_row_and_moves_nothing() {
    let w = World::start("an-cut", 60, "");
    let (v1, v2) = w.promote_second(0.01);
    let id = w.wait_status(&v2, "running")["id"].as_i64().unwrap();
    assert_eq!(w.d.post("/v1/pause", "", None).0, 200);
    // Ended by a person with the CLI, which finds the daemon through the config.
    let said = stagegate(
        &w.d,
        &["analysis", "end", &id.to_string(), "--outcome", "failed"],
    );
    assert!(
        said.contains(&format!(
            "analysis {id} of {} v{v2}: failed: ended by hand",
            w.model
        )),
        "{said}"
    );
    // As if the replica rolling back died right after the move: the tag and the alias are
    // there, the restore's own tags and the audit row are not.
    fixtures(json!([
        {"op": "tag", "name": w.model, "version": v2, "key": "stagegate.rolled_back",
         "value": "2026-12-07T00:00:00Z: rolled back to v1 (analysis failed: ended by hand)"},
        {"op": "alias", "name": w.model, "alias": "champion", "version": v1},
    ]));
    assert_eq!(w.d.post("/v1/resume", "", None).0, 200);
    w.d.wait_for("the restore's tags", WAIT, || {
        w.tag(&v1, "stagegate.restored_at").is_some()
            && w.tag(&v2, "stagegate.replaced_by").as_deref() == Some(v1.as_str())
    });
    w.d.wait_for("the rollback's audit row", WAIT, || {
        w.audit("analysis")
            .iter()
            .any(|(_, d)| d.contains("rolled back to v1"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.champion().as_deref(), Some(v1.as_str()));
    assert_eq!(
        w.audit("analysis").len(),
        2,
        "the outcome, and the rollback once"
    );
}

#[test]
fn a_promotion_made_in_ci_to_a_stage_is_found_by_the_poll_and_timed_from_the_registry() {
    let prefix = unique("an-ci");
    let exporter = Exporter::start();
    let prom = Prometheus::start(&exporter);
    let text = body(&prefix, &prom.address(), &exporter.notify_url(), 3, "")
        .replace(
            "candidate = { alias = \"challenger\" }\npromote = { alias = \"champion\" }",
            "candidate = { stage = \"Staging\" }\npromote = { stage = \"Production\" }",
        )
        .replace("*/10 * * * * *", "*/2 * * * * *");
    let model = format!("{prefix}-m");
    let labels = format!("model=\"{model}\",version=\"2\"");
    exporter.set(GAUGE, &[(labels.as_str(), 0.01)]);
    prom.wait_for(&format!("{GAUGE}{{{labels}}}"), 0.01);
    fixtures(json!([
        {"op": "register", "name": model, "metrics": {"val_accuracy": 0.95}, "stage": "Production"},
        {"op": "register", "name": model, "form": "mlflow2", "metrics": {"val_accuracy": 0.95}, "stage": "Staging"},
    ]));
    // CI promotes, before any daemon runs; MLflow OSS sends no event for a stage transition.
    let mut d = Daemon::prepared(&mlflow_uri(), common::daemon::free_port(), &text, &[]);
    stagegate(&d, &["evaluate", &model, "2", "--promote"]);
    d.spawn();
    let analysis = || {
        d.get(&format!("/v1/analyses?model={model}"))
            .map(|(_, doc)| doc["analyses"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    };
    d.wait_for("the analysis to pass", WAIT, || {
        analysis().first().is_some_and(|a| a["status"] == "passed")
    });
    let all = analysis();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["version"], "2");
    assert_eq!(all[0]["previous"], "1");
    assert_eq!(all[0]["target"], "stage:Production");
    d.wait_for("the tag", WAIT, || {
        block(common::version(&model, "2")).tag("stagegate.analysis") == Some("passed")
    });
}
