//! One round of an analysis: every metric measured (side by side), each measurement judged,
//! appended to what the store recorded, and the outcome of them all. The recorded JSON is what
//! the store keeps, the status page charts and the report shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::judge::{Outcome, Point, outcome};
use super::provider::{Measurement, Vars, measure};
use crate::config::analysis::Analysis;

/// One judged measurement, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// RFC 3339, when it was taken.
    pub at: String,
    /// `pass`, `fail` or `inconclusive`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The broken threshold (`> max 0.01`), or why there is no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Recorded {
    fn of(point: &Point, at: &str) -> Recorded {
        let (outcome, value, note) = match point {
            Point::Pass(v) => ("pass", Some(*v), None),
            Point::Fail(v, t) => ("fail", Some(*v), Some(t.clone())),
            Point::Inconclusive(why) => ("inconclusive", None, Some(why.clone())),
        };
        Recorded {
            at: at.to_string(),
            outcome: outcome.into(),
            value,
            note,
        }
    }

    fn point(&self) -> Point {
        match (self.outcome.as_str(), self.value) {
            ("pass", Some(v)) => Point::Pass(v),
            ("fail", Some(v)) => Point::Fail(v, self.note.clone().unwrap_or_default()),
            _ => Point::Inconclusive(self.note.clone().unwrap_or_default()),
        }
    }
}

/// Per metric name, its measurements in order.
pub type Rounds = BTreeMap<String, Vec<Recorded>>;

/// The recorded rounds in `stored` (the store's JSON); what does not parse counts as none.
pub fn parse(stored: &Value) -> Rounds {
    serde_json::from_value(stored.clone()).unwrap_or_default()
}

/// The outcome of `rounds` under `cfg`, metrics in the policy's order.
pub fn judge(cfg: &Analysis, rounds: &Rounds) -> Outcome {
    let points: Vec<(String, Vec<Point>)> = cfg
        .metrics
        .iter()
        .map(|m| {
            let ps = rounds
                .get(&m.name)
                .map(|rs| rs.iter().map(Recorded::point).collect())
                .unwrap_or_default();
            (m.name.clone(), ps)
        })
        .collect();
    outcome(super::limits(cfg), &points)
}

/// Measure every metric of `cfg` once, side by side, and append the judged values to
/// `rounds` (stamped `at`).
pub async fn take(
    http: &reqwest::Client,
    cfg: &Analysis,
    vars: &Vars,
    rounds: &mut Rounds,
    at: &str,
) {
    let measured = futures::future::join_all(cfg.metrics.iter().map(|m| async move {
        let got = match super::credentials(m) {
            Ok(c) => measure(http, &super::query(m), vars, &c, cfg.timeout).await,
            Err(e) => Measurement::Inconclusive(e),
        };
        (m, got)
    }))
    .await;
    for (m, got) in measured {
        let point = super::thresholds(m).judge(&got);
        rounds
            .entry(m.name.clone())
            .or_default()
            .push(Recorded::of(&point, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Analysis {
        use crate::config::analysis::{Metric, OnFailure, ProviderKind};
        use std::time::Duration;
        Analysis {
            interval: Duration::from_secs(5),
            count: 2,
            initial_delay: Duration::ZERO,
            failure_limit: 0,
            inconclusive_limit: 1,
            on_failure: OnFailure::Rollback,
            after_bypass: false,
            timeout: Duration::from_secs(2),
            metrics: vec![Metric {
                name: "errors".into(),
                provider: ProviderKind::Web,
                address: None,
                query: None,
                url: Some("http://127.0.0.1:9/x".into()),
                pointer: Some("/e".into()),
                min: None,
                max: Some(0.01),
                token_env: None,
                username_env: None,
                password_env: None,
            }],
        }
    }

    #[test]
    fn recorded_rounds_judge_as_the_points_they_were() {
        let mut r = Rounds::new();
        let pass = Recorded::of(&Point::Pass(0.001), "t1");
        r.entry("errors".into()).or_default().push(pass.clone());
        assert_eq!(judge(&cfg(), &r), Outcome::Running);
        // Through the store's JSON and back.
        let stored = serde_json::to_value(&r).unwrap();
        let mut back = parse(&stored);
        assert_eq!(back, r);
        back.get_mut("errors")
            .unwrap()
            .push(Recorded::of(&Point::Fail(0.3, "> max 0.01".into()), "t2"));
        assert_eq!(
            judge(&cfg(), &back),
            Outcome::Failed {
                metric: "errors".into(),
                value: 0.3,
                threshold: "> max 0.01".into()
            }
        );
        assert!(parse(&serde_json::json!("garbage")).is_empty());
    }

    #[test]
    fn a_provider_that_does_not_answer_is_an_inconclusive_round() {
        let mut r = Rounds::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(take(
            &reqwest::Client::new(),
            &cfg(),
            &Vars::default(),
            &mut r,
            "t1",
        ));
        let got = &r["errors"];
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].outcome, "inconclusive", "{got:?}");
        assert_eq!(judge(&cfg(), &r), Outcome::Running);
        rt.block_on(take(
            &reqwest::Client::new(),
            &cfg(),
            &Vars::default(),
            &mut r,
            "t2",
        ));
        assert!(matches!(judge(&cfg(), &r), Outcome::Inconclusive { .. }));
    }
}
