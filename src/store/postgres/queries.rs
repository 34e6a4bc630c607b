//! PostgreSQL's answers to [`Backend`]: the same rules as SQLite's, in PostgreSQL's dialect,
//! with every time taken from the server's clock ([`NOW`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{NOW, Postgres};
use crate::store::{
    AuditRow, Backend, EvaluationRow, FinishedEvaluation, LeaseId, LeaseKind, ModelRow, ReplicaRow,
    StoreError, Totals, ms, rfc3339, unix_ms,
};

const EVALUATION_COLUMNS: &str = "id, model, version, policy, digest, trigger, status, verdict, \
     action, gates, error, started_at, finished_at, duration_ms, champion, serving";

impl Postgres {
    fn evaluation_row(&self, r: &Row) -> Result<EvaluationRow, StoreError> {
        let json = |s: Option<String>, or: serde_json::Value| {
            s.and_then(|g| serde_json::from_str(&g).ok()).unwrap_or(or)
        };
        Ok(EvaluationRow {
            id: self.get(r, 0)?,
            model: self.get(r, 1)?,
            version: self.get(r, 2)?,
            policy: self.get(r, 3)?,
            policy_digest: self.get(r, 4)?,
            trigger: self.get(r, 5)?,
            status: self.get(r, 6)?,
            verdict: self.get(r, 7)?,
            action: self.get(r, 8)?,
            gates: json(self.get(r, 9)?, serde_json::Value::Array(vec![])),
            error: self.get(r, 10)?,
            started_at: rfc3339(self.get(r, 11)?),
            finished_at: self.get::<Option<i64>>(r, 12)?.map(rfc3339),
            duration_ms: self.get(r, 13)?,
            champion: self.get(r, 14)?,
            serving: json(self.get(r, 15)?, serde_json::Value::Null),
        })
    }

    fn evaluation_rows(&self, rows: Vec<Row>) -> Result<Vec<EvaluationRow>, StoreError> {
        rows.iter().map(|r| self.evaluation_row(r)).collect()
    }

    fn strings(&self, rows: Vec<Row>) -> Result<Vec<String>, StoreError> {
        rows.iter().map(|r| self.get(r, 0)).collect()
    }

    fn lease(
        &self,
        kind: LeaseKind,
        name: &str,
        owner: &str,
        r: &Row,
    ) -> Result<LeaseId, StoreError> {
        Ok(LeaseId {
            kind,
            name: name.to_string(),
            owner: owner.to_string(),
            token: self.get(r, 0)?,
            claimed_at: self.get(r, 1)?,
        })
    }
}

#[async_trait]
impl Backend for Postgres {
    fn describe(&self) -> String {
        format!("postgres {}", self.shown)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.row("SELECT 1", &[]).await.map(drop)
    }

    async fn record_delivery(
        &self,
        source: &str,
        id: &str,
        event: &str,
        model: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO deliveries (source, id, received_at, event, model)
             VALUES ($1, $2, {NOW}, $3, $4) ON CONFLICT DO NOTHING"
        );
        Ok(self.execute(&sql, &[&source, &id, &event, &model]).await? == 1)
    }

    async fn prune_deliveries(&self, retention: Duration) -> Result<usize, StoreError> {
        let sql = format!("DELETE FROM deliveries WHERE received_at < {NOW} - $1");
        Ok(self.execute(&sql, &[&ms(retention)]).await? as usize)
    }

    async fn delivery_count(&self) -> Result<i64, StoreError> {
        match self.row("SELECT COUNT(*) FROM deliveries", &[]).await? {
            Some(r) => self.get(&r, 0),
            None => Ok(0),
        }
    }

    async fn begin_evaluation(
        &self,
        model: &str,
        version: &str,
        policy: &str,
        digest: &str,
        trigger: &str,
    ) -> Result<i64, StoreError> {
        let sql = format!(
            "INSERT INTO evaluations (model, version, policy, digest, trigger, status, started_at)
             VALUES ($1, $2, $3, $4, $5, 'running', {NOW}) RETURNING id"
        );
        let row = self
            .row(&sql, &[&model, &version, &policy, &digest, &trigger])
            .await?;
        match row {
            Some(r) => self.get(&r, 0),
            None => Err(StoreError::Task("INSERT … RETURNING gave no row".into())),
        }
    }

    async fn finish_evaluation(
        &self,
        id: i64,
        done: &FinishedEvaluation,
    ) -> Result<(), StoreError> {
        let (gates, serving) = done.columns();
        let sql = format!(
            "UPDATE evaluations SET status = 'done', verdict = $2, gates = $3, finished_at = {NOW},
             duration_ms = {NOW} - started_at, champion = $4, serving = $5 WHERE id = $1 AND status = 'running'"
        );
        self.execute(
            &sql,
            &[&id, &done.verdict, &gates, &done.champion, &serving],
        )
        .await
        .map(drop)
    }

    async fn fail_evaluation(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE evaluations SET status = 'failed', error = $2, finished_at = {NOW},
             duration_ms = {NOW} - started_at WHERE id = $1 AND status = 'running'"
        );
        self.execute(&sql, &[&id, &error]).await.map(drop)
    }

    async fn set_action(
        &self,
        model: &str,
        version: &str,
        verdict: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE evaluations SET action = $4
             WHERE id = (SELECT MAX(id) FROM evaluations WHERE model = $1 AND version = $2)
               AND status = 'done' AND ($3::text IS NULL OR verdict = $3)",
            &[&model, &version, &verdict, &action],
        )
        .await
        .map(drop)
    }

    async fn interrupt_running(&self, model: &str) -> Result<usize, StoreError> {
        let sql = format!(
            "UPDATE evaluations SET status = 'interrupted', finished_at = {NOW}
             WHERE model = $1 AND status = 'running'"
        );
        Ok(self.execute(&sql, &[&model]).await? as usize)
    }

    async fn evaluations_before(
        &self,
        model: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        let sql = format!(
            "SELECT {EVALUATION_COLUMNS} FROM evaluations
             WHERE ($1::text IS NULL OR model = $1) AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        );
        let rows = self.rows(&sql, &[&model, &before, &(limit as i64)]).await?;
        self.evaluation_rows(rows)
    }

    async fn evaluation(&self, id: i64) -> Result<Option<EvaluationRow>, StoreError> {
        let sql = format!("SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE id = $1");
        match self.row(&sql, &[&id]).await? {
            Some(r) => self.evaluation_row(&r).map(Some),
            None => Ok(None),
        }
    }

    async fn totals(&self) -> Result<Totals, StoreError> {
        let row = self
            .row(
                "SELECT COUNT(*),
                        COUNT(*) FILTER (WHERE verdict = 'passed'),
                        COUNT(*) FILTER (WHERE verdict = 'failed'),
                        COUNT(*) FILTER (WHERE verdict = 'error'),
                        (SELECT COUNT(*) FROM audit WHERE action = 'promoted')
                 FROM evaluations WHERE status = 'done'",
                &[],
            )
            .await?;
        let Some(r) = row else {
            return Ok(Totals::default());
        };
        Ok(Totals {
            evaluations: self.get(&r, 0)?,
            passed: self.get(&r, 1)?,
            failed: self.get(&r, 2)?,
            error: self.get(&r, 3)?,
            promotions: self.get(&r, 4)?,
        })
    }

    async fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        let rows = self
            .rows(
                "SELECT model, COUNT(*), MAX(id) FROM evaluations GROUP BY model ORDER BY model",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ModelRow {
                    model: self.get(r, 0)?,
                    evaluations: self.get(r, 1)?,
                    last_id: self.get(r, 2)?,
                })
            })
            .collect()
    }

    async fn latest_per_model(&self) -> Result<Vec<EvaluationRow>, StoreError> {
        let sql = format!(
            "SELECT {EVALUATION_COLUMNS} FROM evaluations
             WHERE id IN (SELECT MAX(id) FROM evaluations GROUP BY model)"
        );
        let rows = self.rows(&sql, &[]).await?;
        self.evaluation_rows(rows)
    }

    async fn evaluation_count(&self, model: &str) -> Result<i64, StoreError> {
        match self
            .row(
                "SELECT COUNT(*) FROM evaluations WHERE model = $1",
                &[&model],
            )
            .await?
        {
            Some(r) => self.get(&r, 0),
            None => Ok(0),
        }
    }

    async fn latest_per_version(
        &self,
        model: &str,
        versions: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        // MLflow's versions are numbers; anything else sorts last rather than failing a cast.
        let sql = format!(
            "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE id IN (
                 SELECT MAX(id) FROM evaluations WHERE model = $1 AND status = 'done'
                 GROUP BY version)
             ORDER BY CASE WHEN version ~ '^[0-9]{{1,18}}$' THEN version::bigint END DESC NULLS LAST
             LIMIT $2"
        );
        let rows = self.rows(&sql, &[&model, &(versions as i64)]).await?;
        let mut rows = self.evaluation_rows(rows)?;
        rows.reverse();
        Ok(rows)
    }

    async fn audit(
        &self,
        model: &str,
        version: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO audit (at, model, version, action, detail) VALUES ({NOW}, $1, $2, $3, $4)"
        );
        self.execute(&sql, &[&model, &version, &action, &detail])
            .await
            .map(drop)
    }

    async fn audit_absent(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
        same_detail: bool,
    ) -> Result<bool, StoreError> {
        // Two replicas noticing the same thing at once: an advisory lock on the row's key
        // makes the second wait. The insert is a statement of its own, after the lock, so its
        // snapshot sees the first one's row (a single statement's would predate the wait).
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2 || '/' || $3))",
            &[&model, &version, &action],
        )
        .await
        .map_err(|e| self.err(e))?;
        let sql = format!(
            "INSERT INTO audit (at, model, version, action, detail)
             SELECT {NOW}, $1, $2, $3, $4 WHERE NOT EXISTS (
                 SELECT 1 FROM audit WHERE model = $1 AND version = $2 AND action = $3
                                      AND (NOT $5 OR detail = $4))"
        );
        let n = tx
            .execute(&sql, &[&model, &version, &action, &detail, &same_detail])
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    async fn last_audit_id(&self) -> Result<i64, StoreError> {
        match self
            .row("SELECT COALESCE(MAX(id), 0) FROM audit", &[])
            .await?
        {
            Some(r) => self.get(&r, 0),
            None => Ok(0),
        }
    }

    async fn audit_log(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = self
            .rows(
                "SELECT id, at, model, version, action, detail FROM audit
                 WHERE ($1::text IS NULL OR model = $1) ORDER BY id DESC LIMIT $2",
                &[&model, &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: self.get(r, 0)?,
                    at: rfc3339(self.get(r, 1)?),
                    model: self.get(r, 2)?,
                    version: self.get(r, 3)?,
                    action: self.get(r, 4)?,
                    detail: self.get(r, 5)?,
                })
            })
            .collect()
    }

    async fn queue_push(&self, model: &str) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO queue (model, queued_at) VALUES ($1, {NOW})
             ON CONFLICT (model) DO UPDATE SET queued_at = EXCLUDED.queued_at"
        );
        self.execute(&sql, &[&model]).await.map(drop)
    }

    async fn queue_remove(&self, model: &str, since: i64) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM queue WHERE model = $1 AND queued_at <= $2",
            &[&model, &since],
        )
        .await
        .map(drop)
    }

    async fn queued(&self, before: i64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .rows(
                "SELECT model FROM queue WHERE queued_at <= $1 ORDER BY queued_at",
                &[&before],
            )
            .await?;
        self.strings(rows)
    }

    async fn request_evaluation(&self, model: &str, version: &str) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO eval_requests (model, version, requested_at) VALUES ($1, $2, {NOW})"
        );
        self.execute(&sql, &[&model, &version]).await.map(drop)
    }

    async fn requests(&self, model: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = self
            .rows(
                "SELECT version, MAX(seq) FROM eval_requests WHERE model = $1 GROUP BY version",
                &[&model],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((self.get(r, 0)?, self.get(r, 1)?)))
            .collect()
    }

    async fn requested_models(&self) -> Result<BTreeSet<String>, StoreError> {
        let rows = self
            .rows("SELECT DISTINCT model FROM eval_requests", &[])
            .await?;
        Ok(self.strings(rows)?.into_iter().collect())
    }

    async fn clear_requests(
        &self,
        model: &str,
        version: &str,
        up_to: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM eval_requests WHERE model = $1 AND version = $2 AND seq <= $3",
            &[&model, &version, &up_to],
        )
        .await
        .map(drop)
    }

    async fn paused(&self) -> Result<bool, StoreError> {
        let row = self
            .row("SELECT value FROM settings WHERE key = 'paused'", &[])
            .await?;
        Ok(match row {
            Some(r) => self.get::<String>(&r, 0)? == "true",
            None => false,
        })
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ('paused', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&paused.to_string()],
        )
        .await
        .map(drop)
    }

    async fn claim(
        &self,
        kind: LeaseKind,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseId>, StoreError> {
        // One statement: the row lock of the upsert serialises claimers, and the WHERE lets
        // only a lease that ran out (or was released) change hands.
        let sql = format!(
            "INSERT INTO leases (kind, name, owner, token, expires_at) VALUES ($1, $2, $3, 1, {NOW} + $4)
             ON CONFLICT (kind, name) DO UPDATE
                 SET owner = EXCLUDED.owner, token = leases.token + 1, expires_at = EXCLUDED.expires_at
                 WHERE leases.expires_at <= {NOW}
             RETURNING token, expires_at - $4"
        );
        let row = self
            .row(&sql, &[&kind.as_str(), &name, &owner, &ms(ttl)])
            .await?;
        row.map(|r| self.lease(kind, name, owner, &r)).transpose()
    }

    async fn renew(&self, l: &LeaseId, ttl: Duration) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE leases SET expires_at = {NOW} + $5
             WHERE kind = $1 AND name = $2 AND owner = $3 AND token = $4 AND expires_at > {NOW}"
        );
        let n = self
            .execute(
                &sql,
                &[&l.kind.as_str(), &l.name, &l.owner, &l.token, &ms(ttl)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn holds(&self, l: &LeaseId, margin: Duration) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT 1 FROM leases
             WHERE kind = $1 AND name = $2 AND owner = $3 AND token = $4 AND expires_at > {NOW} + $5"
        );
        let row = self
            .row(
                &sql,
                &[&l.kind.as_str(), &l.name, &l.owner, &l.token, &ms(margin)],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn release(&self, l: &LeaseId) -> Result<(), StoreError> {
        self.execute(
            "UPDATE leases SET expires_at = 0
             WHERE kind = $1 AND name = $2 AND owner = $3 AND token = $4",
            &[&l.kind.as_str(), &l.name, &l.owner, &l.token],
        )
        .await
        .map(drop)
    }

    async fn orphans(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT name FROM leases WHERE kind = 'model' AND expires_at > 0 AND expires_at <= {NOW}
             UNION
             SELECT DISTINCT model FROM evaluations e WHERE status = 'running' AND NOT EXISTS (
                 SELECT 1 FROM leases l
                 WHERE l.kind = 'model' AND l.name = e.model AND l.expires_at > {NOW})"
        );
        let rows = self.rows(&sql, &[]).await?;
        self.strings(rows)
    }

    async fn heartbeat(&self, r: &ReplicaRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO replicas (id, started_at, last_seen, queue_depth, in_flight)
             VALUES ($1, $2, {NOW}, $3, $4)
             ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen,
                 queue_depth = EXCLUDED.queue_depth, in_flight = EXCLUDED.in_flight"
        );
        self.execute(
            &sql,
            &[&r.id, &unix_ms(&r.started_at), &r.queue_depth, &r.in_flight],
        )
        .await?;
        // Replicas gone for a day are history, not cluster.
        let sql = format!("DELETE FROM replicas WHERE last_seen < {NOW} - 86400000");
        self.execute(&sql, &[]).await.map(drop)
    }

    async fn replicas(&self, within: Duration) -> Result<Vec<ReplicaRow>, StoreError> {
        let sql = format!(
            "SELECT id, started_at, last_seen, queue_depth, in_flight FROM replicas
             WHERE last_seen >= {NOW} - $1 ORDER BY id"
        );
        let rows = self.rows(&sql, &[&ms(within)]).await?;
        rows.iter()
            .map(|r| {
                Ok(ReplicaRow {
                    id: self.get(r, 0)?,
                    started_at: rfc3339(self.get(r, 1)?),
                    last_seen: rfc3339(self.get(r, 2)?),
                    queue_depth: self.get(r, 3)?,
                    in_flight: self.get(r, 4)?,
                })
            })
            .collect()
    }
}
