//! Measurements so far to an analysis outcome (pure). Argo Rollouts' rules: a metric fails
//! once its failed measurements exceed `failure_limit`; the analysis is inconclusive once a
//! metric's inconclusive measurements exceed `inconclusive_limit`; it passes when every metric
//! has its `count` measurements without either.

use crate::analysis::provider::Measurement;

/// A metric's thresholds: a value passes when `min <= value <= max` (each optional).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One measurement, judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Pass(f64),
    /// The value and the threshold it broke, as the tag writes it (`< min 0.9`).
    Fail(f64, String),
    Inconclusive(String),
}

impl Thresholds {
    pub fn judge(&self, m: &Measurement) -> Point {
        match *m {
            Measurement::Inconclusive(ref why) => Point::Inconclusive(why.clone()),
            Measurement::Value(v) => match (self.min, self.max) {
                (Some(min), _) if v < min => Point::Fail(v, format!("< min {min}")),
                (_, Some(max)) if v > max => Point::Fail(v, format!("> max {max}")),
                _ => Point::Pass(v),
            },
        }
    }
}

/// The rules every metric of an analysis is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub count: u32,
    pub failure_limit: u32,
    pub inconclusive_limit: u32,
}

/// Where an analysis stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Running,
    Passed,
    /// The metric, its last failing value and the threshold it broke.
    Failed {
        metric: String,
        value: f64,
        threshold: String,
    },
    /// The metric whose data was missing too often, and the last reason.
    Inconclusive {
        metric: String,
        why: String,
    },
}

/// The outcome of `points` (each metric's judged measurements, in order) under `limits`.
/// Failure is checked before inconclusiveness, metric by metric in the given order, so the
/// same points always give the same outcome.
pub fn outcome(limits: Limits, points: &[(String, Vec<Point>)]) -> Outcome {
    for (metric, ps) in points {
        let failed: Vec<_> = ps
            .iter()
            .filter_map(|p| match p {
                Point::Fail(v, t) => Some((*v, t)),
                _ => None,
            })
            .collect();
        if failed.len() as u64 > u64::from(limits.failure_limit) {
            let (value, threshold) = failed[failed.len() - 1];
            return Outcome::Failed {
                metric: metric.clone(),
                value,
                threshold: threshold.clone(),
            };
        }
    }
    for (metric, ps) in points {
        let missing: Vec<&String> = ps
            .iter()
            .filter_map(|p| match p {
                Point::Inconclusive(w) => Some(w),
                _ => None,
            })
            .collect();
        if missing.len() as u64 > u64::from(limits.inconclusive_limit) {
            return Outcome::Inconclusive {
                metric: metric.clone(),
                why: missing[missing.len() - 1].clone(),
            };
        }
    }
    if points
        .iter()
        .all(|(_, ps)| ps.len() as u64 >= u64::from(limits.count))
    {
        Outcome::Passed
    } else {
        Outcome::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        count: 3,
        failure_limit: 1,
        inconclusive_limit: 1,
    };

    fn err_rate() -> Thresholds {
        Thresholds {
            min: None,
            max: Some(0.01),
        }
    }

    #[test]
    fn a_measurement_passes_between_its_thresholds_inclusive() {
        let t = Thresholds {
            min: Some(0.5),
            max: Some(1.0),
        };
        assert_eq!(t.judge(&Measurement::Value(0.5)), Point::Pass(0.5));
        assert_eq!(t.judge(&Measurement::Value(1.0)), Point::Pass(1.0));
        assert_eq!(
            t.judge(&Measurement::Value(0.4)),
            Point::Fail(0.4, "< min 0.5".into())
        );
        assert_eq!(
            t.judge(&Measurement::Value(1.5)),
            Point::Fail(1.5, "> max 1".into())
        );
        assert_eq!(
            t.judge(&Measurement::Inconclusive("down".into())),
            Point::Inconclusive("down".into())
        );
    }

    #[test]
    fn failures_past_the_limit_fail_and_missing_data_never_does() {
        let judge = |values: &[Measurement]| {
            let ps = values.iter().map(|m| err_rate().judge(m)).collect();
            outcome(LIMITS, &[("errors".into(), ps)])
        };
        let v = Measurement::Value;
        let down = || Measurement::Inconclusive("connection refused".into());
        assert_eq!(judge(&[v(0.0)]), Outcome::Running);
        assert_eq!(judge(&[v(0.0), v(0.0), v(0.001)]), Outcome::Passed);
        // One failure is tolerated (failure_limit = 1), the second is not.
        assert_eq!(judge(&[v(0.5), v(0.0), v(0.0)]), Outcome::Passed);
        assert_eq!(
            judge(&[v(0.5), v(0.2)]),
            Outcome::Failed {
                metric: "errors".into(),
                value: 0.2,
                threshold: "> max 0.01".into()
            }
        );
        assert_eq!(judge(&[down(), v(0.0), v(0.0)]), Outcome::Passed);
        assert_eq!(
            judge(&[down(), down()]),
            Outcome::Inconclusive {
                metric: "errors".into(),
                why: "connection refused".into()
            }
        );
    }

    #[test]
    fn every_metric_needs_its_count_and_a_failure_outranks_missing_data() {
        let pass = || Point::Pass(0.0);
        let fail = || Point::Fail(1.0, "> max 0.01".into());
        let gone = || Point::Inconclusive("empty".into());
        let o = outcome(
            LIMITS,
            &[
                ("a".into(), vec![pass(), pass(), pass()]),
                ("b".into(), vec![pass(), pass()]),
            ],
        );
        assert_eq!(o, Outcome::Running);
        let o = outcome(
            LIMITS,
            &[
                ("a".into(), vec![gone(), gone()]),
                ("b".into(), vec![fail(), fail()]),
            ],
        );
        assert!(
            matches!(o, Outcome::Failed { ref metric, .. } if metric == "b"),
            "{o:?}"
        );
    }
}
