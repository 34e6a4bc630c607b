//! Recording an evaluation on its model version: the report JSON (capped safely under MLflow's
//! 100,000-character tag limit), and the order in which an evaluation's tags are written. The
//! tags' names are [`crate::tags`].

use futures::FutureExt as _;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::evaluation::Evaluation;
use crate::mlflow::{Client, MlflowError, ModelVersion};
use crate::tags::{TagNames, clip};

/// MLflow's limit is 100,000 characters; stay clear of it.
pub const REPORT_LIMIT: usize = 95_000;
/// Tag writes sent at once: the server serialises them anyway, this hides round trips.
const WRITE_CONCURRENCY: usize = 4;

/// The `stagegate.report` JSON, shrunk step by step until it fits under [`REPORT_LIMIT`]:
/// first gate details go, then messages are shortened, then only outcomes remain.
pub fn report_json(e: &Evaluation) -> String {
    let mut doc = e.report_value();
    let full = doc.to_string();
    if full.len() <= REPORT_LIMIT {
        return full;
    }
    let gates =
        |doc: &mut Value| -> Vec<Value> { doc["gates"].as_array().cloned().unwrap_or_default() };
    doc["truncated"] = json!(true);
    let mut g = gates(&mut doc);
    for gate in &mut g {
        if let Some(o) = gate.as_object_mut() {
            o.remove("details");
        }
    }
    doc["gates"] = json!(g);
    if doc.to_string().len() <= REPORT_LIMIT {
        return doc.to_string();
    }
    for gate in &mut g {
        if let Some(m) = gate.get("message").and_then(Value::as_str) {
            gate["message"] = json!(clip(m, 300));
        }
        gate["observed"] = Value::Null;
    }
    doc["gates"] = json!(g);
    if doc.to_string().len() <= REPORT_LIMIT {
        return doc.to_string();
    }
    let names: Vec<Value> = g
        .iter()
        .map(|x| json!({"name": x["name"], "outcome": x["outcome"]}))
        .collect();
    doc["gates"] = json!(names);
    let s = doc.to_string();
    if s.len() <= REPORT_LIMIT {
        s
    } else {
        json!({"truncated": true, "verdict": doc["verdict"], "policy_digest": doc["policy_digest"],
               "champion": doc["champion"], "fingerprint": doc["fingerprint"],
               "inputs": doc["inputs"]})
        .to_string()
    }
}

/// Write an evaluation's tags on its version, with `beside` tags (a promotion's intent)
/// riding along.
///
/// Order matters for crash safety. What marks a verdict current is the inputs fingerprint, so
/// it is written last, after everything it vouches for (verdict, gates, report). If the
/// version already carries one, it is removed first: otherwise a crash halfway through would
/// leave the old mark vouching for a mix of old and new tags. An interrupted write therefore
/// leaves no current verdict, and the version is simply evaluated again. `beside` goes out
/// before the fingerprint too: a verdict that counts always has its intent written.
pub async fn write_evaluation(
    client: &Client,
    names: &TagNames,
    e: &Evaluation,
    previous: &ModelVersion,
    beside: &[(String, String)],
) -> Result<(), MlflowError> {
    let (name, version) = (e.model.as_str(), e.version.as_str());
    if previous.tag(&names.fingerprint()).is_some() {
        client
            .delete_version_tag(name, version, &names.fingerprint())
            .await?;
    }
    let mut tags: Vec<(String, String)> = e
        .gates
        .iter()
        .map(|g| (names.gate(&g.name), g.tag_value()))
        .collect();
    tags.push((names.report(), report_json(e)));
    tags.push((names.policy(), e.policy.clone()));
    tags.push((names.evaluated_at(), e.evaluated_at.clone()));
    tags.push((names.verdict(), e.verdict.as_str().to_string()));
    tags.push((names.digest(), e.policy_digest.clone()));
    tags.extend(beside.iter().cloned());
    // Gate tags left over from an earlier policy would read as current results.
    let gate_prefix = names.gate("");
    let stale: Vec<String> = previous
        .tags
        .keys()
        .filter(|k| k.starts_with(&gate_prefix) && !tags.iter().any(|(key, _)| key == *k))
        .cloned()
        .collect();
    // Built in a loop, not an iterator adapter: closures over borrowed pairs make the future
    // lose `Send` generality, which the daemon's worker pool needs.
    let mut calls: Vec<BoxFuture<'_, Result<(), MlflowError>>> = Vec::new();
    for (k, v) in &tags {
        calls.push(client.set_version_tag(name, version, k, v).boxed());
    }
    for k in &stale {
        calls.push(client.delete_version_tag(name, version, k).boxed());
    }
    stream::iter(calls)
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    client
        .set_version_tag(name, version, &names.fingerprint(), &e.fingerprint)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::Evaluation;
    use crate::gates::{GateResult, Outcome};
    use crate::verdict::Verdict;

    fn eval_with_message(len: usize, gates: usize) -> Evaluation {
        let g = (0..gates)
            .map(|i| GateResult {
                name: format!("g{i}"),
                gate_type: "command",
                outcome: Outcome::Fail,
                enforced: true,
                observed: json!("x".repeat(len)),
                threshold: Value::Null,
                message: "m".repeat(len),
                duration_ms: 1,
                attempts: 1,
                details: Some(json!({"log": "y".repeat(len)})),
                inconclusive: false,
            })
            .collect();
        Evaluation::for_test("m", "1", Verdict::Failed, g)
    }

    #[test]
    fn small_reports_are_whole() {
        let r = report_json(&eval_with_message(10, 2));
        let v: Value = serde_json::from_str(&r).unwrap();
        assert!(v.get("truncated").is_none());
        assert_eq!(v["gates"][0]["details"]["log"], json!("y".repeat(10)));
    }

    #[test]
    fn huge_reports_stay_under_the_tag_limit_and_valid_json() {
        for (len, gates) in [(40_000, 3), (200_000, 1), (2_000, 200)] {
            let r = report_json(&eval_with_message(len, gates));
            assert!(r.len() <= REPORT_LIMIT, "{len}x{gates}: {}", r.len());
            let v: Value = serde_json::from_str(&r).unwrap();
            assert_eq!(v["truncated"], json!(true));
            assert_eq!(v["verdict"], json!("failed"));
        }
    }
}
