//! SQLite's own tests: its file survives a reopen, its old schemas migrate, and a restart
//! frees the leases its previous run held. What every backend must do is in
//! tests/suite/store_contract.rs, run on SQLite and PostgreSQL alike.

use super::schema::MIGRATIONS;
use super::*;
use crate::store::{Backend, LeaseKind};

#[tokio::test]
async fn deliveries_are_deduplicated_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let s = Sqlite::open(&path).unwrap();
        assert!(s.record_delivery("mlflow", "d1", "e", "m").await.unwrap());
        assert!(!s.record_delivery("mlflow", "d1", "e", "m").await.unwrap());
    }
    let s = Sqlite::open(&path).unwrap();
    assert!(
        !s.record_delivery("mlflow", "d1", "e", "m").await.unwrap(),
        "dedupe must survive a restart"
    );
}

#[tokio::test]
async fn deliveries_recorded_before_sources_existed_stay_mlflows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..3] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.execute(
            "INSERT INTO deliveries (id, received_at, event, model) VALUES ('old', 1, 'e', 'm')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = Sqlite::open(&path).unwrap();
    assert!(!s.record_delivery("mlflow", "old", "e", "m").await.unwrap());
    assert!(
        s.record_delivery("databricks", "old", "e", "m")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn pending_requests_survive_the_schema_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[0]).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.execute(
            "INSERT INTO requests (model, version, requested_at) VALUES ('m', '2', 1)",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = Sqlite::open(&path).unwrap();
    assert_eq!(
        s.requests("m").await.unwrap().keys().collect::<Vec<_>>(),
        vec!["2"]
    );
}

#[tokio::test]
async fn migrations_are_versioned() {
    let s = Sqlite::in_memory().unwrap();
    let v: i64 = s
        .with(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(v, MIGRATIONS.len() as i64);
}

/// One process owns an SQLite file: at reopen, what the previous run held (a `kill -9`) is
/// dead at once, and its models are orphans to redo, not blocked for a lease period.
#[tokio::test]
async fn a_restart_frees_the_previous_runs_leases_and_finds_its_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let ttl = Duration::from_secs(3600);
    {
        let s = Sqlite::open(&path).unwrap();
        let held = s
            .claim(LeaseKind::Model, "m", "old-run", ttl)
            .await
            .unwrap();
        assert!(held.is_some());
        s.begin_evaluation("m", "1", "p", "d", "poll")
            .await
            .unwrap();
        assert!(s.orphans().await.unwrap().is_empty(), "held and alive");
    }
    let s = Sqlite::open(&path).unwrap();
    assert_eq!(s.orphans().await.unwrap(), vec!["m".to_string()]);
    let again = s
        .claim(LeaseKind::Model, "m", "new-run", ttl)
        .await
        .unwrap();
    assert_eq!(again.map(|l| l.token), Some(2));
}
