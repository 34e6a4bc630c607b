//! A person's sign-off as a gate: the `tags` gate requires `approval = "approved"`, a real
//! daemon (poll only, no webhooks) holds the candidate until someone sets the tag, then
//! promotes it; a rejection keeps it held.

use crate::common;

use std::time::Duration;

use common::block;
use common::daemon::Daemon;
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

/// Models `prefix*`, polled every 2 s, no webhook secrets (so no webhook is accepted).
fn body(prefix: &str) -> String {
    format!(
        r#"
[poll]
schedule = "*/2 * * * * *"

[workers]
count = 2
backoff = "1s"

[[policies]]
name = "signed-off"
models = ["{prefix}*"]
{STAGE_TARGETS}

  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85

  [[policies.gates]]
  name = "sign-off"
  type = "tags"
  required = {{ approval = "approved" }}
"#
    )
}

/// Register a good model at Staging; its version.
fn candidate(name: &str) -> String {
    let op = json!({"op": "register", "name": name, "stage": "Staging",
                    "metrics": {"val_accuracy": 0.9}});
    fixtures(json!([op]))[0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

fn approve(name: &str, version: &str, value: &str) {
    fixtures(
        json!([{"op": "tag", "name": name, "version": version, "key": "approval", "value": value}]),
    );
}

fn tag(name: &str, version: &str, key: &str) -> Option<String> {
    block(common::version(name, version))
        .tag(&format!("stagegate.{key}"))
        .map(str::to_string)
}

/// Wait until the daemon has recorded a verdict on `name` v`version` whose sign-off gate says
/// `gate_says`, and acted on it: the fingerprint is written after the verdict's tags, and the
/// `action` tag after the fingerprint, once the decision is made.
fn wait_held(d: &Daemon, name: &str, version: &str, gate_says: &str) {
    d.wait_for(&format!("sign-off gate to say {gate_says:?}"), WAIT, || {
        tag(name, version, "gate.sign-off").is_some_and(|g| g.contains(gate_says))
            && tag(name, version, "fingerprint").is_some()
            && tag(name, version, "action").is_some()
    });
}

#[test]
fn a_candidate_waits_for_approval_then_is_promoted() {
    let prefix = unique("approval");
    let m = format!("{prefix}-m");
    let d = Daemon::start(&mlflow_uri(), &body(&prefix));
    let v = candidate(&m);

    wait_held(&d, &m, &v, "approval missing");
    assert_eq!(
        tag(&m, &v, "gate.sign-off").as_deref(),
        Some(
            format!("fail: not as required on v{v}: approval missing (expected \"approved\")")
                .as_str()
        )
    );
    assert_eq!(tag(&m, &v, "verdict").as_deref(), Some("failed"));
    assert_eq!(tag(&m, &v, "action").as_deref(), Some("kept"));
    assert_eq!(block(version(&m, &v)).current_stage, "Staging");

    // A person signs off (UI or `MlflowClient().set_model_version_tag`); the poll notices the
    // changed inputs, re-evaluates and promotes.
    approve(&m, &v, "approved");
    // The `action` tag is written after the move: wait for both.
    d.wait_for("promotion after approval, recorded", WAIT, || {
        block(version(&m, &v)).current_stage == "Production" && tag(&m, &v, "action").is_some()
    });
    assert_eq!(tag(&m, &v, "verdict").as_deref(), Some("passed"));
    assert_eq!(
        tag(&m, &v, "gate.sign-off").as_deref(),
        Some("pass: all 1 required tags present with accepted values")
    );
    assert_eq!(tag(&m, &v, "action").as_deref(), Some("promoted"));
    let evaluations = d.evaluations(&m);
    assert!(evaluations.len() >= 2, "held, then passed: {evaluations:?}");
}

#[test]
fn a_rejected_candidate_stays_held() {
    let prefix = unique("rejected");
    let m = format!("{prefix}-m");
    let d = Daemon::start(&mlflow_uri(), &body(&prefix));
    let v = candidate(&m);
    wait_held(&d, &m, &v, "approval missing");

    approve(&m, &v, "rejected");
    // The re-evaluation judged the rejection: the verdict stands and nothing moved.
    wait_held(&d, &m, &v, "approval = \"rejected\"");
    assert_eq!(
        tag(&m, &v, "gate.sign-off").as_deref(),
        Some(
            format!(
                "fail: not as required on v{v}: approval = \"rejected\" (expected \"approved\")"
            )
            .as_str()
        )
    );
    assert_eq!(tag(&m, &v, "verdict").as_deref(), Some("failed"));
    assert_eq!(tag(&m, &v, "action").as_deref(), Some("kept"));
    let got = block(version(&m, &v));
    assert_eq!(got.current_stage, "Staging");
    // Held, then judged again after the rejection (an evaluation whose inputs changed
    // while it ran records no action): never promoted.
    let actions: Vec<_> = d
        .evaluations(&m)
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert!(actions.len() >= 2, "{actions:?}");
    assert!(actions.contains(&json!("kept")), "{actions:?}");
    assert!(!actions.contains(&json!("promoted")), "{actions:?}");
}
