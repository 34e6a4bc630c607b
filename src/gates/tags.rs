//! `tags`: required model-version tags are present and non-empty.

use serde_json::json;

use super::{Judgement, Outcome};
use crate::config::TagsGate;
use crate::mlflow::ModelVersion;

pub fn judge(g: &TagsGate, v: &ModelVersion) -> Judgement {
    let (present, missing): (Vec<&String>, Vec<&String>) = g
        .required
        .iter()
        .partition(|k| v.tag(k).is_some_and(|val| !val.trim().is_empty()));
    let threshold = json!({"required": g.required});
    if missing.is_empty() {
        let msg = format!("all {} required tags present", g.required.len());
        Judgement::new(Outcome::Pass, json!(present), threshold, msg)
    } else {
        let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        let msg = format!("missing or empty on v{}: {}", v.version, names.join(", "));
        Judgement::new(Outcome::Fail, json!(present), threshold, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_and_empty_tags() {
        let mut v = ModelVersion {
            version: "3".into(),
            ..Default::default()
        };
        v.tags.insert("accuracy".into(), "0.9".into());
        v.tags.insert("feature_schema_version".into(), " ".into());
        let g = TagsGate {
            required: vec![
                "accuracy".into(),
                "training_dataset_version".into(),
                "feature_schema_version".into(),
            ],
        };
        let j = judge(&g, &v);
        assert_eq!(j.outcome, Outcome::Fail);
        assert_eq!(
            j.message,
            "missing or empty on v3: training_dataset_version, feature_schema_version"
        );
        v.tags
            .insert("training_dataset_version".into(), "v1".into());
        v.tags.insert("feature_schema_version".into(), "1".into());
        assert_eq!(judge(&g, &v).outcome, Outcome::Pass);
    }
}
