//! The HTTP transport to MLflow: base URL, auth, TLS, timeouts, and retry of transient
//! failures with exponential backoff and full jitter.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::MlflowError;
use crate::backoff::full_jitter;
use crate::config::{DATABRICKS_TRACKING_URI as DATABRICKS, MlflowConfig};

const DEFAULT_TRACKING_URI: &str = "http://127.0.0.1:5000";

/// How to reach MLflow: the config's `[mlflow]` plus the standard MLflow environment.
#[derive(Clone)]
pub struct Settings {
    /// Where REST calls go: the tracking URI, or `$DATABRICKS_HOST` for `databricks`.
    pub tracking_uri: String,
    /// The tracking URI was `databricks`: MLflow's own tools (served models, command gates)
    /// get `MLFLOW_TRACKING_URI=databricks` and read the host and token they inherit.
    pub databricks: bool,
    pub timeout: Duration,
    pub retries: u32,
    /// First retry delay; doubles each time, capped at `max_backoff`, full jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub auth: Auth,
    pub insecure_tls: bool,
    pub cert_path: Option<PathBuf>,
    pub keep_alive: bool,
}

#[derive(Clone)]
pub enum Auth {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

impl Settings {
    /// Tracking URI precedence: `STAGEGATE_MLFLOW__TRACKING_URI`, then `MLFLOW_TRACKING_URI`,
    /// then the file's `mlflow.tracking_uri`, then `http://127.0.0.1:5000`.
    pub fn from_env(cfg: &MlflowConfig) -> Result<Self, MlflowError> {
        Self::resolve(cfg, |k| std::env::var(k).ok())
    }

    /// [`Settings::from_env`] with the environment given as a lookup (tests pass their own;
    /// setting variables in a multi-threaded process would race).
    ///
    /// The tracking URI `databricks` means a Databricks workspace: REST calls go to
    /// `$DATABRICKS_HOST` with `$DATABRICKS_TOKEN` as a Bearer token, both required.
    pub fn resolve(
        cfg: &MlflowConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, MlflowError> {
        let env = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let tracking_uri = env("STAGEGATE_MLFLOW__TRACKING_URI")
            .and(cfg.tracking_uri.clone())
            .or_else(|| env("MLFLOW_TRACKING_URI"))
            .or_else(|| cfg.tracking_uri.clone())
            .unwrap_or_else(|| DEFAULT_TRACKING_URI.into());
        let databricks = tracking_uri.trim() == DATABRICKS;
        let tracking_uri = if databricks {
            let host = env("DATABRICKS_HOST").ok_or_else(|| {
                databricks_missing(
                    "DATABRICKS_HOST",
                    "the workspace URL, e.g. https://dbc-1234.cloud.databricks.com",
                )
            })?;
            // Databricks' own tools accept a host without a scheme.
            if host.contains("://") {
                host
            } else {
                format!("https://{host}")
            }
        } else {
            tracking_uri
        };
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
        ) {
            _ if databricks => Auth::Bearer(env("DATABRICKS_TOKEN").ok_or_else(|| {
                databricks_missing("DATABRICKS_TOKEN", "a personal access token")
            })?),
            (Some(token), _) => Auth::Bearer(token),
            (None, Some(user)) => Auth::Basic {
                user,
                password: env("MLFLOW_TRACKING_PASSWORD").unwrap_or_default(),
            },
            (None, None) => Auth::None,
        };
        let truthy = |v: Option<String>| {
            v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        };
        Ok(Settings {
            tracking_uri: tracking_uri.trim_end_matches('/').to_string(),
            databricks,
            timeout: cfg.request_timeout,
            retries: cfg.retries,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            auth,
            insecure_tls: truthy(env("MLFLOW_TRACKING_INSECURE_TLS")),
            cert_path: env("MLFLOW_TRACKING_SERVER_CERT_PATH").map(PathBuf::from),
            keep_alive: cfg.keep_alive,
        })
    }
}

fn databricks_missing(var: &str, what: &str) -> MlflowError {
    MlflowError::Setup(format!(
        "the tracking URI is `databricks` but {var} is not set: set it to {what}"
    ))
}

/// Observes every MLflow request (the daemon's metrics); the client knows nothing of Prometheus.
pub trait RequestObserver: Send + Sync {
    fn observe(&self, endpoint: &str, outcome: &str, elapsed: Duration);
}

/// A cheap-to-clone MLflow REST client. The only code in stagegate that speaks MLflow's protocol
/// lives in this module.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub(super) settings: Arc<Settings>,
    requests: Arc<AtomicU64>,
    observer: Option<Arc<dyn RequestObserver>>,
    guard: Option<Arc<dyn WriteGuard>>,
}

/// Asked before every request that writes (anything but GET), retries included: may this
/// client still write? The daemon's answer is its lease on the model (a replica that lost it
/// must not touch the model). An `Err` says why not; the request is not sent.
#[async_trait::async_trait]
pub trait WriteGuard: Send + Sync {
    async fn check(&self) -> Result<(), String>;
}

/// Where a path lives: under `/api/2.0/mlflow/` or at the server root (`get-artifact`, `health`).
#[derive(Clone, Copy)]
pub(super) enum Root {
    Api,
    Server,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Self, MlflowError> {
        if !(settings.tracking_uri.starts_with("http://")
            || settings.tracking_uri.starts_with("https://"))
        {
            return Err(MlflowError::Setup(format!(
                "tracking URI {:?} is not an http(s) URL; stagegate talks to an MLflow tracking server",
                redact_uri(&settings.tracking_uri)
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("stagegate/", env!("CARGO_PKG_VERSION")));
        if !settings.keep_alive {
            builder = builder.pool_max_idle_per_host(0);
        }
        if settings.tracking_uri.starts_with("http://") {
            // Plain http needs no CA store; loading the system's costs milliseconds a start.
            builder = builder.tls_built_in_root_certs(false);
        }
        if settings.insecure_tls {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &settings.cert_path {
            let pem = std::fs::read(path).map_err(|e| {
                MlflowError::Setup(format!(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH {}: {e}",
                    path.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                MlflowError::Setup(format!(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH {}: not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| MlflowError::Setup(e.to_string()))?;
        Ok(Client {
            http,
            settings: Arc::new(settings),
            requests: Arc::new(AtomicU64::new(0)),
            observer: None,
            guard: None,
        })
    }

    /// This client with every write first cleared by `guard`.
    pub fn with_guard(mut self, guard: Arc<dyn WriteGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The tracking URI as configured, credentials included: for the environment of command
    /// gates only. Anything shown uses [`Client::shown_uri`].
    pub fn tracking_uri(&self) -> &str {
        if self.settings.databricks {
            DATABRICKS
        } else {
            &self.settings.tracking_uri
        }
    }

    /// The tracking URI without credentials, for logs, errors and `/status`.
    pub fn shown_uri(&self) -> String {
        redact_uri(&self.settings.tracking_uri)
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One logical call, retried on transient failures; an empty 2xx body reads as `{}`.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        root: Root,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T, MlflowError> {
        let bytes = self.call_raw(method, root, path, query, body).await?;
        let bytes = if bytes.is_empty() {
            b"{}".to_vec()
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| MlflowError::Decode {
            endpoint: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Like [`call`](Self::call) but returns the raw body (artifact downloads).
    pub(super) async fn call_raw(
        &self,
        method: Method,
        root: Root,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, MlflowError> {
        let url = match root {
            Root::Api => format!("{}/api/2.0/mlflow/{path}", self.settings.tracking_uri),
            Root::Server => format!("{}/{path}", self.settings.tracking_uri),
        };
        let mut attempt = 0;
        loop {
            if method != Method::GET
                && let Some(guard) = &self.guard
            {
                guard.check().await.map_err(|reason| MlflowError::Fenced {
                    endpoint: path.to_string(),
                    reason,
                })?;
            }
            let started = Instant::now();
            let result = self
                .send_once(method.clone(), &url, path, query, body)
                .await;
            let elapsed = started.elapsed();
            let outcome = || match &result {
                Ok(_) => "ok".to_string(),
                Err(MlflowError::Api { status, .. }) => status.to_string(),
                Err(MlflowError::Unreachable { .. }) => "unreachable".to_string(),
                Err(_) => "error".to_string(),
            };
            // One line per round trip: what `RUST_LOG=stagegate::mlflow=debug` counts.
            tracing::debug!(%method, endpoint = path, ms = elapsed.as_secs_f64() * 1e3, outcome = %outcome(), "mlflow request");
            if let Some(obs) = &self.observer {
                obs.observe(path, &outcome(), elapsed);
            }
            match result {
                Err(e) if e.is_transient() && attempt < self.settings.retries => {
                    let delay = self.backoff(attempt);
                    tracing::debug!(endpoint = path, attempt, ?delay, error = %e, "transient MLflow error, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        url: &str,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, MlflowError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // The wire log (RUST_LOG=stagegate::mlflow=trace) is what the benchmark replays as
        // "the bare REST calls"; it never includes credentials.
        if tracing::enabled!(target: "stagegate::mlflow::wire", tracing::Level::TRACE) {
            let query = serde_json::to_string(query).unwrap_or_default();
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let url = redact_uri(url);
            tracing::trace!(target: "stagegate::mlflow::wire", method = %method, url, query, body, "request");
        }
        let mut req = self.http.request(method, url).query(query);
        req = match &self.settings.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| MlflowError::Unreachable {
            url: redact_uri(&self.settings.tracking_uri),
            reason: describe(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(api_error(endpoint, status, &bytes))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        full_jitter(self.settings.backoff, self.settings.max_backoff, attempt)
    }
}

/// An HTML page's `<title>` (else its text without tags), cut at a word under 200 characters.
fn excerpt(body: &str) -> String {
    let title = body
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(t, _)| t.to_string());
    let text = title.unwrap_or_else(|| {
        let mut out = String::new();
        let mut in_tag = false;
        for c in body.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    });
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut cut = String::new();
    for w in &words {
        if cut.len() + w.len() + 1 > 200 {
            cut.push('…');
            break;
        }
        if !cut.is_empty() {
            cut.push(' ');
        }
        cut.push_str(w);
    }
    cut
}

fn api_error(endpoint: &str, status: StatusCode, body: &[u8]) -> MlflowError {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        error_code: String,
        #[serde(default)]
        message: String,
    }
    let (error_code, message) = match serde_json::from_slice::<Body>(body) {
        Ok(b) => (b.error_code, b.message),
        // Proxies and unknown routes answer HTML or plain text: a short, readable excerpt.
        Err(_) => (String::new(), excerpt(&String::from_utf8_lossy(body))),
    };
    let error_code = if error_code.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("HTTP_ERROR")
            .to_uppercase()
            .replace(' ', "_")
    } else {
        error_code
    };
    MlflowError::Api {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        error_code,
        message,
    }
}

/// `uri` without credentials or query (`http://user:secret@host/` → `http://host`), for
/// anything shown: logs, errors, `/status`.
pub fn redact_uri(uri: &str) -> String {
    crate::location::redact_str(uri)
        .trim_end_matches('/')
        .to_string()
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        let mut msg = "connection failed".to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg = format!("connection failed: {s}");
            src = s.source();
        }
        msg
    } else {
        // reqwest names the URL; ours may carry credentials.
        match e.url() {
            Some(u) => e.to_string().replace(u.as_str(), &redact_uri(u.as_str())),
            None => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_keeps_mlflow_error_code() {
        let e = api_error(
            "x",
            StatusCode::BAD_REQUEST,
            br#"{"error_code":"INVALID_PARAMETER_VALUE","message":"bad"}"#,
        );
        assert!(e.to_string().contains("INVALID_PARAMETER_VALUE"));
        assert!(!e.is_transient());
        let e = api_error("x", StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(e.is_transient());
        assert!(e.to_string().contains("BAD_GATEWAY"));
    }

    /// What MLflow 3.2 and older answer on `/api/2.0/mlflow/webhooks` (seen on a real server
    /// for any unknown route).
    const OLD_SERVER_404: &[u8] = b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n";

    #[test]
    fn an_html_answer_is_shown_by_its_title_and_long_text_is_cut_at_a_word() {
        let e = api_error("webhooks", StatusCode::NOT_FOUND, OLD_SERVER_404);
        assert_eq!(
            e.to_string(),
            "MLflow webhooks answered 404 NOT_FOUND: 404 Not Found"
        );
        let long = format!("<p>{}</p>", "word ".repeat(100));
        let shown = excerpt(&long);
        assert!(shown.ends_with("word…") && shown.len() <= 204, "{shown}");
    }

    fn resolve(uri: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, MlflowError> {
        let cfg = MlflowConfig {
            tracking_uri: uri.map(str::to_string),
            ..Default::default()
        };
        Settings::resolve(&cfg, |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn databricks_means_the_host_with_its_token_as_bearer() {
        let host = ("DATABRICKS_HOST", "https://dbc-1.cloud.databricks.com/");
        let token = ("DATABRICKS_TOKEN", "dapi-s3cret");
        let via_env = [("MLFLOW_TRACKING_URI", "databricks"), host, token];
        let s = resolve(Some("http://file:5000"), &via_env).unwrap();
        assert_eq!(s.tracking_uri, "https://dbc-1.cloud.databricks.com");
        assert!(s.databricks);
        assert!(matches!(&s.auth, Auth::Bearer(t) if t == "dapi-s3cret"));
        // The file's key works too, and a bare host gets https; the workspace token wins over
        // MLFLOW_TRACKING_TOKEN, which belongs to another server.
        let bare = ("DATABRICKS_HOST", "dbc-2.cloud.databricks.com");
        let other = ("MLFLOW_TRACKING_TOKEN", "not-this-one");
        let s = resolve(Some("databricks"), &[bare, token, other]).unwrap();
        assert_eq!(s.tracking_uri, "https://dbc-2.cloud.databricks.com");
        assert!(matches!(&s.auth, Auth::Bearer(t) if t == "dapi-s3cret"));
        let client = Client::new(s).unwrap();
        assert_eq!(
            client.tracking_uri(),
            "databricks",
            "children resolve it themselves"
        );
        assert_eq!(client.shown_uri(), "https://dbc-2.cloud.databricks.com");
    }

    #[test]
    fn databricks_without_its_host_or_token_is_a_clear_error() {
        let err = |vars: &[(&str, &str)]| match resolve(Some("databricks"), vars) {
            Err(MlflowError::Setup(m)) => m,
            Ok(_) => panic!("resolved without {vars:?}"),
            Err(e) => panic!("{e}"),
        };
        let m = err(&[("DATABRICKS_TOKEN", "dapi-s3cret")]);
        assert!(m.contains("DATABRICKS_HOST is not set"), "{m}");
        let m = err(&[("DATABRICKS_HOST", "https://h"), ("DATABRICKS_TOKEN", "")]);
        assert!(m.contains("DATABRICKS_TOKEN is not set"), "{m}");
        assert!(!m.contains("dapi"), "{m}");
        // Other tracking URIs are untouched by the Databricks variables.
        let s = resolve(
            None,
            &[
                ("DATABRICKS_HOST", "https://h"),
                ("MLFLOW_TRACKING_URI", "http://m:5000"),
            ],
        )
        .unwrap();
        assert_eq!(
            (s.tracking_uri.as_str(), s.databricks),
            ("http://m:5000", false)
        );
        assert!(matches!(s.auth, Auth::None));
    }

    #[test]
    fn credentials_are_removed_from_a_shown_uri() {
        assert_eq!(
            redact_uri("https://user:s3cret@mlflow.internal:5000/"),
            "https://mlflow.internal:5000"
        );
        assert_eq!(redact_uri("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
    }
}
