//! An evaluated outcome for the renderers' unit tests: one gate of each kind of result.

use serde_json::{Value, json};

use stagegate::decision::Decision;
use stagegate::engine::Outcome;
use stagegate::evaluation::Evaluation;
use stagegate::gates::{GateResult, Outcome as G};
use stagegate::verdict::Verdict;

pub fn gate(name: &str, outcome: G, enforced: bool, message: &str) -> GateResult {
    GateResult {
        name: name.into(),
        gate_type: "metric",
        outcome,
        enforced,
        observed: json!(0.812),
        threshold: json!({"min": 0.85}),
        message: message.into(),
        duration_ms: 1234,
        attempts: 1,
        details: None,
        inconclusive: false,
    }
}

/// `churn` v3, failed: a passing gate, a failing one, an error, a failing shadow gate.
pub fn failed() -> Outcome {
    let gates = vec![
        gate("accuracy", G::Pass, true, "val_accuracy=0.9 >= min 0.85"),
        gate("f1", G::Fail, true, "val_f1=0.812 < min 0.85"),
        gate("latency", G::Error, true, "serving failed to start"),
        gate("p99-shadow", G::Fail, false, "p99=12ms > 10ms"),
    ];
    outcome(Verdict::Failed, gates, Decision::Keep)
}

pub fn outcome(verdict: Verdict, gates: Vec<GateResult>, decision: Decision) -> Outcome {
    Outcome {
        evaluation: Evaluation {
            model: "churn".into(),
            version: "3".into(),
            policy: "default".into(),
            policy_digest: "0123456789ab".into(),
            verdict,
            gates,
            evaluated_at: "2026-12-02T10:00:00.000Z".into(),
            duration_ms: 2500,
            champion: Some("2".into()),
            fingerprint: "f".repeat(16),
            inputs: Default::default(),
            datasets: vec![],
            serving: Value::Null,
        },
        decision,
        act_error: None,
    }
}
