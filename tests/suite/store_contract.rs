//! What every store backend must do, run on SQLite (a temporary file) and on PostgreSQL (a
//! throwaway cluster, a fresh database per case): de-duplication, history, the audit log, the
//! shared queue and requests, the cluster's mode, leases with fencing tokens, and heartbeats.
//! Two stores opened on one PostgreSQL database play two replicas.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::postgres::PgCluster;
use stagegate::store::{FinishedEvaluation, LeaseKind, NewAnalysis, Store, Target};
use stagegate::verdict::Verdict;

/// How long a case waits for the store's clock to pass a lease's expiry (or a record's time):
/// the leases here last a few hundred milliseconds.
const BOUND: Duration = Duration::from_secs(10);

type Case = fn(Store, Option<Store>) -> futures::future::BoxFuture<'static, ()>;

/// Every case, by name. The second store, when there is one, is another replica's view of
/// the same database (PostgreSQL only: SQLite has one process).
const CASES: &[(&str, Case)] = &[
    ("deliveries", |s, _| Box::pin(deliveries(s))),
    ("history", |s, _| Box::pin(history(s))),
    ("version_order", |s, _| Box::pin(version_order(s))),
    ("actions", |s, _| Box::pin(actions(s))),
    ("audit", |s, _| Box::pin(audit(s))),
    ("queue_and_requests", |s, _| Box::pin(queue_and_requests(s))),
    ("mode", |s, o| Box::pin(mode(s, o))),
    ("leases", |s, o| Box::pin(leases(s, o))),
    ("orphans", |s, _| Box::pin(orphans(s))),
    ("replicas", |s, _| Box::pin(replicas(s))),
    ("analyses", |s, o| Box::pin(analyses(s, o))),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_store_contract() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Sqlite(dir.path().join("s.db"));
        let store = Store::open(&target).await.unwrap();
        eprintln!("case {name}");
        case(store, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_store_contract() {
    let pg = PgCluster::start();
    for (name, case) in CASES {
        let target = Target::Postgres(pg.create_database(&format!("case_{name}")));
        let store = Store::open(&target).await.unwrap();
        let other = Store::open(&target).await.unwrap();
        eprintln!("case {name}");
        case(store, Some(other)).await;
    }
}

/// Replicas starting together migrate one at a time; the schema ends current once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let pg = PgCluster::start();
    let target = Target::Postgres(pg.create_database("together"));
    let opens = (0..4).map(|_| Store::open(&target));
    for store in futures::future::join_all(opens).await {
        store.expect("every replica opens the store");
    }
    let said = Store::inspect(&target).await.unwrap();
    assert!(said.ends_with("(current)"), "{said}");
    assert_eq!(
        pg.psql("together", "SELECT COUNT(*) FROM stagegate_schema")
            .trim(),
        "1"
    );
}

/// A finished evaluation with no gates.
fn eval(verdict: Verdict) -> FinishedEvaluation {
    FinishedEvaluation {
        verdict: verdict.as_str().into(),
        gates: serde_json::json!([]),
        champion: None,
        serving: serde_json::Value::Null,
    }
}

async fn deliveries(s: Store) {
    assert!(s.record_delivery("mlflow", "d1", "e", "m").await.unwrap());
    assert!(
        !s.record_delivery("mlflow", "d1", "e", "m").await.unwrap(),
        "a replay"
    );
    assert!(
        s.record_delivery("databricks", "d1", "E", "m")
            .await
            .unwrap(),
        "another source"
    );
    assert_eq!(s.delivery_count().await.unwrap(), 2);
    assert_eq!(
        s.prune_deliveries(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    // With no retention, every delivery received before the store's clock now is pruned:
    // both, once that clock has moved past them (it counts milliseconds).
    let pruned = AtomicUsize::new(0);
    let drained = common::eventually_async(BOUND, || async {
        let n = s.prune_deliveries(Duration::ZERO).await.unwrap();
        pruned.fetch_add(n, Ordering::SeqCst) + n >= 2
    })
    .await;
    let pruned = pruned.into_inner();
    assert!(drained, "pruned {pruned} of 2 deliveries");
    assert_eq!(pruned, 2);
    assert_eq!(s.delivery_count().await.unwrap(), 0);
}

async fn history(s: Store) {
    let running = s
        .begin_evaluation("m", "1", "p", "d", "poll")
        .await
        .unwrap();
    let done = s
        .begin_evaluation("n", "1", "p", "d", "poll")
        .await
        .unwrap();
    s.finish_evaluation(done, &eval(Verdict::Passed))
        .await
        .unwrap();
    let failed = s
        .begin_evaluation("n", "2", "p", "d", "poll")
        .await
        .unwrap();
    s.fail_evaluation(failed, "boom").await.unwrap();
    assert_eq!(s.interrupt_running("m").await.unwrap(), 1);
    assert_eq!(s.interrupt_running("m").await.unwrap(), 0);
    let row = s.evaluation(running).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.model.as_str()),
        ("interrupted", "m")
    );
    // Its replica wakes up late and finishes: the row another replica closed stays closed.
    s.finish_evaluation(running, &eval(Verdict::Passed))
        .await
        .unwrap();
    s.fail_evaluation(running, "fenced").await.unwrap();
    let row = s.evaluation(running).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.verdict), ("interrupted", None));
    assert_eq!(
        s.evaluation(failed)
            .await
            .unwrap()
            .unwrap()
            .error
            .as_deref(),
        Some("boom")
    );
    assert!(s.evaluation(999_999).await.unwrap().is_none());
    let t = s.totals().await.unwrap();
    assert_eq!((t.evaluations, t.passed, t.failed), (1, 1, 0));
    let all = s.evaluations(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![failed, done, running]
    );
    let page = s.evaluations_before(None, Some(failed), 1).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![done]);
    assert_eq!(s.evaluation_count("n").await.unwrap(), 2);
    let models: Vec<_> = s
        .models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.model)
        .collect();
    assert_eq!(models, vec!["m", "n"]);
    assert_eq!(s.latest_per_model().await.unwrap().len(), 2);
}

/// The charts' points: each version's newest finished evaluation, oldest version first.
/// Versions sort as whole numbers; anything else (MLflow makes none) sorts before them, in
/// the order it was evaluated, and never fails the query.
async fn version_order(s: Store) {
    let huge = "123456789012345678901234567890";
    for v in ["10", "x", "9", "2", huge, "y", "1", "2"] {
        let id = s.begin_evaluation("c", v, "p", "d", "poll").await.unwrap();
        s.finish_evaluation(id, &eval(Verdict::Passed))
            .await
            .unwrap();
    }
    // Running and failed evaluations are no points.
    s.begin_evaluation("c", "11", "p", "d", "poll")
        .await
        .unwrap();
    let failed = s
        .begin_evaluation("c", "12", "p", "d", "poll")
        .await
        .unwrap();
    s.fail_evaluation(failed, "boom").await.unwrap();
    let versions = |rows: Vec<stagegate::store::EvaluationRow>| {
        rows.into_iter().map(|r| r.version).collect::<Vec<_>>()
    };
    assert_eq!(
        versions(s.latest_per_version("c", 3).await.unwrap()),
        ["2", "9", "10"]
    );
    assert_eq!(
        versions(s.latest_per_version("c", 10).await.unwrap()),
        ["x", huge, "y", "1", "2", "9", "10"]
    );
    // The newest evaluation of a version evaluated twice.
    let twice = s.latest_per_version("c", 10).await.unwrap();
    let two = twice.iter().find(|r| r.version == "2").unwrap();
    let all = s.evaluations(Some("c"), 20).await.unwrap();
    let newest_of_two = all.iter().find(|r| r.version == "2").unwrap().id;
    assert_eq!(two.id, newest_of_two);
}

async fn actions(s: Store) {
    let failed = s
        .begin_evaluation("m", "1", "p", "d", "poll")
        .await
        .unwrap();
    s.finish_evaluation(failed, &eval(Verdict::Failed))
        .await
        .unwrap();
    // The re-evaluation wrote `passed` to MLflow, then its replica died.
    s.begin_evaluation("m", "1", "p", "d", "webhook")
        .await
        .unwrap();
    s.interrupt_running("m").await.unwrap();
    s.set_action("m", "1", Some("passed"), "promoted")
        .await
        .unwrap();
    let rows = s.evaluations(Some("m"), 10).await.unwrap();
    assert!(rows.iter().all(|r| r.action.is_none()), "{rows:?}");
    let done = s
        .begin_evaluation("m", "1", "p", "d", "poll")
        .await
        .unwrap();
    s.finish_evaluation(done, &eval(Verdict::Passed))
        .await
        .unwrap();
    s.set_action("m", "1", Some("passed"), "promoted")
        .await
        .unwrap();
    let row = s.evaluation(done).await.unwrap().unwrap();
    assert_eq!(row.action.as_deref(), Some("promoted"));
}

async fn audit(s: Store) {
    assert_eq!(s.last_audit_id().await.unwrap(), 0);
    let note = "2026-12-02T10:00:00Z: rolled back to v1";
    assert!(s.audit_once("m", "2", "rollback", note).await.unwrap());
    assert!(
        !s.audit_once("m", "2", "rollback", note).await.unwrap(),
        "seen again"
    );
    let first = s.last_audit_id().await.unwrap();
    assert!(first > 0);
    assert!(
        s.audit_once("m", "2", "rollback", "a later one")
            .await
            .unwrap()
    );
    s.audit("m", Some("1"), "promoted", "policy p")
        .await
        .unwrap();
    assert!(
        !s.audit_unless_recorded("m", "1", "promoted", "read back")
            .await
            .unwrap()
    );
    assert!(
        s.audit_unless_recorded("m", "3", "promoted", "read back")
            .await
            .unwrap()
    );
    assert!(s.last_audit_id().await.unwrap() > first);
    let log = s.audit_log(Some("m"), 10).await.unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(s.totals().await.unwrap().promotions, 2);
}

async fn queue_and_requests(s: Store) {
    s.queue_push("a").await.unwrap();
    s.queue_push("b").await.unwrap();
    let far = i64::MAX;
    assert_eq!(s.queued(far).await.unwrap(), vec!["a", "b"]);
    // A reconcile that began before a push does not consume it.
    s.queue_remove("b", 0).await.unwrap();
    assert_eq!(s.queued(far).await.unwrap(), vec!["a", "b"]);
    s.queue_remove("b", far).await.unwrap();
    assert_eq!(s.queued(far).await.unwrap(), vec!["a"]);
    assert!(
        s.queued(0).await.unwrap().is_empty(),
        "nothing queued before 1970"
    );
    s.request_evaluation("a", "3").await.unwrap();
    let seen = s.requests("a").await.unwrap();
    assert_eq!(seen.keys().collect::<Vec<_>>(), vec!["3"]);
    s.request_evaluation("a", "3").await.unwrap();
    s.clear_requests("a", "3", seen["3"]).await.unwrap();
    let left = s.requests("a").await.unwrap();
    assert!(left["3"] > seen["3"], "the later request is still pending");
    assert_eq!(
        s.requested_models()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["a"]
    );
    s.clear_requests("a", "3", left["3"]).await.unwrap();
    assert!(s.requests("a").await.unwrap().is_empty());
    s.request_evaluation("a", "3").await.unwrap();
    assert!(
        s.requests("a").await.unwrap()["3"] > left["3"],
        "numbers are never reused"
    );
}

async fn mode(s: Store, other: Option<Store>) {
    let other = other.unwrap_or_else(|| s.clone());
    assert!(!other.paused().await.unwrap());
    s.set_paused(true).await.unwrap();
    assert!(
        other.paused().await.unwrap(),
        "a pause on one replica holds all"
    );
    other.set_paused(false).await.unwrap();
    assert!(!s.paused().await.unwrap());
}

async fn leases(s: Store, other: Option<Store>) {
    let other = other.unwrap_or_else(|| s.clone());
    let long = Duration::from_secs(60);
    let a = s
        .claim(LeaseKind::Model, "m", "a", long)
        .await
        .unwrap()
        .expect("free");
    assert!(
        other
            .claim(LeaseKind::Model, "m", "b", long)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(
        other
            .claim(LeaseKind::Singleton, "m", "b", long)
            .await
            .unwrap()
            .is_some(),
        "another kind"
    );
    assert!(s.holds(&a, Duration::from_secs(1)).await.unwrap());
    assert!(
        !s.holds(&a, Duration::from_secs(120)).await.unwrap(),
        "not that much time left"
    );
    assert!(s.renew(&a, long).await.unwrap());
    s.release(&a).await.unwrap();
    assert!(!s.holds(&a, Duration::ZERO).await.unwrap());
    assert!(
        !s.renew(&a, long).await.unwrap(),
        "a released lease is not renewed"
    );
    let b = other
        .claim(LeaseKind::Model, "m", "b", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("released");
    assert!(b.token > a.token, "every claim a larger token");
    // b runs out (its replica froze); c takes over; b's token is stale everywhere.
    let ran_out = common::eventually_async(BOUND, || async {
        !other.holds(&b, Duration::ZERO).await.unwrap()
    })
    .await;
    assert!(ran_out, "a 300 ms lease still held after {BOUND:?}");
    let c = s
        .claim(LeaseKind::Model, "m", "c", long)
        .await
        .unwrap()
        .expect("ran out");
    assert!(c.token > b.token);
    assert!(
        !other.renew(&b, long).await.unwrap(),
        "the frozen holder cannot renew"
    );
    other.release(&b).await.unwrap();
    assert!(
        s.holds(&c, Duration::from_secs(1)).await.unwrap(),
        "a stale release frees nothing"
    );
}

async fn orphans(s: Store) {
    let short = Duration::from_millis(200);
    let dead = s
        .claim(LeaseKind::Model, "dead", "x", short)
        .await
        .unwrap()
        .unwrap();
    let done = s
        .claim(LeaseKind::Model, "done", "x", short)
        .await
        .unwrap()
        .unwrap();
    s.release(&done).await.unwrap();
    let alive = s
        .claim(LeaseKind::Model, "alive", "y", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    s.begin_evaluation("alive", "1", "p", "d", "poll")
        .await
        .unwrap();
    s.begin_evaluation("lost", "1", "p", "d", "poll")
        .await
        .unwrap();
    // `dead` becomes an orphan when its lease runs out, by the store's clock.
    let expired = common::eventually_async(BOUND, || async {
        !s.holds(&dead, Duration::ZERO).await.unwrap()
    })
    .await;
    assert!(expired, "a 200 ms lease still held after {BOUND:?}");
    let mut found = s.orphans().await.unwrap();
    found.sort();
    assert_eq!(
        found,
        vec!["dead", "lost"],
        "ran out unreleased, or running with no holder"
    );
    let _ = alive;
}

async fn replicas(s: Store) {
    let me = stagegate::store::ReplicaRow {
        id: "r1".into(),
        started_at: "2026-12-02T10:00:00Z".into(),
        last_seen: String::new(),
        queue_depth: 3,
        in_flight: 1,
    };
    s.heartbeat(&me).await.unwrap();
    s.heartbeat(&me).await.unwrap();
    let seen = s.replicas(Duration::from_secs(60)).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].id.as_str(), seen[0].queue_depth, seen[0].in_flight),
        ("r1", 3, 1)
    );
    assert_eq!(seen[0].started_at, "2026-12-02T10:00:00.000Z");
}

/// `stagegate check` reaches the store and says where its schema stands, changing nothing;
/// a database it cannot reach, or one a newer build migrated, is exit 2 with the reason.
#[test]
fn check_reports_the_store_and_its_schema_without_changing_it() {
    let pg = PgCluster::start();
    let url = pg.create_database("checked");
    let config = |url: &str| {
        format!(
            "[state]\nurl = \"{url}\"\n\n[[policies]]\nname = \"p\"\nmodels = [\"nothing-*\"]\n\
             candidate = {{ stage = \"Staging\" }}\npromote = {{ stage = \"Production\" }}\n"
        )
    };
    let w = common::Workdir::new(&config(&url));
    let r = w.run_at(&common::mlflow_uri(), &["check"]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("reachable, empty (stagegate run creates the schema)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        pg.psql("checked", "SELECT to_regclass('leases') IS NULL")
            .trim(),
        "t",
        "check created nothing"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(Store::open(&Target::Postgres(url.clone())))
        .unwrap();
    let r = w.run_at(&common::mlflow_uri(), &["check"]);
    r.expect_code(0);
    assert!(r.stdout.contains("schema 2 (current)"), "{}", r.stdout);

    pg.psql("checked", "UPDATE stagegate_schema SET version = 99");
    let r = w.run_at(&common::mlflow_uri(), &["check"]);
    r.expect_code(2);
    assert!(r.stderr.contains("newer than this build's"), "{}", r.stderr);

    let gone = format!(
        "postgres://stagegate:hunter2@127.0.0.1:{}/checked",
        pg.port()
    );
    pg.stop();
    let w = common::Workdir::new(&config(&gone));
    let r = w.run_at(&common::mlflow_uri(), &["check"]);
    r.expect_code(2);
    assert!(r.stderr.contains("stagegate:***@127.0.0.1"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
}

/// TLS where the URL asks for it: the server's certificate is verified against the CA the URL
/// names (`sslrootcert`); without it, an unknown certificate is refused, never trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_and_verified_when_the_url_asks() {
    let pg = PgCluster::start();
    let ca = pg.enable_tls();
    let plain = pg.create_database("tls");
    let url = |params: &str| format!("{plain}?{params}");

    let store = Store::open(&Target::Postgres(url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))))
    .await
    .expect("a verified TLS connection");
    store.ping().await.unwrap();
    let encrypted = pg.psql(
        "tls",
        "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.application_name = 'stagegate'",
    );
    assert_ne!(encrypted.trim(), "0", "the pool's connections use TLS");

    let refused = Store::open(&Target::Postgres(url("sslmode=require")))
        .await
        .err()
        .expect("a certificate no root vouches for is refused");
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "{refused}"
    );
    assert!(
        !refused.is_transient(),
        "no retry makes a certificate trusted"
    );
    Store::open(&Target::Postgres(url("sslmode=disable")))
        .await
        .expect("TLS off when the URL says so");
}

/// The password comes from the URL or from `PGPASSWORD`, and the server checks it; a wrong
/// one is refused by name at once (no wait for a database that will never accept it), and no
/// output ever shows a password.
#[test]
fn a_password_from_pgpassword_or_the_url_is_checked_and_never_shown() {
    const PASSWORD: &str = "Sg-s3cret-pw";
    const WRONG: &str = "Sg-wr0ng-pw";
    let pg = PgCluster::start();
    pg.create_database("secured");
    let bare = pg.create_password_user("sgapp", PASSWORD, "secured");
    let with_password = bare.replacen("sgapp@", &format!("sgapp:{PASSWORD}@"), 1);
    let config = |url: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n\n[state]\nurl = \"{url}\"\n\n[[policies]]\n\
             name = \"p\"\nmodels = [\"nothing-*\"]\ncandidate = {{ stage = \"Staging\" }}\n\
             promote = {{ stage = \"Production\" }}\n",
            common::daemon::free_port()
        )
    };
    let stagegate = |url: &str, args: &[&str], password: Option<&str>| {
        let w = common::Workdir::new(&config(url));
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"));
        c.args(args)
            .arg("--config")
            .arg(w.config())
            .env("MLFLOW_TRACKING_URI", common::mlflow_uri())
            .env_remove("PGPASSWORD");
        if let Some(p) = password {
            c.env("PGPASSWORD", p);
        }
        common::Run::of(c)
    };
    let never_shown = |r: &common::Run| {
        for secret in [PASSWORD, WRONG] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{secret} shown:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
    };

    let r = stagegate(&bare, &["check"], Some(PASSWORD));
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("store   postgres postgres://sgapp@127.0.0.1"),
        "{}",
        r.stdout
    );
    never_shown(&r);

    let r = stagegate(&with_password, &["check"], None);
    r.expect_code(0);
    assert!(
        r.stdout.contains("postgres://sgapp:***@127.0.0.1"),
        "{}",
        r.stdout
    );
    never_shown(&r);

    for (url, password) in [(bare.as_str(), Some(WRONG)), (bare.as_str(), None)] {
        let r = stagegate(url, &["check"], password);
        r.expect_code(2);
        assert!(r.stderr.contains("password"), "{}", r.stderr);
        never_shown(&r);
    }
    // The daemon too: a refused password is no outage to wait out; it exits 2 with the reason.
    let r = stagegate(&bare, &["run"], Some(WRONG));
    r.expect_code(2);
    assert!(
        r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("cannot be reached yet"), "{}", r.stderr);
    never_shown(&r);
}

/// One running analysis per model; a round is recorded once and an analysis ends once, even
/// when two replicas try at the same time; what a restart resumes is what is running.
async fn analyses(s: Store, other: Option<Store>) {
    let other = other.unwrap_or_else(|| s.clone());
    let new = |version: &str| NewAnalysis {
        model: "m".into(),
        version: version.into(),
        previous: Some("1".into()),
        target: "alias:champion".into(),
        policy: "p".into(),
        first_in: Duration::from_secs(60),
    };
    let id = s
        .begin_analysis(&new("2"))
        .await
        .unwrap()
        .expect("the first one starts");
    assert_eq!(
        other.begin_analysis(&new("3")).await.unwrap(),
        None,
        "one running per model"
    );
    let a = s.analysis(id).await.unwrap().unwrap();
    assert_eq!(
        (a.status.as_str(), a.step, a.previous.as_deref()),
        ("running", 0, Some("1"))
    );
    assert!(a.due_at > 0);

    // Two replicas record round 0: one of them does.
    let (x, y) = tokio::join!(
        s.record_round(id, 0, r#"{"errors":[0.1]}"#, Duration::from_secs(5)),
        other.record_round(id, 0, r#"{"errors":[0.2]}"#, Duration::from_secs(5))
    );
    assert!(x.unwrap() ^ y.unwrap(), "exactly one records a round");
    let a = other.analysis(id).await.unwrap().unwrap();
    assert_eq!(a.step, 1);
    assert!(a.measurements["errors"].is_array(), "{}", a.measurements);
    assert_eq!(other.running_analyses().await.unwrap().len(), 1);

    // Two replicas end it: one outcome.
    let (x, y) = tokio::join!(
        s.finish_analysis(id, "failed", "errors 0.2 > max 0.01"),
        other.finish_analysis(id, "passed", "")
    );
    assert!(x.unwrap() ^ y.unwrap(), "exactly one ends it");
    assert!(
        !s.record_round(id, 1, "{}", Duration::ZERO).await.unwrap(),
        "an ended analysis takes no round"
    );
    let a = s.analysis(id).await.unwrap().unwrap();
    assert!(a.finished_at.is_some() && a.status != "running", "{a:?}");
    assert!(s.running_analyses().await.unwrap().is_empty());

    // Its outcome is owed until settled, once.
    assert_eq!(s.analyses_due().await.unwrap(), vec!["m".to_string()]);
    let (x, y) = tokio::join!(s.settle_analysis(id), other.settle_analysis(id));
    assert!(x.unwrap() ^ y.unwrap(), "exactly one settles it");
    assert!(s.analysis(id).await.unwrap().unwrap().settled_at.is_some());
    assert!(s.analyses_due().await.unwrap().is_empty());

    // The next promotion's analysis can start now; history is newest first.
    let next = other
        .begin_analysis(&new("3"))
        .await
        .unwrap()
        .expect("starts once the first ended");
    let all = s.analyses(Some("m"), 10).await.unwrap();
    assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), vec![next, id]);
    assert!(s.analyses(Some("other"), 10).await.unwrap().is_empty());
}
