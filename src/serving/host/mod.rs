//! `serving.mode = "host"`: the warm scoring host. One Python process from the configured MLflow
//! environment imports mlflow, pandas, pyarrow and the common flavours once, then forks a
//! process per model version (the zygote pattern, `host.py`): each model is loaded once, in
//! isolation, and scores rows sent in bulk as Arrow IPC over its own Unix socket. For the
//! latency gate the same process runs MLflow's own scoring server app. ARCHITECTURE.md says
//! why a zygote.
//!
//! A [`Host`] lives as long as its owner: one `stagegate evaluate`, or the daemon (until a
//! reload changes `[serving]`). It starts its process on first use and again if it died, keeps
//! recently used models warm within `serving.warm_models` (and `serving.warm_memory`), and
//! kills a model that goes over `serving.model_memory`.

mod arrow_io;
mod frame;
mod model;
mod warm;
mod zygote;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use arrow_io::{cells_to_batch, project};
pub use model::{Answer, HostModel};
use zygote::Zygote;

/// What the host needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `serving.command`: the host runs the Python of its environment.
    pub command: String,
    pub startup_timeout: Duration,
    pub request_timeout: Duration,
    pub warm_models: usize,
    pub warm_memory: Option<u64>,
    pub model_memory: Option<u64>,
    /// Environment for the host and its models (`MLFLOW_TRACKING_URI` and the like).
    pub env: Vec<(String, String)>,
}

/// A model version as the warm set keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    version: String,
}

/// A warm-set slot: the model once loaded, behind a lock held while it loads, so two asking
/// at once load it once.
#[derive(Default)]
struct Slot {
    model: tokio::sync::Mutex<Option<Arc<HostModel>>>,
    champion: std::sync::atomic::AtomicBool,
    last_used: Mutex<Option<Instant>>,
}

pub struct Host {
    settings: Settings,
    zygote: tokio::sync::Mutex<Option<Arc<Zygote>>>,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    watchdog: std::sync::OnceLock<()>,
}

/// The host as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub running: bool,
    pub pid: Option<i32>,
    pub rss_bytes: Option<u64>,
    pub python: Option<String>,
    pub mlflow: Option<String>,
    pub import_ms: Option<u64>,
    pub models: Vec<ModelSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelSnapshot {
    pub model: String,
    pub version: String,
    pub champion: bool,
    pub in_use: bool,
    pub pid: i32,
    pub rss_bytes: Option<u64>,
    pub load_ms: u64,
    pub idle_s: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Settings {
    /// The host's settings in `config`, its models reading from MLflow at `tracking_uri`.
    pub fn of(config: &crate::config::ServingConfig, tracking_uri: &str) -> Settings {
        Settings {
            command: config.command.clone(),
            startup_timeout: config.startup_timeout,
            request_timeout: config.request_timeout,
            warm_models: config.warm_models,
            warm_memory: config.warm_memory,
            model_memory: config.model_memory,
            env: vec![("MLFLOW_TRACKING_URI".into(), tracking_uri.into())],
        }
    }
}

impl Host {
    /// The host `config` asks for (`serving.mode = "host"`), or none. A `previous` host with
    /// the same settings is kept, with its warm models: a reload that leaves `[serving]` alone
    /// does not restart it.
    pub fn for_config(
        config: &crate::config::ServingConfig,
        tracking_uri: &str,
        previous: Option<&Arc<Host>>,
    ) -> Option<Arc<Host>> {
        if config.mode != Some(crate::config::ServingMode::Host) {
            return None;
        }
        let settings = Settings::of(config, tracking_uri);
        match previous {
            Some(p) if p.settings == settings => Some(p.clone()),
            _ => Some(Host::new(settings)),
        }
    }

    pub fn new(settings: Settings) -> Arc<Host> {
        Arc::new(Host {
            settings,
            zygote: tokio::sync::Mutex::new(None),
            slots: Mutex::new(HashMap::new()),
            watchdog: std::sync::OnceLock::new(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The host process, started (again) if it is not running.
    async fn zygote(&self) -> Result<Arc<Zygote>, String> {
        let mut z = self.zygote.lock().await;
        if let Some(live) = z.as_ref().filter(|z| !z.gone()) {
            return Ok(live.clone());
        }
        if z.is_some() {
            // The host died: its models went with it. Let go of their slots now, rather than
            // when each is next asked for.
            lock(&self.slots).retain(|_, slot| !evict(slot));
        }
        let python = zygote::python_of(&self.settings.command)?;
        let started = Instant::now();
        let fresh =
            Zygote::start(&python, &self.settings.env, self.settings.startup_timeout).await?;
        tracing::info!(
            python = %python.display(),
            mlflow = fresh.info["mlflow"].as_str().unwrap_or("?"),
            ms = started.elapsed().as_millis() as u64,
            "scoring host started"
        );
        *z = Some(fresh.clone());
        Ok(fresh)
    }

    /// Start the host now rather than at the first served gate (the daemon, at start).
    pub async fn start(&self) -> Result<(), String> {
        self.zygote().await.map(drop)
    }

    /// Python, MLflow and the other versions the host found (`stagegate check`).
    pub async fn versions(&self) -> Result<serde_json::Value, String> {
        Ok(self.zygote().await?.info.clone())
    }

    /// Version `version` of `name`, loaded (once) and warm. `champion` marks it as the model's
    /// promoted version, which the warm set keeps longest.
    pub async fn model(
        self: &Arc<Self>,
        name: &str,
        version: &str,
        champion: bool,
    ) -> Result<Arc<HostModel>, String> {
        let key = Key {
            name: name.into(),
            version: version.into(),
        };
        let slot = lock(&self.slots).entry(key).or_default().clone();
        slot.champion
            .fetch_or(champion, std::sync::atomic::Ordering::Relaxed);
        *lock(&slot.last_used) = Some(Instant::now());
        let mut held = slot.model.lock().await;
        if let Some(m) = held.as_ref().filter(|m| m.alive()) {
            return Ok(m.clone());
        }
        *held = None;
        let zygote = self.zygote().await?;
        let uri = format!("models:/{name}/{version}");
        let m = Arc::new(
            HostModel::open(
                zygote,
                &uri,
                &self.settings.env,
                self.settings.startup_timeout,
                self.settings.request_timeout,
            )
            .await?,
        );
        tracing::debug!(model = %uri, pid = m.pid, load_ms = m.load_ms, "model loaded in the scoring host");
        *held = Some(m.clone());
        drop(held);
        self.start_watchdog();
        self.trim();
        Ok(m)
    }

    /// Drop every loaded version of `name` but `keep` (when idle): a champion that changed,
    /// a candidate judged and gone.
    pub fn retain(&self, name: &str, keep: &[&str]) {
        let mut slots = lock(&self.slots);
        slots
            .retain(|k, slot| k.name != name || keep.contains(&k.version.as_str()) || !evict(slot));
    }

    /// Evict idle models until the warm set is within its bounds.
    pub fn trim(&self) {
        let mut slots = lock(&self.slots);
        let mut keys = Vec::new();
        let mut entries = Vec::new();
        for (k, s) in slots.iter() {
            let Ok(m) = s.model.try_lock() else {
                // Loading right now: in use.
                keys.push(k.clone());
                entries.push(warm::Entry {
                    champion: false,
                    in_use: true,
                    last_used: Instant::now(),
                    rss: None,
                });
                continue;
            };
            let Some(model) = m.as_ref() else { continue };
            keys.push(k.clone());
            entries.push(warm::Entry {
                champion: s.champion.load(std::sync::atomic::Ordering::Relaxed),
                in_use: Arc::strong_count(model) > 1,
                last_used: lock(&s.last_used).unwrap_or_else(Instant::now),
                rss: model.rss(),
            });
        }
        for i in warm::evictions(
            &entries,
            self.settings.warm_models,
            self.settings.warm_memory,
        ) {
            if let Some(s) = slots.get(&keys[i])
                && evict(s)
            {
                tracing::debug!(model = %keys[i].name, version = %keys[i].version, "evicted from the scoring host");
                slots.remove(&keys[i]);
            }
        }
        slots.retain(|_, s| s.model.try_lock().map(|m| m.is_some()).unwrap_or(true));
    }

    /// What the host holds, for `/status` and `/metrics`.
    pub fn snapshot(&self) -> Snapshot {
        let z = self
            .zygote
            .try_lock()
            .ok()
            .and_then(|z| z.as_ref().filter(|z| !z.gone()).cloned());
        let mut models: Vec<ModelSnapshot> = lock(&self.slots)
            .iter()
            .filter_map(|(k, s)| {
                let m = s.model.try_lock().ok()?.as_ref()?.clone();
                Some(ModelSnapshot {
                    model: k.name.clone(),
                    version: k.version.clone(),
                    champion: s.champion.load(std::sync::atomic::Ordering::Relaxed),
                    in_use: Arc::strong_count(&m) > 2,
                    pid: m.pid,
                    rss_bytes: m.rss(),
                    load_ms: m.load_ms,
                    idle_s: lock(&s.last_used)
                        .map(|t| t.elapsed().as_secs())
                        .unwrap_or(0),
                })
            })
            .collect();
        models.sort_by(|a, b| (&a.model, &a.version).cmp(&(&b.model, &b.version)));
        let info = |k: &str| {
            z.as_ref()
                .and_then(|z| z.info[k].as_str().map(str::to_string))
        };
        Snapshot {
            running: z.is_some(),
            pid: z.as_ref().map(|z| z.pid),
            rss_bytes: z.as_ref().and_then(|z| model::rss_of(z.pid)),
            python: info("python"),
            mlflow: info("mlflow"),
            import_ms: z.as_ref().and_then(|z| z.info["import_ms"].as_u64()),
            models,
        }
    }

    /// With `serving.model_memory`, a task that kills any model whose process grows past it
    /// (checked four times a second); it ends with the host.
    fn start_watchdog(self: &Arc<Self>) {
        let Some(limit) = self.settings.model_memory else {
            return;
        };
        if self.watchdog.set(()).is_err() {
            return;
        }
        let host: Weak<Host> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(host) = host.upgrade() else { return };
                let models: Vec<Arc<HostModel>> = lock(&host.slots)
                    .values()
                    .filter_map(|s| s.model.try_lock().ok()?.as_ref().cloned())
                    .collect();
                for m in models.iter().filter(|m| m.alive()) {
                    if let Some(rss) = m.rss().filter(|r| *r > limit) {
                        tracing::warn!(model = %m.uri, rss, limit, "model over serving.model_memory: stopped");
                        m.kill(format!(
                            "it used {} MiB, over serving.model_memory ({} MiB)",
                            rss >> 20,
                            limit >> 20
                        ));
                    }
                }
            }
        });
    }
}

/// Unload a slot's model if nobody uses it; whether it is now empty.
fn evict(slot: &Slot) -> bool {
    match slot.model.try_lock() {
        Ok(mut m) => {
            if m.as_ref().is_some_and(|m| Arc::strong_count(m) > 1) {
                return false;
            }
            *m = None;
            true
        }
        Err(_) => false,
    }
}

/// Where the host's Python would come from, for `stagegate check`.
pub fn python_of(command: &str) -> Result<PathBuf, String> {
    zygote::python_of(command)
}
