//! Store tests: each on a fresh in-memory or temporary database.

use super::schema::MIGRATIONS;
use super::*;
use crate::evaluation::Verdict;

#[test]
fn deliveries_are_deduplicated_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let s = Store::open(&path).unwrap();
        assert!(s.record_delivery("mlflow", "d1", "e", "m").unwrap());
        assert!(!s.record_delivery("mlflow", "d1", "e", "m").unwrap());
    }
    let s = Store::open(&path).unwrap();
    assert!(
        !s.record_delivery("mlflow", "d1", "e", "m").unwrap(),
        "dedupe must survive a restart"
    );
    assert_eq!(s.prune_deliveries(Duration::from_secs(3600)).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(s.prune_deliveries(Duration::ZERO).unwrap(), 1);
}

#[test]
fn one_sources_delivery_never_hides_anothers() {
    let s = Store::in_memory().unwrap();
    assert!(s.record_delivery("mlflow", "d1", "e", "m").unwrap());
    assert!(s.record_delivery("databricks", "d1", "E", "m").unwrap());
    assert!(!s.record_delivery("databricks", "d1", "E", "m").unwrap());
    assert_eq!(s.delivery_count().unwrap(), 2);
}

#[test]
fn deliveries_recorded_before_sources_existed_stay_mlflows() {
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
    let s = Store::open(&path).unwrap();
    assert!(!s.record_delivery("mlflow", "old", "e", "m").unwrap());
    assert!(s.record_delivery("databricks", "old", "e", "m").unwrap());
}

#[test]
fn interrupted_evaluations_are_marked_and_their_models_returned() {
    let s = Store::in_memory().unwrap();
    let id = s.begin_evaluation("m", "1", "p", "d", "poll").unwrap();
    let done = s.begin_evaluation("n", "1", "p", "d", "poll").unwrap();
    s.finish_evaluation(
        done,
        &Evaluation::for_test("n", "1", Verdict::Passed, vec![]),
    )
    .unwrap();
    assert_eq!(s.interrupt_running().unwrap(), vec!["m".to_string()]);
    assert_eq!(s.evaluation(id).unwrap().unwrap().status, "interrupted");
    assert!(s.interrupt_running().unwrap().is_empty());
    let t = s.totals().unwrap();
    assert_eq!((t.evaluations, t.passed), (1, 1));
}

#[test]
fn queue_and_requests_round_trip() {
    let s = Store::in_memory().unwrap();
    s.queue_push("a").unwrap();
    s.queue_push("b").unwrap();
    s.queue_push("a").unwrap();
    s.queue_remove("b").unwrap();
    assert_eq!(s.queued().unwrap(), vec!["a".to_string()]);
    s.request_evaluation("a", "3").unwrap();
    let seen = s.requests("a").unwrap();
    assert_eq!(seen.keys().collect::<Vec<_>>(), vec!["3"]);
    // A request made after an evaluation began outlives that evaluation's clearing.
    s.request_evaluation("a", "3").unwrap();
    s.clear_requests("a", "3", seen["3"]).unwrap();
    let left = s.requests("a").unwrap();
    assert!(left["3"] > seen["3"], "the later request is still pending");
    s.clear_requests("a", "3", left["3"]).unwrap();
    assert!(s.requests("a").unwrap().is_empty());
    // Numbers are never reused, even once the table is empty.
    s.request_evaluation("a", "3").unwrap();
    assert!(s.requests("a").unwrap()["3"] > left["3"]);
}

#[test]
fn pending_requests_survive_the_schema_migration() {
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
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.requests("m").unwrap().keys().collect::<Vec<_>>(),
        vec!["2"]
    );
}

#[test]
fn an_action_is_recorded_only_on_the_evaluation_it_was_taken_on() {
    let s = Store::in_memory().unwrap();
    let failed = s.begin_evaluation("m", "1", "p", "d", "poll").unwrap();
    s.finish_evaluation(
        failed,
        &Evaluation::for_test("m", "1", Verdict::Failed, vec![]),
    )
    .unwrap();
    // The re-evaluation wrote `passed` to MLflow, then the process was killed.
    s.begin_evaluation("m", "1", "p", "d", "webhook").unwrap();
    s.interrupt_running().unwrap();
    s.set_action("m", "1", Some("passed"), "promoted").unwrap();
    let rows = s.evaluations(Some("m"), 10).unwrap();
    assert!(rows.iter().all(|r| r.action.is_none()), "{rows:?}");
    let done = s.begin_evaluation("m", "1", "p", "d", "poll").unwrap();
    s.finish_evaluation(
        done,
        &Evaluation::for_test("m", "1", Verdict::Passed, vec![]),
    )
    .unwrap();
    s.set_action("m", "1", Some("passed"), "promoted").unwrap();
    assert_eq!(
        s.evaluation(done).unwrap().unwrap().action.as_deref(),
        Some("promoted")
    );
}

#[test]
fn migrations_are_versioned() {
    let s = Store::in_memory().unwrap();
    let v: i64 = s
        .with(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .unwrap();
    assert_eq!(v, MIGRATIONS.len() as i64);
}

#[test]
fn a_noticed_row_is_audited_once_and_the_newest_id_grows() {
    let s = Store::in_memory().unwrap();
    assert_eq!(s.last_audit_id().unwrap(), 0);
    let note = "2026-12-02T10:00:00Z: rolled back to v1";
    assert!(s.audit_once("m", "2", "rollback", note).unwrap());
    assert!(
        !s.audit_once("m", "2", "rollback", note).unwrap(),
        "seen again"
    );
    let first = s.last_audit_id().unwrap();
    assert!(first > 0);
    // A later rollback of the same version (another note) and another model are new rows.
    let later = "2026-12-03T10:00:00Z: rolled back to v1";
    assert!(s.audit_once("m", "2", "rollback", later).unwrap());
    assert!(s.audit_once("n", "2", "rollback", note).unwrap());
    assert!(s.last_audit_id().unwrap() > first);
    let log = s.audit_log(Some("m"), 10).unwrap();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|r| r.action == "rollback"));
}

#[test]
fn a_promotion_read_back_is_recorded_only_when_its_row_is_missing() {
    let s = Store::in_memory().unwrap();
    s.audit("m", Some("1"), "promoted", "policy p").unwrap();
    assert!(
        !s.audit_unless_recorded("m", "1", "promoted", "read back")
            .unwrap()
    );
    assert!(
        s.audit_unless_recorded("m", "2", "promoted", "read back")
            .unwrap()
    );
    assert!(
        !s.audit_unless_recorded("m", "2", "promoted", "read back")
            .unwrap()
    );
    assert_eq!(s.totals().unwrap().promotions, 2);
}
