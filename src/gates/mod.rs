//! Gates: each judges one aspect of a candidate and says pass, fail or error, with what it
//! observed, the threshold, and a one-line message.
//!
//! The registry gates (metric, tags, run, champion) are pure functions over [`Facts`] fetched
//! up front, so they are unit-tested without a server.

mod champion;
mod command;
pub mod dataset;
pub mod edge_cases;
pub mod facts;
pub mod latency;
mod metric;
mod run;
mod tags;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Gate, GateKind};
use crate::mlflow::ModelVersion;
use crate::serving::Session;
pub use crate::verdict::Outcome;
pub use facts::Facts;

/// What a gate concluded, before the engine adds name, timing and attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub outcome: Outcome,
    pub observed: Value,
    pub threshold: Value,
    pub message: String,
    /// Extra structured detail for the report (per-slice scores, failing cases…).
    pub details: Option<Value>,
    /// A `fail` that is really "could not tell" (vs_champion): the CLI exits 2, not 1.
    pub inconclusive: bool,
}

impl Judgement {
    pub fn new(
        outcome: Outcome,
        observed: Value,
        threshold: Value,
        message: impl Into<String>,
    ) -> Self {
        Self {
            outcome,
            observed,
            threshold,
            message: message.into(),
            details: None,
            inconclusive: false,
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Outcome::Error, Value::Null, Value::Null, message)
    }
}

/// One gate's recorded result.
#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    pub name: String,
    #[serde(rename = "type")]
    pub gate_type: &'static str,
    pub outcome: Outcome,
    pub enforced: bool,
    pub observed: Value,
    pub threshold: Value,
    pub message: String,
    pub duration_ms: u64,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inconclusive: bool,
}

impl GateResult {
    pub fn new(gate: &Gate, j: Judgement, duration_ms: u64, attempts: u32) -> Self {
        GateResult {
            name: gate.name.clone(),
            gate_type: gate.kind.type_name(),
            outcome: j.outcome,
            enforced: gate.enforce,
            observed: j.observed,
            threshold: j.threshold,
            message: j.message,
            duration_ms,
            attempts,
            details: j.details,
            inconclusive: j.inconclusive,
        }
    }

    /// Whether this result stops promotion: an enforced gate that did not pass.
    pub fn blocks(&self) -> bool {
        self.enforced && self.outcome != Outcome::Pass
    }

    /// The `stagegate.gate.<name>` tag value: `pass: …`, `fail: …`, `error: …`; a shadow gate
    /// that did not pass says it would have blocked.
    pub fn tag_value(&self) -> String {
        let head = if !self.enforced && self.outcome != Outcome::Pass {
            format!("{} (shadow, would block)", self.outcome.as_str())
        } else {
            self.outcome.as_str().to_string()
        };
        crate::tags::clip(&format!("{head}: {}", self.message), 5_000)
    }
}

/// What an evaluation judges its gates on.
pub struct Subject<'a> {
    pub candidate: &'a ModelVersion,
    pub champion: Option<&'a ModelVersion>,
    /// The registry facts the policy's gates need, fetched once up front.
    pub facts: &'a Facts,
    /// The candidate (and champion) served on demand, shared by the evaluation's gates.
    pub session: &'a Session,
    /// What a command gate's `MLFLOW_TRACKING_URI` says.
    pub tracking_uri: &'a str,
}

/// Judge one gate once. Registry gates are pure over the facts; the others exercise the
/// model itself, served or through a command.
pub async fn judge(kind: &GateKind, on: &Subject<'_>) -> Judgement {
    match kind {
        GateKind::Metric(g) => metric::judge(g, on.facts),
        GateKind::Tags(g) => tags::judge(g, on.candidate),
        GateKind::Run(g) => run::judge(g, on.candidate, on.facts),
        GateKind::Champion(g) => champion::judge(g, on.champion, on.facts),
        GateKind::Latency(g) => latency::judge(g, on.session).await,
        GateKind::EdgeCases(g) => edge_cases::judge(g, on.session).await,
        GateKind::Dataset(g) => dataset::judge(g, on.session).await,
        GateKind::Command(g) => command::judge(g, on.session, on.tracking_uri).await,
    }
}

/// Whether a gate's `retries` can change its outcome. A gate that exercises the model may
/// fail by chance (a server slow to start, a flaky command); a registry gate judges facts
/// fetched once, which it would read the same way again.
pub fn retries_apply(kind: &GateKind) -> bool {
    match kind {
        GateKind::Metric(_) | GateKind::Tags(_) | GateKind::Run(_) | GateKind::Champion(_) => false,
        GateKind::Latency(_)
        | GateKind::EdgeCases(_)
        | GateKind::Dataset(_)
        | GateKind::Command(_) => true,
    }
}

/// Numbers in messages: exact for short values, 6 decimals at most for long ones.
pub fn num(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    let short = format!("{x}");
    if short.len() <= 10 {
        return short;
    }
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A float as JSON, `null` when not finite (JSON has no NaN).
pub fn jnum(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(0.812), "0.812");
        assert_eq!(num(0.85), "0.85");
        assert_eq!(num(0.9133333333333333), "0.913333");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(f64::NAN), "NaN");
    }
}
