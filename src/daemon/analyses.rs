//! The post-promotion analysis as one more step of a model's reconcile, taken once the plan has
//! nothing else to do. Like the plan, it is never told why it was called: it compares the
//! model's newest analysis row with the champion the registry names now, and does the one thing
//! that brings them together.
//!
//! - A running analysis of the champion: wait until its next round is due, or measure, record
//!   the round (a compare-and-set on its step, so a round is recorded once across replicas) and
//!   judge it. An outcome is set with `WHERE status = 'running'`: one per analysis.
//! - A running analysis of a version that is no longer the champion: end it with the reason.
//! - An analysis that ended: its `analysis` tag written if missing, and, if it failed under
//!   `on_failure = "rollback"`, the rollback, re-verified against the registry just before.
//!   A crash anywhere in between leaves a state this step finishes.
//! - A champion stagegate promoted with no analysis: begin one, timed from its promotion, unless
//!   its window has passed (an analysis added to a policy does not judge an old champion).

use std::time::Duration;

use crate::actions::ActError;
use crate::analysis::judge::Outcome as Judged;
use crate::analysis::provider::Vars;
use crate::analysis::{round, step};
use crate::config::analysis::{Analysis, OnFailure};
use crate::config::{Mode, Policy, Target};
use crate::daemon::App;
use crate::daemon::notify;
use crate::daemon::reconciler::ReconcileError;
use crate::decision::PROMOTED;
use crate::engine::Engine;
use crate::evaluation::now_rfc3339;
use crate::model_state::ModelState;
use crate::store::{AnalysisRow, NewAnalysis, now_ms};

/// What the reconcile does after this step.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Nothing to watch.
    Idle,
    /// Come back after this long (the next round).
    After(Duration),
    /// Something was written: read the registry again and take the next step.
    Again,
}

/// How long a paused model waits before a held rollback or round is looked at again (a resume
/// also requeues every model).
const PAUSED_RETRY: Duration = Duration::from_secs(5);

/// One reconcile's view, for the analysis step.
pub struct Watch<'a> {
    pub app: &'a App,
    pub engine: &'a Engine,
    pub policy: &'a Policy,
    pub model: &'a str,
    pub paused: bool,
}

impl Watch<'_> {
    pub async fn step(&self, state: &ModelState) -> Result<Next, ReconcileError> {
        let newest = self.app.store.analyses(Some(self.model), 1).await?;
        let champion = state.champion_version(self.policy);
        match newest.into_iter().next() {
            Some(row) if row.status == "running" => self.running(state, row).await,
            Some(row) => match self.settle(state, &row).await? {
                Next::Idle if champion != Some(row.version.as_str()) => self.begin(state).await,
                next => Ok(next),
            },
            None => self.begin(state).await,
        }
    }

    /// A running analysis: wait, measure, or end it because its version is not watched any more.
    async fn running(&self, state: &ModelState, row: AnalysisRow) -> Result<Next, ReconcileError> {
        let names = &self.engine.names;
        let Some(cfg) = &self.policy.analysis else {
            return self
                .end(&row, "ended", "the policy no longer has an analysis")
                .await;
        };
        let watched = state.version(&row.version);
        let now = step::Now {
            champion: state.champion_version(self.policy),
            rolled_back: watched.is_some_and(|v| v.tag(&names.rolled_back()).is_some()),
            paused: self.paused,
            at_ms: now_ms(),
        };
        match step::next(&row, &now) {
            step::Next::End(why) => self.end(&row, "ended", &why).await,
            step::Next::Wait(ms) => {
                if self.tag(state, &row).await? {
                    return Ok(Next::Again);
                }
                Ok(Next::After(Duration::from_millis(ms.max(0) as u64)))
            }
            step::Next::Measure => self.measure(cfg, &row).await,
        }
    }

    /// Take the row's next round, record it, and set the outcome it gives, if any.
    async fn measure(&self, cfg: &Analysis, row: &AnalysisRow) -> Result<Next, ReconcileError> {
        let mut rounds = round::parse(&row.measurements);
        let vars = vars(row);
        let http = &self.app.probes;
        round::take(http, cfg, &vars, &mut rounds, &now_rfc3339()).await;
        let json = serde_json::to_string(&rounds).unwrap_or_else(|_| "{}".into());
        let recorded = self
            .app
            .store
            .record_round(row.id, row.step, &json, cfg.interval)
            .await?;
        if !recorded {
            // Another replica (or a person) got there first: look again.
            return Ok(Next::Again);
        }
        let row = &AnalysisRow {
            measurements: serde_json::to_value(&rounds).unwrap_or_default(),
            step: row.step + 1,
            ..row.clone()
        };
        match round::judge(cfg, &rounds) {
            Judged::Running => Ok(Next::After(cfg.interval)),
            Judged::Passed => self.end(row, "passed", "").await,
            Judged::Failed {
                metric,
                value,
                threshold,
            } => {
                let why = format!("{metric} {value} vs {threshold}");
                self.end(row, "failed", &why).await
            }
            Judged::Inconclusive { metric, why } => {
                self.end(row, "inconclusive", &format!("{metric}: {why}"))
                    .await
            }
        }
    }

    /// Set the outcome once (another replica or a person may have set it first), say so, and
    /// read again: the next step writes the tag and, for a failure, rolls back.
    async fn end(
        &self,
        row: &AnalysisRow,
        status: &str,
        reason: &str,
    ) -> Result<Next, ReconcileError> {
        if self
            .app
            .store
            .finish_analysis(row.id, status, reason)
            .await?
        {
            announce(self.app, row, status, reason).await?;
        }
        Ok(Next::Again)
    }

    /// An analysis that ended: the tag says how, and a failure is rolled back if the policy
    /// says so and the failed version is still the champion and not rolled back already.
    async fn settle(&self, state: &ModelState, row: &AnalysisRow) -> Result<Next, ReconcileError> {
        if self.tag(state, row).await? {
            return Ok(Next::Again);
        }
        let champion = state.champion_version(self.policy);
        let still_champion = champion == Some(row.version.as_str());
        let rolls_back = self
            .policy
            .analysis
            .as_ref()
            .is_some_and(|a| a.on_failure == OnFailure::Rollback);
        if row.status != "failed" || !rolls_back {
            return Ok(Next::Idle);
        }
        if !still_champion {
            return self.finish_rollback(state, row, champion).await;
        }
        // Not the `rolled_back` tag: it is written before the move, so a crash between the
        // two leaves it on a champion whose rollback is still to be made. What says the
        // rollback was made is our audit row after it; a champion carrying one was put back
        // by a person, and stays.
        if self.rolled_back_before(row).await? {
            return Ok(Next::Idle);
        }
        if self.policy.mode != Mode::Enforce {
            tracing::warn!(model = self.model, version = %row.version, "analysis failed; not rolled back (dry-run)");
            return Ok(Next::Idle);
        }
        if row.previous.is_none() {
            // The first promotion replaced nothing: there is nothing to restore, and the
            // version stays for a person to move.
            return self.not_rolled_back(row, "it replaced no version").await;
        }
        if self.paused {
            tracing::info!(model = self.model, version = %row.version, "analysis failed; the rollback waits for resume");
            return Ok(Next::After(PAUSED_RETRY));
        }
        let why = format!(
            " (analysis failed: {})",
            row.reason.as_deref().unwrap_or("")
        );
        let actor = self.engine.actor(self.policy);
        match actor
            .rollback_checked(
                self.model,
                Some(&row.version),
                row.previous.as_deref(),
                &why,
            )
            .await
        {
            Ok((from, to)) => {
                tracing::warn!(model = self.model, from, to, "analysis failed: rolled back");
                let note = format!("{}{to}", rolled_back_note(&from));
                self.app
                    .store
                    .audit_once(self.model, &from, "analysis", &note)
                    .await?;
                Ok(Next::Again)
            }
            // Nothing to restore (the replaced version was deleted): said once in the audit
            // log; every later look finds the same and adds nothing.
            Err(ActError::Refused(why)) => self.not_rolled_back(row, &why).await,
            Err(e) => Err(e.into()),
        }
    }

    /// A rollback cut short after its move (a lost lease, a crash): the previous champion is
    /// back and the failed version carries our `rolled_back`, but the restore's tags and our
    /// audit row are missing. They are written now; nothing is moved.
    async fn finish_rollback(
        &self,
        state: &ModelState,
        row: &AnalysisRow,
        champion: Option<&str>,
    ) -> Result<Next, ReconcileError> {
        let names = &self.engine.names;
        let ours = state
            .version(&row.version)
            .and_then(|v| v.tag(&names.rolled_back()))
            .is_some_and(|note| note.contains("(analysis failed: "));
        let Some(good) = row.previous.as_deref().filter(|p| champion == Some(*p)) else {
            return Ok(Next::Idle);
        };
        if !ours || self.rolled_back_before(row).await? {
            return Ok(Next::Idle);
        }
        let actor = self.engine.actor(self.policy);
        actor.mark_restored(self.model, &row.version, good).await?;
        let note = format!("{}{good}", rolled_back_note(&row.version));
        self.app
            .store
            .audit_once(self.model, &row.version, "analysis", &note)
            .await?;
        Ok(Next::Again)
    }

    /// Whether stagegate completed a rollback of `row`'s version before (its audit row).
    async fn rolled_back_before(&self, row: &AnalysisRow) -> Result<bool, ReconcileError> {
        let prefix = rolled_back_note(&row.version);
        let log = self.app.store.audit_log(Some(self.model), 1000).await?;
        Ok(log.iter().any(|r| {
            r.action == "analysis"
                && r.version.as_deref() == Some(row.version.as_str())
                && r.detail.as_deref().is_some_and(|d| d.starts_with(&prefix))
        }))
    }

    /// A failed analysis that cannot be rolled back: said once in the audit log (every later
    /// look finds the same and adds nothing).
    async fn not_rolled_back(&self, row: &AnalysisRow, why: &str) -> Result<Next, ReconcileError> {
        let note = format!(
            "analysis of v{} failed; not rolled back: {why}",
            row.version
        );
        let added = self
            .app
            .store
            .audit_once(self.model, &row.version, "analysis", &note)
            .await?;
        if added {
            tracing::error!(model = self.model, version = %row.version, why, "analysis failed; cannot roll back");
        }
        Ok(Next::Idle)
    }

    /// Write the row's outcome as the version's `analysis` tag unless it says so already;
    /// `true` if it wrote.
    async fn tag(&self, state: &ModelState, row: &AnalysisRow) -> Result<bool, ReconcileError> {
        let key = self.engine.names.analysis();
        let want = outcome(&row.status, row.reason.as_deref().unwrap_or(""));
        let Some(v) = state.version(&row.version) else {
            return Ok(false);
        };
        if v.tag(&key) == Some(want.as_str()) {
            return Ok(false);
        }
        self.engine
            .client
            .set_version_tag(
                self.model,
                &row.version,
                &key,
                &crate::tags::clip(&want, 5_000),
            )
            .await
            .map_err(ActError::from)?;
        Ok(true)
    }

    /// Begin watching the champion if stagegate promoted it (or, with `after_bypass`, noticed
    /// it as a bypass) and nothing has watched it yet, timed from that moment.
    async fn begin(&self, state: &ModelState) -> Result<Next, ReconcileError> {
        let names = &self.engine.names;
        let (Some(cfg), Some(champion)) = (&self.policy.analysis, state.champion(self.policy))
        else {
            return Ok(Next::Idle);
        };
        let ours = champion.tag(&names.action()) == Some(PROMOTED);
        let bypass = cfg.after_bypass && champion.tag(&names.bypass()).is_some();
        let watched = champion.tag(&names.analysis()).is_some();
        let rolled_back = champion.tag(&names.rolled_back()).is_some();
        if !(ours || bypass) || watched || rolled_back {
            return Ok(Next::Idle);
        }
        let action = if ours { PROMOTED } else { "bypass" };
        let Some(at_ms) = self.moved_at(&champion.version, action).await? else {
            return Ok(Next::Idle);
        };
        let window = cfg.initial_delay + cfg.interval * cfg.count;
        let age = Duration::from_millis((now_ms() - at_ms).max(0) as u64);
        if age > window + cfg.interval {
            tracing::debug!(model = self.model, version = %champion.version, "champion promoted before its analysis window; not analysed");
            return Ok(Next::Idle);
        }
        // What a rollback restores: the champion this promotion replaced, as recorded; for a
        // promotion by hand, the last version stagegate promoted (as a bypass revert would).
        let previous = if ours {
            champion
                .tag(&names.replaced_version())
                .filter(|p| *p != crate::decision::REPLACED_NOTHING)
                .map(str::to_string)
        } else {
            state
                .versions
                .values()
                .rev()
                .find(|o| {
                    o.version != champion.version
                        && o.tag(&names.action()) == Some(PROMOTED)
                        && o.tag(&names.rolled_back()).is_none()
                })
                .map(|o| o.version.clone())
        };
        let new = NewAnalysis {
            model: self.model.into(),
            version: champion.version.clone(),
            previous,
            target: target(self.policy),
            policy: self.policy.name.clone(),
            first_in: cfg.initial_delay.saturating_sub(age),
        };
        if let Some(id) = self.app.store.begin_analysis(&new).await? {
            tracing::info!(model = self.model, version = %new.version, id, "analysis begun");
            self.app.metrics.analysis("running");
        }
        Ok(Next::Again)
    }

    /// When the store recorded `action` for `version`: the promotion (or the bypass noticed).
    async fn moved_at(&self, version: &str, action: &str) -> Result<Option<i64>, ReconcileError> {
        let log = self.app.store.audit_log(Some(self.model), 200).await?;
        Ok(log
            .iter()
            .find(|r| r.version.as_deref() == Some(version) && r.action.starts_with(action))
            .and_then(|r| chrono::DateTime::parse_from_rfc3339(&r.at).ok())
            .map(|t| t.timestamp_millis()))
    }
}

/// Say that `row` ended as `status` (the store has just recorded it, once): the log, the
/// metric, the audit row and the `analysis` notification.
pub async fn announce(
    app: &App,
    row: &AnalysisRow,
    status: &str,
    reason: &str,
) -> Result<(), crate::store::StoreError> {
    let (model, version) = (row.model.as_str(), row.version.as_str());
    let outcome = outcome(status, reason);
    tracing::info!(model, version, outcome, "analysis ended");
    app.metrics.analysis(status);
    let note = format!("analysis of v{version}: {outcome}");
    app.store
        .audit(model, Some(version), "analysis", &note)
        .await?;
    notify::analysis(app, model, version, status, &outcome, &row.measurements);
    Ok(())
}

/// The audit note of a rollback made after a failed analysis, up to the restored version.
fn rolled_back_note(version: &str) -> String {
    format!("analysis of v{version}: rolled back to v")
}

/// `passed`, or `failed: <why>`: the tag's value and the audit's words.
pub fn outcome(status: &str, reason: &str) -> String {
    if reason.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {reason}")
    }
}

fn vars(row: &AnalysisRow) -> Vars {
    let (kind, name) = row.target.split_once(':').unwrap_or(("", ""));
    Vars {
        model: row.model.clone(),
        version: row.version.clone(),
        previous: row.previous.clone().unwrap_or_default(),
        alias: if kind == "alias" {
            name.into()
        } else {
            String::new()
        },
        stage: if kind == "stage" {
            name.into()
        } else {
            String::new()
        },
    }
}

/// `alias:<name>` or `stage:<name>`, as the row records the target.
pub fn target(policy: &Policy) -> String {
    match policy.promote.target() {
        Target::Alias(a) => format!("alias:{a}"),
        Target::Stage(s) => format!("stage:{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_target_fills_the_alias_or_the_stage() {
        let mut row = crate::analysis::step::test_row("5", Some("4"), 0);
        row.target = "stage:Production".into();
        let v = vars(&row);
        assert_eq!((v.alias.as_str(), v.stage.as_str()), ("", "Production"));
        row.target = "alias:champion".into();
        let v = vars(&row);
        assert_eq!((v.alias.as_str(), v.stage.as_str()), ("champion", ""));
        assert_eq!(outcome("passed", ""), "passed");
        assert_eq!(
            outcome("failed", "e 0.3 vs > max 0.01"),
            "failed: e 0.3 vs > max 0.01"
        );
    }
}
