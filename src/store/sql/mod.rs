//! What the SQL backends share: every statement ([`statements`]), the mapping of result rows
//! to the store's row types, and every [`Backend`](super::Backend) operation written once
//! ([`ops`]) over the little a backend provides ([`Sql`]): render a statement in its dialect,
//! run it, hand back its rows. SQLite and PostgreSQL differ only there, and in their schemas.

mod ops;
mod statements;

use async_trait::async_trait;

use super::{
    AnalysisRow, AuditRow, EvaluationRow, ModelRow, ReplicaRow, StoreError, Totals, rfc3339,
};

/// A SQL database the store can run on.
#[async_trait]
pub(super) trait Sql: Send + Sync {
    /// Which backend this is, for `/status` and `stagegate check` (never a secret).
    fn describe(&self) -> String;

    /// `statement` in this backend's dialect: its parameters, and `{now}` as its clock.
    fn render(statement: &str) -> String;

    /// Run a statement that returns no rows; how many rows it changed.
    async fn execute(&self, statement: &'static str, params: Vec<Param>)
    -> Result<u64, StoreError>;

    /// Run a statement and read each row it returns with `read`.
    async fn query<T: Send + 'static>(
        &self,
        statement: &'static str,
        params: Vec<Param>,
        read: Read<T>,
    ) -> Result<Vec<T>, StoreError>;

    /// [`Sql::execute`], with any other caller passing the same `key` waiting until this
    /// statement is committed: two replicas noticing the same thing at once record it once.
    async fn execute_alone(
        &self,
        key: String,
        statement: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, StoreError>;
}

/// A statement parameter, owned so that it can travel to the thread that runs the statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param {
    Int(i64),
    Text(String),
    Bool(bool),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_string())
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(v.clone())
    }
}
impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Param::Bool(v)
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::OptText(v.map(str::to_string))
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::OptText(v)
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::OptInt(v)
    }
}

/// How a row of a statement's result is read.
pub(super) type Read<T> = for<'r> fn(&'r (dyn Columns + 'r)) -> Result<T, StoreError>;

/// One result row, read by column index; a column of another type is an error, not a panic.
pub(super) trait Columns {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
}

/// A row of [`statements::EVALUATIONS_BEFORE`] and its kin. JSON columns that do not parse
/// read as no gates and no serving figures: a row is shown whatever an older build wrote.
fn evaluation_row(r: &dyn Columns) -> Result<EvaluationRow, StoreError> {
    let json = |s: Option<String>, or: serde_json::Value| {
        s.and_then(|g| serde_json::from_str(&g).ok()).unwrap_or(or)
    };
    Ok(EvaluationRow {
        id: r.int(0)?,
        model: r.text(1)?,
        version: r.text(2)?,
        policy: r.text(3)?,
        policy_digest: r.text(4)?,
        trigger: r.text(5)?,
        status: r.text(6)?,
        verdict: r.opt_text(7)?,
        action: r.opt_text(8)?,
        gates: json(r.opt_text(9)?, serde_json::Value::Array(vec![])),
        error: r.opt_text(10)?,
        started_at: rfc3339(r.int(11)?),
        finished_at: r.opt_int(12)?.map(rfc3339),
        duration_ms: r.opt_int(13)?,
        champion: r.opt_text(14)?,
        serving: json(r.opt_text(15)?, serde_json::Value::Null),
    })
}

fn audit_row(r: &dyn Columns) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        id: r.int(0)?,
        at: rfc3339(r.int(1)?),
        model: r.text(2)?,
        version: r.opt_text(3)?,
        action: r.text(4)?,
        detail: r.opt_text(5)?,
    })
}

fn analysis_row(r: &dyn Columns) -> Result<AnalysisRow, StoreError> {
    Ok(AnalysisRow {
        id: r.int(0)?,
        model: r.text(1)?,
        version: r.text(2)?,
        previous: r.opt_text(3)?,
        target: r.text(4)?,
        policy: r.text(5)?,
        status: r.text(6)?,
        // An outcome without words (`passed`) is stored as ''; the API says null.
        reason: r.opt_text(7)?.filter(|s| !s.is_empty()),
        step: r.int(8)?,
        measurements: serde_json::from_str(&r.text(9)?).unwrap_or(serde_json::Value::Null),
        started_at: rfc3339(r.int(10)?),
        due_at: r.int(11)?,
        finished_at: r.opt_int(12)?.map(rfc3339),
        settled_at: r.opt_int(13)?.map(rfc3339),
    })
}

fn model_row(r: &dyn Columns) -> Result<ModelRow, StoreError> {
    Ok(ModelRow {
        model: r.text(0)?,
        evaluations: r.int(1)?,
        last_id: r.int(2)?,
    })
}

fn replica_row(r: &dyn Columns) -> Result<ReplicaRow, StoreError> {
    Ok(ReplicaRow {
        id: r.text(0)?,
        started_at: rfc3339(r.int(1)?),
        last_seen: rfc3339(r.int(2)?),
        queue_depth: r.int(3)?,
        in_flight: r.int(4)?,
    })
}

fn totals_row(r: &dyn Columns) -> Result<Totals, StoreError> {
    Ok(Totals {
        evaluations: r.int(0)?,
        passed: r.int(1)?,
        failed: r.int(2)?,
        error: r.int(3)?,
        promotions: r.int(4)?,
    })
}

fn int(r: &dyn Columns) -> Result<i64, StoreError> {
    r.int(0)
}

fn text(r: &dyn Columns) -> Result<String, StoreError> {
    r.text(0)
}
