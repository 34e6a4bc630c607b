//! The embedded backend: one SQLite file (bundled, WAL, `synchronous = NORMAL`) behind one
//! mutex, for a single replica.
//!
//! Statements are short but wait on the disk and on each other, so each runs under
//! [`tokio::task::block_in_place`]: the worker thread hands its other tasks to its peers
//! first, and a slow disk never holds up webhook intake or the API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AuditRow, Backend, EvaluationRow, LeaseId, LeaseKind, ModelRow, ReplicaRow, StoreError, Totals,
    now_ms, rfc3339,
};
use crate::evaluation::Evaluation;
use schema::migrate;

mod cluster;
mod schema;
mod views;

/// The schema version of the file at `path`, and this build's; the file is opened read-only.
pub(super) fn schema_versions(path: &Path) -> Result<(i64, i64), StoreError> {
    let err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(err)?;
    let at: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    Ok((at, schema::MIGRATIONS.len() as i64))
}

pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    path: String,
}

impl Sqlite {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
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
        // One process owns an SQLite store: leases left by its previous run (a crash) are
        // its own and dead. They are made to run out, not released, so that their models
        // count as orphans and are redone at once.
        cluster::expire_all(&conn).map_err(err)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            path: path.display().to_string(),
        })
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Result<Sqlite, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            path: ":memory:".into(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let run = || {
            // A panic while holding the lock cannot leave SQLite half-written (statements
            // are atomic), so a poisoned lock is safe to keep using.
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        };
        // `block_in_place` needs the multi-threaded runtime (the daemon's); a current-thread
        // runtime (unit tests) or no runtime runs the statement as it is.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        Ok(if multi {
            tokio::task::block_in_place(run)?
        } else {
            run()?
        })
    }
}

#[async_trait]
impl Backend for Sqlite {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    // ---- webhook deliveries -----------------------------------------------------------

    async fn record_delivery(
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

    async fn prune_deliveries(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms() - super::ms(retention);
        self.with(|c| {
            c.execute(
                "DELETE FROM deliveries WHERE received_at < ?1",
                params![cutoff],
            )
        })
    }

    async fn delivery_count(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
    }

    // ---- evaluations --------------------------------------------------------------------

    async fn begin_evaluation(
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

    async fn finish_evaluation(&self, id: i64, e: &Evaluation) -> Result<(), StoreError> {
        let gates = serde_json::to_string(&e.gates).unwrap_or_else(|_| "[]".into());
        let serving = (!e.serving.is_null()).then(|| e.serving.to_string());
        self.with(|c| {
            c.execute(
                "UPDATE evaluations SET status = 'done', verdict = ?2, gates = ?3, finished_at = ?4,
                 duration_ms = ?4 - started_at, champion = ?5, serving = ?6 WHERE id = ?1 AND status = 'running'",
                params![id, e.verdict.as_str(), gates, now_ms(), e.champion, serving],
            )?;
            Ok(())
        })
    }

    async fn fail_evaluation(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE evaluations SET status = 'failed', error = ?2, finished_at = ?3,
                 duration_ms = ?3 - started_at WHERE id = ?1 AND status = 'running'",
                params![id, error, now_ms()],
            )?;
            Ok(())
        })
    }

    async fn set_action(
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

    async fn interrupt_running(&self, model: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE evaluations SET status = 'interrupted', finished_at = ?2
                 WHERE model = ?1 AND status = 'running'",
                params![model, now_ms()],
            )
        })
    }

    async fn evaluations_before(
        &self,
        model: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.with(|c| views::evaluations_before(c, model, before, limit))
    }

    async fn evaluation(&self, id: i64) -> Result<Option<EvaluationRow>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {} FROM evaluations WHERE id = ?1",
                    views::EVALUATION_COLUMNS
                ),
                params![id],
                views::row_to_evaluation,
            )
            .optional()
        })
    }

    async fn totals(&self) -> Result<Totals, StoreError> {
        self.with(views::totals)
    }

    async fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        self.with(views::models)
    }

    async fn latest_per_model(&self) -> Result<Vec<EvaluationRow>, StoreError> {
        self.with(views::latest_per_model)
    }

    async fn evaluation_count(&self, model: &str) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM evaluations WHERE model = ?1",
                params![model],
                |r| r.get(0),
            )
        })
    }

    async fn latest_per_version(
        &self,
        model: &str,
        versions: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.with(|c| views::latest_per_version(c, model, versions))
    }

    // ---- audit --------------------------------------------------------------------------

    async fn audit(
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

    async fn audit_absent(
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

    async fn last_audit_id(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM audit", [], |r| r.get(0)))
    }

    async fn audit_log(
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

    // ---- the queue and re-evaluation requests --------------------------------------------

    async fn queue_push(&self, model: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO queue (model, queued_at) VALUES (?1, ?2)
                 ON CONFLICT (model) DO UPDATE SET queued_at = excluded.queued_at",
                params![model, now_ms()],
            )?;
            Ok(())
        })
    }

    async fn queue_remove(&self, model: &str, since: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM queue WHERE model = ?1 AND queued_at <= ?2",
                params![model, since],
            )?;
            Ok(())
        })
    }

    async fn queued(&self, before: i64) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT model FROM queue WHERE queued_at <= ?1 ORDER BY queued_at")?;
            let rows = st.query_map(params![before], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn request_evaluation(&self, model: &str, version: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO eval_requests (model, version, requested_at) VALUES (?1, ?2, ?3)",
                params![model, version, now_ms()],
            )?;
            Ok(())
        })
    }

    async fn requests(&self, model: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT version, MAX(seq) FROM eval_requests WHERE model = ?1 GROUP BY version",
            )?;
            let rows = st.query_map(params![model], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    async fn requested_models(&self) -> Result<BTreeSet<String>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT DISTINCT model FROM eval_requests")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn clear_requests(
        &self,
        model: &str,
        version: &str,
        up_to: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM eval_requests WHERE model = ?1 AND version = ?2 AND seq <= ?3",
                params![model, version, up_to],
            )?;
            Ok(())
        })
    }

    // ---- the cluster ----------------------------------------------------------------------

    async fn paused(&self) -> Result<bool, StoreError> {
        self.with(cluster::paused)
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.with(|c| cluster::set_paused(c, paused))
    }

    async fn claim(
        &self,
        kind: LeaseKind,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseId>, StoreError> {
        self.with(|c| cluster::claim(c, kind, name, owner, ttl))
    }

    async fn renew(&self, lease: &LeaseId, ttl: Duration) -> Result<bool, StoreError> {
        self.with(|c| cluster::renew(c, lease, ttl))
    }

    async fn holds(&self, lease: &LeaseId, margin: Duration) -> Result<bool, StoreError> {
        self.with(|c| cluster::holds(c, lease, margin))
    }

    async fn release(&self, lease: &LeaseId) -> Result<(), StoreError> {
        self.with(|c| cluster::release(c, lease))
    }

    async fn orphans(&self) -> Result<Vec<String>, StoreError> {
        self.with(cluster::orphans)
    }

    async fn heartbeat(&self, replica: &ReplicaRow) -> Result<(), StoreError> {
        self.with(|c| cluster::heartbeat(c, replica))
    }

    async fn replicas(&self, within: Duration) -> Result<Vec<ReplicaRow>, StoreError> {
        self.with(|c| cluster::replicas(c, within))
    }
}

#[cfg(test)]
mod tests;
