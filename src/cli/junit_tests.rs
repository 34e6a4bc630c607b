//! Unit tests of the JUnit writer (a sibling file so `junit.rs` stays about writing).

use super::*;
use crate::cli::test_outcome::{self, gate};
use stagegate::decision::Decision;
use stagegate::verdict::Verdict;

#[test]
fn escapes_markup_quotes_and_control_characters() {
    assert_eq!(
        esc(r#"a<b & c>"d" 'e'"#),
        "a&lt;b &amp; c&gt;&quot;d&quot; &apos;e&apos;"
    );
    assert_eq!(esc("line\r\nnext\tcol"), "line&#13;&#10;next&#9;col");
    // XML 1.0 has no way to carry these, not even as references.
    assert_eq!(
        esc("bell\u{7}esc\u{1b}nul\u{0}"),
        "bell\\u{7}esc\\u{1b}nul\\u{0}"
    );
    assert_eq!(esc("ünïcode ✅"), "ünïcode ✅");
}

#[test]
fn one_testcase_per_gate_with_counts_and_properties() {
    let x = render(&test_outcome::failed());
    assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
    assert!(
        x.contains("<testsuite name=\"stagegate churn v3\" tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\" time=\"2.500\""),
        "{x}"
    );
    for p in [
        "<property name=\"verdict\" value=\"failed\"/>",
        "<property name=\"action\" value=\"kept\"/>",
        "<property name=\"policy_digest\" value=\"0123456789ab\"/>",
    ] {
        assert!(x.contains(p), "{p} not in {x}");
    }
    assert!(x.contains("<testcase classname=\"churn/3\" name=\"accuracy\" time=\"1.234\"/>"));
    assert!(
        x.contains("<failure message=\"fail: val_f1=0.812 &lt; min 0.85\" type=\"fail\">metric gate: fail&#10;observed: 0.812&#10;threshold: min 0.85</failure>"),
        "{x}"
    );
    assert!(x.contains("<error message=\"error: serving failed to start\" type=\"error\">"));
    assert!(
        x.contains("<skipped message=\"shadow gate, would block: fail: p99=12ms &gt; 10ms\"/>"),
        "{x}"
    );
    assert_eq!(x.matches("<testcase ").count(), 4);
}

#[test]
fn inconclusive_is_an_error_and_a_passing_shadow_gate_a_pass() {
    let mut inconclusive = gate("vs-champion", G::Fail, true, "interval spans 0");
    inconclusive.inconclusive = true;
    let o = test_outcome::outcome(
        Verdict::Failed,
        vec![inconclusive, gate("shadow-ok", G::Pass, false, "fine")],
        Decision::Keep,
    );
    let x = render(&o);
    assert!(
        x.contains("failures=\"0\" errors=\"1\" skipped=\"0\""),
        "{x}"
    );
    assert!(x.contains("<error message=\"inconclusive: interval spans 0\" type=\"inconclusive\">"));
    assert!(x.contains("name=\"shadow-ok\" time=\"1.234\"/>"));
}

#[test]
fn a_run_without_an_evaluation_is_one_error() {
    let x = render_error("m<1>", None, "cannot read \"stagegate.toml\"");
    assert!(x.contains("tests=\"1\" failures=\"0\" errors=\"1\""), "{x}");
    assert!(x.contains("classname=\"m&lt;1&gt;\" name=\"evaluate\""));
    assert!(
        x.contains("<error message=\"cannot read &quot;stagegate.toml&quot;\" type=\"error\"/>")
    );
}

use stagegate::gates::Outcome as G;
