//! The store: evaluation history, webhook deliveries (for de-duplication), the audit log of
//! every action, the shared work queue and re-evaluation requests, the paused/running mode,
//! and the leases that keep "one model, one worker" true across replicas. The only module
//! that touches disk or a database.
//!
//! Two backends sit behind one seam ([`Backend`]): SQLite (embedded, one replica, the
//! default) and PostgreSQL (several replicas sharing it). Both run the same statements and
//! read rows the same way (`sql`); they differ in connections, clocks and schemas.
//! [`Store::open`] picks one from the configuration; nothing else knows which runs.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

mod backend;
mod error;
mod postgres;
mod sql;
mod sqlite;

pub use backend::{Backend, LeaseId, LeaseKind};
pub use error::StoreError;

use crate::config::redact_url;

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum Target {
    /// An embedded SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database several replicas share (`postgres://…`).
    Postgres(String),
}

/// Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

impl Store {
    /// Open (creating and migrating as needed) the store at `target`.
    pub async fn open(target: &Target) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = match target {
            Target::Sqlite(path) => Arc::new(sqlite::Sqlite::open(path)?),
            Target::Postgres(url) => Arc::new(postgres::Postgres::open(url).await?),
        };
        Ok(Store { backend })
    }

    /// What `stagegate check` says of the store at `target`, reached but not changed: the
    /// backend, and its schema version against this build's.
    pub async fn inspect(target: &Target) -> Result<String, StoreError> {
        let (what, at, want) = match target {
            Target::Sqlite(path) => {
                if !path.exists() {
                    return Ok(format!(
                        "sqlite {}: not there yet (stagegate run creates it)",
                        path.display()
                    ));
                }
                let (at, want) = sqlite::schema_versions(path)?;
                (format!("sqlite {}", path.display()), at, want)
            }
            Target::Postgres(url) => {
                let (at, want) = postgres::schema_versions(url).await?;
                (format!("postgres {}", redact_url(url)), at, want)
            }
        };
        match at {
            0 => Ok(format!(
                "{what}: reachable, empty (stagegate run creates the schema)"
            )),
            at if at < want => Ok(format!(
                "{what}: reachable, schema {at} of {want} (stagegate run migrates it)"
            )),
            at if at == want => Ok(format!("{what}: reachable, schema {at} (current)")),
            at => Err(StoreError::Url(format!(
                "{what}: schema {at} is newer than this build's {want}: a newer stagegate uses it"
            ))),
        }
    }

    /// An in-memory SQLite store (tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        Ok(Store {
            backend: Arc::new(sqlite::Sqlite::in_memory()?),
        })
    }

    pub async fn evaluations(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.evaluations_before(model, None, limit).await
    }

    /// Record a row unless the very same one (model, version, action, detail) is there:
    /// for what is noticed in the registry rather than done by us, which may be noticed
    /// again by every later read. Returns whether the row is new.
    pub async fn audit_once(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        self.audit_absent(model, version, action, detail, true)
            .await
    }

    /// Record a row unless the version already has one with this action, whatever its detail:
    /// for a promotion read back from the registry, whose own row a `kill -9` between the
    /// `promoted` tag and the store may have lost. Returns whether the row is new.
    pub async fn audit_unless_recorded(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        self.audit_absent(model, version, action, detail, false)
            .await
    }
}

/// One row of evaluation history.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationRow {
    pub id: i64,
    pub model: String,
    pub version: String,
    pub policy: String,
    pub policy_digest: String,
    pub trigger: String,
    pub status: String,
    pub verdict: Option<String>,
    pub action: Option<String>,
    pub gates: serde_json::Value,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// The champion the candidate was judged with. Shown on the status page; not part of the
    /// history rows the API serves (`/v1/evaluations`), so not serialised.
    #[serde(skip)]
    pub champion: Option<String>,
    /// Serving start-ups and request time (`null` when nothing was served); status page only.
    #[serde(skip)]
    pub serving: serde_json::Value,
}

/// What the store records when an evaluation finishes, built by the caller from its result.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedEvaluation {
    /// `passed`, `failed` or `error`.
    pub verdict: String,
    /// The gate results, as the history shows them.
    pub gates: serde_json::Value,
    /// The champion the candidate was judged with.
    pub champion: Option<String>,
    /// Serving start-ups and request time; `null` when nothing was served.
    pub serving: serde_json::Value,
}

impl FinishedEvaluation {
    /// The `gates` and `serving` columns as stored (JSON text; no `serving` when `null`).
    fn columns(&self) -> (String, Option<String>) {
        let serving = (!self.serving.is_null()).then(|| self.serving.to_string());
        (self.gates.to_string(), serving)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub model: String,
    pub version: Option<String>,
    pub action: String,
    pub detail: Option<String>,
}

/// A post-promotion analysis: one per promotion, its measurements so far and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisRow {
    pub id: i64,
    pub model: String,
    /// The promoted version being watched.
    pub version: String,
    /// The champion it replaced (what a rollback restores).
    pub previous: Option<String>,
    /// `alias:<name>` or `stage:<name>`.
    pub target: String,
    pub policy: String,
    /// `running`, `passed`, `failed`, `inconclusive` or `ended`.
    pub status: String,
    pub reason: Option<String>,
    /// Measurement rounds recorded.
    pub step: i64,
    /// Per metric, the judged measurements (JSON), as the runner wrote them.
    pub measurements: serde_json::Value,
    pub started_at: String,
    /// When the next round is due, unix ms by the store's clock.
    pub due_at: i64,
    pub finished_at: Option<String>,
    /// When what the outcome asks for was done (its tag, audit row, notification, rollback);
    /// `None` while it is owed.
    pub settled_at: Option<String>,
}

/// A new analysis, as the step that promoted asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnalysis {
    pub model: String,
    pub version: String,
    pub previous: Option<String>,
    pub target: String,
    pub policy: String,
    /// From now to the first round (`initial_delay`).
    pub first_in: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub evaluations: i64,
    pub passed: i64,
    pub failed: i64,
    pub error: i64,
    pub promotions: i64,
}

/// A model the store has evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub evaluations: i64,
    /// Its newest evaluation.
    pub last_id: i64,
}

/// A replica as it last announced itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplicaRow {
    pub id: String,
    pub started_at: String,
    pub last_seen: String,
    pub queue_depth: i64,
    pub in_flight: i64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parse an RFC 3339 time back to unix ms (0 if unreadable): for rows handed back to a store.
fn unix_ms(t: &str) -> i64 {
    humantime::parse_rfc3339_weak(t)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
