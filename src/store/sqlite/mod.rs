//! The embedded backend: one SQLite file (bundled, WAL, `synchronous = NORMAL`) behind one
//! mutex, for a single replica.
//!
//! Statements are short but wait on the disk and on each other, so each runs on tokio's
//! blocking pool: a slow disk never holds up webhook intake or the API on the async worker
//! threads. (`block_in_place` would spare copying the arguments, but it hands the worker's
//! core to another thread on every call, which halved webhook throughput under load.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AuditRow, Backend, EvaluationRow, FinishedEvaluation, LeaseId, LeaseKind, ModelRow, ReplicaRow,
    StoreError, Totals, now_ms, rfc3339,
};
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

    /// Run `f` on the connection on tokio's blocking pool (see the module doc).
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let done = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (statements
            // are atomic), so a poisoned lock is safe to keep using.
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(done?)
    }
}

#[async_trait]
impl Backend for Sqlite {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(move |c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    // ---- webhook deliveries -----------------------------------------------------------

    async fn record_delivery(
        &self,
        source: &str,
        id: &str,
        event: &str,
        model: &str,
    ) -> Result<bool, StoreError> {
        let source = source.to_owned();
        let id = id.to_owned();
        let event = event.to_owned();
        let model = model.to_owned();
        self.with(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO deliveries (source, id, received_at, event, model) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![source, id, now_ms(), event, model],
            )?;
            Ok(n == 1)
        }).await
    }

    async fn prune_deliveries(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms() - super::ms(retention);
        self.with(move |c| {
            c.execute(
                "DELETE FROM deliveries WHERE received_at < ?1",
                params![cutoff],
            )
        })
        .await
    }

    async fn delivery_count(&self) -> Result<i64, StoreError> {
        self.with(move |c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
            .await
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
        let model = model.to_owned();
        let version = version.to_owned();
        let policy = policy.to_owned();
        let digest = digest.to_owned();
        let trigger = trigger.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO evaluations (model, version, policy, digest, trigger, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
                params![model, version, policy, digest, trigger, now_ms()],
            )?;
            Ok(c.last_insert_rowid())
        }).await
    }

    async fn finish_evaluation(
        &self,
        id: i64,
        done: &FinishedEvaluation,
    ) -> Result<(), StoreError> {
        let (gates, serving) = done.columns();
        let (verdict, champion) = (done.verdict.clone(), done.champion.clone());
        self.with(move |c| {
            c.execute(
                "UPDATE evaluations SET status = 'done', verdict = ?2, gates = ?3, finished_at = ?4,
                 duration_ms = ?4 - started_at, champion = ?5, serving = ?6 WHERE id = ?1 AND status = 'running'",
                params![id, verdict, gates, now_ms(), champion, serving],
            )?;
            Ok(())
        }).await
    }

    async fn fail_evaluation(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE evaluations SET status = 'failed', error = ?2, finished_at = ?3,
                 duration_ms = ?3 - started_at WHERE id = ?1 AND status = 'running'",
                params![id, error, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn set_action(
        &self,
        model: &str,
        version: &str,
        verdict: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError> {
        let model = model.to_owned();
        let version = version.to_owned();
        let verdict = verdict.map(str::to_owned);
        let action = action.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE evaluations SET action = ?4
                 WHERE id = (SELECT MAX(id) FROM evaluations WHERE model = ?1 AND version = ?2)
                   AND status = 'done' AND (?3 IS NULL OR verdict = ?3)",
                params![model, version, verdict, action],
            )?;
            Ok(())
        })
        .await
    }

    async fn interrupt_running(&self, model: &str) -> Result<usize, StoreError> {
        let model = model.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE evaluations SET status = 'interrupted', finished_at = ?2
                 WHERE model = ?1 AND status = 'running'",
                params![model, now_ms()],
            )
        })
        .await
    }

    async fn evaluations_before(
        &self,
        model: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        let model = model.map(str::to_owned);
        self.with(move |c| views::evaluations_before(c, model.as_deref(), before, limit))
            .await
    }

    async fn evaluation(&self, id: i64) -> Result<Option<EvaluationRow>, StoreError> {
        self.with(move |c| {
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
        .await
    }

    async fn totals(&self) -> Result<Totals, StoreError> {
        self.with(views::totals).await
    }

    async fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        self.with(views::models).await
    }

    async fn latest_per_model(&self) -> Result<Vec<EvaluationRow>, StoreError> {
        self.with(views::latest_per_model).await
    }

    async fn evaluation_count(&self, model: &str) -> Result<i64, StoreError> {
        let model = model.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM evaluations WHERE model = ?1",
                params![model],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn latest_per_version(
        &self,
        model: &str,
        versions: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        let model = model.to_owned();
        self.with(move |c| views::latest_per_version(c, &model, versions))
            .await
    }

    // ---- audit --------------------------------------------------------------------------

    async fn audit(
        &self,
        model: &str,
        version: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let model = model.to_owned();
        let version = version.map(str::to_owned);
        let action = action.to_owned();
        let detail = detail.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit (at, model, version, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now_ms(), model, version, action, detail],
            )?;
            Ok(())
        }).await
    }

    async fn audit_absent(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
        same_detail: bool,
    ) -> Result<bool, StoreError> {
        let model = model.to_owned();
        let version = version.to_owned();
        let action = action.to_owned();
        let detail = detail.to_owned();
        self.with(move |c| {
            let added = c.execute(
                "INSERT INTO audit (at, model, version, action, detail)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (
                     SELECT 1 FROM audit WHERE model = ?2 AND version = ?3 AND action = ?4
                                          AND (?6 = 0 OR detail = ?5))",
                params![now_ms(), model, version, action, detail, same_detail],
            )?;
            Ok(added > 0)
        })
        .await
    }

    async fn last_audit_id(&self) -> Result<i64, StoreError> {
        self.with(move |c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM audit", [], |r| r.get(0)))
            .await
    }

    async fn audit_log(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let model = model.map(str::to_owned);
        self.with(move |c| {
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
        .await
    }

    // ---- the queue and re-evaluation requests --------------------------------------------

    async fn queue_push(&self, model: &str) -> Result<(), StoreError> {
        let model = model.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO queue (model, queued_at) VALUES (?1, ?2)
                 ON CONFLICT (model) DO UPDATE SET queued_at = excluded.queued_at",
                params![model, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn queue_remove(&self, model: &str, since: i64) -> Result<(), StoreError> {
        let model = model.to_owned();
        self.with(move |c| {
            c.execute(
                "DELETE FROM queue WHERE model = ?1 AND queued_at <= ?2",
                params![model, since],
            )?;
            Ok(())
        })
        .await
    }

    async fn queued(&self, before: i64) -> Result<Vec<String>, StoreError> {
        self.with(move |c| {
            let mut st =
                c.prepare("SELECT model FROM queue WHERE queued_at <= ?1 ORDER BY queued_at")?;
            let rows = st.query_map(params![before], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn request_evaluation(&self, model: &str, version: &str) -> Result<(), StoreError> {
        let model = model.to_owned();
        let version = version.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO eval_requests (model, version, requested_at) VALUES (?1, ?2, ?3)",
                params![model, version, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn requests(&self, model: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        let model = model.to_owned();
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT version, MAX(seq) FROM eval_requests WHERE model = ?1 GROUP BY version",
            )?;
            let rows = st.query_map(params![model], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    async fn requested_models(&self) -> Result<BTreeSet<String>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare("SELECT DISTINCT model FROM eval_requests")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn clear_requests(
        &self,
        model: &str,
        version: &str,
        up_to: i64,
    ) -> Result<(), StoreError> {
        let model = model.to_owned();
        let version = version.to_owned();
        self.with(move |c| {
            c.execute(
                "DELETE FROM eval_requests WHERE model = ?1 AND version = ?2 AND seq <= ?3",
                params![model, version, up_to],
            )?;
            Ok(())
        })
        .await
    }

    // ---- the cluster ----------------------------------------------------------------------

    async fn paused(&self) -> Result<bool, StoreError> {
        self.with(cluster::paused).await
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.with(move |c| cluster::set_paused(c, paused)).await
    }

    async fn claim(
        &self,
        kind: LeaseKind,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseId>, StoreError> {
        let name = name.to_owned();
        let owner = owner.to_owned();
        self.with(move |c| cluster::claim(c, kind, &name, &owner, ttl))
            .await
    }

    async fn renew(&self, lease: &LeaseId, ttl: Duration) -> Result<bool, StoreError> {
        let lease = lease.clone();
        self.with(move |c| cluster::renew(c, &lease, ttl)).await
    }

    async fn holds(&self, lease: &LeaseId, margin: Duration) -> Result<bool, StoreError> {
        let lease = lease.clone();
        self.with(move |c| cluster::holds(c, &lease, margin)).await
    }

    async fn release(&self, lease: &LeaseId) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.with(move |c| cluster::release(c, &lease)).await
    }

    async fn orphans(&self) -> Result<Vec<String>, StoreError> {
        self.with(cluster::orphans).await
    }

    async fn heartbeat(&self, replica: &ReplicaRow) -> Result<(), StoreError> {
        let replica = replica.clone();
        self.with(move |c| cluster::heartbeat(c, &replica)).await
    }

    async fn replicas(&self, within: Duration) -> Result<Vec<ReplicaRow>, StoreError> {
        self.with(move |c| cluster::replicas(c, within)).await
    }
}

#[cfg(test)]
mod tests;
