//! The store's one error type, whichever backend answered.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("state store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A `state.url` that cannot be used; the message never contains the password.
    #[error("state.url: {0}")]
    Url(String),
    /// PostgreSQL refused or failed a statement, or the connection broke. `transient` was
    /// decided from the error when it was made (connection, serialization, shutdown).
    #[error("state store {url}: {message}")]
    Postgres {
        url: String,
        message: String,
        transient: bool,
    },
    #[error("state store: the blocking task ended abnormally: {0}")]
    Task(String),
}

impl StoreError {
    /// Worth another try: a busy or locked SQLite database, a full disk (space comes back; the
    /// write was refused whole, so nothing is half-written), a PostgreSQL that is unreachable,
    /// restarting, or asked us to retry a transaction. Anything else is not.
    pub fn is_transient(&self) -> bool {
        let code = match self {
            StoreError::Open { source, .. } | StoreError::Sql(source) => source.sqlite_error_code(),
            StoreError::Postgres { transient, .. } => return *transient,
            StoreError::Url(_) | StoreError::Task(_) => None,
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
