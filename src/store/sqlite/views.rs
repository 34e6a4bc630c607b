//! Read-only queries behind `/status`, the API and the status page: history a page at a time,
//! totals, the models the store knows, and the newest finished evaluation of each version
//! (the points of a chart).

use rusqlite::{Connection, params};

use super::super::{EvaluationRow, ModelRow, Totals, rfc3339};

/// The columns [`row_to_evaluation`] reads, in its order.
pub(super) const EVALUATION_COLUMNS: &str =
    "id, model, version, policy, digest, trigger, status, verdict, action,
    gates, error, started_at, finished_at, duration_ms, champion, serving";

pub(super) fn row_to_evaluation(r: &rusqlite::Row) -> rusqlite::Result<EvaluationRow> {
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

/// History newest first, `limit` rows with ids below `before` (all when `None`): paging by id
/// stays exact while new evaluations arrive, unlike an offset.
pub(super) fn evaluations_before(
    c: &Connection,
    model: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<EvaluationRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {EVALUATION_COLUMNS} FROM evaluations
         WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = st.query_map(params![model, before, limit as i64], row_to_evaluation)?;
    rows.collect()
}

pub(super) fn totals(c: &Connection) -> rusqlite::Result<Totals> {
    let (evaluations, passed, failed, error) = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(verdict = 'passed'), 0), COALESCE(SUM(verdict = 'failed'), 0),
                COALESCE(SUM(verdict = 'error'), 0) FROM evaluations WHERE status = 'done'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let promotions = c.query_row(
        "SELECT COUNT(*) FROM audit WHERE action = 'promoted'",
        [],
        |r| r.get(0),
    )?;
    Ok(Totals {
        evaluations,
        passed,
        failed,
        error,
        promotions,
    })
}

pub(super) fn models(c: &Connection) -> rusqlite::Result<Vec<ModelRow>> {
    let mut st = c.prepare(
        "SELECT model, COUNT(*), MAX(id) FROM evaluations GROUP BY model ORDER BY model",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ModelRow {
            model: r.get(0)?,
            evaluations: r.get(1)?,
            last_id: r.get(2)?,
        })
    })?;
    rows.collect()
}

pub(super) fn latest_per_model(c: &Connection) -> rusqlite::Result<Vec<EvaluationRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {EVALUATION_COLUMNS} FROM evaluations
         WHERE id IN (SELECT MAX(id) FROM evaluations GROUP BY model)"
    ))?;
    let rows = st.query_map([], row_to_evaluation)?;
    rows.collect()
}

pub(super) fn latest_per_version(
    c: &Connection,
    model: &str,
    versions: usize,
) -> rusqlite::Result<Vec<EvaluationRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE id IN (
             SELECT MAX(id) FROM evaluations WHERE model = ?1 AND status = 'done'
             GROUP BY version)
         ORDER BY CAST(version AS INTEGER) DESC LIMIT ?2"
    ))?;
    let rows = st.query_map(params![model, versions as i64], row_to_evaluation)?;
    let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}
