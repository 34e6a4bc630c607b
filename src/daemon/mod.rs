//! `stagegate run`: the long-running service. This module wires the parts together and owns
//! the shared state; [`run`] takes the listener and the shutdown future so the caller owns
//! signals and sockets.
//!
//! Triggers (webhooks, the poll, API requests, retries) only enqueue model names; the
//! [`scheduler`] runs [`reconciler::reconcile`] for them on a worker pool.

mod analyses;
mod cluster;
mod health;
pub mod http;
pub mod metrics;
mod notify;
mod poll;
pub mod reconciler;
pub mod scheduler;
mod seen;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config, Loaded, WorkersConfig};
use crate::engine::Engine;
use crate::mlflow::{Client, MlflowError, Settings};
use crate::store::{Store, StoreError, Target};
use cluster::Cluster;
use health::Health;
pub use health::Reachability;
use metrics::Metrics;
use scheduler::{Backoff, Scheduler};
pub use seen::{Glance, Seen};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error(
        "server.listen is {0}, which is not loopback, and no API token is set: set STAGEGATE_SERVER__API_TOKEN"
    )]
    NoToken(SocketAddr),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// The configuration in force and the engine built from it; replaced whole on SIGHUP.
pub struct Live {
    pub loaded: Loaded,
    pub engine: Engine,
}

/// What the last poll did, for `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PollStatus {
    /// Whether this replica holds the poll lease (one replica polls for the cluster).
    pub here: bool,
    /// Polls this replica finished since start-up.
    pub completed: u64,
    pub last_started: Option<String>,
    pub last_duration_ms: Option<u64>,
    pub last_models: Option<usize>,
    pub last_enqueued: Option<usize>,
    /// Models whose next step is a timed wait (a failed candidate settling before archiving).
    pub last_waiting: Option<usize>,
    pub last_error: Option<String>,
    pub next: Option<String>,
}

/// Shared state of the daemon.
pub struct App {
    live: RwLock<Arc<Live>>,
    pub store: Store,
    pub scheduler: Scheduler,
    pub metrics: Arc<Metrics>,
    /// This replica among the others on the store: identity, leases, fencing.
    pub cluster: Cluster,
    pub started: Instant,
    pub poll: Mutex<PollStatus>,
    pub health: Arc<Health>,
    pub notifier: notify::Notifier,
    pub listen: SocketAddr,
    /// Each model's champion and candidates as last read, for the status page.
    pub seen: Seen,
    /// One connection pool for every analysis query (Prometheus, web endpoints).
    pub probes: reqwest::Client,
}

impl App {
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queue a reconcile of `model`; `trigger` says why (webhook, poll, api, recheck…).
    /// The entry is persisted first, so that work accepted before a crash is redone after it.
    ///
    /// A model already waiting for a worker has its entry: the reconcile it waits for starts
    /// after this trigger, so the entry's time needs no update (a write saved per webhook of
    /// a busy model). A running model's entry is renewed, so that its reconcile, which began
    /// before this trigger, does not consume it.
    pub async fn enqueue(&self, model: &str, trigger: &str) {
        if !self.scheduler.is_waiting(model)
            && let Err(e) = self.store.queue_push(model).await
        {
            tracing::warn!(model, error = %e, "could not persist the queue entry");
        }
        self.scheduler.enqueue(model, trigger);
    }

    /// Whether acting is paused: the cluster's mode, read from the store each time (a pause
    /// on any replica holds every replica's next action).
    pub async fn is_paused(&self) -> Result<bool, StoreError> {
        let paused = self.store.paused().await?;
        self.metrics.paused.set(paused as i64);
        Ok(paused)
    }

    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.store.set_paused(paused).await?;
        self.metrics.paused.set(paused as i64);
        tracing::info!(
            paused,
            "acting {} (every replica)",
            if paused { "paused" } else { "resumed" }
        );
        Ok(())
    }

    /// Swap in a new configuration (SIGHUP): every setting but those of [`AT_RESTART`], which
    /// keep their old values until a restart, and say so. Returns the keys that wait.
    ///
    /// Every start-up check applies, against the address actually listened on as well as the
    /// new file's: a reload that dropped the API token would otherwise leave a non-loopback
    /// listener with open mutating routes. A refused reload keeps the old configuration.
    pub fn reload(&self, loaded: Loaded) -> Result<Vec<&'static str>, DaemonError> {
        check_listen(&loaded)?;
        if !self.listen.ip().is_loopback() && loaded.config.server.api_token.is_none() {
            return Err(DaemonError::NoToken(self.listen));
        }
        let old = self.live();
        let waiting: Vec<&'static str> = AT_RESTART
            .iter()
            .filter(|(_, changed)| changed(&old.loaded.config, &loaded.config))
            .map(|(key, _)| *key)
            .collect();
        if !waiting.is_empty() {
            tracing::warn!(
                keys = %waiting.join(", "),
                "changed settings that take effect at the next restart; until then the old values stay"
            );
        }
        let engine = build_engine(&loaded, self.health.clone(), Some(&old.engine))?;
        self.scheduler.set_backoff(backoff(&loaded.config.workers));
        if old
            .engine
            .host()
            .is_some_and(|h| engine.host().is_none_or(|n| !Arc::ptr_eq(h, n)))
        {
            tracing::info!(
                "[serving] changed: the scoring host restarts once the evaluations using it end"
            );
        }
        warm_up(&engine);
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Live { loaded, engine });
        tracing::info!("configuration reloaded");
        Ok(waiting)
    }
}

/// Whether a setting differs between two configurations.
type Differs = fn(&Config, &Config) -> bool;

/// The settings read once, at start-up: the socket, the store and its leases, the worker
/// pool. A reload applies every other setting.
const AT_RESTART: &[(&str, Differs)] = &[
    ("server.listen", |a, b| a.server.listen != b.server.listen),
    ("state.path", |a, b| a.state.path != b.state.path),
    ("state.url", |a, b| a.state.url != b.state.url),
    ("state.lease", |a, b| a.state.lease != b.state.lease),
    ("workers.count", |a, b| a.workers.count != b.workers.count),
];

/// How a failed reconcile is retried: `workers.backoff` doubling up to five minutes, at most
/// `workers.max_attempts` attempts.
fn backoff(w: &WorkersConfig) -> Backoff {
    Backoff {
        base: w.backoff,
        max: Duration::from_secs(300),
        max_attempts: w.max_attempts,
    }
}

fn build_engine(
    loaded: &Loaded,
    health: Arc<Health>,
    previous: Option<&Engine>,
) -> Result<Engine, MlflowError> {
    let client = Client::new(Settings::from_env(&loaded.config.mlflow)?)?.with_observer(health);
    Ok(Engine::new(client, loaded, previous))
}

/// Start the scoring host in the background when a policy has served gates, so the first
/// candidate does not wait for its imports. A host that cannot start is logged; the gates
/// that need it say why, with the root cause.
fn warm_up(engine: &Engine) {
    let served = engine
        .config
        .policies
        .iter()
        .any(|p| p.gates.iter().any(|g| g.kind.served()));
    if let (Some(host), true) = (engine.host().cloned(), served) {
        tokio::spawn(async move {
            if let Err(e) = host.start().await {
                tracing::warn!(error = %e, "the scoring host could not start");
            }
        });
    }
}

/// Refuse a non-loopback listen address without an API token: the mutating routes (evaluate,
/// pause, resume) would be open to the network.
pub fn check_listen(loaded: &Loaded) -> Result<SocketAddr, DaemonError> {
    let addr: SocketAddr = loaded.config.server.listen.parse().map_err(|_| {
        config::ConfigError::new(
            loaded.path.display().to_string(),
            "server.listen",
            "not an IP:port address",
        )
    })?;
    if !addr.ip().is_loopback() && loaded.config.server.api_token.is_none() {
        return Err(DaemonError::NoToken(addr));
    }
    Ok(addr)
}

/// Where the configured store lives: `state.url` (PostgreSQL) when set, else `state.path`.
pub fn store_target(loaded: &Loaded) -> Target {
    match &loaded.config.state.url {
        Some(url) => Target::Postgres(url.clone()),
        None => Target::Sqlite(resolve(loaded, &loaded.config.state.path)),
    }
}

/// Build the daemon's state: open the store, build the engine.
pub async fn prepare(loaded: Loaded, listen: SocketAddr) -> Result<Arc<App>, DaemonError> {
    let store = open_store(&store_target(&loaded)).await?;
    let cluster = Cluster::new(store.clone(), loaded.config.state.lease);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(metrics.clone()));
    let engine = build_engine(&loaded, health.clone(), None)?;
    let scheduler = Scheduler::new(backoff(&loaded.config.workers));
    Ok(Arc::new(App {
        live: RwLock::new(Arc::new(Live { loaded, engine })),
        store,
        scheduler,
        metrics,
        cluster,
        started: Instant::now(),
        poll: Mutex::new(PollStatus::default()),
        health,
        notifier: notify::Notifier::new(notify::Retry::default()),
        listen,
        seen: Seen::default(),
        probes: reqwest::Client::new(),
    }))
}

/// Open the store, waiting while it cannot be reached. A replica started before its
/// PostgreSQL (a host booting, a rollout during a database failover) comes up by itself once
/// the database does, instead of exiting into a restart loop that systemd's start limit ends
/// for good. An error no wait cures (a bad URL, a refused password or certificate, a newer
/// schema) is returned at once. Nothing listens yet, so the orchestrator sees "not started";
/// SIGTERM still ends the process (its handlers are installed after this).
async fn open_store(target: &Target) -> Result<Store, StoreError> {
    let mut attempt = 0;
    loop {
        match Store::open(target).await {
            Err(e) if e.is_transient() => {
                let wait = crate::backoff::full_jitter(
                    Duration::from_secs(1),
                    Duration::from_secs(30),
                    attempt,
                );
                tracing::warn!(
                    error = %e,
                    retry_in = ?wait,
                    "the state store cannot be reached yet; stagegate starts once it can"
                );
                tokio::time::sleep(wait).await;
                attempt = attempt.saturating_add(1);
            }
            other => return other,
        }
    }
}

/// A path from the config, relative to the config file's directory.
pub fn resolve(loaded: &Loaded, p: &std::path::Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        loaded.base_dir().join(p)
    }
}

/// Run the daemon until `shutdown` resolves. `reloads` yields freshly loaded (and validated)
/// configurations to swap in; `ready` is called once the HTTP server is listening.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reloads: mpsc::Receiver<Loaded>,
    ready: impl FnOnce(),
) -> Result<(), DaemonError> {
    // One stop signal, many listeners: each background task waits on its own copy.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    requeue_left_work(&app).await?;
    let sched = tokio::spawn(run_workers(app.clone(), stopped()));
    let poller = tokio::spawn(poll::run(app.clone(), stopped()));
    let health = tokio::spawn(watch_mlflow(app.clone(), stopped()));
    let gauges = tokio::spawn(refresh_gauges(app.clone(), stopped()));
    let rounds = tokio::spawn(cluster_rounds(app.clone(), stopped()));
    let reloader = {
        let app = app.clone();
        tokio::spawn(async move {
            while let Some(loaded) = reloads.recv().await {
                if let Err(e) = app.reload(loaded) {
                    tracing::error!(error = %e, "configuration reload refused; keeping the old one");
                }
            }
        })
    };

    warm_up(&app.live().engine);
    let server = axum::serve(
        listener,
        http::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped());
    let server = tokio::spawn(async move { server.await });
    ready();
    tracing::info!(listen = %app.listen, "stagegate is running");

    shutdown.await;
    tracing::info!("shutting down: no new work; finishing in-flight evaluations");
    let _ = stop_tx.send(true);
    finish_in_flight(&app, sched).await;
    reloader.abort();
    for task in [poller, health, gauges, rounds] {
        let _ = task.await;
    }
    app.cluster.release_poll().await;
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), server).await {
        return Err(DaemonError::Http(e));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Queue the work a crash left (this replica's or another's): models whose holder died, the
/// persisted queue, and running analyses. The leases decide who takes each.
async fn requeue_left_work(app: &App) -> Result<(), StoreError> {
    for model in app.store.orphans().await? {
        tracing::info!(model, "redoing work a stopped replica left unfinished");
        app.scheduler.enqueue(&model, "restart");
    }
    for model in app.store.queued(i64::MAX).await? {
        app.scheduler.enqueue(&model, "restart");
    }
    for a in app.store.running_analyses().await? {
        app.scheduler.enqueue(&a.model, "analysis");
    }
    for model in app.store.analyses_due().await? {
        app.scheduler.enqueue(&model, "analysis");
    }
    Ok(())
}

/// The scheduler's `workers.count` workers, reconciling until `stop`.
async fn run_workers(app: Arc<App>, stop: impl Future<Output = ()>) {
    let reconcile: scheduler::ReconcileFn = {
        let app = app.clone();
        Arc::new(move |model, attempt| reconciler::reconcile(app.clone(), model, attempt).boxed())
    };
    let workers = app.live().loaded.config.workers.count;
    app.scheduler.run(workers, reconcile, stop).await
}

/// Give in-flight evaluations `server.shutdown_grace` to finish, then abandon them: dropping
/// an evaluation stops what it started (served models, commands).
async fn finish_in_flight(app: &App, mut workers: tokio::task::JoinHandle<()>) {
    let grace = app.live().loaded.config.server.shutdown_grace;
    if tokio::time::timeout(grace, &mut workers).await.is_err() {
        tracing::warn!(
            ?grace,
            "in-flight evaluations did not finish within the grace period; abandoning them"
        );
        workers.abort();
        let _ = workers.await;
    }
}

/// Keep `/readyz` honest: ping MLflow when nothing else has heard from it for 2 s.
async fn watch_mlflow(app: Arc<App>, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        if app.health.quiet_for() >= Duration::from_secs(2) {
            let engine = app.live().engine.clone();
            // The client's observer records the outcome; a setup error is recorded here.
            if let Err(e) = engine.client.ping().await {
                app.health.record(Err(e.to_string()));
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The cluster round (see [`Cluster::round`]): heartbeat, store health, and the work that
/// replicas which stopped left behind, taken up here (the leases decide who does it).
async fn cluster_rounds(app: Arc<App>, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let dropped = app
            .cluster
            .round(app.scheduler.depth(), app.scheduler.in_flight())
            .await;
        for model in dropped {
            app.scheduler.enqueue(&model, "takeover");
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(app.cluster.round_every()) => {}
        }
    }
}

async fn refresh_gauges(app: Arc<App>, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        app.metrics.queue_depth.set(app.scheduler.depth() as i64);
        app.metrics.in_flight.set(app.scheduler.in_flight() as i64);
        app.metrics.delayed.set(app.scheduler.delayed() as i64);
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
pub(crate) async fn test_app(toml: &str) -> (Arc<App>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stagegate.toml");
    std::fs::write(&path, toml).expect("write config");
    let loaded = config::load(Some(&path)).expect("valid test config");
    let listen = check_listen(&loaded).expect("listen");
    (prepare(loaded, listen).await.expect("app"), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[workers]\ncount = 2\nmax_attempts = 5\nbackoff = \"2s\"\n\n\
        [[policies]]\nname = \"p\"\ncandidate = { stage = \"Staging\" }\npromote = { stage = \"Production\" }\n";

    #[tokio::test]
    async fn a_reload_applies_the_retry_settings_and_names_what_waits_for_a_restart() {
        let (app, dir) = test_app(CONFIG).await;
        assert_eq!(app.scheduler.backoff().max_attempts, 5);
        let path = dir.path().join("stagegate.toml");
        let changed = CONFIG
            .replace("count = 2", "count = 3")
            .replace("max_attempts = 5", "max_attempts = 1")
            .replace("backoff = \"2s\"", "backoff = \"7s\"")
            .replace("[workers]", "[state]\nlease = \"20s\"\n\n[workers]");
        std::fs::write(&path, changed).unwrap();
        let waiting = app.reload(config::load(Some(&path)).unwrap()).unwrap();
        assert_eq!(waiting, ["state.lease", "workers.count"]);
        assert_eq!(
            app.scheduler.backoff(),
            Backoff {
                base: Duration::from_secs(7),
                max: Duration::from_secs(300),
                max_attempts: 1,
            }
        );
        // A reload that changes nothing of the sort names nothing.
        let waiting = app.reload(config::load(Some(&path)).unwrap()).unwrap();
        assert!(waiting.is_empty(), "{waiting:?}");
    }
}
