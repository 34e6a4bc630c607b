//! The reconcile poll: the guarantee behind the webhook hints. On the `poll.schedule` cron
//! (with a seconds field) and once at start-up, it lists every registered model — 1000 a page,
//! each with its aliases and the newest version of each stage, tags included — and enqueues
//! those whose state the decision core would act on. A candidate whose verdict is current for
//! its inputs fingerprint costs nothing; one whose tags changed since (every webhook lost) is
//! seen here, because the fingerprint is recomputed from what the listing shows.
//!
//! Two candidates the listing cannot show are found with one search each, run only when some
//! model may hide one: an alias holder that is not its model's newest version (judged
//! versions carry the policy digest tag), and a failed stage candidate behind a newer failed
//! one (it carries `action = kept`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, Target};
use crate::daemon::App;
use crate::decision::{PlanInput, Step, plan};
use crate::engine::Engine;
use crate::evaluation::now_rfc3339;
use crate::mlflow::{MlflowError, ModelVersion};
use crate::model_state::ModelState;
use crate::tags::TagNames;
use crate::verdict::Verdict;

/// The action of a failed candidate that stays a candidate (on_fail = keep).
const KEPT: &str = "kept";

pub async fn run(app: Arc<App>, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        // One replica polls per tick: the holder of the poll lease.
        let mine = match app.cluster.poll_turn().await {
            Ok(true) => {
                poll_once(&app).await;
                true
            }
            Ok(false) => {
                mark_not_mine(&app);
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "poll skipped: the store does not answer");
                let mut status = app.poll.lock().unwrap_or_else(|p| p.into_inner());
                status.here = false;
                status.last_error = Some(format!("skipped: {e}"));
                false
            }
        };
        // A replica that does not hold the poll asks again within a lease period, not only at
        // the next tick: if the holder died (mid-poll, or at start-up with a schedule hours
        // apart), the poll is taken over, and run at once, within one lease.
        let mut wait = until_next(&app);
        if !mine {
            wait = wait.min(app.cluster.lease());
        }
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

fn mark_not_mine(app: &App) {
    let mut status = app.poll.lock().unwrap_or_else(|p| p.into_inner());
    status.here = false;
}

async fn poll_once(app: &App) {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let result = sweep(app).await;
    let elapsed = started.elapsed();
    app.metrics.poll_duration.observe(elapsed.as_secs_f64());
    let retention = app.live().loaded.config.webhooks.dedupe_retention;
    if let Err(e) = app.store.prune_deliveries(retention).await {
        tracing::warn!(error = %e, "could not prune old webhook deliveries");
    }
    let mut status = app.poll.lock().unwrap_or_else(|p| p.into_inner());
    status.here = true;
    status.completed += 1;
    status.last_started = Some(started_at);
    status.last_duration_ms = Some(elapsed.as_millis() as u64);
    match result {
        Ok(Sweep {
            models,
            enqueued,
            waiting,
        }) => {
            app.metrics.poll_models.set(models as i64);
            status.last_models = Some(models);
            status.last_enqueued = Some(enqueued);
            status.last_waiting = Some(waiting);
            status.last_error = None;
            tracing::debug!(models, enqueued, waiting, ?elapsed, "poll");
        }
        Err(e) => {
            tracing::warn!(error = %e, "poll failed; the next one will try again");
            status.last_error = Some(e.to_string());
        }
    }
}

/// What one sweep found.
struct Sweep {
    /// Models matched by a policy.
    models: usize,
    enqueued: usize,
    /// Models waiting for a candidate to settle.
    waiting: usize,
}

/// Each model a policy matches, with the index of that policy.
type Matched = Vec<(usize, ModelState)>;

/// List, judge, enqueue.
async fn sweep(app: &App) -> Result<Sweep, MlflowError> {
    let live = app.live();
    let (config, engine) = (&live.loaded.config, &live.engine);
    let names = &engine.names;
    let prefixes = config.name_prefixes();
    let models = engine.client.registered_models(prefixes.as_deref()).await?;

    let mut states: Matched = Vec::new();
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
    let unjudged = add_alias_holders(engine, config, hidden, &mut states).await?;
    add_kept_candidates(engine, config, &mut states).await?;
    let (enqueued, waiting) = enqueue_work(app, config, names, &states, &unjudged).await;
    Ok(Sweep {
        models: states.len(),
        enqueued,
        waiting,
    })
}

/// Add the `hidden` alias holders to their models: one search per policy finds every version
/// already judged under its current digest; a hidden holder outside that set has no current
/// verdict, which is all we need, and its model (by index) is returned as unjudged.
async fn add_alias_holders(
    engine: &Engine,
    config: &Config,
    hidden: BTreeMap<usize, Vec<(usize, String)>>,
    states: &mut Matched,
) -> Result<BTreeSet<usize>, MlflowError> {
    let mut unjudged: BTreeSet<usize> = BTreeSet::new();
    for (pi, wanted) in hidden {
        let digest = config.policies[pi].digest();
        // (Only policies with hidden alias holders pay for this search.)
        let judged: BTreeMap<(String, String), ModelVersion> = engine
            .client
            .versions_with_tag(&engine.names.digest(), &digest)
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
    Ok(unjudged)
}

/// Add failed stage candidates behind a newer one: the listing shows only the newest version
/// of each stage, and a tag fixed on an older kept candidate must still be noticed. Only a
/// failed newest candidate can hide one (anything else either hides nothing or queues the
/// model anyway), and only among the older version numbers the listing does not show, so
/// the search runs only when some model has both.
async fn add_kept_candidates(
    engine: &Engine,
    config: &Config,
    states: &mut Matched,
) -> Result<(), MlflowError> {
    let names = &engine.names;
    let may_hide = |(pi, st): &(usize, ModelState)| {
        let policy = &config.policies[*pi];
        matches!(policy.candidate(), Target::Stage(_))
            && st.candidates(policy).first().is_some_and(|c| {
                c.tag(&names.verdict()) == Some(Verdict::Failed.as_str())
                    && Some(c.version.as_str()) != st.champion_version(policy)
                    && (1..c.number()).any(|n| !st.versions.contains_key(&n))
            })
    };
    if !states.iter().any(may_hide) {
        return Ok(());
    }
    let index: BTreeMap<String, usize> = states
        .iter()
        .enumerate()
        .map(|(si, (_, st))| (st.name.clone(), si))
        .collect();
    let kept = engine
        .client
        .versions_with_tag(&names.action(), KEPT)
        .await?;
    for v in kept {
        let Some(&si) = index.get(&v.name) else {
            continue;
        };
        let policy = &config.policies[states[si].0];
        let at_candidate_stage =
            matches!(policy.candidate(), Target::Stage(s) if *s == v.current_stage);
        if at_candidate_stage && states[si].1.version(&v.version).is_none() {
            states[si].1.insert(v);
        }
    }
    Ok(())
}

/// Plan each model and enqueue those with work; returns how many were enqueued, and how many
/// wait for a candidate to settle.
async fn enqueue_work(
    app: &App,
    config: &Config,
    names: &TagNames,
    states: &Matched,
    unjudged: &BTreeSet<usize>,
) -> (usize, usize) {
    let requested = app.store.requested_models().await.unwrap_or_default();
    // A store that cannot say is taken as paused: the poll then only enqueues evaluations,
    // and each reconcile reads the mode again before it acts.
    let paused = app.is_paused().await.unwrap_or(true);
    let now = SystemTime::now();
    let digests: Vec<String> = config.policies.iter().map(|p| p.digest()).collect();
    // What each matched policy's gate files are now: nothing announces a replaced holdout,
    // so the poll is what finds the candidates judged on the old one.
    let live = app.live();
    let matched: BTreeSet<usize> = states.iter().map(|(pi, _)| *pi).collect();
    let files: BTreeMap<usize, _> = futures::future::join_all(matched.into_iter().map(|pi| {
        let engine = &live.engine;
        async move { (pi, engine.files_now(&config.policies[pi]).await) }
    }))
    .await
    .into_iter()
    .collect();
    let (mut enqueued, mut waiting) = (0, 0);
    for (si, (pi, state)) in states.iter().enumerate() {
        let policy = &config.policies[*pi];
        let before = app.seen.record(state, policy, names);
        // A champion put back by a rollback that no reconcile has read yet (its webhooks
        // lost, or made while we were down): one reconcile records it in the audit log.
        let restored = state
            .champion(policy)
            .and_then(|c| c.tag(&names.restored_at()));
        let unrecorded_rollback =
            restored.is_some() && before.is_none_or(|b| b.restored.as_deref() != restored);
        let requested: BTreeSet<String> = if requested.contains(&state.name) {
            app.store
                .requests(&state.name)
                .await
                .unwrap_or_default()
                .into_keys()
                .collect()
        } else {
            BTreeSet::new()
        };
        // What each candidate's run logged (`context` gates): nothing announces a source
        // replaced under it either.
        let logged = live.engine.logged_for(policy, state).await;
        let input = PlanInput {
            policy,
            digest: &digests[*pi],
            names,
            requested: &requested,
            paused,
            now,
            settle: config.workers.settle,
            data: &files[pi],
            logged: &logged,
        };
        // A champion owed an analysis no event announced (a promotion by CI to a stage).
        let unwatched = crate::daemon::analyses::begin_owed(policy, state, names);
        let settled = !unjudged.contains(&si) && !unrecorded_rollback && !unwatched;
        match plan(&input, state) {
            // The reconcile that planned the wait also scheduled its wake-up; after a
            // restart, the poll acts once the wait is over.
            Step::Wait { .. } if settled => waiting += 1,
            Step::Idle if settled => {}
            _ => {
                app.enqueue(&state.name, "poll").await;
                enqueued += 1;
            }
        }
    }
    (enqueued, waiting)
}
