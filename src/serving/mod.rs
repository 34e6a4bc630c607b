//! Serving the candidate (and, when a gate compares, the champion) for the gates that exercise
//! the model itself. One [`Session`] per evaluation: the first gate that needs a served model
//! starts it, later gates share it, and dropping the session stops everything it started.

mod invoke;
mod local;
mod root_cause;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{ServingConfig, ServingMode};
use crate::mlflow::{Client, ModelVersion};
use crate::model_files::{ModelFiles, parse_mlmodel};
pub use invoke::{
    Answer, Cell, Connection, Endpoint, dataframe_split, prediction_count, predictions,
    server_error,
};
pub use local::LocalServer;

/// Which model to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Candidate,
    Champion,
}

/// Where the evaluation runs: serving settings and the policy's working directory.
#[derive(Debug, Clone)]
pub struct Environment {
    pub serving: ServingConfig,
    /// Where command gates run and relative paths (datasets, inputs) resolve.
    pub workdir: PathBuf,
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
    /// Every endpoint this session used (restarted ones too), for its figures.
    used: std::sync::Mutex<Vec<Arc<Endpoint>>>,
    files: Mutex<Option<Result<Arc<ModelFiles>, String>>>,
    example: Mutex<Option<Result<Option<Arc<Value>>, String>>>,
}

impl Session {
    pub fn new(
        client: Client,
        env: Environment,
        candidate: ModelVersion,
        champion: Option<ModelVersion>,
    ) -> Session {
        Session {
            client,
            env,
            candidate,
            champion,
            endpoints: Mutex::new([None, None]),
            used: std::sync::Mutex::new(Vec::new()),
            files: Mutex::new(None),
            example: Mutex::new(None),
        }
    }

    pub fn env(&self) -> &Environment {
        &self.env
    }

    pub fn candidate(&self) -> &ModelVersion {
        &self.candidate
    }

    pub fn champion(&self) -> Option<&ModelVersion> {
        self.champion.as_ref()
    }

    /// The served model; started on first use, restarted if its process died (a retry after a
    /// crash gets a fresh server).
    pub async fn endpoint(&self, which: Which) -> Result<Arc<Endpoint>, String> {
        let version = match which {
            Which::Candidate => &self.candidate,
            Which::Champion => self
                .champion
                .as_ref()
                .ok_or("there is no champion to serve")?,
        };
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
                Endpoint::remote(url)
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
                Endpoint::local(server)
            }
        };
        let e = Arc::new(endpoint);
        *slot = Some(e.clone());
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
        Ok(e)
    }

    /// What serving cost this evaluation: start-ups and time spent in requests (`null` if
    /// nothing was served). The benchmark compares the evaluation's wall time with these.
    pub fn usage(&self) -> Value {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.is_empty() {
            return Value::Null;
        }
        let startup: Duration = used
            .iter()
            .filter_map(|e| e.server().map(|s| s.startup))
            .sum();
        let (requests, busy) = used
            .iter()
            .map(|e| e.usage())
            .fold((0, Duration::ZERO), |a, b| (a.0 + b.0, a.1 + b.1));
        serde_json::json!({
            "servers_started": used.iter().filter(|e| e.server().is_some()).count(),
            "startup_ms": startup.as_millis() as u64,
            "requests": requests,
            "requests_ms": busy.as_millis() as u64,
        })
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

/// How long the served model may take to answer one request before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
