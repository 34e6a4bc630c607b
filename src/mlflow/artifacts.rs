//! Where an MLflow artifact's bytes are, for a gate that names a file by its artifact URI:
//! `mlflow-artifacts:/…` is the tracking server's artifact proxy, read with the client's own
//! credentials; `runs:/<run_id>/<path>` is the run's artifact root (read from the run) joined
//! with the path, which is the proxy again or a store the server leaves to its clients
//! (`s3://…` and the like, read directly with the cloud's credentials).

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use url::Url;

use super::client::Auth;
use super::client::redact_uri;
use super::{Client, MlflowError, ModelVersion, run_source};
use crate::location::Location;
use crate::objects::{Artifacts, Located, Object, ObjectsError};

impl Client {
    /// Locate `uri` (`runs:/…` or `mlflow-artifacts:/…`).
    pub async fn locate_artifact(&self, uri: &str) -> Result<Located, String> {
        let Some(rest) = uri.strip_prefix("runs:/") else {
            return self.locate_at(uri, uri);
        };
        let (run, path) = rest
            .trim_start_matches('/')
            .split_once('/')
            .ok_or_else(|| format!("{uri}: a run artifact is written runs:/<run_id>/<path>"))?;
        let info = self
            .run(run)
            .await
            .map_err(|e| format!("{uri}: reading run {run}: {e}"))?
            .info;
        if info.artifact_uri.is_empty() {
            return Err(format!("{uri}: run {run} has no artifact location"));
        }
        let at = format!("{}/{path}", info.artifact_uri.trim_end_matches('/'));
        self.locate_at(uri, &at)
    }

    fn locate_at(&self, asked: &str, at: &str) -> Result<Located, String> {
        if let Some(rest) = at.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts:/path`, or with the server named: `mlflow-artifacts://host/path`.
            let path = match rest.strip_prefix("//") {
                Some(r) => r.split_once('/').map_or("", |(_, p)| p),
                None => rest.trim_start_matches('/'),
            };
            let base = self.tracking_uri().trim_end_matches('/');
            let url = Url::parse(&format!("{base}/api/2.0/mlflow-artifacts/artifacts/{path}"))
                .map_err(|e| format!("{asked}: {e}"))?;
            return Ok(Located {
                location: Location::Object(url),
                headers: self.auth_headers(),
            });
        }
        let direct = |location| {
            Ok(Located {
                location,
                headers: HeaderMap::new(),
            })
        };
        match Location::parse(at) {
            Ok(Location::Object(url)) => direct(Location::Object(url)),
            // The server's own artifact directory: readable here only if it is this machine's
            // (or mounted), as it is for a local MLflow.
            Ok(Location::Path(p)) if p.is_absolute() => direct(Location::Path(p)),
            _ => Err(format!(
                "{asked}: the artifacts are at {} ({}), which stagegate does not read",
                redact_uri(at),
                at.split(':').next().unwrap_or(at)
            )),
        }
    }

    /// A file of `v`'s model read straight from the store the server leaves to its clients,
    /// after the server failed to serve it (`failed`, returned if the store is the server's
    /// own proxy after all). `None` when the store has no such file.
    pub(super) async fn direct_artifact(
        &self,
        v: &ModelVersion,
        path: &str,
        failed: MlflowError,
    ) -> Result<Option<Vec<u8>>, MlflowError> {
        let root = match (run_source(&v.source), v.logged_model_id()) {
            (Some((run, dir)), _) => {
                let root = self.run(run).await?.info.artifact_uri;
                format!("{}/{dir}", root.trim_end_matches('/'))
            }
            (None, Some(id)) => self.logged_model(id).await?.info.artifact_uri,
            (None, None) => return Err(failed),
        };
        let Ok(Location::Object(url)) =
            Location::parse(&format!("{}/{path}", root.trim_end_matches('/')))
        else {
            return Err(failed);
        };
        tracing::debug!(model = %v.name, version = %v.version, file = %crate::location::redact(&url), "model file read from the artifact store");
        let read = async { Object::open(&url).await?.bytes().await };
        match read.await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(ObjectsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(MlflowError::Setup(format!(
                "the tracking server could not serve {path} ({failed}), and reading it from its artifact store failed: {e}"
            ))),
        }
    }

    /// The credentials the tracking server wants, as headers (for its artifact proxy).
    fn auth_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = match &self.settings.auth {
            Auth::None => None,
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
            Auth::Basic { user, password } => {
                use base64::Engine;
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {pair}"))
            }
        };
        if let Some(mut v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        h
    }
}

#[async_trait::async_trait]
impl Artifacts for Client {
    async fn locate(&self, uri: &str) -> Result<Located, String> {
        self.locate_artifact(uri).await
    }
}
