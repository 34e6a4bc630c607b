//! Settling an ended analysis: what its outcome asks for, done once and marked done in the
//! store (`settled_at`), so that it is never done twice and never forgotten.
//!
//! In order, each step idempotent, so a crash anywhere is finished by the next pass:
//! 1. the audit row (`audit_once`) and, when that row is new, the metric and the notification;
//! 2. the version's `analysis` tag;
//! 3. for a failure under `on_failure = "rollback"` in an enforcing policy: the rollback,
//!    re-verified against the registry just before it moves; or, when a crash cut one short
//!    after its move, its bookkeeping tags. While paused it waits, unsettled.
//! 4. `settled_at`. A champion a person puts back after that stays: nothing is owed any more.

use std::time::Duration;

use super::{Next, Watch, outcome};
use crate::actions::ActError;
use crate::config::Mode;
use crate::config::analysis::OnFailure;
use crate::daemon::App;
use crate::daemon::notify;
use crate::daemon::reconciler::ReconcileError;
use crate::model_state::ModelState;
use crate::store::{AnalysisRow, StoreError};

/// How long a paused model waits before an owed rollback is looked at again (a resume also
/// queues it at once).
const PAUSED_RETRY: Duration = Duration::from_secs(5);

/// The audit action of everything an analysis records.
const ANALYSIS: &str = "analysis";

/// The `rolled_back` note's mark of a rollback made by an analysis.
pub const MARK: &str = "(analysis failed: ";

impl Watch<'_> {
    pub(super) async fn settle(
        &self,
        state: &ModelState,
        row: &AnalysisRow,
    ) -> Result<Next, ReconcileError> {
        let reason = row.reason.as_deref().unwrap_or("");
        announce(self.app, row, &row.status, reason).await?;
        self.tag(state, row).await?;
        if row.status == "failed" {
            match self.rollback(state, row).await? {
                Owed::Done => {}
                Owed::Wait(d) => return Ok(Next::After(d)),
            }
        }
        self.app.store.settle_analysis(row.id).await?;
        Ok(Next::Again)
    }

    /// What a failure asks for, as the policy says now: nothing, a rollback, or the end of one
    /// cut short.
    async fn rollback(
        &self,
        state: &ModelState,
        row: &AnalysisRow,
    ) -> Result<Owed, ReconcileError> {
        let (model, version) = (self.model, row.version.as_str());
        let rolls_back = self
            .policy
            .analysis
            .as_ref()
            .is_some_and(|a| a.on_failure == OnFailure::Rollback);
        if !rolls_back {
            return Ok(Owed::Done);
        }
        if self.policy.mode != Mode::Enforce {
            self.note(row, "not rolled back: the policy is a dry run")
                .await?;
            return Ok(Owed::Done);
        }
        let Some(good) = row.previous.as_deref() else {
            // The first promotion replaced nothing: the version stays for a person to move.
            self.note(row, "not rolled back: it replaced no version")
                .await?;
            return Ok(Owed::Done);
        };
        if self.paused {
            tracing::info!(
                model,
                version,
                "analysis failed; the rollback waits for resume"
            );
            return Ok(Owed::Wait(PAUSED_RETRY));
        }
        let champion = state.champion_version(self.policy);
        let ours = state
            .version(version)
            .and_then(|v| v.tag(&self.engine.names.rolled_back()))
            .is_some_and(|note| note.contains(MARK));
        let actor = self.engine.actor(self.policy);
        if champion == Some(version) {
            let why = format!(" {MARK}{})", row.reason.as_deref().unwrap_or(""));
            match actor
                .rollback_checked(model, Some(version), Some(good), &why)
                .await
            {
                Ok((from, to)) => {
                    tracing::warn!(model, from, to, "analysis failed: rolled back");
                    self.note(row, &format!("rolled back to v{to}")).await?;
                }
                Err(ActError::Refused(why)) => {
                    self.note(row, &format!("not rolled back: {why}")).await?;
                }
                Err(e) => return Err(e.into()),
            }
        } else if champion == Some(good) && ours {
            // A rollback cut short after its move (a lost lease, a crash): the restore's tags.
            actor.mark_restored(model, version, good).await?;
            self.note(row, &format!("rolled back to v{good}")).await?;
        }
        // Else the champion moved elsewhere meanwhile: nothing of ours to move or finish.
        Ok(Owed::Done)
    }

    /// One audit row for what became of a failure.
    async fn note(&self, row: &AnalysisRow, what: &str) -> Result<(), StoreError> {
        let note = audit_note(row, what);
        if self
            .app
            .store
            .audit_once(self.model, &row.version, ANALYSIS, &note)
            .await?
        {
            tracing::warn!(model = self.model, version = %row.version, what, "analysis failed");
        }
        Ok(())
    }
}

enum Owed {
    Done,
    Wait(Duration),
}

/// Say that `row` ended as `status`, once: the audit row and, when it is new, the metric and
/// the `analysis` notification (at most once: a crash right after the row loses the message).
pub async fn announce(
    app: &App,
    row: &AnalysisRow,
    status: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let (model, version) = (row.model.as_str(), row.version.as_str());
    let outcome = outcome(status, reason);
    let note = audit_note(row, &outcome);
    if app
        .store
        .audit_once(model, version, ANALYSIS, &note)
        .await?
    {
        app.metrics.analysis(status);
        notify::analysis(app, model, version, status, &outcome, &row.measurements);
    }
    Ok(())
}

/// An audit row's words: `analysis <id> of v<N>: <what>` (the id keeps two analyses of one
/// version apart).
fn audit_note(row: &AnalysisRow, what: &str) -> String {
    format!("analysis {} of v{}: {what}", row.id, row.version)
}
