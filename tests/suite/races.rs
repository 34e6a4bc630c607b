//! The daemon under the interleavings that made verdicts lie before they carried an inputs
//! fingerprint: a tag written during an evaluation, a request made during one, a new
//! challenger set while the previous one's promotion is under way, and a failed candidate
//! whose tags are still arriving under `on_fail = "archive"`.
//!
//! The exact moments are made with the fault proxy in front of the real MLflow server: it
//! runs a hook (a real write to the real server) just before forwarding a chosen call of the
//! daemon's. Webhooks are off unless a test says otherwise, so nothing but the registry
//! itself tells the daemon what changed.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::daemon::Daemon;
use common::proxy::{Fault, FaultProxy, Hook, Rule};
use common::*;
use futures::FutureExt;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
/// Only the start-up poll runs: what follows must come from the reconcile itself.
const YEARLY: &str = "0 0 0 1 1 *";

fn body(prefix: &str, targets: &str, schedule: &str, extra: &str) -> String {
    format!(
        r#"
[poll]
schedule = "{schedule}"

[workers]
count = 2
backoff = "1s"
settle = "4s"

[[policies]]
name = "races"
models = ["{prefix}*"]
on_bypass = "ignore"
{targets}
{extra}
{SEED_GATES}
"#
    )
}

fn register(name: &str, extra: Value) -> String {
    let mut op = json!({"op": "register", "name": name, "tags": good_tags(),
                        "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}});
    op.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    fixtures(json!([op]))[0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

fn mv(name: &str, v: &str) -> stagegate::mlflow::ModelVersion {
    block(version(name, v))
}

fn alias(name: &str, a: &str) -> Option<String> {
    block(client().registered_model(name))
        .ok()?
        .alias(a)
        .map(str::to_string)
}

/// The proxy runs on its own runtime, so the blocking test body can wait on the daemon.
struct Proxied {
    proxy: FaultProxy,
    _rt: tokio::runtime::Runtime,
}

fn proxied() -> Proxied {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let proxy = rt.block_on(FaultProxy::start(&mlflow_uri()));
    Proxied { proxy, _rt: rt }
}

fn hook<F, Fut>(f: F) -> Hook
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    Arc::new(move || f().boxed())
}

#[test]
fn a_new_challenger_set_while_the_previous_promotion_is_held_is_evaluated_and_promoted() {
    let m = unique("race-alias");
    let v1 = register(&m, json!({"alias": "champion"}));
    let v2 = register(&m, json!({"alias": "challenger"}));
    let v3 = register(&m, json!({}));
    let p = proxied();
    // The promotion of v2 (the champion alias move) is held; meanwhile the training job
    // points `challenger` at v3. A daemon that released the candidate alias after promoting
    // would now take it from v3, which would then never be evaluated.
    let (name, next) = (m.clone(), v3.clone());
    p.proxy.add(Rule {
        body: Some(r#""alias":"champion""#.into()),
        ..Rule::new(
            Some("POST"),
            "registered-models/alias",
            Fault::Before(hook(move || {
                let (name, next) = (name.clone(), next.clone());
                async move {
                    client()
                        .set_alias(&name, "challenger", &next)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })),
            1,
        )
    });
    let d = Daemon::start(&p.proxy.url, &body(&m, ALIAS_TARGETS, "*/2 * * * * *", ""));
    // The alias moves before the bookkeeping tags: wait for the promotion to be recorded.
    d.wait_for("v3 to become champion and be recorded", WAIT, || {
        alias(&m, "champion").as_deref() == Some(v3.as_str())
            && mv(&m, &v3).tag("stagegate.action") == Some("promoted")
            && mv(&m, &v2).tag("stagegate.replaced_by") == Some(v3.as_str())
    });
    assert_eq!(
        alias(&m, "challenger").as_deref(),
        Some(v3.as_str()),
        "the candidate alias is never removed by stagegate"
    );
    let (old, mid, new) = (mv(&m, &v1), mv(&m, &v2), mv(&m, &v3));
    assert_eq!(mid.tag("stagegate.action"), Some("promoted"));
    assert_eq!(mid.tag("stagegate.replaced_version"), Some(v1.as_str()));
    assert_eq!(mid.tag("stagegate.replaced_by"), Some(v3.as_str()));
    assert_eq!(old.tag("stagegate.replaced_by"), Some(v2.as_str()));
    assert_eq!(new.tag("stagegate.action"), Some("promoted"));
    assert_eq!(new.tag("stagegate.replaced_version"), Some(v2.as_str()));
    assert_eq!(
        p.proxy.count("DELETE", "registered-models/alias"),
        0,
        "no alias deleted"
    );
}

#[test]
fn a_tag_written_during_the_evaluation_is_judged_without_any_webhook() {
    let m = unique("race-tag");
    let mut tags = good_tags();
    tags.as_object_mut()
        .unwrap()
        .remove("feature_schema_version");
    let v = register(&m, json!({"stage": "Staging", "tags": tags}));
    let p = proxied();
    // The moment the first verdict (failed: a tag missing) is written, the training job
    // writes the missing tag. No webhook, and only the start-up poll.
    let (name, ver) = (m.clone(), v.clone());
    p.proxy.add(Rule {
        body: Some("stagegate.verdict".into()),
        ..Rule::new(
            Some("POST"),
            "model-versions/set-tag",
            Fault::Before(hook(move || {
                let (name, ver) = (name.clone(), ver.clone());
                async move {
                    client()
                        .set_version_tag(&name, &ver, "feature_schema_version", "1")
                        .await
                        .unwrap();
                }
            })),
            1,
        )
    });
    let d = Daemon::start(&p.proxy.url, &body(&m, STAGE_TARGETS, YEARLY, ""));
    d.wait_for("the fixed candidate to be promoted", WAIT, || {
        mv(&m, &v).current_stage == "Production"
    });
    let got = mv(&m, &v);
    assert_eq!(got.tag("stagegate.verdict"), Some("passed"));
    assert!(
        got.tag("stagegate.gate.metadata")
            .is_some_and(|t| t.starts_with("pass")),
        "{:?}",
        got.tag("stagegate.gate.metadata")
    );
    let verdicts: Vec<Value> = d
        .evaluations(&m)
        .iter()
        .rev()
        .map(|e| e["verdict"].clone())
        .collect();
    assert_eq!(verdicts, vec![json!("failed"), json!("passed")]);
}

#[test]
fn a_request_made_during_an_evaluation_is_not_consumed_by_it() {
    let m = unique("race-request");
    let v = register(&m, json!({"stage": "Staging"}));
    let p = proxied();
    let port = common::daemon::free_port();
    // While the first evaluation writes its verdict, someone asks for an evaluation of the
    // same version through the API.
    let (name, ver) = (m.clone(), v.clone());
    p.proxy.add(Rule {
        body: Some("stagegate.verdict".into()),
        ..Rule::new(
            Some("POST"),
            "model-versions/set-tag",
            Fault::Before(hook(move || {
                let body = json!({"model": name, "version": ver});
                async move {
                    let r = reqwest::Client::new()
                        .post(format!("http://127.0.0.1:{port}/v1/evaluations"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 202);
                }
            })),
            1,
        )
    });
    let d = Daemon::start_on(&p.proxy.url, port, &body(&m, STAGE_TARGETS, YEARLY, ""));
    d.wait_for("two evaluations of the version", WAIT, || {
        d.evaluations(&m)
            .iter()
            .filter(|e| e["status"] == json!("done"))
            .count()
            == 2
    });
    // The second evaluation is the request's: the first began before it was made.
    let evals = d.evaluations(&m);
    assert!(evals.iter().all(|e| e["version"] == json!(v)), "{evals:?}");
    d.wait_for("the candidate to be promoted", WAIT, || {
        mv(&m, &v).current_stage == "Production"
    });
}

#[test]
fn a_failed_candidate_still_being_tagged_is_never_archived_and_a_settled_failure_is() {
    let prefix = unique("race-archive");
    let (good, bad) = (format!("{prefix}-good"), format!("{prefix}-bad"));
    let mut d = Daemon::start(
        &mlflow_uri(),
        &format!(
            "[webhooks]\nsecrets = [\"{}\"]\n{}",
            common::daemon::SECRET,
            body(
                &prefix,
                STAGE_TARGETS,
                "* * * * * *",
                "on_fail = \"archive\""
            )
            .replace("settle = \"4s\"", "settle = \"8s\"")
        ),
    );
    d.register_webhook();
    // Staging first, then the tags one call at a time, a second apart (settle is 8 s), all
    // from one writer process: every verdict until the last tag is `failed`, and each tag
    // makes it stale.
    let mut ops = vec![
        json!({"op": "register", "name": good, "stage": "Staging", "tags": {},
                              "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}, "pause_after": 1}),
    ];
    for (k, val) in good_tags().as_object().unwrap() {
        // The first version of a new model is version 1.
        ops.push(json!({"op": "tag", "name": good, "version": "1", "key": k, "value": val, "pause_after": 1}));
    }
    let v = fixtures(json!(ops))[0]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let b = register(
        &bad,
        json!({"stage": "Staging", "metrics": {"val_accuracy": 0.5, "val_f1": 0.5}}),
    );
    d.wait_for("the good candidate to be promoted", WAIT, || {
        let got = mv(&good, &v);
        got.current_stage == "Production" && got.tag("stagegate.action").is_some()
    });
    d.wait_for("the bad candidate to be archived", WAIT, || {
        mv(&bad, &b).tag("stagegate.action") == Some("archived")
    });
    assert_eq!(mv(&bad, &b).current_stage, "Archived");
    let good_evals = d.evaluations(&good);
    assert!(
        good_evals.iter().all(|e| e["action"] != json!("archived")),
        "{good_evals:?}"
    );
    assert_eq!(mv(&good, &v).tag("stagegate.action"), Some("promoted"));
}

#[test]
fn a_tag_fixed_on_an_older_failed_candidate_is_seen_by_the_poll_alone() {
    let m = unique("race-older-kept");
    let mut missing = good_tags();
    missing
        .as_object_mut()
        .unwrap()
        .remove("feature_schema_version");
    // Two failed candidates in Staging; the listing the poll reads shows only the newer.
    let older = register(&m, json!({"stage": "Staging", "tags": missing}));
    let newer = register(
        &m,
        json!({"stage": "Staging", "metrics": {"val_accuracy": 0.5, "val_f1": 0.5}}),
    );
    let d = Daemon::start(&mlflow_uri(), &body(&m, STAGE_TARGETS, "* * * * * *", ""));
    d.wait_for("both candidates to be kept", WAIT, || {
        [&older, &newer]
            .iter()
            .all(|v| mv(&m, v).tag("stagegate.action") == Some("kept"))
    });
    // The training job fixes the older one; no webhook is registered.
    block(client().set_version_tag(&m, &older, "feature_schema_version", "1")).unwrap();
    d.wait_for("the fixed older candidate to be promoted", WAIT, || {
        let got = mv(&m, &older);
        got.current_stage == "Production" && got.tag("stagegate.action") == Some("promoted")
    });
    let got = mv(&m, &older);
    assert_eq!(got.tag("stagegate.verdict"), Some("passed"));
    assert_eq!(got.tag("stagegate.action"), Some("promoted"));
    let evals = d.evaluations(&m);
    assert!(
        evals.iter().any(|e| e["version"] == json!(older)
            && e["trigger"] == json!("poll")
            && e["verdict"] == json!("passed")),
        "{evals:?}"
    );
    // The newer one still fails for good: kept, never promoted.
    assert_eq!(mv(&m, &newer).current_stage, "Staging");
}

#[test]
fn a_registry_that_refuses_the_name_filter_is_polled_whole_and_the_candidate_promoted() {
    let m = unique("no-name-filter");
    let v = register(&m, json!({"stage": "Staging"}));
    let p = proxied();
    // The poll lists only models named like the policy's globs; a server that refuses such a
    // filter (400) must not leave the poll blind.
    let filtered = "registered-models/search?filter=";
    p.proxy
        .add(Rule::new(Some("GET"), filtered, Fault::Status(400), 0));
    let d = Daemon::start(&p.proxy.url, &body(&m, STAGE_TARGETS, YEARLY, ""));
    d.wait_for("the start-up poll to promote the candidate", WAIT, || {
        let got = mv(&m, &v);
        got.current_stage == "Production" && got.tag("stagegate.action") == Some("promoted")
    });
    assert!(p.proxy.count("GET", filtered) >= 1, "the filter was tried");
    assert!(
        d.log().contains("the registry refused a name filter"),
        "{}",
        common::daemon::tail(&d.log(), 40)
    );
    assert_eq!(d.status()["poll"]["last_error"], Value::Null);
}
