//! `run`: the training logged the metrics and params it should, and the model files exist,
//! whether they are MLflow 2 run artifacts or an MLflow 3 logged model.

use serde_json::json;

use super::{Facts, Judgement, Outcome};
use crate::config::RunGate;
use crate::mlflow::ModelVersion;

pub fn judge(g: &RunGate, v: &ModelVersion, facts: &Facts) -> Judgement {
    let threshold =
        json!({"metrics": g.metrics, "params": g.params, "model_artifact": g.model_artifact});
    let mut lacks = Vec::new();
    let mut found = Vec::new();
    if !g.metrics.is_empty() || !g.params.is_empty() {
        let t = match &facts.training {
            Some(Ok(t)) => t,
            Some(Err(msg)) => return Judgement::error(msg.clone()),
            None => return Judgement::error("training facts were not fetched"),
        };
        let missing_metrics: Vec<&str> = g
            .metrics
            .iter()
            .filter(|m| !t.metrics.contains_key(*m))
            .map(String::as_str)
            .collect();
        let missing_params: Vec<&str> = g
            .params
            .iter()
            .filter(|p| !t.params.contains_key(*p))
            .map(String::as_str)
            .collect();
        if !missing_metrics.is_empty() {
            lacks.push(format!("metrics {}", missing_metrics.join(", ")));
        } else if !g.metrics.is_empty() {
            found.push(format!("metrics {}", g.metrics.join(", ")));
        }
        if !missing_params.is_empty() {
            lacks.push(format!("params {}", missing_params.join(", ")));
        } else if !g.params.is_empty() {
            found.push(format!("params {}", g.params.join(", ")));
        }
    }
    if g.model_artifact {
        match &facts.model_files {
            Some(Ok(true)) => found.push(model_kind(v)),
            Some(Ok(false)) => lacks.push(format!("model files (no MLmodel under {})", v.source)),
            Some(Err(msg)) => return Judgement::error(msg.clone()),
            None => return Judgement::error("model files were not checked"),
        }
    }
    let observed = json!({"found": found, "missing": lacks});
    if lacks.is_empty() {
        Judgement::new(
            Outcome::Pass,
            observed,
            threshold,
            format!("complete: {}", found.join("; ")),
        )
    } else {
        Judgement::new(
            Outcome::Fail,
            observed,
            threshold,
            format!("v{} lacks {}", v.version, lacks.join("; ")),
        )
    }
}

fn model_kind(v: &ModelVersion) -> String {
    match v.logged_model_id() {
        Some(id) => format!("model files (logged model {id})"),
        None => "model files (run artifact)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::facts::Training;

    fn gate() -> RunGate {
        RunGate {
            metrics: vec!["val_accuracy".into(), "val_f1".into()],
            params: vec!["seed".into()],
            model_artifact: true,
        }
    }

    fn facts(metrics: &[&str], params: &[&str], files: bool) -> Facts {
        Facts {
            training: Some(Ok(Training {
                metrics: metrics.iter().map(|k| (k.to_string(), 1.0)).collect(),
                params: params.iter().map(|k| (k.to_string(), "1".into())).collect(),
                sources: vec!["run r".into()],
            })),
            model_files: Some(Ok(files)),
            ..Default::default()
        }
    }

    #[test]
    fn mlflow3_logged_model_counts_as_model_files() {
        let v = ModelVersion {
            version: "1".into(),
            source: "models:/m-abc".into(),
            ..Default::default()
        };
        let j = judge(
            &gate(),
            &v,
            &facts(&["val_accuracy", "val_f1"], &["seed"], true),
        );
        assert_eq!(j.outcome, Outcome::Pass, "{}", j.message);
        assert!(j.message.contains("logged model m-abc"));
    }

    #[test]
    fn lists_everything_missing() {
        let v = ModelVersion {
            version: "2".into(),
            source: "runs:/r/model".into(),
            ..Default::default()
        };
        let j = judge(&gate(), &v, &facts(&["val_accuracy"], &[], false));
        assert_eq!(j.outcome, Outcome::Fail);
        assert_eq!(
            j.message,
            "v2 lacks metrics val_f1; params seed; model files (no MLmodel under runs:/r/model)"
        );
    }
}
