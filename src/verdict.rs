//! A version's verdict, and the rule that reduces gate results to it. Pure.

use serde::Serialize;

use crate::gates::{GateResult, Outcome};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
            inconclusive: false,
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
