//! The cluster tables on SQLite: the paused/running mode, leases and replica heartbeats. With
//! one replica they rarely contend, but they follow the same rules as PostgreSQL's, so the
//! daemon runs one code path whatever the backend.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::super::{LeaseId, LeaseKind, ReplicaRow, ms, now_ms, rfc3339};

pub(super) fn paused(c: &Connection) -> rusqlite::Result<bool> {
    let v: Option<String> = c
        .query_row("SELECT value FROM settings WHERE key = 'paused'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(v.as_deref() == Some("true"))
}

pub(super) fn set_paused(c: &Connection, paused: bool) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO settings (key, value) VALUES ('paused', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![paused.to_string()],
    )?;
    Ok(())
}

/// A free lease is one that ran out (`expires_at <= now`) or was released (0).
pub(super) fn claim(
    c: &Connection,
    kind: LeaseKind,
    name: &str,
    owner: &str,
    ttl: Duration,
) -> rusqlite::Result<Option<LeaseId>> {
    let now = now_ms();
    let token: Option<i64> = c
        .query_row(
            "INSERT INTO leases (kind, name, owner, token, expires_at) VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (kind, name) DO UPDATE
                 SET owner = excluded.owner, token = leases.token + 1, expires_at = excluded.expires_at
                 WHERE leases.expires_at <= ?5
             RETURNING token",
            params![kind.as_str(), name, owner, now + ms(ttl), now],
            |r| r.get(0),
        )
        .optional()?;
    Ok(token.map(|token| LeaseId {
        kind,
        name: name.to_string(),
        owner: owner.to_string(),
        token,
        claimed_at: now,
    }))
}

pub(super) fn renew(c: &Connection, l: &LeaseId, ttl: Duration) -> rusqlite::Result<bool> {
    let now = now_ms();
    let n = c.execute(
        "UPDATE leases SET expires_at = ?5
         WHERE kind = ?1 AND name = ?2 AND owner = ?3 AND token = ?4 AND expires_at > ?6",
        params![
            l.kind.as_str(),
            l.name,
            l.owner,
            l.token,
            now + ms(ttl),
            now
        ],
    )?;
    Ok(n == 1)
}

pub(super) fn holds(c: &Connection, l: &LeaseId, margin: Duration) -> rusqlite::Result<bool> {
    let found: Option<i64> = c
        .query_row(
            "SELECT 1 FROM leases
             WHERE kind = ?1 AND name = ?2 AND owner = ?3 AND token = ?4 AND expires_at > ?5",
            params![
                l.kind.as_str(),
                l.name,
                l.owner,
                l.token,
                now_ms() + ms(margin)
            ],
            |r| r.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}

pub(super) fn release(c: &Connection, l: &LeaseId) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE leases SET expires_at = 0
         WHERE kind = ?1 AND name = ?2 AND owner = ?3 AND token = ?4",
        params![l.kind.as_str(), l.name, l.owner, l.token],
    )?;
    Ok(())
}

/// At open: every lease a previous run held is dead (see `Sqlite::open`).
pub(super) fn expire_all(c: &Connection) -> rusqlite::Result<()> {
    c.execute("UPDATE leases SET expires_at = 1 WHERE expires_at > 1", [])?;
    Ok(())
}

pub(super) fn orphans(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare(
        "SELECT name FROM leases WHERE kind = 'model' AND expires_at > 0 AND expires_at <= ?1
         UNION
         SELECT DISTINCT model FROM evaluations e WHERE status = 'running' AND NOT EXISTS (
             SELECT 1 FROM leases l WHERE l.kind = 'model' AND l.name = e.model AND l.expires_at > ?1)",
    )?;
    let rows = st.query_map(params![now_ms()], |r| r.get(0))?;
    rows.collect()
}

pub(super) fn heartbeat(c: &Connection, r: &ReplicaRow) -> rusqlite::Result<()> {
    let now = now_ms();
    c.execute(
        "INSERT INTO replicas (id, started_at, last_seen, queue_depth, in_flight)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen,
             queue_depth = excluded.queue_depth, in_flight = excluded.in_flight",
        params![
            r.id,
            super::super::unix_ms(&r.started_at),
            now,
            r.queue_depth,
            r.in_flight
        ],
    )?;
    // Replicas gone for a day are history, not cluster.
    c.execute(
        "DELETE FROM replicas WHERE last_seen < ?1",
        params![now - 86_400_000],
    )?;
    Ok(())
}

pub(super) fn replicas(c: &Connection, within: Duration) -> rusqlite::Result<Vec<ReplicaRow>> {
    let mut st = c.prepare(
        "SELECT id, started_at, last_seen, queue_depth, in_flight FROM replicas
         WHERE last_seen >= ?1 ORDER BY id",
    )?;
    let rows = st.query_map(params![now_ms() - ms(within)], |r| {
        Ok(ReplicaRow {
            id: r.get(0)?,
            started_at: rfc3339(r.get(1)?),
            last_seen: rfc3339(r.get(2)?),
            queue_depth: r.get(3)?,
            in_flight: r.get(4)?,
        })
    })?;
    rows.collect()
}
