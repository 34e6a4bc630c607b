//! The decision core: pure functions from what the registry says to what to do.
//! No IO here, so every rule is unit-tested.
//!
//! [`decide`] says what to do with one evaluated candidate. [`plan`] is the reconciler's
//! brain: given a model's whole state it names the single next step towards convergence,
//! never told why it was called.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::config::{Mode, OnBypass, OnFail, Policy, Target};
use crate::inputs;
use crate::mlflow::types::ModelVersion;
use crate::model_state::ModelState;
use crate::tags::TagNames;
use crate::verdict::Verdict;

pub const PROMOTED: &str = "promoted";
/// `replaced_version` of a version that replaced nothing (there was no champion).
pub const REPLACED_NOTHING: &str = "none";

/// What to do with an evaluated candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Move it to the promote target; `replaces` is the champion it displaces.
    Promote {
        replaces: Option<String>,
    },
    WouldPromote,
    Archive,
    Keep,
    Superseded,
    Skip(String),
}

impl Decision {
    /// The `stagegate.action` value.
    pub fn action_tag(&self) -> String {
        match self {
            Decision::Promote { .. } => PROMOTED.into(),
            Decision::WouldPromote => "would-promote".into(),
            Decision::Archive => "archived".into(),
            Decision::Keep => "kept".into(),
            Decision::Superseded => "superseded".into(),
            Decision::Skip(why) => format!("skipped: {why}"),
        }
    }

    /// Whether carrying it out changes the registry beyond tags.
    pub fn moves(&self) -> bool {
        matches!(self, Decision::Promote { .. } | Decision::Archive)
    }
}

/// Who is deciding: CI without `--promote` may not act; a paused daemon may not act.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub act: bool,
    pub paused: bool,
}

/// What to do with `candidate`, evaluated with `verdict`, given the model's state.
pub fn decide(
    policy: &Policy,
    state: &ModelState,
    candidate: &ModelVersion,
    verdict: Verdict,
    opts: Options,
) -> Decision {
    let champion = state.champion(policy);
    if champion.is_some_and(|c| c.version == candidate.version) {
        return Decision::Skip("already the promoted version".into());
    }
    if !state.at(candidate, policy.candidate()) {
        return Decision::Skip(format!(
            "not a candidate (the policy's candidates are at {})",
            policy.candidate()
        ));
    }
    match verdict {
        Verdict::Error => Decision::Skip("evaluation error; nothing moves".into()),
        Verdict::Failed => {
            if policy.on_fail == OnFail::Keep {
                Decision::Keep
            } else if policy.mode == Mode::DryRun {
                Decision::Skip("dry-run (would archive)".into())
            } else if !opts.act {
                Decision::Skip("--promote not given (would archive)".into())
            } else if opts.paused {
                Decision::Skip("paused (would archive)".into())
            } else {
                Decision::Archive
            }
        }
        Verdict::Passed => {
            if champion.is_some_and(|c| c.number() > candidate.number()) {
                return Decision::Superseded;
            }
            if policy.mode == Mode::DryRun {
                Decision::WouldPromote
            } else if !opts.act {
                Decision::Skip("--promote not given (would promote)".into())
            } else if opts.paused {
                Decision::Skip("paused (would promote)".into())
            } else {
                Decision::Promote {
                    replaces: champion.map(|c| c.version.clone()),
                }
            }
        }
    }
}

/// The reconciler's next step for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run the gates on this version and record the result.
    Evaluate(String),
    /// Carry out a decision on an evaluated version (or record it, for tag-only decisions).
    Act { version: String, decision: Decision },
    /// Complete a promotion that was interrupted after the version moved.
    Finish(String),
    /// The champion was moved there by hand, past the gates (policy `on_bypass`).
    Bypass(String),
    /// Nothing to do until `after` has passed: a failed candidate is archived only once its
    /// inputs have stayed unchanged for `workers.settle`.
    Wait { version: String, after: Duration },
    /// Nothing left to do.
    Idle,
}

/// What [`plan`] looks at besides the model's state.
pub struct PlanInput<'a> {
    pub policy: &'a Policy,
    pub digest: &'a str,
    pub names: &'a TagNames,
    /// Versions whose evaluation was asked for explicitly (`POST /v1/evaluations`).
    pub requested: &'a BTreeSet<String>,
    pub paused: bool,
    pub now: SystemTime,
    /// How long a failed candidate's inputs must stay unchanged before it is archived.
    pub settle: Duration,
    /// What each gate's input file is now (gate → identity; `None`: cannot be told now).
    pub data: &'a inputs::Files,
    /// What each candidate's run logged for the gates that read it (`context`), by version:
    /// per candidate, over `data`.
    pub logged: &'a BTreeMap<String, inputs::Files>,
}

/// The next step for a model, from what the registry says now. Level-triggered: a verdict
/// counts only while the version's inputs fingerprint matches the one it carries, so however
/// the model got here (lost webhooks, a crash, a request during an evaluation), the step is
/// the same.
pub fn plan(input: &PlanInput, state: &ModelState) -> Step {
    if let Some(step) = champion_step(input, state) {
        return step;
    }
    // An explicit request evaluates the version it names, candidate or not (only candidates
    // are acted on, below).
    if let Some(v) = input.requested.iter().find(|v| state.version(v).is_some()) {
        return Step::Evaluate(v.clone());
    }
    candidates_step(input, state)
}

/// `v`'s `action` tag, empty without one.
fn action(names: &TagNames, v: &ModelVersion) -> String {
    v.tag(&names.action()).unwrap_or("").to_string()
}

/// What the champion needs first, if anything: an interrupted promotion finished, or a
/// champion moved there by hand judged and answered.
fn champion_step(input: &PlanInput, state: &ModelState) -> Option<Step> {
    let (policy, names) = (input.policy, input.names);
    let ch = state.champion(policy)?;
    // `replaced_version` is written just before a move and `promoted` just after: a
    // champion with the first but not the second is a promotion cut short by a crash.
    if ch.tag(&names.replaced_version()).is_some() && action(names, ch) != PROMOTED {
        return Some(Step::Finish(ch.version.clone()));
    }
    let ours = action(names, ch) == PROMOTED || ch.tag(&names.restored_at()).is_some();
    if ours || policy.on_bypass == OnBypass::Ignore || ch.tag(&names.bypass()).is_some() {
        return None;
    }
    // "What the gates say of it" needs a verdict on its current tags first; one made while
    // it was a candidate (against the champion of then) still says it.
    if inputs::verdict_as_judged(names, input.digest, ch).is_none() {
        return Some(Step::Evaluate(ch.version.clone()));
    }
    Some(Step::Bypass(ch.version.clone()))
}

/// The candidates, newest first: the first one whose verdict is stale is evaluated, the first
/// whose decision is not yet recorded is acted on; a failed candidate waiting to settle
/// makes the model wait, and hides no older one.
fn candidates_step(input: &PlanInput, state: &ModelState) -> Step {
    let PlanInput {
        policy,
        digest,
        names,
        paused,
        now,
        settle,
        ..
    } = *input;
    let champion = state.champion(policy);
    let mut wait: Option<(String, Duration)> = None;
    for c in state.candidates(policy) {
        let record = |decision: Decision| {
            (action(names, c) != decision.action_tag()).then(|| Step::Act {
                version: c.version.clone(),
                decision,
            })
        };
        if let Some(ch) = champion {
            if ch.version == c.version {
                // Settled: a stage candidate promoted to an alias stays in its stage, and the
                // candidate alias is never released (see `actions`), so the champion may hold it.
                continue;
            }
            if c.number() < ch.number() {
                match record(Decision::Superseded) {
                    Some(step) => return step,
                    None => continue,
                }
            }
        }
        if c.tag(&names.rolled_back()).is_some() {
            match record(Decision::Skip(
                "rolled back; not promoted again automatically".into(),
            )) {
                Some(step) => return step,
                None => continue,
            }
        }
        let data = match input.logged.get(&c.version) {
            Some(logged) => {
                let mut now = input.data.clone();
                now.extend(logged.clone());
                inputs::data_now(names, c, &now)
            }
            None => inputs::data_now(names, c, input.data),
        };
        let now_inputs =
            inputs::fingerprint(names, digest, c, state.compared_with(policy, c), &data);
        let Some(verdict) = inputs::current_verdict(names, c, &now_inputs) else {
            return Step::Evaluate(c.version.clone());
        };
        let decision = decide(policy, state, c, verdict, Options { act: true, paused });
        if decision == Decision::Archive
            && let Some(left) = unsettled(c, names, now, settle)
        {
            // Its writer may still be tagging it: archiving is irreversible, keeping is not.
            if wait.as_ref().is_none_or(|(_, w)| left < *w) {
                wait = Some((c.version.clone(), left));
            }
            continue; // a failed candidate does not hide older ones
        }
        // A failed candidate does not hide older ones; anything else does.
        let settled = matches!(
            decision,
            Decision::Keep | Decision::Archive | Decision::Superseded
        );
        if let Some(step) = record(decision) {
            return step;
        }
        if !settled {
            break;
        }
    }
    match wait {
        Some((version, after)) => Step::Wait { version, after },
        None => Step::Idle,
    }
}

/// How much longer `v`'s current verdict must stand before it counts as settled; `None` once
/// it has stood for `settle`. The fingerprint is current, so the inputs have not changed
/// since the evaluation began (`evaluated_at`).
fn unsettled(
    v: &ModelVersion,
    names: &TagNames,
    now: SystemTime,
    settle: Duration,
) -> Option<Duration> {
    let at = v.tag(&names.evaluated_at())?;
    // An unreadable time cannot be waited on; the verdict is current, so act on it.
    let at = humantime::parse_rfc3339_weak(at).ok()?;
    let stood = now.duration_since(at).unwrap_or_default();
    settle.checked_sub(stood).filter(|left| !left.is_zero())
}

/// For a stage target, the stage; alias targets have none.
pub fn stage_of(t: &Target) -> Option<&str> {
    match t {
        Target::Stage(s) => Some(s),
        Target::Alias(_) => None,
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decision_races.rs"]
mod races;
