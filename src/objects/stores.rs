//! One `object_store` client per URL, configured from each cloud's standard credential chain
//! and never from the config file:
//! - S3 (`s3://`): `AWS_*` variables (keys, `AWS_PROFILE` static keys, web identity as IRSA
//!   sets it, container credentials, then the instance's metadata service). An S3-compatible
//!   store (MinIO, Ceph, moto) is reached at `AWS_ENDPOINT_URL`, or MLflow's own
//!   `MLFLOW_S3_ENDPOINT_URL`, over plain http when that endpoint is http.
//! - GCS (`gs://`): `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT`, else the
//!   metadata server (application default credentials).
//! - Azure (`az://`, `abfs[s]://`): `AZURE_*` variables (keys, SAS, service principal), else
//!   managed identity; `AZURE_STORAGE_USE_EMULATOR=true` for Azurite.
//! - `https://`: anonymous, or what the URL itself carries.
//!
//! Every request has a timeout, and transient failures (5xx, 429, lost connections) are
//! retried with backoff inside a bounded time.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use reqwest::header::HeaderMap;
use url::Url;

use super::ObjectsError;
use crate::location::redact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How patient a store's client is (`[inputs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One request, connecting included.
    pub timeout: Duration,
    /// Extra tries of a request that failed transiently, with backoff, within twice the
    /// timeout per try.
    pub retries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            retries: 3,
        }
    }
}

/// The store that holds `url`'s object, and the object's path in it. `headers` go with every
/// request to a web server (MLflow's artifact proxy needs the tracking server's credentials).
pub fn store_for(
    url: &Url,
    headers: &HeaderMap,
    limits: Limits,
) -> Result<(Arc<dyn ObjectStore>, ObjPath), ObjectsError> {
    let shown = redact(url);
    let bad = |e: object_store::Error| ObjectsError::Config {
        url: shown.clone(),
        reason: e.to_string(),
    };
    let key = url.path().trim_start_matches('/');
    let path = ObjPath::from_url_path(key).map_err(|e| bad(e.into()))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(s3(url, limits).build().map_err(bad)?),
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_client_options(client_options(false, limits))
                .with_retry(retry(limits))
                .build()
                .map_err(bad)?,
        ),
        "az" | "azure" | "abfs" | "abfss" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_client_options(client_options(false, limits))
                .with_retry(retry(limits))
                .build()
                .map_err(bad)?,
        ),
        "http" | "https" => {
            // The store's root is the server; the object is the URL's path (and query, which
            // a signed URL needs on every request).
            let mut root = url.clone();
            root.set_path("/");
            root.set_query(None);
            let store = HttpBuilder::new()
                .with_url(root.as_str())
                .with_client_options(
                    client_options(url.scheme() == "http", limits)
                        .with_default_headers(headers.clone()),
                )
                .with_retry(retry(limits))
                .build()
                .map_err(bad)?;
            Arc::new(store)
        }
        other => {
            return Err(ObjectsError::Config {
                url: shown,
                reason: format!("no store reads `{other}` URLs"),
            });
        }
    };
    Ok((store, path))
}

fn s3(url: &Url, limits: Limits) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::from_env();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint = env("AWS_ENDPOINT_URL_S3")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"))
        .or_else(|| env("MLFLOW_S3_ENDPOINT_URL"));
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e);
    }
    if env("AWS_ACCESS_KEY_ID").is_none()
        && let Some((id, secret, token)) = super::profile::static_keys()
    {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(t) = token {
            b = b.with_token(t);
        }
    }
    if env("AWS_DEFAULT_REGION").is_none() && env("AWS_REGION").is_none() {
        b = b.with_region("us-east-1");
    } else if let Some(r) = env("AWS_REGION") {
        b = b.with_region(r);
    }
    let plain = endpoint.is_some_and(|e| e.starts_with("http://"));
    b.with_url(url.as_str())
        .with_client_options(client_options(plain, limits))
        .with_retry(retry(limits))
}

fn client_options(allow_http: bool, limits: Limits) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(limits.timeout)
        .with_connect_timeout(CONNECT_TIMEOUT.min(limits.timeout))
        .with_allow_http(allow_http)
}

fn retry(limits: Limits) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: limits.retries,
        retry_timeout: limits.timeout * 2 * (limits.retries as u32 + 1),
    }
}
