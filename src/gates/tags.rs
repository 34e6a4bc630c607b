//! `tags`: required model-version tags are present and non-empty, and — where the policy
//! names accepted values — hold one of them (e.g. a person's `approval = approved`).

use serde_json::{Map, Value, json};

use super::{Judgement, Outcome};
use crate::config::TagsGate;
use crate::mlflow::ModelVersion;
use crate::tags::clip;

/// Tag values may be 100,000 characters long: messages quote at most this many.
const QUOTE: usize = 80;

pub fn judge(g: &TagsGate, v: &ModelVersion) -> Judgement {
    let entries = g.required.entries();
    let mut observed = Map::new();
    let mut problems = Vec::new();
    for (key, accepted) in &entries {
        let value = v.tag(key).filter(|val| !val.trim().is_empty());
        observed.insert(
            key.to_string(),
            value.map_or(Value::Null, |s| json!(clip(s, QUOTE))),
        );
        match (value, accepted) {
            (None, None) => problems.push(key.to_string()),
            (None, Some(ok)) => problems.push(format!("{key} missing (expected {})", expected(ok))),
            (Some(val), Some(ok)) if !ok.iter().any(|a| a == val) => problems.push(format!(
                "{key} = {:?} (expected {})",
                clip(val, QUOTE),
                expected(ok)
            )),
            _ => {}
        }
    }
    let threshold = json!({"required": g.required});
    let with_values = entries.iter().any(|(_, a)| a.is_some());
    if problems.is_empty() {
        let msg = format!(
            "all {} required tags present{}",
            entries.len(),
            if with_values {
                " with accepted values"
            } else {
                ""
            }
        );
        Judgement::new(Outcome::Pass, Value::Object(observed), threshold, msg)
    } else {
        let (head, sep) = if with_values {
            ("not as required", "; ")
        } else {
            ("missing or empty", ", ")
        };
        let msg = format!("{head} on v{}: {}", v.version, problems.join(sep));
        Judgement::new(Outcome::Fail, Value::Object(observed), threshold, msg)
    }
}

/// `"approved"` or `one of "low", "medium"`.
fn expected(accepted: &[String]) -> String {
    let quoted: Vec<String> = accepted.iter().map(|a| format!("{a:?}")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        many => format!("one of {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::RequiredTags;

    fn version(tags: &[(&str, &str)]) -> ModelVersion {
        let mut v = ModelVersion {
            version: "3".into(),
            ..Default::default()
        };
        for (k, val) in tags {
            v.tags.insert(k.to_string(), val.to_string());
        }
        v
    }

    fn values(pairs: &[(&str, &[&str])]) -> TagsGate {
        let map: BTreeMap<String, Vec<String>> = pairs
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|s| s.to_string()).collect()))
            .collect();
        TagsGate {
            required: RequiredTags::Values(map),
        }
    }

    #[test]
    fn names_missing_and_empty_tags() {
        let g = TagsGate {
            required: RequiredTags::Present(vec![
                "accuracy".into(),
                "training_dataset_version".into(),
                "feature_schema_version".into(),
            ]),
        };
        let mut v = version(&[("accuracy", "0.9"), ("feature_schema_version", " ")]);
        let j = judge(&g, &v);
        assert_eq!(j.outcome, Outcome::Fail);
        assert_eq!(
            j.message,
            "missing or empty on v3: training_dataset_version, feature_schema_version"
        );
        assert_eq!(j.observed["accuracy"], json!("0.9"));
        assert_eq!(j.observed["feature_schema_version"], Value::Null);
        v.tags
            .insert("training_dataset_version".into(), "v1".into());
        v.tags.insert("feature_schema_version".into(), "1".into());
        let j = judge(&g, &v);
        assert_eq!(j.outcome, Outcome::Pass);
        assert_eq!(j.message, "all 3 required tags present");
    }

    #[test]
    fn approval_must_hold_an_accepted_value() {
        let g = values(&[("approval", &["approved"]), ("risk", &["low", "medium"])]);
        let j = judge(&g, &version(&[("risk", "low")]));
        assert_eq!(j.outcome, Outcome::Fail);
        assert_eq!(
            j.message,
            "not as required on v3: approval missing (expected \"approved\")"
        );
        let j = judge(&g, &version(&[("approval", "rejected"), ("risk", "high")]));
        assert_eq!(j.outcome, Outcome::Fail);
        assert_eq!(
            j.message,
            "not as required on v3: approval = \"rejected\" (expected \"approved\"); \
             risk = \"high\" (expected one of \"low\", \"medium\")"
        );
        assert_eq!(j.observed, json!({"approval": "rejected", "risk": "high"}));
        // Exact values: case and surrounding text count.
        let j = judge(
            &g,
            &version(&[("approval", "Approved"), ("risk", "medium")]),
        );
        assert_eq!(j.outcome, Outcome::Fail);
        let j = judge(
            &g,
            &version(&[("approval", "approved"), ("risk", "medium")]),
        );
        assert_eq!(j.outcome, Outcome::Pass);
        assert_eq!(
            j.message,
            "all 2 required tags present with accepted values"
        );
        assert_eq!(
            j.threshold,
            json!({"required": {"approval": ["approved"], "risk": ["low", "medium"]}})
        );
    }

    #[test]
    fn long_values_are_quoted_short() {
        let g = values(&[("approval", &["approved"])]);
        let long = "x".repeat(100_000);
        let j = judge(&g, &version(&[("approval", &long)]));
        assert_eq!(j.outcome, Outcome::Fail);
        assert!(j.message.len() < 300, "{}", j.message);
        assert!(j.message.contains("[truncated]"), "{}", j.message);
    }
}
