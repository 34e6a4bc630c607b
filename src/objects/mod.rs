//! Inputs that are not local files: objects in S3, GCS, Azure Blob Storage or on a web
//! server, read through the `object_store` crate with each cloud's own credential chain
//! ([`stores`]).
//!
//! An object is opened with one `HEAD`, which gives its size and identity (version id or
//! ETag). Every later read is pinned to that identity (`If-Match`, or the version id), so a
//! file replaced while a gate reads it fails the read ("changed") instead of mixing two
//! files' bytes. Reads are ranges (a Parquet footer, then only the column chunks a gate
//! needs) or one streamed body (CSV); nothing is downloaded whole.
//!
//! Errors name the object by its redacted URL ([`crate::location::redact`]) and say whether
//! trying again later can help.

mod blocking;
mod identity;
pub mod profile;
mod stores;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt};
use reqwest::header::HeaderMap;
use url::Url;

pub use blocking::{Blocking, Chunks, StreamRead};
pub use identity::{ABSENT, Identities, logged_identity, sha256, sha256_file};
pub use stores::Limits;

use crate::location::{Location, redact, redact_text};

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("{url}: {reason}")]
    Config { url: String, reason: String },
    #[error("{url} does not exist")]
    NotFound { url: String },
    #[error("{url}: access denied: {reason}")]
    Denied { url: String, reason: String },
    #[error("{url} changed while it was being read")]
    Changed { url: String },
    /// A timeout, a lost connection, or a server error that outlasted the retries.
    #[error("{url}: {reason}")]
    Failed { url: String, reason: String },
}

impl ObjectsError {
    pub fn is_transient(&self) -> bool {
        match self {
            ObjectsError::Changed { .. } | ObjectsError::Failed { .. } => true,
            ObjectsError::Config { .. }
            | ObjectsError::NotFound { .. }
            | ObjectsError::Denied { .. } => false,
        }
    }

    fn of(url: &str, e: object_store::Error) -> ObjectsError {
        let url = url.to_string();
        let reason = redact_text(&chain(&e));
        match e {
            object_store::Error::NotFound { .. } => ObjectsError::NotFound { url },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => ObjectsError::Denied { url, reason },
            object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
                ObjectsError::Changed { url }
            }
            _ => ObjectsError::Failed { url, reason },
        }
    }
}

/// `e` and each error under it, as far down as the root cause (an HTTP client's "error
/// sending request" says why only in its sources: timed out, refused…).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// What an object was when it was opened: the identity a verdict records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Version(String),
    ETag(String),
    /// A server that gives neither: size and modification time are all there is.
    Modified {
        size: u64,
        at: String,
    },
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Version(v) => write!(f, "version:{v}"),
            Identity::ETag(e) => write!(f, "etag:{}", e.trim_matches('"')),
            Identity::Modified { size, at } => write!(f, "modified:{at}/{size}"),
        }
    }
}

/// An object, opened: its store, its size and identity.
pub struct Object {
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    meta: ObjectMeta,
    /// Bytes received so far (benchmarks report it against the object's size).
    fetched: Arc<AtomicU64>,
    /// The redacted URL, for every message.
    pub shown: String,
}

impl Object {
    /// `HEAD` the object at `url`.
    pub async fn open(url: &Url) -> Result<Object, ObjectsError> {
        Object::open_with(url, &HeaderMap::new(), Limits::default()).await
    }

    /// `HEAD` the object at `url`, sending `headers` with every request.
    pub async fn open_with(
        url: &Url,
        headers: &HeaderMap,
        limits: Limits,
    ) -> Result<Object, ObjectsError> {
        let (store, path) = stores::store_for(url, headers, limits)?;
        let web = matches!(url.scheme(), "http" | "https");
        Object::head(store, path, redact(url), web).await
    }

    /// An object in a store made by a test (an in-memory one).
    #[cfg(test)]
    pub async fn in_store(
        store: Arc<dyn ObjectStore>,
        path: ObjPath,
    ) -> Result<Object, ObjectsError> {
        let shown = format!("memory:///{path}");
        Object::head(store, path, shown, false).await
    }

    /// `HEAD` the object. On a web server that refuses `HEAD` (a presigned URL is signed for
    /// `GET` alone; some servers answer 405 or 501), its first byte is asked for instead,
    /// which tells its size and ETag as well; if that fails too, the `HEAD`'s error stands.
    async fn head(
        store: Arc<dyn ObjectStore>,
        path: ObjPath,
        shown: String,
        web: bool,
    ) -> Result<Object, ObjectsError> {
        let meta = match store.head(&path).await {
            Ok(meta) => meta,
            Err(e @ object_store::Error::NotFound { .. }) => {
                return Err(ObjectsError::of(&shown, e));
            }
            Err(e) if web => {
                let first = GetOptions {
                    range: Some(GetRange::Bounded(0..1)),
                    ..GetOptions::default()
                };
                match store.get_opts(&path, first).await {
                    Ok(got) => got.meta,
                    Err(_) => return Err(ObjectsError::of(&shown, e)),
                }
            }
            Err(e) => return Err(ObjectsError::of(&shown, e)),
        };
        Ok(Object {
            store,
            path,
            meta,
            fetched: Arc::default(),
            shown,
        })
    }

    pub fn size(&self) -> u64 {
        self.meta.size
    }

    /// How many of its bytes have been received so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    pub fn identity(&self) -> Identity {
        match (&self.meta.version, &self.meta.e_tag) {
            (Some(v), _) => Identity::Version(v.clone()),
            (None, Some(e)) => Identity::ETag(e.clone()),
            (None, None) => Identity::Modified {
                size: self.meta.size,
                at: self.meta.last_modified.to_rfc3339(),
            },
        }
    }

    /// Reads of the object as it was opened, and no other.
    fn pinned(&self, range: Option<GetRange>) -> GetOptions {
        let mut o = GetOptions {
            range,
            ..GetOptions::default()
        };
        match (&self.meta.version, &self.meta.e_tag) {
            (Some(v), _) => o.version = Some(v.clone()),
            (None, Some(e)) => o.if_match = Some(e.clone()),
            (None, None) => o.if_unmodified_since = Some(self.meta.last_modified),
        }
        o
    }

    /// The bytes of each range, fetched side by side (ranges close together in one request).
    pub async fn ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ObjectsError> {
        if let Some(r) = ranges.iter().find(|r| r.end > self.meta.size) {
            return Err(ObjectsError::Failed {
                url: self.shown.clone(),
                reason: format!(
                    "bytes {}..{} were asked for, but the object has {} (truncated?)",
                    r.start, r.end, self.meta.size
                ),
            });
        }
        object_store::coalesce_ranges(
            ranges,
            |r| async move {
                let got = self
                    .store
                    .get_opts(&self.path, self.pinned(Some(GetRange::Bounded(r.clone()))))
                    .await?;
                let b = got.bytes().await?;
                self.fetched.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            },
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
        .map_err(|e| ObjectsError::of(&self.shown, e))
    }

    /// The whole object, in memory: for small files only (a request body, an MLmodel).
    pub async fn bytes(&self) -> Result<Vec<u8>, ObjectsError> {
        let whole = 0..self.size();
        Ok(self.ranges(std::slice::from_ref(&whole)).await?.concat())
    }

    /// The whole object (`range`: `None`) or one range of it, as a stream of chunks read as
    /// they arrive.
    pub async fn stream(&self, range: Option<Range<u64>>) -> Result<Chunks, ObjectsError> {
        let got = self
            .store
            .get_opts(&self.path, self.pinned(range.map(GetRange::Bounded)))
            .await
            .map_err(|e| ObjectsError::of(&self.shown, e))?;
        let (shown, fetched) = (self.shown.clone(), self.fetched.clone());
        Ok(got
            .into_stream()
            .map_ok(move |b| {
                fetched.fetch_add(b.len() as u64, Ordering::Relaxed);
                b
            })
            .map_err(move |e| ObjectsError::of(&shown, e))
            .boxed())
    }
}

/// Where an MLflow artifact's bytes are: the tracking server's artifact proxy (with the
/// credentials the server wants) or the store behind it. The MLflow client says.
pub struct Located {
    pub location: Location,
    pub headers: HeaderMap,
}

/// Locates MLflow artifact URIs (`runs:/…`, `mlflow-artifacts:/…`).
#[async_trait::async_trait]
pub trait Artifacts: Send + Sync {
    async fn locate(&self, uri: &str) -> Result<Located, String>;
}

/// Where no MLflow server is at hand (benchmarks reading files and objects only).
pub struct NoArtifacts;

#[async_trait::async_trait]
impl Artifacts for NoArtifacts {
    async fn locate(&self, uri: &str) -> Result<Located, String> {
        Err(format!("{uri}: no MLflow server to locate it through"))
    }
}

/// A gate's input, opened: a local file (resolved against the policy's workdir) or an
/// object (its `HEAD` done).
pub enum Opened {
    Local(std::path::PathBuf),
    Remote(Arc<Object>),
}

impl Opened {
    /// Open `loc`. A local file must exist; an object is `HEAD`ed; an MLflow artifact is first
    /// located through `artifacts`.
    pub async fn open(
        loc: &Location,
        workdir: &std::path::Path,
        artifacts: &dyn Artifacts,
        limits: Limits,
    ) -> Result<Opened, String> {
        if let Location::Artifact(uri) = loc {
            let found = artifacts.locate(uri).await?;
            if matches!(found.location, Location::Artifact(_)) {
                return Err(format!("{uri}: an artifact that names another artifact"));
            }
            return Opened::open_located(&found.location, &found.headers, workdir, limits)
                .await
                .map_err(|e| format!("{uri}: {e}"));
        }
        Opened::open_located(loc, &HeaderMap::new(), workdir, limits).await
    }

    async fn open_located(
        loc: &Location,
        headers: &HeaderMap,
        workdir: &std::path::Path,
        limits: Limits,
    ) -> Result<Opened, String> {
        match &loc {
            Location::Path(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    workdir.join(p)
                };
                if path.is_file() {
                    Ok(Opened::Local(path))
                } else {
                    Err(format!("{} does not exist", path.display()))
                }
            }
            Location::Object(url) => Object::open_with(url, headers, limits)
                .await
                .map(|o| Opened::Remote(Arc::new(o)))
                .map_err(|e| e.to_string()),
            Location::Artifact(a) => Err(format!("{a}: an artifact that names another artifact")),
        }
    }

    /// The whole input, for a small file (a request body): at most `limit` bytes.
    pub async fn read_all(&self, limit: u64) -> Result<Vec<u8>, String> {
        match self {
            Opened::Local(p) => {
                let len = tokio::fs::metadata(p)
                    .await
                    .map_err(|e| format!("{}: {e}", p.display()))?
                    .len();
                if len > limit {
                    return Err(format!(
                        "{}: {len} bytes, more than the {limit} allowed",
                        p.display()
                    ));
                }
                tokio::fs::read(p)
                    .await
                    .map_err(|e| format!("{}: {e}", p.display()))
            }
            Opened::Remote(o) => {
                if o.size() > limit {
                    return Err(format!(
                        "{}: {} bytes, more than the {limit} allowed",
                        o.shown,
                        o.size()
                    ));
                }
                o.bytes().await.map_err(|e| e.to_string())
            }
        }
    }
}
