//! PostgreSQL's schema: numbered migrations of its own, applied in order at open, in one
//! transaction under an advisory lock so that replicas starting together take turns.

use tokio_postgres::Client;

/// Any number unique to stagegate: the advisory lock its migrations take.
const MIGRATION_LOCK: i64 = 0x5747_6761_7465;

/// Migration `i` takes the database from version `i` to `i + 1`. Times are unix ms by the
/// server's clock; ids are identities, so that history pages by id as on SQLite.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE evaluations (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
        started_at  BIGINT NOT NULL,
        finished_at BIGINT,
        duration_ms BIGINT,
        champion    TEXT,
        serving     TEXT
    );
    CREATE INDEX evaluations_by_model ON evaluations (model, id);
    CREATE INDEX evaluations_running ON evaluations (model) WHERE status = 'running';
    CREATE TABLE deliveries (
        source      TEXT NOT NULL,
        id          TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        event       TEXT,
        model       TEXT,
        PRIMARY KEY (source, id)
    );
    CREATE INDEX deliveries_by_time ON deliveries (received_at);
    CREATE TABLE audit (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at      BIGINT NOT NULL,
        model   TEXT NOT NULL,
        version TEXT,
        action  TEXT NOT NULL,
        detail  TEXT
    );
    CREATE INDEX audit_by_model ON audit (model, id);
    CREATE INDEX audit_by_action ON audit (action);
    CREATE TABLE queue (
        model     TEXT PRIMARY KEY,
        queued_at BIGINT NOT NULL
    );
    CREATE TABLE eval_requests (
        seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        model        TEXT NOT NULL,
        version      TEXT NOT NULL,
        requested_at BIGINT NOT NULL
    );
    CREATE INDEX eval_requests_by_model ON eval_requests (model, version);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE leases (
        kind       TEXT NOT NULL,
        name       TEXT NOT NULL,
        owner      TEXT NOT NULL,
        token      BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,      -- 0 = released
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE replicas (
        id          TEXT PRIMARY KEY,
        started_at  BIGINT NOT NULL,
        last_seen   BIGINT NOT NULL,
        queue_depth BIGINT NOT NULL,
        in_flight   BIGINT NOT NULL
    );
"#,
    // Post-promotion analyses: one running per model at a time.
    r#"
    CREATE TABLE analyses (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        model        TEXT NOT NULL,
        version      TEXT NOT NULL,
        previous     TEXT,
        target       TEXT NOT NULL,
        policy       TEXT NOT NULL,
        status       TEXT NOT NULL,
        reason       TEXT,
        step         BIGINT NOT NULL,
        measurements TEXT NOT NULL,
        started_at   BIGINT NOT NULL,
        due_at       BIGINT NOT NULL,
        finished_at  BIGINT,
        settled_at   BIGINT
    );
    CREATE UNIQUE INDEX analyses_one_running ON analyses (model) WHERE status = 'running';
    CREATE INDEX analyses_unsettled ON analyses (model) WHERE settled_at IS NULL;
    CREATE INDEX analyses_by_model ON analyses (model, id);
"#,
];

/// The version the database is at (0: a database stagegate never used).
pub(super) async fn current(c: &Client) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('stagegate_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = c
        .query_opt("SELECT version FROM stagegate_schema", &[])
        .await?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0)))
}

/// Bring the schema up to date; returns the version it was at (never lowered: a newer
/// build's schema is left as it is, and the caller refuses it).
pub(super) async fn migrate(c: &mut Client) -> Result<i64, tokio_postgres::Error> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS stagegate_schema (version BIGINT NOT NULL)")
        .await?;
    let at = tx
        .query_opt("SELECT version FROM stagegate_schema", &[])
        .await?
        .map_or(0, |r| r.get::<_, i64>(0));
    if at == 0 {
        tx.execute("DELETE FROM stagegate_schema", &[]).await?;
        tx.execute("INSERT INTO stagegate_schema (version) VALUES (0)", &[])
            .await?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(at.max(0) as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "UPDATE stagegate_schema SET version = $1",
            &[&((i + 1) as i64)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(at)
}
