//! `--junit FILE`: the evaluation as JUnit XML, which GitHub Actions, GitLab CI and Jenkins
//! show as a test report. One `<testsuite>` per evaluated version, one `<testcase>` per gate.
//!
//! The document is small and flat, so it is written with one escaping function rather than an
//! XML crate; the function is tested on markup characters and on control characters, which
//! XML 1.0 cannot carry at all.

use std::fmt::Write as _;

use stagegate::engine::Outcome as Evaluated;
use stagegate::gates::{GateResult, Outcome};

use super::output::{action_text, value_text};

/// The JUnit document of an evaluation.
pub fn render(o: &Evaluated) -> String {
    let e = &o.evaluation;
    let classname = format!("{}/{}", e.model, e.version);
    let count = |f: fn(&GateResult) -> bool| e.gates.iter().filter(|g| f(g)).count();
    let failures = count(|g| kind(g) == Kind::Failure);
    let errors = count(|g| kind(g) == Kind::Error);
    let skipped = count(|g| kind(g) == Kind::Skipped);
    let mut x = String::new();
    let _ = write!(
        x,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{}\" timestamp=\"{}\">\n  <properties>\n",
        esc(&format!("stagegate {} v{}", e.model, e.version)),
        e.gates.len(),
        seconds(e.duration_ms),
        esc(&e.evaluated_at),
    );
    let champion = e.champion.clone().unwrap_or_default();
    for (name, value) in [
        ("verdict", e.verdict.as_str().to_string()),
        ("action", action_text(o)),
        ("policy", e.policy.clone()),
        ("policy_digest", e.policy_digest.clone()),
        ("champion", champion),
    ] {
        let _ = writeln!(
            x,
            "    <property name=\"{name}\" value=\"{}\"/>",
            esc(&value)
        );
    }
    x.push_str("  </properties>\n");
    for g in &e.gates {
        let _ = write!(
            x,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
            esc(&classname),
            esc(&g.name),
            seconds(g.duration_ms)
        );
        let detail = format!(
            "{} gate: {}\nobserved: {}\nthreshold: {}",
            g.gate_type,
            g.outcome.as_str(),
            value_text(&g.observed),
            value_text(&g.threshold)
        );
        let message = |head: &str| esc(&format!("{head}: {}", g.message));
        let _ = match kind(g) {
            Kind::Pass => writeln!(x, "/>"),
            Kind::Failure => writeln!(
                x,
                ">\n    <failure message=\"{}\" type=\"fail\">{}</failure>\n  </testcase>",
                message("fail"),
                esc(&detail)
            ),
            Kind::Error => writeln!(
                x,
                ">\n    <error message=\"{}\" type=\"{}\">{}</error>\n  </testcase>",
                message(if g.inconclusive {
                    "inconclusive"
                } else {
                    "error"
                }),
                if g.inconclusive {
                    "inconclusive"
                } else {
                    "error"
                },
                esc(&detail)
            ),
            Kind::Skipped => writeln!(
                x,
                ">\n    <skipped message=\"{}\"/>\n  </testcase>",
                message(&format!("shadow gate, would block: {}", g.outcome.as_str()))
            ),
        };
    }
    x.push_str("</testsuite>\n");
    document(&x)
}

/// The JUnit document when no evaluation could be made (bad config, MLflow unreachable,
/// interrupted): one erroring test case, so the CI report says why instead of nothing.
pub fn render_error(model: &str, version: Option<&str>, error: &str) -> String {
    let classname = match version {
        Some(v) => format!("{model}/{v}"),
        None => model.to_string(),
    };
    document(&format!(
        "<testsuite name=\"{}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0\">\n  <testcase classname=\"{}\" name=\"evaluate\" time=\"0\">\n    <error message=\"{}\" type=\"error\"/>\n  </testcase>\n</testsuite>\n",
        esc(&format!("stagegate {classname}")),
        esc(&classname),
        esc(error)
    ))
}

fn document(suites: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"stagegate\">\n{suites}</testsuites>\n"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pass,
    Failure,
    Error,
    Skipped,
}

/// A shadow gate never blocks, so whatever it says is "skipped" (with its message); an
/// inconclusive comparison is an error, as the exit code counts it.
fn kind(g: &GateResult) -> Kind {
    match g.outcome {
        Outcome::Pass => Kind::Pass,
        _ if !g.enforced => Kind::Skipped,
        Outcome::Fail if !g.inconclusive => Kind::Failure,
        _ => Kind::Error,
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Text safe both as element content and inside a double- or single-quoted attribute.
/// Line breaks and tabs become character references (an attribute would otherwise fold them to
/// spaces); characters XML 1.0 forbids (other C0 controls) are shown as `\u{..}` text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "junit_tests.rs"]
mod tests;
