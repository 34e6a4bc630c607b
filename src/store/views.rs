//! Read-only queries behind the status page: history a page at a time, the models the store
//! knows, and the newest finished evaluation of each version (the points of a chart).

use rusqlite::params;
use serde::Serialize;

use super::{EVALUATION_COLUMNS, EvaluationRow, Store, StoreError, row_to_evaluation};

/// A model the store has evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub evaluations: i64,
    /// Its newest evaluation.
    pub last_id: i64,
}

impl Store {
    /// History newest first, `limit` rows with ids below `before` (all when `None`): paging
    /// by id stays exact while new evaluations arrive, unlike an offset.
    pub fn evaluations_before(
        &self,
        model: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations
                 WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = st.query_map(params![model, before, limit as i64], row_to_evaluation)?;
            rows.collect()
        })
    }

    /// Every model with evaluations, by name.
    pub fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        self.with(|c| {
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
        })
    }

    /// Each model's newest evaluation.
    pub fn latest_per_model(&self) -> Result<Vec<EvaluationRow>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations
                 WHERE id IN (SELECT MAX(id) FROM evaluations GROUP BY model)"
            ))?;
            let rows = st.query_map([], row_to_evaluation)?;
            rows.collect()
        })
    }

    /// How many evaluations `model` has (0: the store does not know it).
    pub fn evaluation_count(&self, model: &str) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM evaluations WHERE model = ?1",
                params![model],
                |r| r.get(0),
            )
        })
    }

    /// The newest finished evaluation of each of `model`'s newest `versions` versions, oldest
    /// version first: one point per version on the status page's charts.
    pub fn latest_per_version(
        &self,
        model: &str,
        versions: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.with(|c| {
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
        })
    }
}
