//! The shared backend: one PostgreSQL database that several replicas use at once, through a
//! pool of connections (deadpool-postgres over tokio-postgres, TLS by rustls). Its statements
//! are the ones every SQL backend shares ([`super::sql`]).
//!
//! Every time it stores is the database server's clock (`clock_timestamp()`), so replicas
//! whose clocks disagree still agree on which lease ran out and which queue entry is newer.
//! The password comes from the URL or `PGPASSWORD`, and is never in a log or an error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{IsNull, ToSql, Type};

use super::StoreError;
use super::sql::{Columns, Param, Read, Sql};

mod connect;
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
}

#[async_trait]
impl Sql for Postgres {
    fn describe(&self) -> String {
        format!("postgres {}", self.shown)
    }

    /// `{now}` as the server's clock; PostgreSQL's parameters are already `$1`.
    fn render(statement: &str) -> String {
        statement.replace("{now}", NOW)
    }

    async fn execute(
        &self,
        statement: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let st = conn
            .prepare_cached(&Self::render(statement))
            .await
            .map_err(|e| self.err(e))?;
        conn.execute(&st, &refs(&params))
            .await
            .map_err(|e| self.err(e))
    }

    async fn query<T: Send + 'static>(
        &self,
        statement: &'static str,
        params: Vec<Param>,
        read: Read<T>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn().await?;
        let st = conn
            .prepare_cached(&Self::render(statement))
            .await
            .map_err(|e| self.err(e))?;
        let rows = conn
            .query(&st, &refs(&params))
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| read(&Row { pg: self, row }))
            .collect()
    }

    /// An advisory lock on `key` for the transaction makes the second of two callers wait.
    /// The statement runs after the lock, on its own, so its snapshot sees the first one's
    /// row (a single statement's would predate the wait).
    async fn execute_alone(
        &self,
        key: String,
        statement: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(|e| self.err(e))?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&key])
            .await
            .map_err(|e| self.err(e))?;
        let n = tx
            .execute(&Self::render(statement), &refs(&params))
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(n)
    }
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Each parameter as the Rust type it holds, checked against the type PostgreSQL inferred.
impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Int(v) => v.to_sql(ty, out),
            Param::Text(v) => v.to_sql(ty, out),
            Param::Bool(v) => v.to_sql(ty, out),
            Param::OptText(v) => v.to_sql(ty, out),
            Param::OptInt(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <bool as ToSql>::accepts(ty)
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Int(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::Bool(v) => v.to_sql_checked(ty, out),
            Param::OptText(v) => v.to_sql_checked(ty, out),
            Param::OptInt(v) => v.to_sql_checked(ty, out),
        }
    }
}

struct Row<'a> {
    pg: &'a Postgres,
    row: &'a tokio_postgres::Row,
}

impl Row<'_> {
    /// One column; a type mismatch is a bug of ours, reported, never a panic.
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(&'a self, i: usize) -> Result<T, StoreError> {
        self.row.try_get(i).map_err(|e| self.pg.err(e))
    }
}

impl Columns for Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.get(i)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.get(i)
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
