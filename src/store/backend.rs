//! The store seam: every operation the daemon asks of its store, async, with one typed error.
//! A backend is one module implementing [`Backend`] plus one arm in [`super::Store::open`];
//! a SQL database implements the smaller [`super::sql::Sql`] instead and gets every
//! operation from the statements the SQL backends share. Nothing outside `store` knows which
//! backend runs.
//!
//! Times are unix milliseconds, by the *store's* clock (the database's), so that replicas
//! whose clocks disagree still agree on who holds what.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    AnalysisRow, AuditRow, EvaluationRow, FinishedEvaluation, ModelRow, NewAnalysis, ReplicaRow,
    StoreError, Totals,
};

/// What a lease guards: one model's reconcile, or a cluster-wide singleton (the poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    Model,
    Singleton,
}

impl LeaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Model => "model",
            LeaseKind::Singleton => "singleton",
        }
    }
}

/// A claimed lease: who holds `name`, and the fencing token of this claim. Tokens of one name
/// only grow, so a holder that lost its lease can tell, and be told, that its token is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseId {
    pub kind: LeaseKind,
    pub name: String,
    pub owner: String,
    pub token: i64,
    /// When the claim was made, by the store's clock: queue entries up to then are served by
    /// the work this lease guards.
    pub claimed_at: i64,
}

#[async_trait]
pub trait Backend: Send + Sync {
    /// Which backend this is, for `/status` and `stagegate check` (never a secret).
    fn describe(&self) -> String;

    /// A cheap round trip: the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    // ---- webhook deliveries -------------------------------------------------------------

    /// Remember a delivery of `source` by its identity; `false` if any replica saw it before.
    async fn record_delivery(
        &self,
        source: &str,
        id: &str,
        event: &str,
        model: &str,
    ) -> Result<bool, StoreError>;
    /// Forget deliveries older than `retention`; returns how many.
    async fn prune_deliveries(&self, retention: Duration) -> Result<usize, StoreError>;
    async fn delivery_count(&self) -> Result<i64, StoreError>;

    // ---- evaluations --------------------------------------------------------------------

    async fn begin_evaluation(
        &self,
        model: &str,
        version: &str,
        policy: &str,
        digest: &str,
        trigger: &str,
    ) -> Result<i64, StoreError>;
    async fn finish_evaluation(&self, id: i64, done: &FinishedEvaluation)
    -> Result<(), StoreError>;
    async fn fail_evaluation(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// Record the action taken on a version on its latest evaluation, if that evaluation is
    /// the one whose verdict (`verdict`, as recorded in MLflow) was acted on. An evaluation
    /// cut short by a crash leaves an `interrupted` row: the action then stays in the audit
    /// log only, never on an older row with another verdict.
    async fn set_action(
        &self,
        model: &str,
        version: &str,
        verdict: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError>;
    /// Mark `model`'s evaluations still `running` as interrupted: called by the holder of a
    /// fresh lease, so whoever ran them is gone. Returns how many.
    async fn interrupt_running(&self, model: &str) -> Result<usize, StoreError>;
    /// History newest first, `limit` rows with ids below `before` (all when `None`).
    async fn evaluations_before(
        &self,
        model: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError>;
    async fn evaluation(&self, id: i64) -> Result<Option<EvaluationRow>, StoreError>;
    async fn totals(&self) -> Result<Totals, StoreError>;
    /// Every model with evaluations, by name.
    async fn models(&self) -> Result<Vec<ModelRow>, StoreError>;
    /// Each model's newest evaluation.
    async fn latest_per_model(&self) -> Result<Vec<EvaluationRow>, StoreError>;
    /// How many evaluations `model` has (0: the store does not know it).
    async fn evaluation_count(&self, model: &str) -> Result<i64, StoreError>;
    /// The newest finished evaluation of each of `model`'s newest `versions` versions, oldest
    /// version first: one point per version on the status page's charts.
    async fn latest_per_version(
        &self,
        model: &str,
        versions: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError>;

    // ---- audit --------------------------------------------------------------------------

    async fn audit(
        &self,
        model: &str,
        version: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError>;
    /// Add a row unless one for (model, version, action) is there, with the same `detail`
    /// when `same_detail`. Returns whether the row is new.
    async fn audit_absent(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
        same_detail: bool,
    ) -> Result<bool, StoreError>;
    /// The newest audit row's id (0 with none): the status page redraws when it grows.
    async fn last_audit_id(&self) -> Result<i64, StoreError>;
    async fn audit_log(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError>;

    // ---- post-promotion analyses ----------------------------------------------------------

    /// Start watching a promotion; `None` when an analysis of the model is running already
    /// (one per model at a time: the caller ends the old one first, with its reason).
    async fn begin_analysis(&self, a: &NewAnalysis) -> Result<Option<i64>, StoreError>;
    /// Running analyses, the soonest due first: what a restart or a takeover resumes.
    async fn running_analyses(&self) -> Result<Vec<AnalysisRow>, StoreError>;
    async fn analysis(&self, id: i64) -> Result<Option<AnalysisRow>, StoreError>;
    /// History newest first.
    async fn analyses(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AnalysisRow>, StoreError>;
    /// Record round `step`'s measurements (all of them, as JSON) and the next round's time;
    /// `false` if the round was recorded already or the analysis ended (compare and set: a
    /// round is recorded once, whoever measured it).
    async fn record_round(
        &self,
        id: i64,
        step: i64,
        measurements: &str,
        next_in: Duration,
    ) -> Result<bool, StoreError>;
    /// End a running analysis; `false` if it had ended: one outcome per analysis.
    async fn finish_analysis(
        &self,
        id: i64,
        status: &str,
        reason: &str,
    ) -> Result<bool, StoreError>;
    /// Note that an ended analysis's outcome was acted on; `false` if it was already (or the
    /// analysis still runs).
    async fn settle_analysis(&self, id: i64) -> Result<bool, StoreError>;
    /// Models with an analysis step to take now (by the store's clock): a round due, or an
    /// outcome not settled. What the background round queues, whatever timers were lost.
    async fn analyses_due(&self) -> Result<Vec<String>, StoreError>;

    // ---- the shared queue and re-evaluation requests ------------------------------------

    /// Note that `model` needs a reconcile (its time is now, even if it was queued before).
    async fn queue_push(&self, model: &str) -> Result<(), StoreError>;
    /// Drop `model`'s entry if it was queued at or before `since` (a reconcile that began
    /// then has served it; a later push stays).
    async fn queue_remove(&self, model: &str, since: i64) -> Result<(), StoreError>;
    /// Queued models, oldest first, queued at or before `before`.
    async fn queued(&self, before: i64) -> Result<Vec<String>, StoreError>;
    /// Ask for `version` to be evaluated (again, even if it has a current verdict).
    async fn request_evaluation(&self, model: &str, version: &str) -> Result<(), StoreError>;
    /// Pending requests of `model`: version → the newest request's sequence number.
    async fn requests(&self, model: &str) -> Result<BTreeMap<String, i64>, StoreError>;
    async fn requested_models(&self) -> Result<BTreeSet<String>, StoreError>;
    /// Consume the requests for `version` up to sequence number `up_to`.
    async fn clear_requests(
        &self,
        model: &str,
        version: &str,
        up_to: i64,
    ) -> Result<(), StoreError>;

    // ---- the cluster: mode, leases, replicas ---------------------------------------------

    /// Whether acting is paused (for every replica).
    async fn paused(&self) -> Result<bool, StoreError>;
    async fn set_paused(&self, paused: bool) -> Result<(), StoreError>;

    /// Claim `name` for `owner` for `ttl`, if nobody holds it (or the lease ran out, or was
    /// released). Every claim gets a new, larger token.
    async fn claim(
        &self,
        kind: LeaseKind,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseId>, StoreError>;
    /// Extend a held lease to `ttl` from now; `false` if it is no longer held (ran out and was
    /// claimed by another, or released).
    async fn renew(&self, lease: &LeaseId, ttl: Duration) -> Result<bool, StoreError>;
    /// Whether `lease` is still held, with at least `margin` left: the check before each write.
    async fn holds(&self, lease: &LeaseId, margin: Duration) -> Result<bool, StoreError>;
    /// Give `lease` up (its token stays, so the next claim's is larger).
    async fn release(&self, lease: &LeaseId) -> Result<(), StoreError>;
    /// Models whose work was dropped by a replica that died: a lease that ran out without
    /// being released, or an evaluation still `running` with no live lease on its model.
    async fn orphans(&self) -> Result<Vec<String>, StoreError>;

    /// Announce this replica (and what it is doing) to the others.
    async fn heartbeat(&self, replica: &ReplicaRow) -> Result<(), StoreError>;
    /// Replicas heard from within `within`.
    async fn replicas(&self, within: Duration) -> Result<Vec<ReplicaRow>, StoreError>;
}
