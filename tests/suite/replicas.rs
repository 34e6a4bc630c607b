//! Several `stagegate run` replicas sharing one PostgreSQL store, against the real MLflow server
//! and real trained models: webhooks sent to every replica, a replica killed or frozen in the
//! middle of a gate, the database going away, a pause made on one replica. Each test has its
//! own throwaway PostgreSQL cluster (tests/suite/common/postgres.rs) and reads the outcome from the
//! shared tables with `psql` and from the registry: exactly one promotion per good candidate,
//! one evaluation per change, never two replicas judging one model at once.
//!
//! Leases are short (2–3 s) so that takeovers happen within a test; no test asserts on time,
//! only waits (generously) for conditions.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::{SECRET, now_unix};
use common::replicas::{Replicas, body, candidate, promoted, registry};
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
/// Only the start-up poll runs: webhooks (or a takeover) must do the work.
const YEARLY: &str = "0 0 0 1 1 *";

/// A command gate that takes `seconds`: long enough to kill or freeze its replica mid-gate.
fn slow_gate(seconds: u32) -> String {
    format!(
        r#"
  [[policies.gates]]
  name = "slow-suite"
  type = "command"
  run = ["sh", "-c", "sleep {seconds}"]
  timeout = "2m"
"#
    )
}

/// A signed MLflow `model_version created` event body for `model` v`version`.
fn created_event(model: &str, version: &str) -> String {
    format!(
        r#"{{"entity":"model_version","action":"created","timestamp":"x","data":{{"name":"{model}","version":"{version}","source":"s","run_id":null}}}}"#
    )
}

/// Whether every running replica has nothing queued and nothing in flight.
fn idle(r: &Replicas, alive: &[usize]) -> bool {
    alive.iter().all(|&i| {
        let q = &r.d(i).status()["queue"];
        q["depth"] == json!(0) && q["in_flight"] == json!(0)
    })
}

/// The id of `model`'s evaluation now `running` (exactly one must be).
fn running_evaluation(r: &Replicas, model: &str) -> i64 {
    let rows = r.sql(&format!(
        "SELECT id FROM evaluations WHERE model = '{model}' AND status = 'running'"
    ));
    rows.parse()
        .unwrap_or_else(|_| panic!("one running evaluation of {model}, got {rows:?}"))
}

/// Replica `i`'s `/status` `poll` section.
fn poll(r: &Replicas, i: usize) -> Value {
    r.d(i).status()["poll"].clone()
}

/// The replica named as the holder of the cluster's poll lease.
fn poll_owner(r: &Replicas) -> String {
    r.sql("SELECT owner FROM leases WHERE kind = 'singleton' AND name = 'poll'")
}

fn status_of(r: &Replicas, id: i64) -> String {
    r.sql(&format!("SELECT status FROM evaluations WHERE id = {id}"))
}

/// `evaluated` lines (the engine's, after an evaluation's tags are written) about `model`.
fn evaluated_lines(log: &str, model: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" evaluated ") && l.contains(&format!("model={model} ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn three_replicas_fed_by_webhooks_promote_each_good_candidate_exactly_once() {
    let prefix = unique("rep-wh");
    // 3 s rather than 2: the writers' Python training competes for the CPU, and a renewal
    // starved past the lease would (rightly) fence an evaluation and make it run twice.
    let mut r = Replicas::start(3, &prefix, &body(&prefix, YEARLY, 4, ""), "3s");
    // Each returns once MLflow announces events to it: a version created sooner would be
    // announced to nobody, and the yearly poll would never find it.
    for d in &mut r.daemons {
        d.register_webhook();
    }
    assert_eq!(
        r.d(0).status()["replicas"].as_array().map(Vec::len),
        Some(3),
        "every replica heartbeats into the shared store"
    );

    // One delivery reaching two replicas (a sender retrying elsewhere): the second is told it
    // is a duplicate, because the first recorded it in the shared store.
    let delivery = format!("{prefix}-delivery");
    let event = created_event(&format!("{prefix}-absent"), "1");
    let (s, b) = r.d(0).deliver(&delivery, now_unix(), SECRET, &event);
    assert_eq!(s, 202, "{b}");
    let (s, b) = r.d(1).deliver(&delivery, now_unix(), SECRET, &event);
    assert_eq!((s, b["status"].as_str()), (200, Some("duplicate")), "{b}");
    assert_eq!(
        r.count(&format!(
            "SELECT count(*) FROM deliveries WHERE id = '{delivery}'"
        )),
        1
    );

    // Eight models, every third one bad; four writers register two each, the way independent
    // training jobs would: at unrelated moments, with pauses between their versions.
    let models: Vec<(String, bool)> = (0..8)
        .map(|i| (format!("{prefix}-{i}"), i % 3 != 0))
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let ops: Vec<Value> = models
                .iter()
                .skip(w)
                .step_by(4)
                .map(|(m, good)| {
                    let mut op = candidate(m, if *good { 0.92 } else { 0.6 });
                    op["pause_after"] = json!(f64::from(rand::random::<u32>() % 1500) / 1000.0);
                    op
                })
                .collect();
            // A random lead staggers the writers (the unrelated moments above); it waits for
            // nothing.
            let lead = Duration::from_millis(u64::from(rand::random::<u32>() % 1500));
            std::thread::spawn(move || {
                std::thread::sleep(lead);
                fixtures(json!(ops))
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer failed (its output is above)");
    }

    for (m, good) in &models {
        r.wait_for(&format!("{m} to settle"), WAIT, || {
            if *good {
                // The audit row is written after the `promoted` tag.
                promoted(m, "1") && r.promotions(m) > 0
            } else {
                registry(m, "1").1.as_deref() == Some("kept")
            }
        });
    }
    r.wait_for("every replica to be idle", WAIT, || idle(&r, &[0, 1, 2]));

    // MLflow announced every version to every replica (the webhook path, not only the
    // re-checks of the one replica a delivery reached).
    for i in 0..3 {
        let queued = r.d(i).queued_deliveries();
        assert!(
            queued >= models.len() as u64,
            "replica {i} queued {queued} MLflow deliveries for {} new versions",
            models.len()
        );
    }

    // The oracle: the registry, the audit log and the history, as the replicas left them.
    assert_eq!(
        r.overlapping(&format!("{prefix}-%")),
        "",
        "two evaluations of one model overlapped (model|id|id)\n{}",
        r.logs(30)
    );
    for (m, good) in &models {
        let (stage, action, verdict) = registry(m, "1");
        if *good {
            assert_eq!(
                (stage.as_str(), action.as_deref()),
                ("Production", Some("promoted")),
                "{m}"
            );
        } else {
            assert_eq!(
                (stage.as_str(), verdict.as_deref()),
                ("Staging", Some("failed")),
                "{m}"
            );
        }
        assert_eq!(
            r.promotions(m),
            i64::from(*good),
            "{m}: promoted exactly once if good, never if bad"
        );
        // One change (the version becoming a candidate), one evaluation, by whichever replica
        // took the lease first; the others found its verdict current.
        let evals = r.evaluations(m);
        let want = format!("|1|done|{}", if *good { "passed" } else { "failed" });
        assert!(
            evals.len() == 1 && evals[0].ends_with(&want),
            "{m}: expected one evaluation ending {want:?}, got {evals:?}"
        );
    }
}

#[test]
fn kill_9_of_the_replica_running_a_gate_lets_the_other_finish_and_promote_once() {
    let prefix = unique("rep-kill");
    let m = format!("{prefix}-m");
    // Registered before the replicas start: the start-up poll of the poll lease's holder finds it.
    fixtures(json!([candidate(&m, 0.92)]));
    let mut r = Replicas::start(2, &prefix, &body(&prefix, YEARLY, 2, &slow_gate(6)), "2s");

    r.wait_for("a replica to run the gate", WAIT, || {
        r.running_gate(&m).is_some()
    });
    let a = r.running_gate(&m).expect("a gate runs");
    let b = 1 - a;
    assert_eq!(
        r.holder(&m),
        Some(a),
        "the replica running the gate holds the model's lease"
    );
    let interrupted = running_evaluation(&r, &m);
    r.daemons[a].kill9();

    // Its process guard stops the gate: nothing of the dead replica runs on (the other
    // replica's own `sleep` for the same model may, which is why processes are told apart).
    r.wait_for(
        "the killed replica's gate processes to go",
        Duration::from_secs(15),
        || r.gate_processes(a, &m).is_empty(),
    );
    r.wait_for("the other replica to promote", WAIT, || {
        promoted(&m, "1") && r.promotions(&m) > 0
    });
    r.wait_for("the other replica to be idle", WAIT, || idle(&r, &[b]));

    assert_eq!(r.promotions(&m), 1, "promoted once\n{}", r.logs(30));
    assert_eq!(
        status_of(&r, interrupted),
        "interrupted",
        "the dead replica's evaluation row"
    );
    let evals = r.evaluations(&m);
    let done: Vec<&String> = evals.iter().filter(|e| e.contains("|done|")).collect();
    assert!(
        done.len() == 1 && done[0].ends_with("|1|done|passed"),
        "one finished evaluation, passed: {evals:?}"
    );
    let done_id: i64 = done[0].split('|').next().unwrap().parse().unwrap();
    assert!(done_id > interrupted, "redone after the kill: {evals:?}");
    assert_eq!(
        r.lease_owner(&m),
        r.ids[b],
        "the survivor took the model's lease"
    );
}

#[test]
fn a_frozen_holder_is_fenced_and_writes_nothing_when_it_wakes() {
    let prefix = unique("rep-stop");
    let m = format!("{prefix}-m");
    fixtures(json!([candidate(&m, 0.92)]));
    let r = Replicas::start(2, &prefix, &body(&prefix, YEARLY, 2, &slow_gate(5)), "2s");

    r.wait_for("a replica to run the gate", WAIT, || {
        r.running_gate(&m).is_some()
    });
    let a = r.running_gate(&m).expect("a gate runs");
    let b = 1 - a;
    assert_eq!(r.holder(&m), Some(a), "the gate's replica holds the lease");
    let first = running_evaluation(&r, &m);

    // Frozen (a long GC pause, a stopped VM): it renews nothing, so its lease runs out and B
    // takes the model over and runs the gate itself.
    r.d(a).signal("STOP");
    r.wait_for("B to take the lease over and run the gate", WAIT, || {
        r.holder(&m) == Some(b) && !r.gate_processes(b, &m).is_empty()
    });
    // A wakes while B's gate still runs, and finishes its own evaluation: its writes must be
    // refused, since B holds the model now.
    r.d(a).signal("CONT");

    r.wait_for("A's write to be refused", WAIT, || {
        r.d(a).log().contains("not written to MLflow")
    });
    r.wait_for("B to promote", WAIT, || {
        promoted(&m, "1") && r.promotions(&m) > 0
    });
    r.wait_for("both replicas to be idle", WAIT, || idle(&r, &[0, 1]));

    assert_eq!(r.promotions(&m), 1, "promoted once\n{}", r.logs(30));
    let log_a = r.d(a).log();
    assert_eq!(
        evaluated_lines(&log_a, &m),
        Vec::<String>::new(),
        "the fenced replica recorded no evaluation in MLflow"
    );
    assert_eq!(
        evaluated_lines(&r.d(b).log(), &m).len(),
        1,
        "B recorded its evaluation"
    );
    let evals = r.evaluations(&m);
    let done: Vec<&String> = evals.iter().filter(|e| e.contains("|done|")).collect();
    assert!(
        done.len() == 1 && done[0].ends_with("|1|done|passed"),
        "only B's evaluation finished: {evals:?}"
    );
    assert_ne!(
        status_of(&r, first),
        "done",
        "A's evaluation did not finish: {evals:?}"
    );
}

#[test]
fn postgres_down_for_20_s_turns_readyz_503_and_the_candidate_is_promoted_once_after() {
    let prefix = unique("rep-pg");
    let m = format!("{prefix}-m");
    let r = Replicas::start(2, &prefix, &body(&prefix, "*/2 * * * * *", 2, ""), "2s");
    let ready = |i: usize| r.d(i).get("/readyz").is_some_and(|(s, _)| s == 200);
    r.wait_for("both replicas ready", WAIT, || ready(0) && ready(1));

    r.pg.stop();
    let down = Instant::now();
    let unavailable = |i: usize| {
        r.d(i).get("/readyz").is_some_and(|(s, b)| {
            s == 503
                && b["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("state store"))
        })
    };
    r.wait_for("both /readyz to name the state store", WAIT, || {
        unavailable(0) && unavailable(1)
    });
    // Without the store a delivery cannot be de-duplicated: refused, so MLflow sends it again.
    let (s, b) = r.d(0).deliver(
        &format!("{prefix}-outage"),
        now_unix(),
        SECRET,
        &created_event(&m, "1"),
    );
    assert_eq!(s, 503, "{b}");
    assert_eq!(r.d(1).status()["store"]["reachable"], json!(false));

    fixtures(json!([candidate(&m, 0.92)]));
    // The outage is the subject, not a synchronisation: it lasts 20 s whatever the fixture
    // took, long enough for several leases (2 s) and polls (2 s) to come due, and the
    // candidate is watched throughout.
    while down.elapsed() < Duration::from_secs(20) {
        assert_eq!(
            registry(&m, "1").0,
            "Staging",
            "no replica acts without the store (it can take no lease)"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    r.pg.start_again();
    r.wait_for("both replicas ready again", WAIT, || ready(0) && ready(1));
    r.wait_for("the candidate promoted", WAIT, || {
        promoted(&m, "1") && r.promotions(&m) > 0
    });
    r.wait_for("both replicas idle", WAIT, || idle(&r, &[0, 1]));
    assert_eq!(r.promotions(&m), 1, "promoted once\n{}", r.logs(30));
    let evals = r.evaluations(&m);
    assert!(
        evals.len() == 1 && evals[0].ends_with("|1|done|passed"),
        "evaluated once: {evals:?}"
    );
    // The poll lease ran out during the outage; whoever polls now is still the only one.
    let polls: Vec<Value> = (0..2).map(|i| poll(&r, i)).collect();
    let here: Vec<usize> = (0..2)
        .filter(|&i| polls[i]["here"] == json!(true))
        .collect();
    assert_eq!(
        here.len(),
        1,
        "one poll holder after the outage: {polls:#?}"
    );
    assert_eq!(poll_owner(&r), r.ids[here[0]]);
}

#[test]
fn one_replica_polls_a_pause_holds_them_all_and_the_poll_moves_when_its_holder_dies() {
    let prefix = unique("rep-poll");
    let m = format!("{prefix}-m");
    // 3 s: the holder renews at every tick (1 s) and every round (1 s), so only a stall of
    // over 3 s could hand the poll over before the first check below.
    let mut r = Replicas::start(3, &prefix, &body(&prefix, "* * * * * *", 2, ""), "3s");
    let completed = |p: &Value| p["completed"].as_u64().unwrap_or(0);

    // Every replica tries at start-up and at each tick; only the lease holder polls.
    r.wait_for("a few polls", WAIT, || {
        (0..3).any(|i| completed(&poll(&r, i)) >= 3)
    });
    let polls: Vec<Value> = (0..3).map(|i| poll(&r, i)).collect();
    let here: Vec<usize> = (0..3)
        .filter(|&i| polls[i]["here"] == json!(true))
        .collect();
    assert_eq!(here.len(), 1, "one poll holder: {polls:#?}");
    let holder = here[0];
    for (i, p) in polls.iter().enumerate() {
        assert_eq!(
            completed(p) > 0,
            i == holder,
            "only the holder polled: replica {i}: {p}"
        );
    }
    assert_eq!(poll_owner(&r), r.ids[holder]);

    // The pause lives in the store: made on one replica, every replica's mode says so.
    let (s, b) = r.d(0).post("/v1/pause", "", None);
    assert_eq!(s, 200, "{b}");
    for i in 1..3 {
        assert_eq!(r.d(i).status()["mode"], json!("paused"), "replica {i}");
    }
    fixtures(json!([candidate(&m, 0.92)]));
    r.wait_for("the paused evaluation", WAIT, || {
        registry(&m, "1").1.as_deref() == Some("skipped: paused (would promote)")
    });
    let (stage, _, verdict) = registry(&m, "1");
    assert_eq!(
        (stage.as_str(), verdict.as_deref()),
        ("Staging", Some("passed")),
        "evaluated, not moved, while paused"
    );
    assert_eq!(r.promotions(&m), 0);

    let (s, b) = r.d(2).post("/v1/resume", "", None);
    assert_eq!(s, 200, "{b}");
    for i in 0..3 {
        assert_eq!(r.d(i).status()["mode"], json!("running"), "replica {i}");
    }
    r.wait_for("promotion after the resume", WAIT, || {
        promoted(&m, "1") && r.promotions(&m) > 0
    });
    r.wait_for("every replica idle", WAIT, || idle(&r, &[0, 1, 2]));
    assert_eq!(r.promotions(&m), 1, "promoted once\n{}", r.logs(30));
    let evals = r.evaluations(&m);
    assert!(
        evals.len() == 1 && evals[0].ends_with("|1|done|passed"),
        "evaluated once, acted on after the resume: {evals:?}"
    );

    // The holder dies without releasing the poll lease: it runs out, and another replica
    // claims it at its next tick.
    r.daemons[holder].kill9();
    let others: Vec<usize> = (0..3).filter(|&i| i != holder).collect();
    r.wait_for("another replica to poll", WAIT, || {
        others.iter().any(|&i| poll(&r, i)["here"] == json!(true))
    });
    let polls: Vec<(usize, Value)> = others.iter().map(|&i| (i, poll(&r, i))).collect();
    let new: Vec<usize> = polls
        .iter()
        .filter(|(_, p)| p["here"] == json!(true))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(new.len(), 1, "one new poll holder: {polls:#?}");
    assert_eq!(poll_owner(&r), r.ids[new[0]]);
    r.wait_for("the new holder to complete a poll", WAIT, || {
        completed(&poll(&r, new[0])) > 0
    });
}

#[test]
fn a_replica_started_before_its_database_waits_for_it_then_promotes() {
    let prefix = unique("rep-boot");
    let m = format!("{prefix}-m");
    // Declared before the daemon, so it is dropped (stopped) after it.
    let pg = common::postgres::PgCluster::start();
    let url = pg.create_database(common::replicas::DB);
    pg.stop();

    let env = [
        ("STAGEGATE_STATE__URL", url.as_str()),
        ("STAGEGATE_STATE__LEASE", "2s"),
    ];
    let body = body(&prefix, "*/2 * * * * *", 2, "");
    let mut d =
        common::daemon::Daemon::prepared(&mlflow_uri(), common::daemon::free_port(), &body, &env);
    d.launch();
    // It waits, retrying, instead of exiting into a restart loop.
    d.wait_for("two attempts to reach the store", WAIT, || {
        d.log().matches("cannot be reached yet").count() >= 2
    });
    assert_eq!(d.wait_exit(Duration::ZERO), None, "{}", d.log());
    assert!(
        d.get("/healthz").is_none(),
        "nothing listens before the store is open"
    );

    fixtures(json!([candidate(&m, 0.92)]));
    pg.start_again();
    d.wait_for("the daemon to start and be ready", WAIT, || {
        d.get("/readyz").is_some_and(|(s, _)| s == 200)
    });
    d.wait_for("the candidate promoted", WAIT, || promoted(&m, "1"));
    assert_eq!(
        d.status()["store"]["reachable"],
        json!(true),
        "{}",
        d.status()
    );
}
