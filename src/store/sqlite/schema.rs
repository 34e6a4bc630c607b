//! The store's schema: numbered migrations, applied in order at open.

use rusqlite::Connection;

/// Versioned schema: migration `i` takes the database from `user_version = i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE evaluations (
        id          INTEGER PRIMARY KEY,
        model       TEXT NOT NULL,
        version     TEXT NOT NULL,
        policy      TEXT NOT NULL,
        digest      TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        status      TEXT NOT NULL,       -- running | done | interrupted | failed
        verdict     TEXT,
        action      TEXT,
        gates       TEXT,                -- JSON array of gate results
        error       TEXT,
        started_at  INTEGER NOT NULL,    -- unix ms
        finished_at INTEGER,
        duration_ms INTEGER
    );
    CREATE INDEX evaluations_by_model ON evaluations (model, id);
    CREATE TABLE deliveries (
        id          TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        event       TEXT,
        model       TEXT
    );
    CREATE INDEX deliveries_by_time ON deliveries (received_at);
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        model   TEXT NOT NULL,
        version TEXT,
        action  TEXT NOT NULL,
        detail  TEXT
    );
    CREATE INDEX audit_by_model ON audit (model, id);
    CREATE TABLE queue (
        model     TEXT PRIMARY KEY,
        queued_at INTEGER NOT NULL
    );
    CREATE TABLE requests (
        model        TEXT NOT NULL,
        version      TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        PRIMARY KEY (model, version)
    );
"#,
    // Requests get a sequence number, so that an evaluation consumes only the requests made
    // before it began (AUTOINCREMENT never reuses a number, even after deletes).
    r#"
    CREATE TABLE eval_requests (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        model        TEXT NOT NULL,
        version      TEXT NOT NULL,
        requested_at INTEGER NOT NULL
    );
    CREATE INDEX eval_requests_by_model ON eval_requests (model, version);
    INSERT INTO eval_requests (model, version, requested_at)
        SELECT model, version, requested_at FROM requests ORDER BY requested_at;
    DROP TABLE requests;
"#,
    // The status page shows what an evaluation compared against and what serving cost: the
    // champion it was judged with and the serving figures (JSON), kept beside the gates.
    r#"
    ALTER TABLE evaluations ADD COLUMN champion TEXT;
    ALTER TABLE evaluations ADD COLUMN serving TEXT;
"#,
    // Deliveries come from more than one sender: each is unique within its source (an MLflow
    // delivery id, a hash of a Databricks event), so one source's id never hides another's.
    r#"
    CREATE TABLE deliveries_by_source (
        source      TEXT NOT NULL,
        id          TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        event       TEXT,
        model       TEXT,
        PRIMARY KEY (source, id)
    );
    INSERT INTO deliveries_by_source (source, id, received_at, event, model)
        SELECT 'mlflow', id, received_at, event, model FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_by_source RENAME TO deliveries;
    CREATE INDEX deliveries_by_time ON deliveries (received_at);
"#,
    // The cluster's shared state (the same tables as PostgreSQL's): the paused/running mode,
    // leases with fencing tokens, replica heartbeats; and an index for finding evaluations a
    // dead holder left running.
    r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE leases (
        kind       TEXT NOT NULL,     -- model | singleton
        name       TEXT NOT NULL,
        owner      TEXT NOT NULL,
        token      INTEGER NOT NULL,  -- grows with every claim
        expires_at INTEGER NOT NULL,  -- unix ms; 0 = released
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE replicas (
        id          TEXT PRIMARY KEY,
        started_at  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        queue_depth INTEGER NOT NULL,
        in_flight   INTEGER NOT NULL
    );
    CREATE INDEX evaluations_running ON evaluations (model) WHERE status = 'running';
"#,
    // Post-promotion analyses: one running per model at a time.
    r#"
    CREATE TABLE analyses (
        id           INTEGER PRIMARY KEY,
        model        TEXT NOT NULL,
        version      TEXT NOT NULL,
        previous     TEXT,
        target       TEXT NOT NULL,     -- alias:<name> | stage:<name>
        policy       TEXT NOT NULL,
        status       TEXT NOT NULL,     -- running | passed | failed | inconclusive | ended
        reason       TEXT,
        step         INTEGER NOT NULL,  -- rounds recorded
        measurements TEXT NOT NULL,     -- JSON
        started_at   INTEGER NOT NULL,  -- unix ms
        due_at       INTEGER NOT NULL,
        finished_at  INTEGER,
        settled_at   INTEGER            -- its tag, audit row and rollback done (unix ms)
    );
    CREATE UNIQUE INDEX analyses_one_running ON analyses (model) WHERE status = 'running';
    CREATE INDEX analyses_unsettled ON analyses (model) WHERE settled_at IS NULL;
    CREATE INDEX analyses_by_model ON analyses (model, id);
"#,
];

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
