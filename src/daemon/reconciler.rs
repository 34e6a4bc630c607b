//! The reconciler: `reconcile(model)` re-reads the model from MLflow, asks the decision core
//! for the next step, carries it out, and repeats until there is nothing left to do. It is
//! never told why it was called and trusts no payload, so lost or repeated events are harmless.

use std::sync::Arc;

use crate::actions::{ActError, Actor};
use crate::daemon::App;
use crate::daemon::notify;
use crate::daemon::scheduler::{Attempt, Outcome};
use crate::decision::{PlanInput, Step, plan};
use crate::engine::EngineError;
use crate::evaluation::Verdict;
use crate::model_state::Depth;
use crate::store::StoreError;

/// Steps one reconcile may take before yielding (a guard against a registry that keeps moving).
const MAX_STEPS: usize = 32;

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
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

/// Reconcile one model; the scheduler decides what a failure means for the next attempt.
pub async fn reconcile(app: Arc<App>, model: String, attempt: Attempt) -> Outcome {
    let result = converge(&app, &model, attempt).await;
    let outcome = match &result {
        Ok(()) => Outcome::Done,
        Err(e) => {
            let o = e.outcome();
            if o == Outcome::Done {
                tracing::error!(model, error = %e, "reconcile failed");
            }
            o
        }
    };
    if (matches!(outcome, Outcome::Done) || attempt.last)
        && let Err(e) = app.store.queue_remove(&model)
    {
        tracing::warn!(model, error = %e, "could not update the persisted queue");
    }
    outcome
}

async fn converge(app: &App, model: &str, attempt: Attempt) -> Result<(), ReconcileError> {
    let live = app.live();
    let engine = &live.engine;
    let Some(policy) = live.loaded.config.policy_for(model) else {
        tracing::debug!(model, "no policy matches; nothing to do");
        return Ok(());
    };
    let names = &engine.names;
    let digest = policy.digest();
    let actor = Actor {
        client: &engine.client,
        names,
        policy,
    };
    let mut forced = app.store.requests(model)?;
    let trigger = app.take_trigger(model);

    for _ in 0..MAX_STEPS {
        let state = match engine.read(model, policy, Depth::Full, &[]).await {
            Err(EngineError::NoModel(_)) => {
                tracing::info!(model, "model no longer exists");
                for v in &forced {
                    app.store.clear_request(model, v)?;
                }
                return Ok(());
            }
            other => other?,
        };
        // Requests for versions that no longer exist can never be served.
        for gone in forced
            .iter()
            .filter(|v| state.version(v).is_none())
            .cloned()
            .collect::<Vec<_>>()
        {
            app.store.clear_request(model, &gone)?;
            forced.remove(&gone);
        }
        let paused = app.is_paused();
        let input = PlanInput {
            policy,
            digest: &digest,
            names,
            forced: &forced,
            paused,
        };
        let step = plan(&input, &state);
        tracing::debug!(model, ?step, "plan");
        match step {
            Step::Idle => return Ok(()),
            Step::Evaluate(version) => {
                let Some(candidate) = state.version(&version).cloned() else {
                    return Ok(());
                };
                let id =
                    app.store
                        .begin_evaluation(model, &version, &policy.name, &digest, &trigger)?;
                let evaluation = match engine.evaluate_only(policy, &state, &candidate).await {
                    Ok(e) => e,
                    Err(e) => {
                        app.store.fail_evaluation(id, &e.to_string())?;
                        return Err(e.into());
                    }
                };
                app.store.finish_evaluation(id, &evaluation)?;
                app.metrics.evaluation(&evaluation);
                forced.remove(&version);
                app.store.clear_request(model, &version)?;
                notify::verdict(app, &evaluation);
                if evaluation.verdict == Verdict::Error && !attempt.last {
                    // SPEC §5: an error is retried with backoff; the request makes the next
                    // attempt evaluate again despite the recorded verdict.
                    app.store.request_reevaluation(model, &version)?;
                    return Err(ReconcileError::GateError(version));
                }
            }
            Step::Act { version, decision } => {
                let before = state.fingerprint(policy, &version);
                actor
                    .carry_out(model, &version, &decision, &before, false)
                    .await?;
                let action = decision.action_tag();
                app.store.set_action(model, &version, &action)?;
                app.store.audit(
                    model,
                    Some(&version),
                    &action,
                    &format!("policy {}", policy.name),
                )?;
                app.metrics.action(&action);
                notify::action(app, model, &version, &action);
            }
            Step::Finish(version) => {
                actor.finish(model, &version).await?;
                app.store.audit(
                    model,
                    Some(&version),
                    "promoted",
                    "finished a promotion interrupted by a restart",
                )?;
                app.metrics.action("promoted");
            }
            Step::Bypass(version) => {
                let mode_allows = policy.mode == crate::config::Mode::Enforce && !paused;
                let note = actor.bypass(&state, &version, mode_allows).await?;
                app.store.audit(model, Some(&version), "bypass", &note)?;
                app.metrics.action("bypass");
                notify::bypass(app, model, &version, &note);
            }
        }
    }
    Err(ReconcileError::TooManySteps)
}
