//! The reconcile poll: the guarantee behind the webhook hints. On the `poll.schedule` cron
//! (with a seconds field) and once at start-up, it lists every registered model — 1000 a page,
//! each with its aliases and the newest version of each stage, tags included — and enqueues
//! those whose state the decision core would act on. Versions already carrying a verdict for
//! the current policy digest are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Target;
use crate::daemon::App;
use crate::decision::{PlanInput, Step, plan};
use crate::evaluation::now_rfc3339;
use crate::mlflow::{MlflowError, ModelVersion};
use crate::model_state::ModelState;

pub async fn run(app: Arc<App>, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        poll_once(&app).await;
        let wait = until_next(&app);
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Time until the next cron tick (the schedule is re-read, so SIGHUP changes it).
fn until_next(app: &App) -> Duration {
    let live = app.live();
    let next = cron::Schedule::from_str(&live.loaded.config.poll.schedule)
        .ok()
        .and_then(|s| s.upcoming(chrono::Utc).next());
    let wait = next
        .and_then(|t| (t - chrono::Utc::now()).to_std().ok())
        .unwrap_or(Duration::from_secs(60));
    let mut status = app.poll.lock().unwrap_or_else(|p| p.into_inner());
    status.next = next.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    wait
}

async fn poll_once(app: &App) {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let result = sweep(app).await;
    let elapsed = started.elapsed();
    app.metrics.poll_duration.observe(elapsed.as_secs_f64());
    let retention = app.live().loaded.config.webhooks.dedupe_retention;
    if let Err(e) = app.store.prune_deliveries(retention) {
        tracing::warn!(error = %e, "could not prune old webhook deliveries");
    }
    let mut status = app.poll.lock().unwrap_or_else(|p| p.into_inner());
    status.last_started = Some(started_at);
    status.last_duration_ms = Some(elapsed.as_millis() as u64);
    match result {
        Ok((matched, enqueued)) => {
            app.metrics.poll_models.set(matched as i64);
            status.last_models = Some(matched);
            status.last_enqueued = Some(enqueued);
            status.last_error = None;
            tracing::debug!(matched, enqueued, ?elapsed, "poll");
        }
        Err(e) => {
            tracing::warn!(error = %e, "poll failed; the next one will try again");
            status.last_error = Some(e.to_string());
        }
    }
}

/// List, judge, enqueue. Returns (models matched by a policy, models enqueued).
async fn sweep(app: &App) -> Result<(usize, usize), MlflowError> {
    let live = app.live();
    let (config, engine) = (&live.loaded.config, &live.engine);
    let names = &engine.names;
    let models = engine.client.all_registered_models().await?;
    let requested = app.store.requested_models().unwrap_or_default();

    let mut states: Vec<(usize, ModelState)> = Vec::new();
    // Alias holders that `registered-models/search` does not show, per policy.
    let mut hidden: BTreeMap<usize, Vec<(usize, String)>> = BTreeMap::new();
    for rm in models {
        let Some(pi) = config.policies.iter().position(|p| p.matches(&rm.name)) else {
            continue;
        };
        let policy = &config.policies[pi];
        let state = ModelState::from_registered(rm);
        for target in [policy.candidate().clone(), policy.promote.target()] {
            if let Target::Alias(a) = target
                && let Some(v) = state.aliases.get(&a)
                && state.version(v).is_none()
            {
                hidden
                    .entry(pi)
                    .or_default()
                    .push((states.len(), v.clone()));
            }
        }
        states.push((pi, state));
    }

    // One search per policy finds every version already judged under its current digest;
    // a hidden alias holder outside that set has no current verdict, which is all we need.
    let mut unjudged: BTreeSet<usize> = BTreeSet::new();
    for (pi, wanted) in hidden {
        let digest = config.policies[pi].digest();
        // (Only policies with hidden alias holders pay for this search.)
        let judged: BTreeMap<(String, String), ModelVersion> = engine
            .client
            .versions_with_tag(&names.digest(), &digest)
            .await?
            .into_iter()
            .map(|v| ((v.name.clone(), v.version.clone()), v))
            .collect();
        for (si, version) in wanted {
            let key = (states[si].1.name.clone(), version);
            match judged.get(&key) {
                Some(v) => states[si].1.insert(v.clone()),
                None => {
                    unjudged.insert(si);
                }
            }
        }
    }

    let paused = app.is_paused();
    let digests: Vec<String> = config.policies.iter().map(|p| p.digest()).collect();
    let mut enqueued = 0;
    for (si, (pi, state)) in states.iter().enumerate() {
        let policy = &config.policies[*pi];
        let forced = if requested.contains(&state.name) {
            app.store.requests(&state.name).unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        let input = PlanInput {
            policy,
            digest: &digests[*pi],
            names,
            forced: &forced,
            paused,
        };
        if unjudged.contains(&si) || plan(&input, state) != Step::Idle {
            app.enqueue(&state.name, "poll");
            enqueued += 1;
        }
    }
    Ok((states.len(), enqueued))
}
