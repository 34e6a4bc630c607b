//! What the daemon last saw of each model in the registry — its champion and candidates — so
//! the status page can show them without asking MLflow on a page request. Fed by every read
//! the poll and the reconciler make anyway; one entry per model, replaced on each read.
//!
//! A generation counter grows whenever what a model shows changes (a champion moved by hand
//! or by a rollback, a new candidate), so the open status page knows to redraw even when no
//! evaluation was made.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::config::{Policy, Target};
use crate::evaluation::now_rfc3339;
use crate::model_state::ModelState;
use crate::tags::TagNames;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Glance {
    pub champion: Option<String>,
    /// Versions at the candidate target, newest first.
    pub candidates: Vec<String>,
    /// The champion's `restored_at` tag: set when a rollback (or a bypass revert) put it
    /// back, which the poll uses to notice a rollback made while no webhook reached us.
    #[serde(skip)]
    pub restored: Option<String>,
    /// When the registry was read (RFC 3339 UTC).
    pub seen_at: String,
}

impl Glance {
    pub fn of(state: &ModelState, policy: &Policy, names: &TagNames) -> Glance {
        // An alias names its holder even when a summary read did not fetch that version.
        let candidates = match policy.candidate() {
            Target::Alias(a) => state.aliases.get(a).cloned().into_iter().collect(),
            Target::Stage(_) => state
                .candidates(policy)
                .iter()
                .map(|v| v.version.clone())
                .collect(),
        };
        let champion = state.champion(policy);
        Glance {
            champion: state.champion_version(policy).map(str::to_string),
            candidates,
            restored: champion
                .and_then(|c| c.tag(&names.restored_at()))
                .map(str::to_string),
            seen_at: now_rfc3339(),
        }
    }

    /// The same champion, newest candidate and restoration. Not the whole candidate list:
    /// the poll's listing shows only the newest version of each stage where a reconcile
    /// reads them all, and the two alternating must not look like a change every time.
    fn shows_the_same(&self, other: &Glance) -> bool {
        (&self.champion, self.candidates.first(), &self.restored)
            == (&other.champion, other.candidates.first(), &other.restored)
    }
}

#[derive(Default)]
pub struct Seen {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    models: BTreeMap<String, Glance>,
    generation: u64,
}

impl Seen {
    /// Record a read; returns what the model showed before it (`None` the first time).
    pub fn record(&self, state: &ModelState, policy: &Policy, names: &TagNames) -> Option<Glance> {
        let glance = Glance::of(state, policy, names);
        let mut inner = self.lock();
        let before = inner.models.insert(state.name.clone(), glance.clone());
        if before.as_ref().is_none_or(|b| !b.shows_the_same(&glance)) {
            inner.generation += 1;
        }
        before
    }

    /// A model that no longer exists is no longer shown as having a champion.
    pub fn forget(&self, model: &str) {
        let mut inner = self.lock();
        if inner.models.remove(model).is_some() {
            inner.generation += 1;
        }
    }

    /// A model's glance, with the generation it belongs to.
    pub fn get(&self, model: &str) -> (u64, Option<Glance>) {
        let inner = self.lock();
        (inner.generation, inner.models.get(model).cloned())
    }

    /// Every model's glance, with the generation it belongs to.
    pub fn all(&self) -> (u64, BTreeMap<String, Glance>) {
        let inner = self.lock();
        (inner.generation, inner.models.clone())
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;
    use crate::model_state::tests::{policy, state, version};

    fn stage_policy() -> Policy {
        policy(
            Target::Stage("Staging".into()),
            Target::Stage("Production".into()),
        )
    }

    /// The generation moves when the champion, the newest candidate or the champion's
    /// restoration changes, and not when only the read's depth does.
    #[test]
    fn the_generation_follows_what_a_model_shows() {
        let (seen, p, names) = (Seen::default(), stage_policy(), TagNames::new("stagegate."));
        let full = state(
            vec![
                version(1, "Production"),
                version(2, "Staging"),
                version(3, "Staging"),
            ],
            &[],
        );
        assert!(seen.record(&full, &p, &names).is_none(), "first read");
        let g1 = seen.generation();
        // The poll's listing shows only the newest Staging version: the same at a glance.
        let listing = state(vec![version(1, "Production"), version(3, "Staging")], &[]);
        let before = seen.record(&listing, &p, &names).expect("seen before");
        assert_eq!(before.champion.as_deref(), Some("1"));
        assert_eq!(seen.generation(), g1, "a shallower read is no change");

        // A rollback puts v1 back: it carries restored_at, which the glance remembers.
        let mut restored = version(1, "Production");
        restored
            .tags
            .insert(names.restored_at(), "2026-12-02T10:00:00Z".into());
        let after = state(vec![restored, version(3, "Staging")], &[]);
        seen.record(&after, &p, &names);
        let g2 = seen.generation();
        assert!(g2 > g1);
        assert_eq!(
            seen.get("m").1.and_then(|g| g.restored).as_deref(),
            Some("2026-12-02T10:00:00Z")
        );
        // A champion moved by hand.
        let moved = state(vec![version(1, "Archived"), version(3, "Production")], &[]);
        seen.record(&moved, &p, &names);
        assert!(seen.generation() > g2);
        let g3 = seen.generation();
        seen.forget("m");
        assert!(seen.generation() > g3);
        assert!(seen.all().1.is_empty());
    }
}
