//! `stagegate run` against a real MLflow server that delivers real signed webhooks.

use crate::common;

use std::time::Duration;

use common::daemon::{Daemon, SECRET, now_unix};
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Daemon config for models `prefix*`: webhooks on, the poll yearly (so only the start-up poll
/// runs) unless `schedule` says otherwise.
fn body(prefix: &str, targets: &str, schedule: &str, extra_policy: &str) -> String {
    format!(
        r#"
[webhooks]
secrets = ["{SECRET}"]

[poll]
schedule = "{schedule}"

[workers]
count = 4
backoff = "1s"
max_attempts = 8

[[policies]]
name = "gated"
models = ["{prefix}*"]
{targets}
{extra_policy}

  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85

  [[policies.gates]]
  name = "run-complete"
  type = "run"
  metrics = ["val_accuracy"]
  model_artifact = true
"#
    )
}

const YEARLY: &str = "0 0 0 1 1 *";

fn op(name: &str, acc: f64, extra: Value) -> Value {
    let mut o = json!({"op": "register", "name": name, "metrics": {"val_accuracy": acc}});
    o.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    o
}

fn versions(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| r["version"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn alias(model: &str, alias: &str) -> Option<String> {
    client()
        .registered_model(model)
        .await
        .ok()?
        .alias(alias)
        .map(str::to_string)
}

#[test]
fn an_alias_candidate_is_promoted_through_the_webhook_path_and_a_failing_one_never() {
    let prefix = unique("wh-alias");
    let mut d = Daemon::start(&mlflow_uri(), &body(&prefix, ALIAS_TARGETS, YEARLY, ""));
    d.register_webhook();
    let (good, bad) = (format!("{prefix}-good"), format!("{prefix}-bad"));
    let v = versions(&fixtures(json!([
        op(&good, 0.95, json!({"alias": "champion"})),
        op(&good, 0.93, json!({"alias": "challenger"})),
        op(&bad, 0.95, json!({"alias": "champion"})),
        op(&bad, 0.5, json!({"alias": "challenger"})),
    ])));
    // The alias moves before the promotion is recorded: wait for both.
    d.wait_for("the good challenger to become champion", WAIT, || {
        block(alias(&good, "champion")).as_deref() == Some(v[1].as_str())
            && d.evaluations(&good)
                .iter()
                .any(|e| e["version"] == json!(v[1]) && e["action"] == json!("promoted"))
    });
    let evals = d.evaluations(&good);
    assert!(
        evals.iter().any(|e| e["version"] == json!(v[1])
            // The created event's re-checks are the webhook path too; under load one can be
            // the latest trigger when the promoting reconcile starts.
            && (e["trigger"] == json!("webhook") || e["trigger"] == json!("recheck"))
            && e["action"] == json!("promoted")),
        "{evals:?}"
    );

    d.wait_for("the bad challenger to be evaluated", WAIT, || {
        d.evaluations(&bad)
            .iter()
            .any(|e| e["version"] == json!(v[3]) && e["verdict"] == json!("failed"))
    });
    d.wait_for("the failure to be recorded", WAIT, || {
        block(version(&bad, &v[3])).tag("stagegate.action") == Some("kept")
    });
    assert_eq!(
        block(alias(&bad, "champion")),
        Some(v[2].clone()),
        "a failing candidate is never promoted"
    );
    assert_eq!(
        block(version(&bad, &v[3])).tag("stagegate.gate.accuracy"),
        Some("fail: val_accuracy=0.5 < min 0.85")
    );
}

#[test]
fn a_staging_candidate_is_picked_up_by_the_recheck_after_creation() {
    let prefix = unique("wh-stage");
    let mut d = Daemon::start(&mlflow_uri(), &body(&prefix, STAGE_TARGETS, YEARLY, ""));
    // The start-up poll is over before the model exists, and the next one is a year away.
    d.wait_for("the start-up poll", WAIT, || {
        d.status()["poll"]["completed"].as_u64() >= Some(1)
    });
    d.register_webhook();
    let m = format!("{prefix}-m");
    // Created (announced): the webhook's reconcile finds no candidate, and the creation starts
    // the re-check series.
    let v = versions(&fixtures(json!([op(&m, 0.9, json!({}))])));
    d.wait_for("the creation's reconcile to be over", WAIT, || {
        let q = &d.status()["queue"];
        d.queued_deliveries() >= 1 && q["depth"] == json!(0) && q["in_flight"] == json!(0)
    });
    // Moved to Staging, which MLflow announces to nobody: only a re-check can find it now.
    fixtures(json!([{"op": "stage", "name": m, "version": v[0], "stage": "Staging"}]));
    // The series' last step is 120 s after the creation.
    // The move comes before stagegate records it: wait for both.
    d.wait_for(
        "promotion to Production, recorded",
        Duration::from_secs(150),
        || {
            block(version(&m, &v[0])).current_stage == "Production"
                && d.evaluations(&m).iter().any(|e| !e["action"].is_null())
        },
    );
    let evals = d.evaluations(&m);
    assert!(
        evals
            .iter()
            .any(|e| e["action"] == json!("promoted") && e["verdict"] == json!("passed")),
        "{evals:?}"
    );
    assert!(
        evals.iter().all(|e| e["trigger"] == json!("recheck")),
        "every evaluation was the re-check's: {evals:?}"
    );
}

#[test]
fn the_poll_alone_promotes_with_webhooks_off() {
    let prefix = unique("poll-only");
    let m = format!("{prefix}-m");
    let d = Daemon::start(
        &mlflow_uri(),
        &body(&prefix, STAGE_TARGETS, "*/2 * * * * *", "")
            .replace(&format!("secrets = [\"{SECRET}\"]"), ""),
    );
    let v = versions(&fixtures(json!([op(&m, 0.9, json!({"stage": "Staging"}))])));
    d.wait_for("promotion by the poll", WAIT, || {
        block(version(&m, &v[0])).current_stage == "Production"
    });
    assert!(
        d.evaluations(&m)
            .iter()
            .all(|e| e["trigger"] == json!("poll"))
    );
    // Once converged, the poll skips the model: it carries a verdict for the current digest.
    // Two more polls complete (the first may have started before the promotion) and the queue
    // drains, so anything they enqueued has been reconciled: no new evaluation.
    let evaluated = d.evaluations(&m).len();
    let polls = |s: &Value| s["poll"]["completed"].as_u64().unwrap_or(0);
    let before = polls(&d.status());
    d.wait_for("two more polls and an idle queue", WAIT, || {
        let s = d.status();
        let q = &s["queue"];
        polls(&s) >= before + 2 && q["depth"] == json!(0) && q["in_flight"] == json!(0)
    });
    let poll = &d.status()["poll"];
    assert_eq!(poll["last_error"], Value::Null, "{poll}");
    assert_eq!(poll["last_enqueued"], json!(0), "{poll}");
    assert_eq!(
        d.evaluations(&m).len(),
        evaluated,
        "no re-evaluation of an evaluated version"
    );
    assert_eq!(d.status()["webhooks"]["enabled"], json!(false));
}

#[test]
fn bad_deliveries_get_the_right_status_and_the_daemon_stays_healthy() {
    let prefix = unique("bad-deliveries");
    let d = Daemon::start(&mlflow_uri(), &body(&prefix, ALIAS_TARGETS, YEARLY, ""));
    let event = format!(
        r#"{{"entity":"model_version","action":"created","timestamp":"x","data":{{"name":"{prefix}-x","version":"1","source":"s","run_id":null}}}}"#
    );
    let (s, b) = d.deliver("forged", now_unix(), "not-the-secret", &event);
    assert_eq!(s, 401, "{b}");
    let (s, _) = d.deliver("stale", now_unix() - 3600, SECRET, &event);
    assert_eq!(s, 401);
    let (s, _) = d.deliver("fresh", now_unix(), SECRET, &event);
    assert_eq!(s, 202);
    let (s, b) = d.deliver("fresh", now_unix(), SECRET, &event);
    assert_eq!((s, b["status"].as_str()), (200, Some("duplicate")));
    let (s, _) = d.deliver(
        "huge",
        now_unix(),
        SECRET,
        &format!(r#"{{"x":"{}"}}"#, "y".repeat(2 << 20)),
    );
    assert_eq!(s, 413);
    let (s, b) = d.deliver("garbled", now_unix(), SECRET, "{\"entity\": ");
    assert_eq!(s, 400);
    assert!(b["error"].is_string());
    assert_eq!(d.get("/healthz").unwrap().0, 200);
    let metrics = reqwest::blocking::get(format!("{}/metrics", d.url()))
        .unwrap()
        .text()
        .unwrap();
    for needle in [
        "outcome=\"unauthorized\"",
        "outcome=\"stale\"",
        "outcome=\"duplicate\"",
        "outcome=\"too_large\"",
        "outcome=\"malformed\"",
        "outcome=\"queued\"",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
}

#[test]
fn twenty_models_of_three_versions_each_end_with_their_newest_passing_version_promoted() {
    let prefix = unique("bulk");
    let mut d = Daemon::start(
        &mlflow_uri(),
        &body(&prefix, STAGE_TARGETS, "*/5 * * * * *", ""),
    );
    d.register_webhook();
    // Versions 1-3 of each model; in every fourth model the newest fails.
    let models: Vec<String> = (0..20).map(|i| format!("{prefix}-{i:02}")).collect();
    let mut ops = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let newest = if i % 4 == 0 { 0.5 } else { 0.95 };
        for acc in [0.9, 0.92, newest] {
            ops.push(op(m, acc, json!({"light": true})));
        }
    }
    // Each model's versions in order, five models a request, the requests side by side.
    fixtures_concurrently(ops.chunks(15).map(|five| json!(five)).collect());
    // All become candidates at once, newest first (no instant shows an older candidate alone).
    let moves: Vec<Value> = models
        .iter()
        .flat_map(|m| (1..=3).rev().map(move |v| json!({"op": "stage", "name": m, "version": v.to_string(), "stage": "Staging"})))
        .collect();
    fixtures(json!(moves));

    for (i, m) in models.iter().enumerate() {
        let expected = if i % 4 == 0 { "2" } else { "3" };
        d.wait_for(
            &format!("{m} v{expected} in Production"),
            Duration::from_secs(120),
            || block(version(m, expected)).current_stage == "Production",
        );
    }
    // Converged: exactly one promotion per model, nothing else moved.
    d.wait_for("the queue to drain", WAIT, || {
        d.status()["queue"]["in_flight"] == json!(0) && d.status()["queue"]["depth"] == json!(0)
    });
    for (i, m) in models.iter().enumerate() {
        let promoted: Vec<Value> = d
            .evaluations(m)
            .into_iter()
            .filter(|e| e["action"] == json!("promoted"))
            .collect();
        assert_eq!(promoted.len(), 1, "{m}: {promoted:?}");
        let newest_fails = i % 4 == 0;
        for v in ["1", "2", "3"] {
            let got = block(version(m, v));
            let winner = (newest_fails && v == "2") || (!newest_fails && v == "3");
            if winner {
                assert_eq!(got.current_stage, "Production");
            } else {
                assert_eq!(got.current_stage, "Staging", "{m} v{v} moved");
                let expect = if newest_fails && v == "3" {
                    "kept"
                } else {
                    "superseded"
                };
                assert_eq!(got.tag("stagegate.action"), Some(expect), "{m} v{v}");
            }
        }
    }
}

#[test]
fn api_requests_pause_and_resume() {
    let prefix = unique("api");
    let token = "t0k3n";
    let mut d = Daemon::start(&mlflow_uri(), &body(&prefix, STAGE_TARGETS, YEARLY, ""));
    d.kill9();
    // Same daemon, now with a token from the environment-style key.
    let cfg = d
        .config_text(&body(&prefix, STAGE_TARGETS, YEARLY, ""))
        .replace("[server]", &format!("[server]\napi_token = \"{token}\""));
    std::fs::write(d.config(), cfg).unwrap();
    d.spawn();
    let m = format!("{prefix}-m");
    let v = versions(&fixtures(json!([op(&m, 0.9, json!({"stage": "Staging"}))])));

    let (s, _) = d.post("/v1/pause", "", None);
    assert_eq!(s, 401, "mutating routes need the token");
    let (s, _) = d.post("/v1/pause", "", Some(token));
    assert_eq!(s, 200);
    let (s, b) = d.post(
        "/v1/evaluations",
        &json!({"model": format!("{prefix}-nope")}).to_string(),
        Some(token),
    );
    assert_eq!(s, 404, "{b}");
    let (s, b) = d.post(
        "/v1/evaluations",
        &json!({"model": m, "version": "99"}).to_string(),
        Some(token),
    );
    assert_eq!(s, 404, "{b}");
    let (s, _) = d.post(
        "/v1/evaluations",
        &json!({"model": m}).to_string(),
        Some(token),
    );
    assert_eq!(s, 202);
    d.wait_for("a paused evaluation", WAIT, || {
        block(version(&m, &v[0])).tag("stagegate.action") == Some("skipped: paused (would promote)")
    });
    assert_eq!(
        block(version(&m, &v[0])).current_stage,
        "Staging",
        "paused: evaluation goes on, acting stops"
    );
    assert_eq!(d.status()["mode"], json!("paused"));

    let (s, _) = d.post("/v1/resume", "", Some(token));
    assert_eq!(s, 200);
    d.wait_for("promotion after resume", WAIT, || {
        block(version(&m, &v[0])).current_stage == "Production"
    });

    // An explicit request re-evaluates a version that already has a verdict. The champion's
    // verdict is current, so only the request can make it evaluated again. The run that serves
    // it may carry another trigger's label: a reconcile already running (for the promotion's
    // own tag webhooks) reads the requests at every step and serves it first.
    let api_evals = |d: &Daemon| {
        d.evaluations(&m)
            .iter()
            .filter(|e| e["version"] == json!(v[0]))
            .count()
    };
    let before = api_evals(&d);
    let (s, _) = d.post(
        "/v1/evaluations",
        &json!({"model": m, "version": v[0]}).to_string(),
        Some(token),
    );
    assert_eq!(s, 202);
    d.wait_for("the requested re-evaluation", WAIT, || {
        api_evals(&d) > before
    });
    assert_eq!(
        block(version(&m, &v[0])).current_stage,
        "Production",
        "re-evaluating the champion moves nothing"
    );
}

/// `stagegate rollback` made elsewhere (the CLI, with no webhook to announce it) is noticed by
/// the poll, recorded once in the audit log, shown on the model page, and never undone.
#[test]
fn a_rollback_made_with_the_cli_is_recorded_once_in_the_audit_log() {
    let prefix = unique("rollback-audit");
    let m = format!("{prefix}-m");
    let config = body(&prefix, STAGE_TARGETS, "*/2 * * * * *", "")
        .replace(&format!("secrets = [\"{SECRET}\"]"), "");
    let d = Daemon::start(&mlflow_uri(), &config);
    let promoted = |v: &str| {
        let mv = block(version(&m, v));
        mv.current_stage == "Production" && mv.tag("stagegate.action") == Some("promoted")
    };
    let v1 = versions(&fixtures(json!([op(&m, 0.9, json!({"stage": "Staging"}))])));
    d.wait_for("v1 promoted by the poll", WAIT, || promoted(&v1[0]));
    let v2 = versions(&fixtures(json!([op(
        &m,
        0.93,
        json!({"stage": "Staging"})
    )])));
    d.wait_for("v2 promoted in v1's place", WAIT, || {
        promoted(&v2[0])
            && block(version(&m, &v1[0]))
                .tag("stagegate.replaced_by")
                .is_some()
    });

    Workdir::new(&config).run(&["rollback", &m]).expect_code(0);
    let page = || {
        reqwest::blocking::get(format!("{}/models/{m}", d.url()))
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    let rows = |html: &str| html.matches("<td>rollback</td>").count();
    d.wait_for("the rollback in the audit log", WAIT, || rows(&page()) > 0);
    let html = page();
    assert!(
        html.contains(&format!("rolled back to v{}", v1[0])),
        "the row carries the rollback's note"
    );
    // Later polls find the same rollback: no second row, and nothing moves back.
    let polls = |s: &Value| s["poll"]["completed"].as_u64().unwrap_or(0);
    let before = polls(&d.status());
    d.wait_for("two more polls and an idle queue", WAIT, || {
        let s = d.status();
        polls(&s) >= before + 2
            && s["queue"]["depth"] == json!(0)
            && s["queue"]["in_flight"] == json!(0)
    });
    assert_eq!(rows(&page()), 1, "recorded once");
    assert_eq!(block(version(&m, &v1[0])).current_stage, "Production");
    let bad = block(version(&m, &v2[0]));
    assert_eq!(bad.current_stage, "Archived");
    assert!(bad.tag("stagegate.rolled_back").is_some());
}

#[test]
fn a_hand_promoted_champion_is_tagged_as_a_bypass_and_reverted_when_the_policy_says_so() {
    let prefix = unique("bypass");
    let m = format!("{prefix}-m");
    let mut d = Daemon::start(
        &mlflow_uri(),
        &body(&prefix, ALIAS_TARGETS, YEARLY, "on_bypass = \"revert\""),
    );
    d.register_webhook();
    // v1 goes through the gates and is promoted by stagegate.
    let v = versions(&fixtures(json!([
        op(&m, 0.95, json!({"alias": "challenger"})),
        op(&m, 0.5, json!({}))
    ])));
    d.wait_for("v1 promoted", WAIT, || {
        block(alias(&m, "champion")).as_deref() == Some(v[0].as_str())
            && block(version(&m, &v[0])).tag("stagegate.action") == Some("promoted")
    });
    // Someone moves the champion alias to the failing v2 by hand.
    fixtures(json!([{"op": "alias", "name": m, "alias": "champion", "version": v[1]}]));
    d.wait_for("the bypass to be tagged", WAIT, || {
        block(version(&m, &v[1])).tag("stagegate.bypass").is_some()
    });
    let note = block(version(&m, &v[1]))
        .tag("stagegate.bypass")
        .unwrap()
        .to_string();
    assert!(
        note.contains("promoted outside stagegate")
            && note.contains("gates: failed")
            && note.contains("accuracy"),
        "{note}"
    );
    assert!(note.contains(&format!("reverted to v{}", v[0])), "{note}");
    // The alias moves back first, then the reverted version is marked.
    d.wait_for(
        "the champion restored and the bypass marked replaced",
        WAIT,
        || {
            block(alias(&m, "champion")).as_deref() == Some(v[0].as_str())
                && block(version(&m, &v[1])).tag("stagegate.replaced_by") == Some(v[0].as_str())
        },
    );
}

#[test]
fn notifications_are_posted_for_verdicts_and_promotions() {
    use std::io::{Read, Write};
    // A notification sink (not MLflow): records every JSON body posted to it.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_url = format!("http://{}/hook", sink.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for conn in sink.incoming().flatten() {
            let mut conn = conn;
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            while let Ok(n) = conn.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        seen.lock().unwrap().push(body.to_string());
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        );
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
        }
    });
    let prefix = unique("notify");
    let m = format!("{prefix}-m");
    let extra = format!("\n[[notify]]\nurl = \"{sink_url}\"\non = [\"failed\", \"promoted\"]\n");
    let mut d = Daemon::start(
        &mlflow_uri(),
        &format!("{}{extra}", body(&prefix, ALIAS_TARGETS, YEARLY, "")),
    );
    d.register_webhook();
    let bad = format!("{prefix}-bad");
    let v = versions(&fixtures(json!([
        op(&m, 0.95, json!({"alias": "challenger"})),
        op(&bad, 0.5, json!({"alias": "challenger"})),
    ])));
    let received = |event: &str| -> Option<Value> {
        bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .find(|b| b["event"] == json!(event))
    };
    d.wait_for("a promotion and a failure notification", WAIT, || {
        received("promoted").is_some() && received("failed").is_some()
    });

    let promoted = received("promoted").unwrap();
    assert_eq!(promoted["model"], json!(m));
    assert_eq!(promoted["version"], json!(v[0]));
    assert_eq!(promoted["action"], json!("promoted"));
    assert_eq!(
        promoted["text"],
        json!(format!("stagegate: {m} v{} promoted", v[0])),
        "Slack-compatible text"
    );

    let failed = received("failed").unwrap();
    assert_eq!(failed["model"], json!(bad));
    assert_eq!(failed["version"], json!(v[1]));
    assert_eq!(failed["verdict"], json!("failed"));
    assert_eq!(failed["policy"], json!("gated"));
    let text = failed["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(&format!("stagegate: {bad} v{} failed (policy gated)", v[1]))
            && text.contains("accuracy: val_accuracy=0.5 < min 0.85"),
        "the text names the version and the gate that blocked it: {text}"
    );
    let gates = failed["gates"].as_array().cloned().unwrap_or_default();
    assert!(
        gates
            .iter()
            .any(|g| g["name"] == json!("accuracy") && g["outcome"] == json!("fail")),
        "{gates:?}"
    );

    let all: Vec<Value> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str(b).expect("every notification is JSON"))
        .collect();
    assert!(
        all.iter()
            .all(|b| b["event"] == json!("failed") || b["event"] == json!("promoted")),
        "only the configured events are sent: {all:?}"
    );
}
