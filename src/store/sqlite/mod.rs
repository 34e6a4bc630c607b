//! The embedded backend: one SQLite file (bundled, WAL, `synchronous = NORMAL`) behind one
//! mutex, for a single replica. Its statements are the ones every SQL backend shares
//! ([`super::sql`]); its clock is SQLite's.
//!
//! Statements are short but wait on the disk and on each other, so each runs on tokio's
//! blocking pool: a slow disk never holds up webhook intake or the API on the async worker
//! threads. (`block_in_place` would spare copying the arguments, but it hands the worker's
//! core to another thread on every call, which halved webhook throughput under load.)

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use rusqlite::types::{ToSql, ToSqlOutput};

use super::StoreError;
use super::sql::{Columns, Param, Read, Sql};
use schema::migrate;

mod schema;

/// SQLite's clock in unix ms, as an SQL expression (one value for the whole statement).
const NOW: &str = "CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER)";

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
        conn.execute("UPDATE leases SET expires_at = 1 WHERE expires_at > 1", [])
            .map_err(err)?;
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
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (statements
            // are atomic), so a poisoned lock is safe to keep using.
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[async_trait]
impl Sql for Sqlite {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path)
    }

    /// `{now}` as SQLite's clock, `$1` as `?1`.
    fn render(statement: &str) -> String {
        let statement = statement.replace("{now}", NOW);
        let mut out = String::with_capacity(statement.len());
        let mut chars = statement.chars().peekable();
        while let Some(c) = chars.next() {
            let parameter = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
            out.push(if parameter { '?' } else { c });
        }
        out
    }

    async fn execute(
        &self,
        statement: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(&Self::render(statement))?;
            Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
        })
        .await
    }

    async fn query<T: Send + 'static>(
        &self,
        statement: &'static str,
        params: Vec<Param>,
        read: Read<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(&Self::render(statement))?;
            let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(read(&Row(row))?);
            }
            Ok(out)
        })
        .await
    }

    /// One connection runs one statement at a time: nobody can come in between.
    async fn execute_alone(
        &self,
        _key: String,
        statement: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, StoreError> {
        self.execute(statement, params).await
    }
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Int(v) => v.to_sql(),
            Param::Text(v) => v.to_sql(),
            Param::Bool(v) => v.to_sql(),
            Param::OptText(v) => v.to_sql(),
            Param::OptInt(v) => v.to_sql(),
        }
    }
}

struct Row<'a>(&'a rusqlite::Row<'a>);

impl Columns for Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.0.get(i)?)
    }
}

#[cfg(test)]
mod tests;
