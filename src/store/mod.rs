//! The embedded store: SQLite (bundled, WAL) holding evaluation history, webhook deliveries
//! (for de-duplication), the audit log of every action, the persisted work queue and pending
//! re-evaluation requests. The only module that touches disk.
//!
//! Calls are synchronous behind one mutex (WAL, `synchronous = NORMAL`). They are short, but
//! they wait on the disk and on each other, so the daemon makes them through
//! [`Store::call`], on tokio's blocking threads: a slow disk must never hold up webhook
//! intake or the API on the async worker threads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::evaluation::Evaluation;
use schema::migrate;

mod schema;
mod views;

pub use views::ModelRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("state store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state store: the blocking task ended abnormally: {0}")]
    Task(String),
}

impl StoreError {
    /// A busy or locked database is worth another try, and so is a full disk (space comes
    /// back; the write was refused whole, so nothing is half-written); anything else is not.
    pub fn is_transient(&self) -> bool {
        let code = match self {
            StoreError::Open { source, .. } | StoreError::Sql(source) => source.sqlite_error_code(),
            StoreError::Task(_) => None,
        };
        matches!(
            code,
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
            )
        )
    }
}

/// Cheap to clone; every clone is the same database connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
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
    /// SPEC §6 history row, so not serialised.
    #[serde(skip)]
    pub champion: Option<String>,
    /// Serving start-ups and request time (`null` when nothing was served); status page only.
    #[serde(skip)]
    pub serving: serde_json::Value,
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub evaluations: i64,
    pub passed: i64,
    pub failed: i64,
    pub error: i64,
    pub promotions: i64,
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

impl Store {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing directory surfaces as SQLite's "unable to open" below, with the path.
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        migrate(&mut conn).map_err(err)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` on this store on a blocking thread (see the module doc).
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite half-written (statements are
        // atomic), so a poisoned lock is safe to keep using.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    // ---- webhook deliveries -----------------------------------------------------------

    /// Remember a delivery of `source` by its identity (with its event and model, for the
    /// record); `false` if that source's delivery was seen before (a replay or a retry).
    pub fn record_delivery(
        &self,
        source: &str,
        id: &str,
        event: &str,
        model: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO deliveries (source, id, received_at, event, model) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![source, id, now_ms(), event, model],
            )?;
            Ok(n == 1)
        })
    }

    /// Forget deliveries older than `retention`; returns how many.
    pub fn prune_deliveries(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms() - retention.as_millis() as i64;
        self.with(|c| {
            c.execute(
                "DELETE FROM deliveries WHERE received_at < ?1",
                params![cutoff],
            )
        })
    }

    pub fn delivery_count(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
    }

    // ---- evaluations --------------------------------------------------------------------

    pub fn begin_evaluation(
        &self,
        model: &str,
        version: &str,
        policy: &str,
        digest: &str,
        trigger: &str,
    ) -> Result<i64, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO evaluations (model, version, policy, digest, trigger, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
                params![model, version, policy, digest, trigger, now_ms()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn finish_evaluation(&self, id: i64, e: &Evaluation) -> Result<(), StoreError> {
        let gates = serde_json::to_string(&e.gates).unwrap_or_else(|_| "[]".into());
        let serving = (!e.serving.is_null()).then(|| e.serving.to_string());
        self.with(|c| {
            c.execute(
                "UPDATE evaluations SET status = 'done', verdict = ?2, gates = ?3, finished_at = ?4,
                 duration_ms = ?4 - started_at, champion = ?5, serving = ?6 WHERE id = ?1",
                params![id, e.verdict.as_str(), gates, now_ms(), e.champion, serving],
            )?;
            Ok(())
        })
    }

    pub fn fail_evaluation(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE evaluations SET status = 'failed', error = ?2, finished_at = ?3,
                 duration_ms = ?3 - started_at WHERE id = ?1",
                params![id, error, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Record the action taken on a version on its latest evaluation, if that evaluation is
    /// the one whose verdict (`verdict`, as recorded in MLflow) was acted on. An evaluation
    /// cut short by a crash after its tags were written leaves an `interrupted` row: the
    /// action then stays in the audit log only, never on an older row with another verdict.
    pub fn set_action(
        &self,
        model: &str,
        version: &str,
        verdict: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE evaluations SET action = ?4
                 WHERE id = (SELECT MAX(id) FROM evaluations WHERE model = ?1 AND version = ?2)
                   AND status = 'done' AND (?3 IS NULL OR verdict = ?3)",
                params![model, version, verdict, action],
            )?;
            Ok(())
        })
    }

    /// At start-up: evaluations a crash left running are marked interrupted; returns their
    /// models, to be evaluated again.
    pub fn interrupt_running(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT DISTINCT model FROM evaluations WHERE status = 'running'")?;
            let models = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            c.execute("UPDATE evaluations SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'", params![now_ms()])?;
            Ok(models)
        })
    }

    pub fn evaluations(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.evaluations_before(model, None, limit)
    }

    pub fn evaluation(&self, id: i64) -> Result<Option<EvaluationRow>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE id = ?1"),
                params![id],
                row_to_evaluation,
            )
            .optional()
        })
    }

    pub fn totals(&self) -> Result<Totals, StoreError> {
        self.with(|c| {
            let (evaluations, passed, failed, error) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(verdict = 'passed'), 0), COALESCE(SUM(verdict = 'failed'), 0),
                        COALESCE(SUM(verdict = 'error'), 0) FROM evaluations WHERE status = 'done'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let promotions = c.query_row("SELECT COUNT(*) FROM audit WHERE action = 'promoted'", [], |r| r.get(0))?;
            Ok(Totals { evaluations, passed, failed, error, promotions })
        })
    }

    // ---- audit --------------------------------------------------------------------------

    pub fn audit(
        &self,
        model: &str,
        version: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (at, model, version, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now_ms(), model, version, action, detail],
            )?;
            Ok(())
        })
    }

    /// Record a row unless the very same one (model, version, action, detail) is there:
    /// for what is noticed in the registry rather than done by us, which may be noticed
    /// again by every later read. Returns whether the row is new.
    pub fn audit_once(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        self.audit_absent(model, version, action, detail, true)
    }

    /// Record a row unless the version already has one with this action, whatever its detail:
    /// for a promotion read back from the registry, whose own row a `kill -9` between the
    /// `promoted` tag and the store may have lost. Returns whether the row is new.
    pub fn audit_unless_recorded(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        self.audit_absent(model, version, action, detail, false)
    }

    fn audit_absent(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
        same_detail: bool,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let added = c.execute(
                "INSERT INTO audit (at, model, version, action, detail)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (
                     SELECT 1 FROM audit WHERE model = ?2 AND version = ?3 AND action = ?4
                                          AND (?6 = 0 OR detail = ?5))",
                params![now_ms(), model, version, action, detail, same_detail],
            )?;
            Ok(added > 0)
        })
    }

    /// The newest audit row's id (0 with none): the status page redraws when it grows.
    pub fn last_audit_id(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM audit", [], |r| r.get(0)))
    }

    pub fn audit_log(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, at, model, version, action, detail FROM audit
                 WHERE (?1 IS NULL OR model = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![model, limit as i64], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    at: rfc3339(r.get(1)?),
                    model: r.get(2)?,
                    version: r.get(3)?,
                    action: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    // ---- the persisted queue and re-evaluation requests ----------------------------------

    pub fn queue_push(&self, model: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO queue (model, queued_at) VALUES (?1, ?2)",
                params![model, now_ms()],
            )?;
            Ok(())
        })
    }

    pub fn queue_remove(&self, model: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM queue WHERE model = ?1", params![model])?;
            Ok(())
        })
    }

    pub fn queued(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT model FROM queue ORDER BY queued_at")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Ask for `version` to be evaluated (again, even if it has a current verdict).
    pub fn request_evaluation(&self, model: &str, version: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO eval_requests (model, version, requested_at) VALUES (?1, ?2, ?3)",
                params![model, version, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Pending requests of `model`: version → the newest request's sequence number.
    pub fn requests(&self, model: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT version, MAX(seq) FROM eval_requests WHERE model = ?1 GROUP BY version",
            )?;
            let rows = st.query_map(params![model], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Models with pending requests.
    pub fn requested_models(&self) -> Result<BTreeSet<String>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT DISTINCT model FROM eval_requests")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Consume the requests for `version` up to sequence number `up_to` (those an evaluation
    /// that began after them has served); later ones stay pending.
    pub fn clear_requests(&self, model: &str, version: &str, up_to: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM eval_requests WHERE model = ?1 AND version = ?2 AND seq <= ?3",
                params![model, version, up_to],
            )?;
            Ok(())
        })
    }
}

/// The columns [`row_to_evaluation`] reads, in its order.
const EVALUATION_COLUMNS: &str =
    "id, model, version, policy, digest, trigger, status, verdict, action,
    gates, error, started_at, finished_at, duration_ms, champion, serving";

fn row_to_evaluation(r: &rusqlite::Row) -> rusqlite::Result<EvaluationRow> {
    let gates: Option<String> = r.get(9)?;
    let serving: Option<String> = r.get(15)?;
    Ok(EvaluationRow {
        id: r.get(0)?,
        model: r.get(1)?,
        version: r.get(2)?,
        policy: r.get(3)?,
        policy_digest: r.get(4)?,
        trigger: r.get(5)?,
        status: r.get(6)?,
        verdict: r.get(7)?,
        action: r.get(8)?,
        gates: gates
            .and_then(|g| serde_json::from_str(&g).ok())
            .unwrap_or(serde_json::Value::Array(vec![])),
        error: r.get(10)?,
        started_at: rfc3339(r.get(11)?),
        finished_at: r.get::<_, Option<i64>>(12)?.map(rfc3339),
        duration_ms: r.get(13)?,
        champion: r.get(14)?,
        serving: serving
            .and_then(|g| serde_json::from_str(&g).ok())
            .unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests;
