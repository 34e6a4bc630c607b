//! Serving the candidate (and, when a gate compares, the champion) for the gates that exercise
//! the model itself. One [`Session`] per evaluation: the first gate that needs a model gets it
//! served, later gates share it, and dropping the session stops what it started (a warm
//! host's models stay loaded for the next evaluation).
//!
//! Three ways to serve (`serving.mode`): `host`, the warm scoring host ([`host`]); `local`,
//! `mlflow models serve` per evaluation ([`local`]); `url`, an existing endpoint. Gates see two
//! faces: an HTTP [`Endpoint`] (the latency gate: what gets deployed is an HTTP server) and a
//! [`Scorer`] (edge cases and datasets: rows in, predictions out, in bulk where it can).

pub mod host;
mod invoke;
mod local;
mod root_cause;
mod scorer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{ServingConfig, ServingMode};
use crate::mlflow::{Client, ModelVersion};
use crate::model_files::{ModelFiles, parse_mlmodel};
use host::{Host, HostModel};
pub use invoke::{
    Answer, Cell, Connection, Endpoint, batch_cells, dataframe_split, prediction_count,
    predictions, server_error,
};
pub use local::LocalServer;
pub use scorer::{Payload, ScoreError, Scorer};

/// Which model to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Candidate,
    Champion,
}

/// Where the evaluation runs: serving settings, the warm host (in `host` mode), and the
/// policy's working directory.
#[derive(Clone)]
pub struct Environment {
    pub serving: ServingConfig,
    /// Where command gates run and relative paths (datasets, inputs) resolve.
    pub workdir: PathBuf,
    /// The scoring host (`host` mode); shared by every evaluation of its owner.
    pub host: Option<Arc<Host>>,
    /// How gate inputs in object stores are read (`[inputs]`).
    pub inputs: crate::objects::Limits,
}

impl Environment {
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.workdir.join(p)
        }
    }
}

/// Served models and model files for one evaluation.
pub struct Session {
    client: Client,
    env: Environment,
    candidate: ModelVersion,
    champion: Option<ModelVersion>,
    endpoints: Mutex<[Option<Arc<Endpoint>>; 2]>,
    hosted: Mutex<[Option<Arc<HostModel>>; 2]>,
    /// Every endpoint and hosted model this session used (restarted ones too), for its figures.
    used: std::sync::Mutex<Used>,
    files: Mutex<Option<Result<Arc<ModelFiles>, String>>>,
    example: Mutex<Option<Result<Option<Arc<Value>>, String>>>,
    /// A failed [`Session::preload`], for the first gate that asks for the candidate: that
    /// gate reports it instead of loading the model a second time.
    preload_failed: std::sync::Mutex<Option<String>>,
    started: std::time::Instant,
}

#[derive(Default)]
struct Used {
    endpoints: Vec<Arc<Endpoint>>,
    /// Hosted models, with their request figures when this session first used them (a warm
    /// model serves many sessions).
    hosted: Vec<(Arc<HostModel>, (u64, Duration, Duration))>,
}

impl Drop for Session {
    /// The models this evaluation held are idle now: the warm set may evict them, and is
    /// brought within its bounds at once rather than at the next load.
    fn drop(&mut self) {
        if let Some(host) = &self.env.host {
            self.hosted.get_mut().iter_mut().for_each(|m| *m = None);
            self.endpoints.get_mut().iter_mut().for_each(|e| *e = None);
            let used = self.used.get_mut().unwrap_or_else(|p| p.into_inner());
            used.hosted.clear();
            used.endpoints.clear();
            host.trim();
        }
    }
}

impl Session {
    pub fn new(
        client: Client,
        env: Environment,
        candidate: ModelVersion,
        champion: Option<ModelVersion>,
    ) -> Session {
        if let Some(host) = &env.host {
            // Other versions of this model are done with: a champion that changed, candidates
            // judged before. They leave the warm set now rather than by age.
            let mut keep = vec![candidate.version.as_str()];
            keep.extend(champion.as_ref().map(|c| c.version.as_str()));
            host.retain(&candidate.name, &keep);
        }
        Session {
            client,
            env,
            candidate,
            champion,
            endpoints: Mutex::new([None, None]),
            hosted: Mutex::new([None, None]),
            used: std::sync::Mutex::new(Used::default()),
            files: Mutex::new(None),
            example: Mutex::new(None),
            preload_failed: std::sync::Mutex::new(None),
            started: std::time::Instant::now(),
        }
    }

    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// The MLflow client (a gate's input may be an artifact it locates).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn candidate(&self) -> &ModelVersion {
        &self.candidate
    }

    pub fn champion(&self) -> Option<&ModelVersion> {
        self.champion.as_ref()
    }

    /// Rows per request for `batch_size`-row gates: in `host` mode rows go in bulk, up to
    /// `serving.bulk_rows` at a time.
    pub fn rows_per_request(&self, batch_size: usize) -> usize {
        match self.env.serving.mode {
            Some(ServingMode::Host) => self.env.serving.bulk_rows.max(batch_size),
            _ => batch_size,
        }
    }

    fn version(&self, which: Which) -> Result<&ModelVersion, String> {
        match which {
            Which::Candidate => Ok(&self.candidate),
            Which::Champion => self
                .champion
                .as_ref()
                .ok_or_else(|| "there is no champion to serve".to_string()),
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// In `host` mode, when the policy has `served` gates: load the candidate's model now, so
    /// that the first served gate finds it loaded. A failure is kept for that gate to report.
    pub async fn preload(&self, served: bool) {
        if !served || self.env.host.is_none() {
            return;
        }
        if let Err(e) = self.hosted(Which::Candidate).await {
            *self
                .preload_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    }

    /// The model loaded in the warm host (`host` mode), loaded on first use and again if its
    /// process died (a retry after a crash gets a fresh one).
    async fn hosted(&self, which: Which) -> Result<Arc<HostModel>, String> {
        if which == Which::Candidate
            && let Some(e) = self
                .preload_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        {
            return Err(e);
        }
        let version = self.version(which)?;
        let host = self
            .env
            .host
            .as_ref()
            .ok_or("serving.mode = \"host\" but no scoring host was set up")?;
        let mut slots = self.hosted.lock().await;
        let slot = &mut slots[which as usize];
        if let Some(m) = slot.as_ref().filter(|m| m.alive()) {
            return Ok(m.clone());
        }
        let m = host
            .model(&version.name, &version.version, which == Which::Champion)
            .await?;
        let mut used = self.used();
        if !used.hosted.iter().any(|(h, _)| Arc::ptr_eq(h, &m)) {
            let before = m.usage();
            used.hosted.push((m.clone(), before));
        }
        drop(used);
        *slot = Some(m.clone());
        Ok(m)
    }

    /// The served model as an HTTP endpoint: started on first use, restarted if its process
    /// died.
    pub async fn endpoint(&self, which: Which) -> Result<Arc<Endpoint>, String> {
        let version = self.version(which)?;
        let mut slots = self.endpoints.lock().await;
        let slot = &mut slots[which as usize];
        if let Some(e) = slot.as_ref().filter(|e| e.alive()) {
            return Ok(e.clone());
        }
        *slot = None;
        let endpoint = match (&self.env.serving.mode, &self.env.serving.url) {
            (Some(ServingMode::Url), Some(template)) => {
                let url = template
                    .replace("{model}", &version.name)
                    .replace("{version}", &version.version);
                Endpoint::remote(url, self.env.serving.request_timeout)
            }
            (Some(ServingMode::Host), _) => {
                drop(slots);
                let m = self.hosted(which).await?;
                let base = m.http_base().await?;
                let e = Arc::new(Endpoint::hosted(base, m, self.env.serving.request_timeout));
                self.endpoints.lock().await[which as usize] = Some(e.clone());
                self.used().endpoints.push(e.clone());
                return Ok(e);
            }
            _ => {
                let uri = format!("models:/{}/{}", version.name, version.version);
                let server = LocalServer::start(
                    &self.env.serving.command,
                    &uri,
                    self.client.tracking_uri(),
                    self.env.serving.startup_timeout,
                )
                .await?;
                Endpoint::local(server, self.env.serving.request_timeout)
            }
        };
        let e = Arc::new(endpoint);
        *slot = Some(e.clone());
        self.used().endpoints.push(e.clone());
        Ok(e)
    }

    /// The served model as a scorer of rows: the warm host's bulk path in `host` mode, the
    /// HTTP endpoint otherwise.
    pub async fn scorer(&self, which: Which) -> Result<Scorer, String> {
        match self.env.serving.mode {
            Some(ServingMode::Host) => Ok(Scorer::Host(self.hosted(which).await?)),
            _ => Ok(Scorer::Http(self.endpoint(which).await?)),
        }
    }

    /// What serving cost this evaluation: start-ups and time spent in requests (`null` if
    /// nothing was served). The benchmark compares the evaluation's wall time with these.
    pub fn usage(&self) -> Value {
        let used = self.used();
        if used.endpoints.is_empty() && used.hosted.is_empty() {
            return Value::Null;
        }
        let local: Vec<&LocalServer> = used.endpoints.iter().filter_map(|e| e.server()).collect();
        // Models the host loaded for this evaluation; the others were warm.
        let loaded: Vec<&HostModel> = used
            .hosted
            .iter()
            .map(|(m, _)| m.as_ref())
            .filter(|m| m.loaded >= self.started)
            .collect();
        let startup: Duration = local.iter().map(|s| s.startup).sum::<Duration>()
            + loaded
                .iter()
                .map(|m| Duration::from_millis(m.load_ms))
                .sum::<Duration>();
        // Hosted models' HTTP requests (the latency gate) are counted by their endpoint.
        let (requests, busy) = used
            .endpoints
            .iter()
            .map(|e| e.usage())
            .chain(used.hosted.iter().map(|(m, before)| {
                let now = m.usage();
                (now.0 - before.0, now.1.saturating_sub(before.1))
            }))
            .fold((0, Duration::ZERO), |a, b| (a.0 + b.0, a.1 + b.1));
        let python: Duration = used
            .hosted
            .iter()
            .map(|(m, before)| m.usage().2.saturating_sub(before.2))
            .sum();
        let mut v = serde_json::json!({
            "servers_started": local.len(),
            "startup_ms": startup.as_millis() as u64,
            "requests": requests,
            "requests_ms": busy.as_millis() as u64,
        });
        if !used.hosted.is_empty() {
            v["host_models_loaded"] = loaded.len().into();
            v["host_models_warm"] = (used.hosted.len() - loaded.len()).into();
            // Of `requests_ms`, the time the models' processes spent (the rest is stagegate
            // and the socket).
            v["host_python_ms"] = (python.as_millis() as u64).into();
        }
        v
    }

    /// The candidate's MLmodel, parsed.
    pub async fn files(&self) -> Result<Arc<ModelFiles>, String> {
        let mut cached = self.files.lock().await;
        if let Some(r) = cached.as_ref() {
            return r.clone();
        }
        let r = match self
            .client
            .version_artifact(&self.candidate, "MLmodel")
            .await
        {
            Ok(Some(bytes)) => parse_mlmodel(&String::from_utf8_lossy(&bytes)).map(Arc::new),
            Ok(None) => Err(format!(
                "v{} has no MLmodel file (source {})",
                self.candidate.version, self.candidate.source
            )),
            Err(e) => {
                return Err(format!(
                    "MLmodel of v{} could not be read: {e}",
                    self.candidate.version
                ));
            }
        };
        *cached = Some(r.clone());
        r
    }

    /// The candidate's `serving_input_example.json`, if it was logged with one.
    pub async fn serving_example(&self) -> Result<Option<Arc<Value>>, String> {
        let mut cached = self.example.lock().await;
        if let Some(r) = cached.as_ref() {
            return r.clone();
        }
        let path = self
            .files()
            .await
            .ok()
            .and_then(|f| f.serving_example_path.clone())
            .unwrap_or_else(|| "serving_input_example.json".into());
        let r = match self.client.version_artifact(&self.candidate, &path).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map(|v| Some(Arc::new(v)))
                .map_err(|e| format!("{path} is not JSON: {e}")),
            Ok(None) => Ok(None),
            Err(e) => {
                return Err(format!(
                    "{path} of v{} could not be read: {e}",
                    self.candidate.version
                ));
            }
        };
        *cached = Some(r.clone());
        r
    }
}
