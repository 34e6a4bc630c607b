//! `metric`: the latest value of a training metric within `[min, max]`.

use serde_json::json;

use super::{Facts, Judgement, Outcome, jnum, num};
use crate::config::MetricGate;

pub fn judge(g: &MetricGate, facts: &Facts) -> Judgement {
    let threshold = json!({"min": g.min, "max": g.max});
    let training = match &facts.training {
        Some(Ok(t)) => t,
        Some(Err(msg)) => return Judgement::error(msg.clone()),
        None => return Judgement::error("training facts were not fetched"),
    };
    let Some(&value) = training.metrics.get(&g.metric) else {
        let mut known: Vec<&str> = training.metrics.keys().map(String::as_str).collect();
        known.truncate(10);
        let msg = format!(
            "{} was not logged ({}; it has: {})",
            g.metric,
            training.sources.join(", "),
            if known.is_empty() {
                "no metrics".to_string()
            } else {
                known.join(", ")
            }
        );
        return Judgement::new(Outcome::Fail, serde_json::Value::Null, threshold, msg);
    };
    let shown = format!("{}={}", g.metric, num(value));
    let (outcome, message) = if value.is_nan() {
        (Outcome::Fail, format!("{shown} is not a number"))
    } else if let Some(min) = g.min.filter(|min| value < *min) {
        (Outcome::Fail, format!("{shown} < min {}", num(min)))
    } else if let Some(max) = g.max.filter(|max| value > *max) {
        (Outcome::Fail, format!("{shown} > max {}", num(max)))
    } else {
        let msg = match (g.min, g.max) {
            (Some(lo), Some(hi)) => format!("{shown} within [{}, {}]", num(lo), num(hi)),
            (Some(lo), None) => format!("{shown} >= min {}", num(lo)),
            (None, Some(hi)) => format!("{shown} <= max {}", num(hi)),
            (None, None) => shown,
        };
        (Outcome::Pass, msg)
    };
    Judgement::new(outcome, jnum(value), threshold, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::facts::Training;

    fn facts(metrics: &[(&str, f64)]) -> Facts {
        Facts {
            training: Some(Ok(Training {
                metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                sources: vec!["run r1".into()],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn gate(min: Option<f64>, max: Option<f64>) -> MetricGate {
        MetricGate {
            metric: "val_accuracy".into(),
            min,
            max,
        }
    }

    #[test]
    fn below_min_fails_with_exact_text() {
        let j = judge(&gate(Some(0.85), None), &facts(&[("val_accuracy", 0.812)]));
        assert_eq!(j.outcome, Outcome::Fail);
        assert_eq!(j.message, "val_accuracy=0.812 < min 0.85");
    }

    #[test]
    fn within_bounds_passes() {
        let j = judge(
            &gate(Some(0.8), Some(0.99)),
            &facts(&[("val_accuracy", 0.9)]),
        );
        assert_eq!(j.outcome, Outcome::Pass);
        assert_eq!(j.message, "val_accuracy=0.9 within [0.8, 0.99]");
        let j = judge(&gate(None, Some(0.5)), &facts(&[("val_accuracy", 0.9)]));
        assert_eq!(j.message, "val_accuracy=0.9 > max 0.5");
    }

    #[test]
    fn missing_metric_is_a_failure_that_says_so() {
        let j = judge(&gate(Some(0.85), None), &facts(&[("val_f1", 0.9)]));
        assert_eq!(j.outcome, Outcome::Fail);
        assert!(
            j.message.contains("val_accuracy was not logged"),
            "{}",
            j.message
        );
        assert!(j.message.contains("val_f1"));
    }

    #[test]
    fn nan_fails() {
        let j = judge(
            &gate(Some(0.85), None),
            &facts(&[("val_accuracy", f64::NAN)]),
        );
        assert_eq!(j.outcome, Outcome::Fail);
    }

    #[test]
    fn unreadable_run_is_an_error() {
        let f = Facts {
            training: Some(Err("run gone".into())),
            ..Default::default()
        };
        assert_eq!(judge(&gate(Some(0.1), None), &f).outcome, Outcome::Error);
    }
}
