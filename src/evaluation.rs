//! One evaluation: run every gate of a policy against one candidate version and reduce the
//! results to a verdict. Writes nothing; [`crate::report`] records it.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Gate, GateKind, Policy};
use crate::gates::{self, Facts, GateResult, Judgement, Outcome};
use crate::mlflow::{Client, MlflowError, ModelVersion};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    Failed,
    /// Inconclusive: never acted on.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "passed" => Some(Verdict::Passed),
            "failed" => Some(Verdict::Failed),
            "error" => Some(Verdict::Error),
            _ => None,
        }
    }

    /// An enforced error makes the whole verdict `error`; else an enforced failure makes it
    /// `failed`. Shadow gates never count.
    pub fn of(gates: &[GateResult]) -> Verdict {
        let enforced = || gates.iter().filter(|g| g.enforced);
        if enforced().any(|g| g.outcome == Outcome::Error) {
            Verdict::Error
        } else if enforced().any(|g| g.outcome == Outcome::Fail) {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
    }
}

/// A dataset read by a gate, recorded so the verdict can be reproduced.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetRecord {
    pub gate: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub model: String,
    pub version: String,
    pub policy: String,
    pub policy_digest: String,
    pub verdict: Verdict,
    pub gates: Vec<GateResult>,
    /// RFC 3339 UTC.
    pub evaluated_at: String,
    pub duration_ms: u64,
    /// The promoted version at the time of evaluation.
    pub champion: Option<String>,
    pub datasets: Vec<DatasetRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// MLflow failed transiently; try again later.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The policy uses a gate type this build cannot evaluate.
    #[error("{0}")]
    Unsupported(String),
}

impl EvalError {
    pub fn is_transient(&self) -> bool {
        match self {
            EvalError::Mlflow(e) => e.is_transient(),
            EvalError::Unsupported(_) => false,
        }
    }
}

/// Gate types whose evaluation is not available yet; a policy using them is refused rather
/// than recorded with a fake pass.
pub fn unsupported_gates(policy: &Policy) -> Option<String> {
    let names: Vec<String> = policy
        .gates
        .iter()
        .filter(|g| !is_registry_gate(&g.kind))
        .map(|g| format!("{} ({})", g.name, g.kind.type_name()))
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "policy {:?} uses gate types that this stagegate cannot evaluate yet: {}; remove them or \
             set them aside in another policy",
            policy.name,
            names.join(", ")
        )
    })
}

fn is_registry_gate(kind: &GateKind) -> bool {
    matches!(
        kind,
        GateKind::Metric(_) | GateKind::Tags(_) | GateKind::Run(_) | GateKind::Champion(_)
    )
}

/// Evaluate `candidate` against every gate of `policy`.
pub async fn evaluate(
    client: &Client,
    policy: &Policy,
    candidate: &ModelVersion,
    champion: Option<&ModelVersion>,
) -> Result<Evaluation, EvalError> {
    if let Some(why) = unsupported_gates(policy) {
        return Err(EvalError::Unsupported(why));
    }
    let started = Instant::now();
    let evaluated_at = now_rfc3339();
    let facts = Facts::fetch(client, &policy.gates, candidate, champion).await?;
    let results: Vec<GateResult> = policy
        .gates
        .iter()
        .map(|g| judge(g, candidate, champion, &facts))
        .collect();
    Ok(Evaluation {
        model: candidate.name.clone(),
        version: candidate.version.clone(),
        policy: policy.name.clone(),
        policy_digest: policy.digest(),
        verdict: Verdict::of(&results),
        gates: results,
        evaluated_at,
        duration_ms: started.elapsed().as_millis() as u64,
        champion: champion.map(|c| c.version.clone()),
        datasets: Vec::new(),
    })
}

fn judge(
    gate: &Gate,
    candidate: &ModelVersion,
    champion: Option<&ModelVersion>,
    facts: &Facts,
) -> GateResult {
    let started = Instant::now();
    let j =
        gates::judge_registry_gate(&gate.kind, candidate, champion, facts).unwrap_or_else(|| {
            Judgement::error(format!(
                "gate type {} is not evaluated here",
                gate.kind.type_name()
            ))
        });
    GateResult::new(gate, j, started.elapsed().as_millis() as u64, 1)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Evaluation {
    /// The report document (before any size cap).
    pub fn report_value(&self) -> Value {
        json!({
            "stagegate_version": env!("CARGO_PKG_VERSION"),
            "model": self.model,
            "version": self.version,
            "policy": self.policy,
            "policy_digest": self.policy_digest,
            "verdict": self.verdict,
            "evaluated_at": self.evaluated_at,
            "duration_ms": self.duration_ms,
            "champion": self.champion,
            "gates": self.gates,
            "datasets": self.datasets,
        })
    }

    #[cfg(test)]
    pub fn for_test(model: &str, version: &str, verdict: Verdict, gates: Vec<GateResult>) -> Self {
        Evaluation {
            model: model.into(),
            version: version.into(),
            policy: "p".into(),
            policy_digest: "d".into(),
            verdict,
            gates,
            evaluated_at: now_rfc3339(),
            duration_ms: 0,
            champion: None,
            datasets: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Outcome, enforced: bool) -> GateResult {
        GateResult {
            name: "g".into(),
            gate_type: "metric",
            outcome,
            enforced,
            observed: Value::Null,
            threshold: Value::Null,
            message: String::new(),
            duration_ms: 0,
            attempts: 1,
            details: None,
        }
    }

    #[test]
    fn verdict_rules() {
        use Outcome::*;
        assert_eq!(Verdict::of(&[result(Pass, true)]), Verdict::Passed);
        assert_eq!(
            Verdict::of(&[result(Pass, true), result(Fail, true)]),
            Verdict::Failed
        );
        assert_eq!(
            Verdict::of(&[result(Fail, true), result(Error, true)]),
            Verdict::Error
        );
        // Shadow gates never block.
        assert_eq!(
            Verdict::of(&[
                result(Pass, true),
                result(Fail, false),
                result(Error, false)
            ]),
            Verdict::Passed
        );
        assert_eq!(Verdict::of(&[]), Verdict::Passed);
    }
}
