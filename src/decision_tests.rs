//! Unit tests of the decision core: promotion rules and the reconciler's plan.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use super::*;
use crate::model_state::tests::{policy, state, version};

pub(super) fn stage_policy() -> Policy {
    policy(
        Target::Stage("Staging".into()),
        Target::Stage("Production".into()),
    )
}

pub(super) fn alias_policy() -> Policy {
    policy(
        Target::Alias("challenger".into()),
        Target::Alias("champion".into()),
    )
}

const ACT: Options = Options {
    act: true,
    paused: false,
};
pub(super) const DIGEST: &str = "d1";

pub(super) fn names() -> TagNames {
    TagNames::new("stagegate.")
}

/// Stands for "the fingerprint of the inputs this version was judged from", filled in by
/// [`sealed`] once the whole state is known.
const SEAL: &str = "SEAL";

/// A version with a verdict (for DIGEST, judged with no champion) and an action tag.
pub(super) fn evaluated(n: u64, stage: &str, verdict: &str, action: Option<&str>) -> ModelVersion {
    evaluated_against(n, stage, verdict, action, None)
}

/// A version with a verdict judged against `champion`, current for its inputs as they stand.
pub(super) fn evaluated_against(
    n: u64,
    stage: &str,
    verdict: &str,
    action: Option<&str>,
    champion: Option<&str>,
) -> ModelVersion {
    let mut v = version(n, stage);
    v.tags.insert(
        "stagegate.report".into(),
        serde_json::json!({"champion": champion}).to_string(),
    );
    v.tags.insert("stagegate.verdict".into(), verdict.into());
    v.tags
        .insert("stagegate.policy_digest".into(), DIGEST.into());
    v.tags.insert("stagegate.fingerprint".into(), SEAL.into());
    if let Some(a) = action {
        v.tags.insert("stagegate.action".into(), a.into());
    }
    v
}

/// Replace each [`SEAL`] with the fingerprint of the version's inputs as they stand, judged
/// against the champion its report names: what `report::write_evaluation` would have left.
/// Tests then change a tag, the champion or the digest to make a verdict stale.
pub(super) fn sealed(mut s: ModelState) -> ModelState {
    let n = names();
    for v in s.versions.values_mut() {
        if v.tag("stagegate.fingerprint") == Some(SEAL) {
            let against = inputs::judged_against(&n, v);
            let data = inputs::judged_data(&n, v);
            let fp = inputs::fingerprint(&n, DIGEST, v, against.as_deref(), &data);
            v.tags.insert("stagegate.fingerprint".into(), fp);
        }
    }
    s
}

fn plan_for(p: &Policy, s: &ModelState) -> Step {
    plan_with(p, s, &BTreeSet::new(), false)
}

fn plan_with(p: &Policy, s: &ModelState, requested: &BTreeSet<String>, paused: bool) -> Step {
    plan_at(p, s, requested, paused, DIGEST, UNIX_EPOCH)
}

pub(super) fn plan_at(
    p: &Policy,
    s: &ModelState,
    requested: &BTreeSet<String>,
    paused: bool,
    digest: &str,
    now: SystemTime,
) -> Step {
    let n = names();
    plan(
        &PlanInput {
            policy: p,
            digest,
            names: &n,
            requested,
            paused,
            now,
            settle: SETTLE,
            data: &BTreeMap::new(),
            logged: &BTreeMap::new(),
        },
        &sealed(s.clone()),
    )
}

pub(super) const SETTLE: Duration = Duration::from_secs(60);

#[test]
fn passing_candidate_newer_than_champion_is_promoted() {
    let p = stage_policy();
    let s = state(
        vec![
            evaluated(1, "Production", "passed", Some("promoted")),
            version(2, "Staging"),
        ],
        &[],
    );
    let d = decide(&p, &s, &s.versions[&2], Verdict::Passed, ACT);
    assert_eq!(
        d,
        Decision::Promote {
            replaces: Some("1".into())
        }
    );
    assert_eq!(d.action_tag(), "promoted");
}

#[test]
fn candidate_older_than_champion_is_superseded() {
    let p = stage_policy();
    let s = state(
        vec![
            version(2, "Staging"),
            evaluated(3, "Production", "passed", Some("promoted")),
        ],
        &[],
    );
    assert_eq!(
        decide(&p, &s, &s.versions[&2], Verdict::Passed, ACT),
        Decision::Superseded
    );
}

#[test]
fn without_promote_or_while_paused_nothing_moves_and_the_action_says_why() {
    let p = stage_policy();
    let s = state(vec![version(2, "Staging")], &[]);
    let d = decide(
        &p,
        &s,
        &s.versions[&2],
        Verdict::Passed,
        Options {
            act: false,
            paused: false,
        },
    );
    assert_eq!(
        d.action_tag(),
        "skipped: --promote not given (would promote)"
    );
    let d = decide(
        &p,
        &s,
        &s.versions[&2],
        Verdict::Passed,
        Options {
            act: true,
            paused: true,
        },
    );
    assert!(!d.moves());
}

#[test]
fn dry_run_records_would_promote() {
    let mut p = stage_policy();
    p.mode = Mode::DryRun;
    let s = state(vec![version(2, "Staging")], &[]);
    assert_eq!(
        decide(&p, &s, &s.versions[&2], Verdict::Passed, ACT),
        Decision::WouldPromote
    );
}

#[test]
fn failures_are_kept_or_archived_by_policy() {
    let mut p = stage_policy();
    let s = state(vec![version(2, "Staging")], &[]);
    assert_eq!(
        decide(&p, &s, &s.versions[&2], Verdict::Failed, ACT),
        Decision::Keep
    );
    p.on_fail = OnFail::Archive;
    assert_eq!(
        decide(&p, &s, &s.versions[&2], Verdict::Failed, ACT),
        Decision::Archive
    );
    assert!(!decide(&p, &s, &s.versions[&2], Verdict::Error, ACT).moves());
}

#[test]
fn a_version_that_is_not_a_candidate_is_not_acted_on() {
    let p = stage_policy();
    let s = state(vec![version(2, "None")], &[]);
    let d = decide(&p, &s, &s.versions[&2], Verdict::Passed, ACT);
    assert!(
        matches!(d, Decision::Skip(ref why) if why.contains("not a candidate")),
        "{d:?}"
    );
}

#[test]
fn plan_evaluates_the_newest_unevaluated_candidate_first() {
    let p = stage_policy();
    let s = state(
        vec![
            version(1, "Staging"),
            version(2, "Staging"),
            version(3, "Staging"),
        ],
        &[],
    );
    assert_eq!(plan_for(&p, &s), Step::Evaluate("3".into()));
}

#[test]
fn plan_promotes_the_newest_passing_and_leaves_older_unevaluated_ones_to_supersede() {
    let p = stage_policy();
    let s = state(
        vec![
            version(1, "Staging"),
            version(2, "Staging"),
            evaluated(3, "Staging", "passed", None),
        ],
        &[],
    );
    assert_eq!(
        plan_for(&p, &s),
        Step::Act {
            version: "3".into(),
            decision: Decision::Promote { replaces: None }
        }
    );
    // After the promotion, the older candidates are superseded without being evaluated.
    let s = state(
        vec![
            version(1, "Staging"),
            version(2, "Staging"),
            evaluated(3, "Production", "passed", Some("promoted")),
        ],
        &[],
    );
    assert_eq!(
        plan_for(&p, &s),
        Step::Act {
            version: "2".into(),
            decision: Decision::Superseded
        }
    );
}

#[test]
fn plan_looks_past_a_failed_candidate_to_an_older_one() {
    let p = stage_policy();
    let s = state(
        vec![
            version(1, "Staging"),
            evaluated(2, "Staging", "failed", Some("kept")),
        ],
        &[],
    );
    assert_eq!(plan_for(&p, &s), Step::Evaluate("1".into()));
}

#[test]
fn plan_stops_at_an_error_verdict() {
    let p = stage_policy();
    let s = state(
        vec![
            version(1, "Staging"),
            evaluated(
                2,
                "Staging",
                "error",
                Some("skipped: evaluation error; nothing moves"),
            ),
        ],
        &[],
    );
    assert_eq!(plan_for(&p, &s), Step::Idle);
}

#[test]
fn plan_is_idle_when_converged_and_reevaluates_on_a_new_digest_or_request() {
    let p = stage_policy();
    let s = state(
        vec![
            evaluated(1, "Production", "passed", Some("promoted")),
            evaluated_against(2, "Staging", "failed", Some("kept"), Some("1")),
        ],
        &[],
    );
    assert_eq!(plan_for(&p, &s), Step::Idle);
    let forced: BTreeSet<String> = ["2".to_string()].into();
    assert_eq!(
        plan_with(&p, &s, &forced, false),
        Step::Evaluate("2".into())
    );
    // A changed policy makes every verdict stale.
    assert_eq!(
        plan_at(&p, &s, &BTreeSet::new(), false, "d2", UNIX_EPOCH),
        Step::Evaluate("2".into())
    );
}

#[test]
fn plan_finishes_an_interrupted_promotion() {
    let p = alias_policy();
    let s = state(
        vec![evaluated(1, "None", "passed", Some("promoted")), {
            let mut v = evaluated(2, "None", "passed", Some("kept"));
            v.tags
                .insert("stagegate.replaced_version".into(), "1".into());
            v
        }],
        &[("champion", "2"), ("challenger", "2")],
    );
    assert_eq!(plan_for(&p, &s), Step::Finish("2".into()));
}

#[test]
fn plan_flags_a_hand_promoted_champion_once_it_is_evaluated() {
    let p = stage_policy();
    let s = state(vec![version(1, "Production")], &[]);
    assert_eq!(plan_for(&p, &s), Step::Evaluate("1".into()));
    let s = state(vec![evaluated(1, "Production", "failed", None)], &[]);
    assert_eq!(plan_for(&p, &s), Step::Bypass("1".into()));
    let mut ignoring = p.clone();
    ignoring.on_bypass = OnBypass::Ignore;
    assert_eq!(plan_for(&ignoring, &s), Step::Idle);
}

#[test]
fn plan_while_paused_records_but_does_not_move() {
    let p = stage_policy();
    let s = state(vec![evaluated(2, "Staging", "passed", None)], &[]);
    match plan_with(&p, &s, &BTreeSet::new(), true) {
        Step::Act { decision, .. } => assert!(!decision.moves()),
        other => panic!("{other:?}"),
    }
    let s = state(
        vec![evaluated(
            2,
            "Staging",
            "passed",
            Some("skipped: paused (would promote)"),
        )],
        &[],
    );
    assert_eq!(plan_with(&p, &s, &BTreeSet::new(), true), Step::Idle);
}

#[test]
fn plan_never_repromotes_a_rolled_back_version() {
    let p = policy(
        Target::Stage("Staging".into()),
        Target::Alias("champion".into()),
    );
    let mut bad = evaluated(3, "Staging", "passed", Some("promoted"));
    bad.tags.insert("stagegate.rolled_back".into(), "x".into());
    let s = state(
        vec![evaluated(2, "Staging", "passed", Some("promoted")), bad],
        &[("champion", "2")],
    );
    match plan_for(&p, &s) {
        Step::Act {
            version,
            decision: Decision::Skip(_),
        } => assert_eq!(version, "3"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn plan_reevaluates_a_pass_judged_against_another_champion() {
    let p = stage_policy();
    let champ = evaluated(1, "Production", "passed", Some("promoted"));
    let s = state(
        vec![
            champ.clone(),
            evaluated_against(2, "Staging", "passed", None, None),
        ],
        &[],
    );
    assert_eq!(plan_for(&p, &s), Step::Evaluate("2".into()));
    let s = state(
        vec![
            champ,
            evaluated_against(2, "Staging", "passed", None, Some("1")),
        ],
        &[],
    );
    assert!(matches!(
        plan_for(&p, &s),
        Step::Act {
            decision: Decision::Promote { .. },
            ..
        }
    ));
}

#[test]
fn plan_evaluates_a_requested_version_even_when_it_is_not_a_candidate() {
    let p = stage_policy();
    let s = state(
        vec![evaluated(1, "Production", "passed", Some("promoted"))],
        &[],
    );
    let forced: BTreeSet<String> = ["1".to_string()].into();
    assert_eq!(
        plan_with(&p, &s, &forced, false),
        Step::Evaluate("1".into())
    );
}

/// `v` judged on the holdout `identity` (its report's `inputs`).
fn judged_on(mut v: ModelVersion, identity: &str) -> ModelVersion {
    let mut report: serde_json::Value =
        serde_json::from_str(v.tag("stagegate.report").unwrap_or("{}")).unwrap();
    report["inputs"] = serde_json::json!({ "holdout": identity });
    v.tags.insert("stagegate.report".into(), report.to_string());
    v
}

fn plan_on(p: &Policy, s: &ModelState, now: Option<&str>) -> Step {
    let n = names();
    let data = [("holdout".to_string(), now.map(str::to_string))]
        .into_iter()
        .collect();
    plan(
        &PlanInput {
            policy: p,
            digest: DIGEST,
            names: &n,
            requested: &BTreeSet::new(),
            paused: false,
            now: UNIX_EPOCH,
            settle: SETTLE,
            data: &data,
            logged: &BTreeMap::new(),
        },
        &sealed(s.clone()),
    )
}

#[test]
fn plan_rejudges_a_candidate_whose_holdout_changed_and_never_the_champion() {
    let p = stage_policy();
    let failed = judged_on(evaluated(2, "Staging", "failed", Some("kept")), "sha256:a");
    let s = state(vec![failed], &[]);
    assert_eq!(plan_on(&p, &s, Some("sha256:a")), Step::Idle, "unchanged");
    assert_eq!(
        plan_on(&p, &s, Some("sha256:b")),
        Step::Evaluate("2".into()),
        "the holdout was replaced"
    );
    assert_eq!(
        plan_on(&p, &s, Some(crate::objects::ABSENT)),
        Step::Evaluate("2".into()),
        "the holdout is gone"
    );
    assert_eq!(
        plan_on(&p, &s, None),
        Step::Idle,
        "a store that cannot say makes no verdict stale"
    );

    // A champion moved there by hand and judged on the old holdout is answered, not judged
    // again; a candidate beside it is.
    let champion = judged_on(evaluated(3, "Production", "failed", None), "sha256:a");
    let s = state(vec![champion.clone()], &[]);
    assert_eq!(plan_on(&p, &s, Some("sha256:b")), Step::Bypass("3".into()));
    let mut ours = champion;
    ours.tags
        .insert("stagegate.action".into(), "promoted".into());
    let candidate = judged_on(
        evaluated_against(4, "Staging", "passed", Some("would_promote"), Some("3")),
        "sha256:a",
    );
    let s = state(vec![ours, candidate], &[]);
    assert_ne!(
        plan_on(&p, &s, Some("sha256:a")),
        Step::Evaluate("4".into())
    );
    assert_eq!(
        plan_on(&p, &s, Some("sha256:b")),
        Step::Evaluate("4".into())
    );
}
