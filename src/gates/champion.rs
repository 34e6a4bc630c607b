//! `champion`: the candidate does not regress on a metric against the promoted version.

use std::ops::ControlFlow::{self, Break, Continue};

use serde_json::json;

use super::{Facts, Judgement, Outcome, jnum, num};
use crate::config::ChampionGate;
use crate::mlflow::ModelVersion;

/// Slack for float noise, so "drop 0.01 <= max_drop 0.01" is not failed by rounding.
const EPS: f64 = 1e-12;

pub fn judge(g: &ChampionGate, champion: Option<&ModelVersion>, facts: &Facts) -> Judgement {
    let threshold = json!({
        "max_drop": g.max_drop, "max_drop_ratio": g.max_drop_ratio, "greater_is_better": g.greater_is_better,
    });
    match values(g, champion, facts, &threshold) {
        Continue((cand, champ, champ_v)) => compare(g, cand, champ, champ_v, threshold),
        Break(judged) => judged,
    }
}

/// The candidate's and the champion's values of the metric, and the champion; or the
/// judgement when there is nothing to compare: a fact missing (error), no value for the
/// candidate (fail), no champion or none with the metric (pass).
fn values<'a>(
    g: &ChampionGate,
    champion: Option<&'a ModelVersion>,
    facts: &Facts,
    threshold: &serde_json::Value,
) -> ControlFlow<Judgement, (f64, f64, &'a ModelVersion)> {
    let cand = match &facts.training {
        Some(Ok(t)) => t.metrics.get(&g.metric).copied(),
        Some(Err(msg)) => return Break(Judgement::error(msg.clone())),
        None => return Break(Judgement::error("training facts were not fetched")),
    };
    let Some(cand) = cand.filter(|c| !c.is_nan()) else {
        return Break(Judgement::new(
            Outcome::Fail,
            serde_json::Value::Null,
            threshold.clone(),
            format!("{} was not logged for the candidate", g.metric),
        ));
    };
    let Some(champ_v) = champion else {
        return Break(Judgement::new(
            Outcome::Pass,
            json!({"candidate": jnum(cand)}),
            threshold.clone(),
            format!(
                "no champion yet: nothing to compare {}={} with",
                g.metric,
                num(cand)
            ),
        ));
    };
    let champ = match &facts.champion_training {
        Some(Ok(t)) => t.metrics.get(&g.metric).copied(),
        Some(Err(msg)) => {
            return Break(Judgement::error(format!(
                "champion v{}: {msg}",
                champ_v.version
            )));
        }
        None => return Break(Judgement::error("champion facts were not fetched")),
    };
    let Some(champ) = champ.filter(|c| !c.is_nan()) else {
        return Break(Judgement::new(
            Outcome::Pass,
            json!({"candidate": jnum(cand)}),
            threshold.clone(),
            format!(
                "champion v{} has no {}: nothing to compare with",
                champ_v.version, g.metric
            ),
        ));
    };
    Continue((cand, champ, champ_v))
}

/// The drop from `champ` to `cand` against `max_drop` (0 when no bound is set) and
/// `max_drop_ratio`.
fn compare(
    g: &ChampionGate,
    cand: f64,
    champ: f64,
    champ_v: &ModelVersion,
    threshold: serde_json::Value,
) -> Judgement {
    // Positive drop = the candidate is worse.
    let drop = if g.greater_is_better {
        champ - cand
    } else {
        cand - champ
    };
    let ratio = if champ != 0.0 {
        drop / champ.abs()
    } else if drop > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let max_drop = match (g.max_drop, g.max_drop_ratio) {
        (None, None) => Some(0.0),
        (d, _) => d,
    };
    let observed = json!({"candidate": jnum(cand), "champion": jnum(champ), "champion_version": champ_v.version, "drop": jnum(drop), "drop_ratio": jnum(ratio)});
    let head = format!(
        "{}={} vs champion v{} {}",
        g.metric,
        num(cand),
        champ_v.version,
        num(champ)
    );
    if let Some(limit) = max_drop.filter(|l| drop > l + EPS) {
        return Judgement::new(
            Outcome::Fail,
            observed,
            threshold,
            format!("{head}: drop {} > max_drop {}", num(drop), num(limit)),
        );
    }
    if let Some(limit) = g.max_drop_ratio.filter(|l| ratio > l + EPS) {
        return Judgement::new(
            Outcome::Fail,
            observed,
            threshold,
            format!(
                "{head}: drop ratio {} > max_drop_ratio {}",
                num(ratio),
                num(limit)
            ),
        );
    }
    let within = match (max_drop, g.max_drop_ratio) {
        (Some(d), Some(r)) => format!("max_drop {}, max_drop_ratio {}", num(d), num(r)),
        (Some(d), None) => format!("max_drop {}", num(d)),
        (None, Some(r)) => format!("max_drop_ratio {}", num(r)),
        (None, None) => unreachable!("max_drop defaults to 0"),
    };
    Judgement::new(
        Outcome::Pass,
        observed,
        threshold,
        format!("{head}: drop {} within {within}", num(drop)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::facts::Training;

    fn t(v: f64) -> Option<Result<Training, String>> {
        Some(Ok(Training {
            metrics: [("acc".to_string(), v)].into(),
            ..Default::default()
        }))
    }

    fn gate(max_drop: Option<f64>, ratio: Option<f64>, gib: bool) -> ChampionGate {
        ChampionGate {
            metric: "acc".into(),
            max_drop,
            max_drop_ratio: ratio,
            greater_is_better: gib,
        }
    }

    fn champ() -> ModelVersion {
        ModelVersion {
            version: "2".into(),
            ..Default::default()
        }
    }

    #[test]
    fn no_champion_passes_and_says_so() {
        let f = Facts {
            training: t(0.8),
            ..Default::default()
        };
        let j = judge(&gate(Some(0.01), None, true), None, &f);
        assert_eq!(j.outcome, Outcome::Pass);
        assert!(j.message.starts_with("no champion yet"));
    }

    #[test]
    fn regression_beyond_max_drop_fails() {
        let f = Facts {
            training: t(0.85),
            champion_training: t(0.9),
            ..Default::default()
        };
        let j = judge(&gate(Some(0.01), None, true), Some(&champ()), &f);
        assert_eq!(j.outcome, Outcome::Fail);
        assert_eq!(
            j.message,
            "acc=0.85 vs champion v2 0.9: drop 0.05 > max_drop 0.01"
        );
        let j = judge(&gate(Some(0.1), None, true), Some(&champ()), &f);
        assert_eq!(j.outcome, Outcome::Pass);
    }

    #[test]
    fn ratio_and_lower_is_better() {
        // rmse: lower is better; 1.1 vs 1.0 is a 10% regression.
        let f = Facts {
            training: t(1.1),
            champion_training: t(1.0),
            ..Default::default()
        };
        assert_eq!(
            judge(&gate(None, Some(0.05), false), Some(&champ()), &f).outcome,
            Outcome::Fail
        );
        assert_eq!(
            judge(&gate(None, Some(0.2), false), Some(&champ()), &f).outcome,
            Outcome::Pass
        );
    }

    #[test]
    fn exact_limit_passes_despite_float_noise() {
        let f = Facts {
            training: t(0.89),
            champion_training: t(0.9),
            ..Default::default()
        };
        assert_eq!(
            judge(&gate(Some(0.01), None, true), Some(&champ()), &f).outcome,
            Outcome::Pass
        );
    }
}
