//! The post-promotion analysis as one more step of each pass of a model's reconcile. Like the
//! plan, it is never told why it was called: it compares the model's newest analysis row with
//! the champion the registry names now, and does the one thing that brings them together.
//!
//! - A running analysis of the champion: wait until its next round is due, or measure, record
//!   the round (a compare-and-set on its step, so a round is recorded once across replicas) and
//!   judge it. An outcome is set with `WHERE status = 'running'`: one per analysis.
//! - A running analysis of a version that is no longer the champion: end it with the reason.
//! - An ended analysis not yet settled ([`settle`]): its audit row and notification, its tag,
//!   and for a failure the rollback, re-verified against the registry just before; then marked
//!   settled, once. A crash anywhere in between leaves a state the next pass finishes, and the
//!   background round queues every model with an outcome still owed.
//! - A champion stagegate promoted with no analysis ([`begin`]): begin one, timed from its
//!   promotion as the registry records it, unless its window has passed.

mod begin;
mod settle;

use std::time::Duration;

use crate::actions::ActError;
use crate::analysis::judge::Outcome as Judged;
use crate::analysis::provider::Vars;
use crate::analysis::{round, step};
use crate::config::analysis::Analysis;
use crate::config::{Policy, Target};
use crate::daemon::App;
use crate::daemon::reconciler::ReconcileError;
use crate::engine::Engine;
use crate::evaluation::now_rfc3339;
use crate::model_state::ModelState;
use crate::store::{AnalysisRow, StoreError, now_ms};

pub use begin::owed as begin_owed;

/// What the reconcile does after this step.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Nothing to watch.
    Idle,
    /// Come back after this long (the next round).
    After(Duration),
    /// A round was taken, which took time: come back after this long, and read the registry
    /// again before acting on it.
    Measured(Duration),
    /// Something was written: read the registry again and take the next step.
    Again,
}

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
        match newest.into_iter().next() {
            Some(row) if row.status == "running" => self.running(state, row).await,
            Some(row) if row.settled_at.is_none() => self.settle(state, &row).await,
            _ => self.begin(state).await,
        }
    }

    /// A running analysis: wait, measure, or end it because its version is not watched any
    /// more, or because the rounds already recorded decide it (a crash between recording a
    /// round and setting the outcome, a `count` lowered by a reload).
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
        let next = step::next(&row, &now);
        if matches!(next, step::Next::End(_)) {
            // The champion changed: that ends it, whatever the rounds say.
        } else if let Some(end) = self.decided(cfg, &row).await? {
            return Ok(end);
        }
        match next {
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

    /// The outcome the recorded rounds give, set, if it is not `Running`.
    async fn decided(
        &self,
        cfg: &Analysis,
        row: &AnalysisRow,
    ) -> Result<Option<Next>, ReconcileError> {
        let rounds = round::parse(&row.measurements);
        Ok(match round::judge(cfg, &rounds) {
            Judged::Running => None,
            outcome => Some(self.conclude(row, outcome).await?),
        })
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
        match round::judge(cfg, &rounds) {
            Judged::Running => Ok(Next::Measured(cfg.interval)),
            outcome => self.conclude(row, outcome).await,
        }
    }

    /// Set a judged outcome.
    async fn conclude(&self, row: &AnalysisRow, outcome: Judged) -> Result<Next, ReconcileError> {
        match outcome {
            Judged::Running => Ok(Next::Again),
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

    /// Set the outcome once (another replica or a person may have set it first) and read
    /// again: the next step settles it.
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
            tracing::info!(model = self.model, version = %row.version, outcome = %outcome(status, reason), "analysis ended");
        }
        Ok(Next::Again)
    }

    /// Write the row's outcome as the version's `analysis` tag unless it says so already;
    /// `true` if it wrote.
    async fn tag(&self, state: &ModelState, row: &AnalysisRow) -> Result<bool, ReconcileError> {
        let key = self.engine.names.analysis();
        let want = crate::tags::clip(
            &outcome(&row.status, row.reason.as_deref().unwrap_or("")),
            5_000,
        );
        let Some(v) = state.version(&row.version) else {
            return Ok(false);
        };
        if v.tag(&key) == Some(want.as_str()) {
            return Ok(false);
        }
        self.engine
            .client
            .set_version_tag(self.model, &row.version, &key, &want)
            .await
            .map_err(ActError::from)?;
        Ok(true)
    }
}

/// End and settle `model`'s running analysis, if any, when its reconcile cannot reach the
/// analysis step any more: the model was deleted, or no policy matches it now. No tag can be
/// written (or should be, for a model no policy governs); the audit row says why.
pub async fn close(app: &App, model: &str, why: &str) -> Result<(), StoreError> {
    let Some(row) = app.store.analyses(Some(model), 1).await?.into_iter().next() else {
        return Ok(());
    };
    if row.settled_at.is_some() {
        return Ok(());
    }
    let (status, reason) = if row.status == "running" {
        app.store.finish_analysis(row.id, "ended", why).await?;
        ("ended".to_string(), why.to_string())
    } else {
        (row.status.clone(), row.reason.clone().unwrap_or_default())
    };
    settle::announce(app, &row, &status, &reason).await?;
    app.store.settle_analysis(row.id).await?;
    Ok(())
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
