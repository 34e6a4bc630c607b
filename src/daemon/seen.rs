//! What the daemon last saw of each model in the registry — its champion and candidates — so
//! the status page can show them without asking MLflow on a page request. Fed by every read
//! the poll and the reconciler make anyway; one entry per model, replaced on each read.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::config::{Policy, Target};
use crate::evaluation::now_rfc3339;
use crate::model_state::ModelState;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Glance {
    pub champion: Option<String>,
    /// Versions at the candidate target, newest first.
    pub candidates: Vec<String>,
    /// When the registry was read (RFC 3339 UTC).
    pub seen_at: String,
}

impl Glance {
    pub fn of(state: &ModelState, policy: &Policy) -> Glance {
        // An alias names its holder even when a summary read did not fetch that version.
        let candidates = match policy.candidate() {
            Target::Alias(a) => state.aliases.get(a).cloned().into_iter().collect(),
            Target::Stage(_) => state
                .candidates(policy)
                .iter()
                .map(|v| v.version.clone())
                .collect(),
        };
        Glance {
            champion: state.champion_version(policy).map(str::to_string),
            candidates,
            seen_at: now_rfc3339(),
        }
    }
}

#[derive(Default)]
pub struct Seen {
    models: Mutex<BTreeMap<String, Glance>>,
}

impl Seen {
    pub fn record(&self, state: &ModelState, policy: &Policy) {
        let glance = Glance::of(state, policy);
        self.lock().insert(state.name.clone(), glance);
    }

    /// A model that no longer exists is no longer shown as having a champion.
    pub fn forget(&self, model: &str) {
        self.lock().remove(model);
    }

    pub fn get(&self, model: &str) -> Option<Glance> {
        self.lock().get(model).cloned()
    }

    pub fn all(&self) -> BTreeMap<String, Glance> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Glance>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }
}
