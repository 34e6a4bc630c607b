//! The shared backend: one PostgreSQL database that several replicas use at once, through a
//! pool of connections (deadpool-postgres over tokio-postgres, TLS by rustls).
//!
//! Every time it stores is the database server's clock (`clock_timestamp()`), so replicas
//! whose clocks disagree still agree on which lease ran out and which queue entry is newer.
//! The password comes from the URL or `PGPASSWORD`, and is never in a log or an error.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::StoreError;

mod connect;
mod queries;
mod schema;

/// The schema version the database at `url` is at, and this build's; nothing is changed.
pub(super) async fn schema_versions(url: &str) -> Result<(i64, i64), StoreError> {
    let me = Postgres::connect(url)?;
    let conn = me.conn().await?;
    let at = schema::current(&conn).await.map_err(|e| me.err(e))?;
    Ok((at, schema::MIGRATIONS.len() as i64))
}

/// The database server's clock in unix ms, as an SQL expression.
const NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint";
/// Connections per replica: the workers, the HTTP handlers and the background tasks share
/// them; a statement holds one only while it runs.
const POOL_SIZE: usize = 16;
/// How long a statement waits for a connection, or for one to be made.
const POOL_WAIT: Duration = Duration::from_secs(5);

pub struct Postgres {
    pool: Pool,
    /// The URL without its password, for messages.
    shown: Arc<str>,
}

impl Postgres {
    /// Connect, check the server answers, and bring the schema up to date (several replicas
    /// starting at once take turns: the migration runs under an advisory lock).
    pub async fn open(url: &str) -> Result<Postgres, StoreError> {
        let me = Postgres::connect(url)?;
        let mut conn = me.conn().await?;
        let at = schema::migrate(&mut conn).await.map_err(|e| me.err(e))?;
        let want = schema::MIGRATIONS.len() as i64;
        if at > want {
            return Err(StoreError::Url(format!(
                "{}: schema {at} is newer than this build's {want}: a newer stagegate uses this database",
                me.shown
            )));
        }
        Ok(me)
    }

    /// A pool for `url`; nothing is connected yet.
    fn connect(url: &str) -> Result<Postgres, StoreError> {
        let target = connect::parse(url)?;
        let manager = Manager::from_config(
            target.config,
            target.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Url(e.to_string()))?;
        Ok(Postgres {
            pool,
            shown: target.shown.into(),
        })
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        use deadpool_postgres::PoolError;
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => self.err(e),
            other => StoreError::Postgres {
                url: self.shown.to_string(),
                message: format!("no connection: {other}"),
                transient: true,
            },
        })
    }

    fn err(&self, e: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.shown.to_string(),
            message: describe(&e),
            transient: is_transient(&e),
        }
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let st = conn.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        conn.execute(&st, params).await.map_err(|e| self.err(e))
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        let st = conn.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        conn.query(&st, params).await.map_err(|e| self.err(e))
    }

    async fn row(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let conn = self.conn().await?;
        let st = conn.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        conn.query_opt(&st, params).await.map_err(|e| self.err(e))
    }

    /// One column of a row; a type mismatch is a bug of ours, reported, never a panic.
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        &self,
        row: &'a Row,
        i: usize,
    ) -> Result<T, StoreError> {
        row.try_get(i).map_err(|e| self.err(e))
    }
}

/// The database's own words (`ERROR: …` with its SQLSTATE), else the client's.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

/// A broken or refused connection, a server shutting down or starting, too many connections,
/// a serialization failure or a deadlock: the same statement can succeed later.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match e.code() {
        // No SQLSTATE: the connection failed or broke — unless TLS refused the server's
        // certificate, which no retry changes.
        None => !tls_refused(e),
        Some(code) => {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::QUERY_CANCELED,
            ]
            .contains(code)
                || code.code().starts_with("08")
        }
    }
}

/// Whether a rustls error (a certificate refused, a handshake that cannot agree) is behind `e`.
fn tls_refused(e: &tokio_postgres::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if inner.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = inner.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        src = inner.source();
    }
    false
}
