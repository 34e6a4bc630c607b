//! `plan` under the interleavings real registry writers produce. Each test spells out a
//! history step by step: what a training job wrote, what the reconciler would do next.
//! They cover the four ways verdicts went wrong before verdicts carried an inputs
//! fingerprint (issue 7): evaluating versions that were not candidates, losing a change made
//! during an evaluation, releasing an alias that had moved on, and archiving on a partial view.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::tests::{
    DIGEST, SETTLE, alias_policy, evaluated, evaluated_against, plan_at, sealed, stage_policy,
};
use super::*;
use crate::config::OnFail;
use crate::model_state::tests::{state, version};

const REQUIRED: [&str; 3] = [
    "training_dataset_version",
    "feature_schema_version",
    "owner",
];

fn plan_now(p: &Policy, s: &ModelState) -> Step {
    plan_at(p, s, &BTreeSet::new(), false, DIGEST, UNIX_EPOCH)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn tag(s: &mut ModelState, n: u64, key: &str) {
    s.versions
        .get_mut(&n)
        .expect("version")
        .tags
        .insert(key.into(), "x".into());
}

/// A version's tags as a writer leaves them after `k` of the required tags.
fn partly_tagged(n: u64, stage: &str, k: usize) -> ModelVersion {
    let mut v = version(n, stage);
    for key in &REQUIRED[..k] {
        v.tags.insert(key.to_string(), "x".into());
    }
    v
}

/// `v` as an evaluation judged it, now, from its inputs as they stand.
fn judge(mut v: ModelVersion, verdict: &str, action: Option<&str>, at_secs: u64) -> ModelVersion {
    let e = evaluated(v.number(), &v.current_stage, verdict, action);
    v.tags.extend(e.tags);
    let at = humantime::format_rfc3339_millis(at(at_secs)).to_string();
    v.tags.insert("stagegate.evaluated_at".into(), at);
    v
}

// ---- 1. only candidates are evaluated ---------------------------------------------------

#[test]
fn a_version_tagged_one_call_at_a_time_is_evaluated_only_once_it_becomes_a_candidate() {
    let p = alias_policy();
    // register v4; tag it three times, one call each. Each tag's webhook reconciles the
    // model: v4 is not a candidate, so nothing is evaluated and nothing is written.
    let mut s = state(vec![partly_tagged(4, "None", 0)], &[]);
    for key in REQUIRED {
        assert_eq!(plan_now(&p, &s), Step::Idle, "before {key}");
        tag(&mut s, 4, key);
    }
    assert_eq!(plan_now(&p, &s), Step::Idle);
    // The alias arrives last (the usual order): now it is evaluated, with every tag there.
    s.aliases.insert("challenger".into(), "4".into());
    assert_eq!(plan_now(&p, &s), Step::Evaluate("4".into()));
}

#[test]
fn tags_on_an_old_version_do_not_disturb_a_settled_model() {
    let p = stage_policy();
    let mut s = sealed(state(
        vec![
            evaluated(3, "Production", "passed", Some("promoted")),
            partly_tagged(4, "None", 1),
        ],
        &[],
    ));
    tag(&mut s, 4, "owner");
    tag(&mut s, 3, "note");
    // v3 is the champion stagegate promoted: a note on it changes nothing. v4 is no
    // candidate.
    assert_eq!(plan_now(&p, &s), Step::Idle);
}

// ---- 2. a change made during an evaluation is never lost ---------------------------------

#[test]
fn a_tag_written_while_the_candidate_was_being_evaluated_makes_it_evaluated_again() {
    let p = stage_policy();
    // Staging first, then tags with pauses: the first reconcile sees one tag of three.
    let s0 = state(vec![partly_tagged(4, "Staging", 1)], &[]);
    assert_eq!(plan_now(&p, &s0), Step::Evaluate("4".into()));
    // The evaluation judges what it read (failed: two tags missing) and records it...
    let judged = judge(partly_tagged(4, "Staging", 1), "failed", Some("kept"), 0);
    let mut s1 = sealed(state(vec![judged], &[]));
    assert_eq!(plan_now(&p, &s1), Step::Idle, "nothing new: kept");
    // ...while the second and third tags landed during the evaluation. Their webhooks came
    // while it ran (or were lost); either way the next look sees stale inputs.
    tag(&mut s1, 4, REQUIRED[1]);
    assert_eq!(plan_now(&p, &s1), Step::Evaluate("4".into()));
    tag(&mut s1, 4, REQUIRED[2]);
    assert_eq!(plan_now(&p, &s1), Step::Evaluate("4".into()));
}

#[test]
fn a_request_is_served_even_when_the_verdict_is_current() {
    let p = stage_policy();
    let s = state(vec![evaluated(4, "Staging", "failed", Some("kept"))], &[]);
    assert_eq!(plan_now(&p, &s), Step::Idle);
    let requested: BTreeSet<String> = ["4".to_string()].into();
    assert_eq!(
        plan_at(&p, &s, &requested, false, DIGEST, UNIX_EPOCH),
        Step::Evaluate("4".into())
    );
}

#[test]
fn a_tag_fixed_after_a_failure_is_promoted_not_kept() {
    let p = alias_policy();
    let mut s = sealed(state(
        vec![
            evaluated(3, "None", "passed", Some("promoted")),
            evaluated_against(4, "None", "failed", Some("kept"), Some("3")),
        ],
        &[("champion", "3"), ("challenger", "4")],
    ));
    assert_eq!(plan_now(&p, &s), Step::Idle);
    tag(&mut s, 4, "feature_schema_version");
    assert_eq!(plan_now(&p, &s), Step::Evaluate("4".into()));
}

// ---- 3. the candidate alias is never released; a new challenger is never lost -----------

#[test]
fn a_champion_still_holding_the_candidate_alias_is_settled() {
    let p = alias_policy();
    let s = state(
        vec![
            evaluated(3, "None", "passed", Some("promoted")),
            evaluated_against(4, "None", "passed", Some("promoted"), Some("3")),
        ],
        &[("champion", "4"), ("challenger", "4")],
    );
    assert_eq!(plan_now(&p, &s), Step::Idle);
}

#[test]
fn a_challenger_set_while_the_previous_one_was_being_promoted_is_evaluated_next() {
    let p = alias_policy();
    // v4's promotion moved `champion` and then the process stopped before `promoted`; in
    // between, the training job pointed `challenger` at v5.
    let mut v4 = evaluated_against(4, "None", "passed", None, Some("3"));
    v4.tags
        .insert("stagegate.replaced_version".into(), "3".into());
    let s = state(
        vec![evaluated(3, "None", "passed", Some("promoted")), v4, {
            let mut v = version(5, "None");
            for key in REQUIRED {
                v.tags.insert(key.into(), "x".into());
            }
            v
        }],
        &[("champion", "4"), ("challenger", "5")],
    );
    assert_eq!(plan_now(&p, &s), Step::Finish("4".into()));
    let mut done = sealed(s);
    done.versions
        .get_mut(&4)
        .unwrap()
        .tags
        .insert("stagegate.action".into(), PROMOTED.into());
    assert_eq!(plan_now(&p, &done), Step::Evaluate("5".into()));
}

#[test]
fn a_pass_judged_before_the_champion_moved_is_judged_again() {
    let p = alias_policy();
    let s = state(
        vec![
            evaluated(3, "None", "passed", Some("promoted")),
            evaluated_against(5, "None", "passed", None, Some("3")),
            evaluated_against(6, "None", "passed", Some("promoted"), Some("3")),
        ],
        &[("champion", "6"), ("challenger", "5")],
    );
    // v5 is older than the champion now: superseded, whatever its verdict said.
    assert_eq!(
        plan_now(&p, &s),
        Step::Act {
            version: "5".into(),
            decision: Decision::Superseded
        }
    );
}

// ---- 4. archive only on a settled, current verdict -------------------------------------

fn archiving() -> Policy {
    let mut p = stage_policy();
    p.on_fail = OnFail::Archive;
    p
}

#[test]
fn a_failed_candidate_whose_tags_are_still_arriving_is_not_archived() {
    let p = archiving();
    // Staging first; evaluated at t=100 with one tag of three: failed.
    let s = state(
        vec![judge(partly_tagged(4, "Staging", 1), "failed", None, 100)],
        &[],
    );
    let plan_then = |s: &ModelState, t: u64| plan_at(&p, s, &BTreeSet::new(), false, DIGEST, at(t));
    assert_eq!(
        plan_then(&s, 101),
        Step::Wait {
            version: "4".into(),
            after: SETTLE - Duration::from_secs(1)
        }
    );
    // The next tag lands at t=102: the verdict is stale, so it is evaluated again, not
    // archived, however long ago the failure was.
    let mut s2 = sealed(s.clone());
    tag(&mut s2, 4, REQUIRED[1]);
    assert_eq!(plan_then(&s2, 102), Step::Evaluate("4".into()));
    assert_eq!(plan_then(&s2, 100 + 3600), Step::Evaluate("4".into()));
    // Had nothing arrived, it is archived once the settle period is over.
    assert_eq!(
        plan_then(&s, 100 + SETTLE.as_secs()),
        Step::Act {
            version: "4".into(),
            decision: Decision::Archive
        }
    );
}

#[test]
fn a_settling_failure_does_not_hide_an_older_candidate() {
    let p = archiving();
    let s = state(
        vec![
            version(3, "Staging"),
            judge(partly_tagged(4, "Staging", 3), "failed", None, 100),
        ],
        &[],
    );
    assert_eq!(
        plan_at(&p, &s, &BTreeSet::new(), false, DIGEST, at(101)),
        Step::Evaluate("3".into())
    );
}

// ---- a crash never leaves a verdict that counts ------------------------------------------

#[test]
fn a_verdict_without_its_fingerprint_or_with_an_old_one_is_not_current() {
    let p = stage_policy();
    // Crash after the verdict but before the fingerprint (which was removed first).
    let mut v = evaluated(4, "Staging", "passed", None);
    v.tags.remove("stagegate.fingerprint");
    let s = state(vec![v], &[]);
    assert_eq!(plan_now(&p, &s), Step::Evaluate("4".into()));
    // A fingerprint of other inputs vouches for nothing.
    let mut v = evaluated(4, "Staging", "passed", None);
    v.tags
        .insert("stagegate.fingerprint".into(), "0123456789abcdef".into());
    let s = state(vec![v], &[]);
    assert_eq!(plan_now(&p, &s), Step::Evaluate("4".into()));
}

#[test]
fn a_hand_promoted_champion_is_judged_by_its_verdict_as_a_candidate() {
    let p = stage_policy();
    // v4 failed against v3 as a candidate; then someone moved it to Production by hand.
    let s = state(
        vec![
            evaluated(3, "Archived", "passed", Some("promoted")),
            evaluated_against(4, "Production", "failed", Some("kept"), Some("3")),
        ],
        &[],
    );
    // The bypass is reported with that verdict; it is not re-judged against nothing.
    assert_eq!(plan_now(&p, &s), Step::Bypass("4".into()));
}
