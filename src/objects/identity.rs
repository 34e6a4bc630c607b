//! What each gate's input is now, as one short string: a local file's `sha256:…`, an
//! object's `etag:…` or `version:…`, `absent` when there is nothing there. A verdict's
//! fingerprint covers these ([`crate::inputs`]), so a replaced holdout makes the verdicts
//! judged on the old one stale.
//!
//! A local file is hashed once per content: the hash is kept by path, size, modification time
//! and inode, and a file that changes any of them is hashed again. An object costs one `HEAD`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::future::join_all;
use sha2::{Digest, Sha256};

use reqwest::header::HeaderMap;

use super::{Artifacts, Limits, Object, ObjectsError};
use crate::location::Location;

/// Said of an input that does not exist (yet): a verdict judged while it was missing is stale
/// once it appears.
pub const ABSENT: &str = "absent";

/// The identity of a dataset logged on a run: its file's, and MLflow's digest of it (a dataset
/// logged again on the run changes it even where the file does not).
pub fn logged_identity(file: &str, digest: &str) -> String {
    format!("{file} digest:{digest}")
}

/// What a file was when it was hashed.
type Stamp = (u64, SystemTime, u64);

/// The identities of inputs, with the local files' hashes kept between calls.
#[derive(Clone, Default)]
pub struct Identities {
    hashed: Arc<Mutex<HashMap<PathBuf, (Stamp, String)>>>,
    limits: Limits,
}

impl Identities {
    /// These identities, reading objects with `limits` (the kept hashes stay shared).
    pub fn with_limits(&self, limits: Limits) -> Identities {
        Identities {
            hashed: self.hashed.clone(),
            limits,
        }
    }

    /// The identity of each `(gate, input)`, side by side; `None` where it cannot be told now
    /// (a store that does not answer, an MLflow artifact).
    pub async fn of(
        &self,
        inputs: Vec<(String, Location)>,
        workdir: &Path,
        artifacts: &dyn Artifacts,
    ) -> BTreeMap<String, Option<String>> {
        // Built in a loop of an `async fn`, not a closure: closures over borrowed inputs make
        // the future lose `Send` generality, which the daemon's worker pool needs.
        let mut calls = Vec::with_capacity(inputs.len());
        for (gate, loc) in inputs {
            calls.push(self.named(gate, loc, workdir, artifacts));
        }
        join_all(calls).await.into_iter().collect()
    }

    async fn named(
        &self,
        gate: String,
        loc: Location,
        workdir: &Path,
        artifacts: &dyn Artifacts,
    ) -> (String, Option<String>) {
        let id = match &loc {
            // Located afresh each time: a run's artifacts may be moved to another store.
            Location::Artifact(uri) => match artifacts.locate(uri).await {
                Ok(found) => {
                    self.identity(&found.location, &found.headers, workdir)
                        .await
                }
                Err(e) => {
                    tracing::debug!(input = %loc, error = %e, "input identity unknown for now");
                    None
                }
            },
            other => self.identity(other, &HeaderMap::new(), workdir).await,
        };
        (gate, id)
    }

    async fn identity(
        &self,
        loc: &Location,
        headers: &HeaderMap,
        workdir: &Path,
    ) -> Option<String> {
        match loc {
            Location::Path(p) => self.local(&workdir.join(p)).await,
            Location::Object(url) => match Object::open_with(url, headers, self.limits).await {
                Ok(o) => Some(o.identity().to_string()),
                Err(ObjectsError::NotFound { .. }) => Some(ABSENT.into()),
                Err(e) => {
                    tracing::debug!(input = %loc, error = %e, "input identity unknown for now");
                    None
                }
            },
            Location::Artifact(_) => None,
        }
    }

    async fn local(&self, path: &Path) -> Option<String> {
        let meta = match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Some(ABSENT.into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(ABSENT.into()),
            Err(_) => return None,
        };
        let stamp = stamp(&meta)?;
        if let Some((s, sha)) = self.lock().get(path)
            && *s == stamp
        {
            return Some(format!("sha256:{sha}"));
        }
        let p = path.to_path_buf();
        let sha = tokio::task::spawn_blocking(move || sha256(&p))
            .await
            .ok()?
            .ok()?;
        self.lock().insert(path.to_path_buf(), (stamp, sha.clone()));
        Some(format!("sha256:{sha}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Stamp, String)>> {
        // A panic while holding the map leaves it usable: it only caches.
        self.hashed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn stamp(meta: &std::fs::Metadata) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

/// The SHA-256 of a file, streamed (blocking).
pub fn sha256(path: &Path) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    sha256_file(&f).map_err(|e| format!("{}: {e}", path.display()))
}

/// The SHA-256 of an open file, read by position: the handle's offset, which a reader of the
/// same open file may be moving, is left alone (blocking).
pub fn sha256_file(file: &std::fs::File) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
