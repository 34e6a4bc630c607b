//! `--summary FILE`: the evaluation as a markdown table, for `$GITHUB_STEP_SUMMARY` (GitHub
//! renders it on the run's page) or any CI that shows markdown. Appended, as GitHub expects,
//! so several `evaluate` steps share one summary.

use stagegate::engine::Outcome as Evaluated;
use stagegate::gates::{GateResult, Outcome};
use stagegate::verdict::Verdict;

use super::output::{action_text, value_text};

/// The markdown section of an evaluation: a heading, the gate table, verdict and action.
pub fn render(o: &Evaluated) -> String {
    let e = &o.evaluation;
    let verdict = match e.verdict {
        Verdict::Passed => "✅ passed",
        Verdict::Failed => "❌ failed",
        Verdict::Error => "⚠️ error",
    };
    let mut s = format!(
        "### stagegate: {} v{}: {verdict}\n\n| Gate | Type | Outcome | Observed | Threshold | Message |\n|---|---|---|---|---|---|\n",
        cell(&e.model),
        cell(&e.version),
    );
    for g in &e.gates {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(&g.name),
            g.gate_type,
            outcome(g),
            cell(&value_text(&g.observed)),
            cell(&value_text(&g.threshold)),
            cell(&g.message),
        ));
    }
    let champion = e
        .champion
        .as_deref()
        .map_or("none".into(), |c| format!("v{c}"));
    s.push_str(&format!(
        "\n**Verdict:** {} · **Action:** {} · policy {} (digest {}) · champion {}\n\n",
        e.verdict.as_str(),
        cell(&action_text(o)),
        cell(&e.policy),
        e.policy_digest,
        cell(&champion),
    ));
    s
}

/// The section when no evaluation could be made.
pub fn render_error(model: &str, version: Option<&str>, error: &str) -> String {
    let version = version
        .map(|v| format!(" v{}", cell(v)))
        .unwrap_or_default();
    format!(
        "### stagegate: {}{version}: ⚠️ error\n\n**Verdict:** error · {}\n\n",
        cell(model),
        cell(error)
    )
}

/// A symbol and a word, so the table reads without colour and in screen readers. A shadow
/// gate that did not pass is a warning: it says what would have blocked, and blocks nothing.
fn outcome(g: &GateResult) -> String {
    match g.outcome {
        Outcome::Pass => "✅ pass".into(),
        o if !g.enforced => format!("⚠️ {} (shadow, would block)", o.as_str()),
        Outcome::Fail if g.inconclusive => "⚠️ inconclusive".into(),
        Outcome::Fail => "❌ fail".into(),
        Outcome::Error => "⚠️ error".into(),
    }
}

/// Text inside a table cell: a `|` would end the cell and a line break the row; `<` and `>`
/// are entities so a message is never read as HTML.
pub fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => out.push_str("<br>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
