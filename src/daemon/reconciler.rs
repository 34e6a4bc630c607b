//! The reconciler: `reconcile(model)` re-reads the model from MLflow, asks the decision core
//! for the next step, carries it out, and repeats until there is nothing left to do. It is
//! never told why it was called and trusts no payload, so lost or repeated events are harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::actions::{ActError, Actor, rollbacks};
use crate::config::{Mode, Policy};
use crate::daemon::App;
use crate::daemon::analyses::{self, Watch};
use crate::daemon::notify;
use crate::daemon::scheduler::{Attempt, Outcome};
use crate::decision::{Decision, Options, PROMOTED, PlanInput, Step, plan};
use crate::engine::{Engine, EngineError};
use crate::inputs::Files;
use crate::mlflow::WriteGuard;
use crate::model_state::{Depth, ModelState};
use crate::store::StoreError;
use crate::verdict::Verdict;

/// The audit action of a rollback made with `stagegate rollback`.
const ROLLBACK: &str = "rollback";

/// Steps one reconcile may take before yielding (a guard against a registry that keeps moving).
const MAX_STEPS: usize = 32;

/// How soon a model another replica holds is tried again: its holder may be finishing a
/// change older than the one that brought us here.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(super) enum ReconcileError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("evaluation of v{0} ended in error; retrying")]
    GateError(String),
    #[error("still not converged after {MAX_STEPS} steps")]
    TooManySteps,
}

impl From<ActError> for ReconcileError {
    fn from(e: ActError) -> Self {
        ReconcileError::Engine(EngineError::Act(e))
    }
}

impl ReconcileError {
    fn outcome(&self) -> Outcome {
        match self {
            ReconcileError::Engine(EngineError::Act(ActError::Changed { .. })) => Outcome::Requeue,
            ReconcileError::Engine(e) if e.is_transient() => Outcome::Retry(self.to_string()),
            ReconcileError::Store(e) if e.is_transient() => Outcome::Retry(self.to_string()),
            ReconcileError::GateError(_) | ReconcileError::TooManySteps => {
                Outcome::Retry(self.to_string())
            }
            _ => Outcome::Done,
        }
    }
}

/// Reconcile one model under its lease; the scheduler decides what a failure means for the
/// next attempt. Every MLflow write of the reconcile is fenced by the lease.
pub async fn reconcile(app: Arc<App>, model: String, attempt: Attempt) -> Outcome {
    let held = match app.cluster.claim(&model).await {
        Ok(Some(held)) => held,
        Ok(None) => {
            tracing::debug!(
                model,
                "another replica holds the model; trying again shortly"
            );
            return Outcome::Busy(BUSY_RETRY);
        }
        // No lease, no write: try again when the store answers.
        Err(e) => return Outcome::Retry(format!("could not take the lease on the model: {e}")),
    };
    let since = held.claimed_at();
    let result = converge(&app, &model, attempt, held.guard()).await;
    held.release().await;
    let outcome = match &result {
        Ok(o) => o.clone(),
        Err(e) => {
            let o = e.outcome();
            if o == Outcome::Done {
                tracing::error!(model, error = %e, "reconcile failed");
            }
            o
        }
    };
    if (matches!(outcome, Outcome::Done | Outcome::After(_)) || attempt.last)
        && let Err(e) = app.store.queue_remove(&model, since).await
    {
        tracing::warn!(model, error = %e, "could not update the persisted queue");
    }
    outcome
}

/// One reconcile of one model: what every step reads and writes with.
struct Reconciling<'a> {
    app: &'a App,
    model: &'a str,
    attempt: Attempt,
    policy: &'a Policy,
    digest: String,
    engine: &'a Engine,
    /// Why the model was queued, recorded with each evaluation.
    trigger: String,
}

async fn converge(
    app: &App,
    model: &str,
    attempt: Attempt,
    guard: Arc<dyn WriteGuard>,
) -> Result<Outcome, ReconcileError> {
    let live = app.live();
    let engine = &live.engine.guarded(guard);
    let config = &live.loaded.config;
    let Some(policy) = config.policy_for(model) else {
        tracing::debug!(model, "no policy matches; nothing to do");
        analyses::close(app, model, "no policy matches the model any more").await?;
        return Ok(Outcome::Done);
    };
    let run = Reconciling {
        app,
        model,
        attempt,
        policy,
        digest: policy.digest(),
        engine,
        trigger: app.scheduler.take_trigger(model),
    };
    for _ in 0..MAX_STEPS {
        // Requests are re-read every step: one made during an evaluation is served by the
        // next evaluation, never consumed by the one already running.
        let requests = app.store.requests(model).await?;
        // The pause is read beside the registry, not after it: a pause is honoured from the
        // next step either way.
        // So is what the gates' files are now: a replaced holdout makes candidates judged on
        // the old one stale, whatever triggered this reconcile.
        let (state, paused, files) = tokio::join!(
            run.read(&requests),
            app.is_paused(),
            engine.files_now(policy)
        );
        let Some(state) = state? else {
            return Ok(Outcome::Done);
        };
        // And what each candidate's run logged, for gates that read that (`context`).
        let logged = engine.logged_for(policy, &state).await;
        let requested: BTreeSet<String> = requests.keys().cloned().collect();
        let paused = paused?;
        let input = PlanInput {
            policy,
            digest: &run.digest,
            names: &engine.names,
            requested: &requested,
            paused,
            now: SystemTime::now(),
            settle: config.workers.settle,
            data: &files,
            logged: &logged,
        };
        let step = plan(&input, &state);
        tracing::debug!(model, ?step, "plan");
        // The champion's analysis goes first: a round that is due, or a failed analysis's
        // rollback, is not held back behind a candidate's evaluation.
        let watching = Watch {
            app,
            engine,
            policy,
            model,
            paused,
        };
        let wake = match watching.step(&state).await? {
            analyses::Next::Again => continue,
            // A round takes time: a step that acts reads the registry again first.
            analyses::Next::Measured(_) if !matches!(step, Step::Idle | Step::Wait { .. }) => {
                continue;
            }
            analyses::Next::After(d) | analyses::Next::Measured(d) => Some(d),
            analyses::Next::Idle => None,
        };
        match step {
            Step::Idle => return Ok(wake.map_or(Outcome::Done, Outcome::After)),
            Step::Wait { version, after } => {
                tracing::debug!(
                    model,
                    version,
                    ?after,
                    "waiting for the candidate to settle"
                );
                return Ok(Outcome::After(wake.map_or(after, |d| d.min(after))));
            }
            Step::Evaluate(version) => {
                let mut files = files.clone();
                files.extend(logged.get(&version).cloned().unwrap_or_default());
                if !run.evaluate(&state, &files, &requests, version).await? {
                    return Ok(Outcome::Done);
                }
            }
            Step::Act { version, decision } => run.act(&state, &version, &decision).await?,
            Step::Finish(version) => run.finish(&version).await?,
            Step::Bypass(version) => run.bypass(&state, &version, paused).await?,
        }
    }
    Err(ReconcileError::TooManySteps)
}

impl Reconciling<'_> {
    fn actor(&self) -> Actor<'_> {
        self.engine.actor(self.policy)
    }

    /// The model as the registry has it now, with what it records that the store may lack
    /// noted, and requests for versions that are gone dropped; `None` if the model is gone.
    async fn read(
        &self,
        requests: &BTreeMap<String, i64>,
    ) -> Result<Option<ModelState>, ReconcileError> {
        let (app, model, names) = (self.app, self.model, &self.engine.names);
        let state = match self.engine.read(model, self.policy, Depth::Full, &[]).await {
            Err(EngineError::NoModel(_)) => {
                tracing::info!(model, "model no longer exists");
                analyses::close(app, model, "the model was deleted").await?;
                app.seen.forget(model);
                clear_requests(app, model, requests.clone()).await?;
                return Ok(None);
            }
            other => other?,
        };
        // Before the glance: once the poll sees the restored champion in it, the rollback is
        // already in the audit log.
        record_from_registry(app, &state, self.policy, names).await?;
        app.seen.record(&state, self.policy, names);
        // Requests for versions that no longer exist can never be served.
        let gone = requests
            .iter()
            .filter(|(v, _)| state.version(v).is_none())
            .map(|(v, seq)| (v.clone(), *seq))
            .collect();
        clear_requests(app, model, gone).await?;
        Ok(Some(state))
    }

    /// Evaluate `version` and record the result; `false` if it is no longer there.
    async fn evaluate(
        &self,
        state: &ModelState,
        files: &Files,
        requests: &BTreeMap<String, i64>,
        version: String,
    ) -> Result<bool, ReconcileError> {
        let (app, model) = (self.app, self.model);
        let Some(candidate) = state.version(&version).cloned() else {
            return Ok(false);
        };
        let id = app
            .store
            .begin_evaluation(
                model,
                &version,
                &self.policy.name,
                &self.digest,
                &self.trigger,
            )
            .await?;
        // Recorded without a promotion's intent: the step that acts writes it right before
        // the move. Written now, it would outlive a move that never comes (a pause, a changed
        // champion, a candidate that leaves), and a later move by hand would then be finished
        // as ours instead of judged as a bypass.
        let opts = Options {
            act: false,
            paused: false,
        };
        let evaluation = match self
            .engine
            .evaluate_recorded(self.policy, state, &candidate, files, opts)
            .await
        {
            Ok((e, _)) => e,
            Err(e) => {
                app.store.fail_evaluation(id, &e.to_string()).await?;
                return Err(e.into());
            }
        };
        match evaluation.history() {
            Ok(row) => app.store.finish_evaluation(id, &row).await?,
            Err(e) => {
                let why = format!("the gate results could not be recorded: {e}");
                tracing::error!(model, version, error = %why, "evaluation not recorded");
                app.store.fail_evaluation(id, &why).await?;
            }
        }
        app.metrics.evaluation(&evaluation);
        if let Some(seq) = requests.get(&version) {
            let served = [(version.clone(), *seq)].into_iter().collect();
            clear_requests(app, model, served).await?;
        }
        notify::verdict(app, &evaluation);
        if evaluation.verdict == Verdict::Error && !self.attempt.last {
            // An error verdict is retried with backoff, up to `workers.max_attempts`; the
            // request makes the next attempt evaluate again despite the recorded verdict.
            app.store.request_evaluation(model, &version).await?;
            return Err(ReconcileError::GateError(version));
        }
        Ok(true)
    }

    /// Carry out `decision` on `version`, and record it. The step's read is the re-read a
    /// move needs: it follows the evaluation (an earlier step), and nothing was written to
    /// MLflow between it and this call, so it is not read a third time.
    async fn act(
        &self,
        state: &ModelState,
        version: &str,
        decision: &Decision,
    ) -> Result<(), ReconcileError> {
        let (app, model, names) = (self.app, self.model, &self.engine.names);
        let recorded = state
            .version(version)
            .and_then(|v| v.tag(&names.verdict()))
            .and_then(Verdict::parse);
        let actor = self.actor();
        let action = decision.action_tag();
        let rows = async {
            let note = format!("policy {}", self.policy.name);
            app.store
                .set_action(model, version, recorded.map(Verdict::as_str), &action)
                .await?;
            app.store.audit(model, Some(version), &action, &note).await
        };
        if decision.moves() {
            let before = state.placement(self.policy, names, version);
            let verdict = recorded.unwrap_or(Verdict::Error);
            let moved = actor
                .move_on(state, version, decision, verdict, &before)
                .await?;
            if matches!(decision, Decision::Promote { .. }) {
                // The promotion is made: the store records it beside the bookkeeping tags,
                // not after them. If we die in between, `finish` completes the tags and
                // records the promotion unless it is recorded already.
                let (tags, rows) = tokio::join!(actor.complete(model, &moved), rows);
                tags?;
                rows?;
            } else {
                actor.complete(model, &moved).await?;
                rows.await?;
            }
        } else {
            actor.set_action(model, version, &action).await?;
            rows.await?;
        }
        app.metrics.action(&action);
        notify::action(app, model, version, &action);
        Ok(())
    }

    /// Finish a promotion a restart interrupted, and record it unless its row made it.
    async fn finish(&self, version: &str) -> Result<(), ReconcileError> {
        self.actor().finish(self.model, version).await?;
        let note = "finished a promotion interrupted by a restart";
        self.app
            .store
            .audit_unless_recorded(self.model, version, PROMOTED, note)
            .await?;
        self.app.metrics.action(PROMOTED);
        Ok(())
    }

    /// Answer a champion that was moved by hand, as the policy's `on_bypass` says.
    async fn bypass(
        &self,
        state: &ModelState,
        version: &str,
        paused: bool,
    ) -> Result<(), ReconcileError> {
        let mode_allows = self.policy.mode == Mode::Enforce && !paused;
        let note = self.actor().bypass(state, version, mode_allows).await?;
        audit(self.app, self.model, version, "bypass", note.clone()).await?;
        self.app.metrics.action("bypass");
        notify::bypass(self.app, self.model, version, &note);
        Ok(())
    }
}

async fn clear_requests(
    app: &App,
    model: &str,
    served: BTreeMap<String, i64>,
) -> Result<(), StoreError> {
    if served.is_empty() {
        return Ok(());
    }
    for (v, seq) in &served {
        app.store.clear_requests(model, v, *seq).await?;
    }
    Ok(())
}

/// Audit what the registry records but the log may lack: each rollback (made by
/// `stagegate rollback` anywhere, also announced), and the champion's promotion when it
/// carries `promoted` with no row (a `kill -9` after the tag, before the store write).
async fn record_from_registry(
    app: &App,
    state: &ModelState,
    policy: &Policy,
    names: &crate::tags::TagNames,
) -> Result<(), StoreError> {
    if let Some(champion) = state.champion(policy)
        && champion.tag(&names.action()) == Some(PROMOTED)
    {
        let note = format!(
            "policy {} (read back from the registry's tags)",
            policy.name
        );
        let added = app
            .store
            .audit_unless_recorded(&state.name, &champion.version, PROMOTED, &note)
            .await?;
        if added {
            tracing::warn!(model = %state.name, version = %champion.version, "a promotion without its audit row (interrupted?) recorded");
        }
    }
    for (version, note) in rollbacks(state, names) {
        let added = app
            .store
            .audit_once(&state.name, version, ROLLBACK, note)
            .await?;
        if added {
            tracing::info!(model = %state.name, version, note, "rollback recorded");
            app.metrics.action(ROLLBACK);
            notify::rollback(app, &state.name, version, note);
        }
    }
    Ok(())
}

async fn audit(
    app: &App,
    model: &str,
    version: &str,
    action: &'static str,
    note: String,
) -> Result<(), StoreError> {
    app.store.audit(model, Some(version), action, &note).await
}
