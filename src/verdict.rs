//! What one gate says of a version (its [`Outcome`]), what all of a policy's gates say
//! together (the [`Verdict`]), and the rule from the one to the other. Pure.

use serde::Serialize;

/// One gate's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
        }
    }
}

/// A version's verdict under a policy.
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

    /// The verdict of gate results given as (enforced, outcome): an enforced error makes it
    /// `error`; else an enforced failure makes it `failed`. Shadow gates never count.
    pub fn of(results: impl IntoIterator<Item = (bool, Outcome)>) -> Verdict {
        let enforced: Vec<Outcome> = results
            .into_iter()
            .filter_map(|(enforced, outcome)| enforced.then_some(outcome))
            .collect();
        if enforced.contains(&Outcome::Error) {
            Verdict::Error
        } else if enforced.contains(&Outcome::Fail) {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_rules() {
        use Outcome::*;
        let of = |results: &[(Outcome, bool)]| {
            Verdict::of(
                results
                    .iter()
                    .map(|(outcome, enforced)| (*enforced, *outcome)),
            )
        };
        assert_eq!(of(&[(Pass, true)]), Verdict::Passed);
        assert_eq!(of(&[(Pass, true), (Fail, true)]), Verdict::Failed);
        assert_eq!(of(&[(Fail, true), (Error, true)]), Verdict::Error);
        // Shadow gates never block.
        assert_eq!(
            of(&[(Pass, true), (Fail, false), (Error, false)]),
            Verdict::Passed
        );
        assert_eq!(of(&[]), Verdict::Passed);
    }
}
