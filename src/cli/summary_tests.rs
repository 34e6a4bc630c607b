//! Unit tests of the markdown summary.

use super::*;
use crate::cli::test_outcome::{self, gate};
use stagegate::decision::Decision;

#[test]
fn cells_escape_pipes_line_breaks_and_html() {
    assert_eq!(cell("a|b"), "a\\|b");
    assert_eq!(
        cell("one\ntwo\r\nthree\rfour"),
        "one<br>two<br>three<br>four"
    );
    assert_eq!(cell("<script>x</script>"), "&lt;script&gt;x&lt;/script&gt;");
    assert_eq!(cell("tab\there\u{1b}"), "tab here ");
}

#[test]
fn one_row_per_gate_with_symbol_and_word() {
    let md = render(&test_outcome::failed());
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(
        rows,
        [
            "| Gate | Type | Outcome | Observed | Threshold | Message |",
            "| accuracy | metric | ✅ pass | 0.812 | min 0.85 | val_accuracy=0.9 &gt;= min 0.85 |",
            "| f1 | metric | ❌ fail | 0.812 | min 0.85 | val_f1=0.812 &lt; min 0.85 |",
            "| latency | metric | ⚠️ error | 0.812 | min 0.85 | serving failed to start |",
            "| p99-shadow | metric | ⚠️ fail (shadow, would block) | 0.812 | min 0.85 | p99=12ms &gt; 10ms |",
        ]
    );
    assert!(
        md.starts_with("### stagegate: churn v3: ❌ failed\n"),
        "{md}"
    );
    assert!(
        md.contains("**Verdict:** failed · **Action:** kept · policy default (digest 0123456789ab) · champion v2"),
        "{md}"
    );
}

#[test]
fn a_message_with_pipes_and_lines_stays_in_its_row() {
    let o = test_outcome::outcome(
        Verdict::Passed,
        vec![gate(
            "cmd",
            Outcome::Pass,
            true,
            "ok | 3 passed\nwarnings: 1",
        )],
        Decision::Promote { replaces: None },
    );
    let md = render(&o);
    let row = md.lines().find(|l| l.starts_with("| cmd ")).unwrap();
    assert!(row.ends_with("| ok \\| 3 passed<br>warnings: 1 |"), "{row}");
    assert!(md.contains("**Action:** promoted"), "{md}");
}

#[test]
fn no_evaluation_says_why() {
    let md = render_error("m|x", Some("4"), "MLflow unreachable\nat http://h");
    assert_eq!(
        md,
        "### stagegate: m\\|x v4: ⚠️ error\n\n**Verdict:** error · MLflow unreachable<br>at http://h\n\n"
    );
}
