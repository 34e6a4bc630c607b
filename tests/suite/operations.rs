//! Running the daemon in production conditions: MLflow going away and coming back, `kill -9`
//! and restart, signals, a refused start, the status command.

use crate::common;

use std::time::Duration;

use common::daemon::{Daemon, SECRET, now_unix};
use common::*;
use serde_json::{Value, json};
use stagegate::store::Store;

const WAIT: Duration = Duration::from_secs(90);

fn body(prefix: &str, schedule: &str, workers: usize) -> String {
    metric_policy("ops", prefix, schedule, workers, "")
}

fn register(uri: &str, name: &str, stage: &str) -> String {
    let r = fixtures_at(
        uri,
        json!([{"op": "register", "name": name, "metrics": {"val_accuracy": 0.9}, "stage": stage, "light": true}]),
    );
    r[0]["version"].as_str().unwrap().to_string()
}

#[test]
fn mlflow_stopping_mid_run_turns_readyz_503_and_work_converges_when_it_returns() {
    let mlflow = PrivateMlflow::start();
    let prefix = unique("outage");
    let d = Daemon::start(&mlflow.uri(), &body(&prefix, "0 0 0 1 1 *", 2));
    d.wait_for("readyz 200", WAIT, || {
        d.get("/readyz").is_some_and(|(s, _)| s == 200)
    });
    // A candidate the daemon does not know about yet (no webhook, no poll until next year).
    let m = format!("{prefix}-m");
    let v = register(&mlflow.uri(), &m, "Staging");

    mlflow.down();
    d.wait_for("readyz 503", WAIT, || {
        d.get("/readyz").is_some_and(|(s, _)| s == 503)
    });
    let (_, ready) = d.get("/readyz").unwrap();
    assert!(
        ready["error"].as_str().unwrap().contains("unreachable"),
        "{ready}"
    );
    // The event arrives while MLflow is down: accepted and queued; the reconcile fails and retries.
    let event = format!(
        r#"{{"entity":"model_version","action":"created","timestamp":"x","data":{{"name":"{m}","version":"{v}","source":"s","run_id":null}}}}"#
    );
    let (s, _) = d.deliver("outage-1", now_unix(), SECRET, &event);
    assert_eq!(s, 202);
    d.wait_for("a retry to be logged", WAIT, || {
        d.log().contains("reconcile failed; retrying")
    });
    assert_eq!(
        d.get("/healthz").unwrap().0,
        200,
        "alive while MLflow is down"
    );

    mlflow.up();
    d.wait_for("readyz 200 again", WAIT, || {
        d.get("/readyz").is_some_and(|(s, _)| s == 200)
    });
    let client = client_at(&mlflow.uri());
    d.wait_for("promotion after MLflow returned", WAIT, || {
        block(client.model_version(&m, &v)).is_ok_and(|mv| mv.current_stage == "Production")
    });
}

#[test]
fn kill_9_mid_queue_then_restart_loses_no_candidate_and_promotes_nothing_twice() {
    let prefix = unique("kill9");
    let models: Vec<String> = (0..8).map(|i| format!("{prefix}-{i}")).collect();
    let ops: Vec<Value> = models
        .iter()
        .map(|m| json!({"op": "register", "name": m, "metrics": {"val_accuracy": 0.9}, "stage": "Staging", "light": true}))
        .collect();
    fixtures(json!(ops));
    // One worker, so the start-up poll leaves a queue behind it.
    let mut d = Daemon::start(&mlflow_uri(), &body(&prefix, "0 0 0 1 1 *", 1));
    let promoted = |m: &str| block(version(m, "1")).current_stage == "Production";
    d.wait_for("a first promotion", WAIT, || {
        models.iter().any(|m| promoted(m))
    });
    d.kill9();
    let done_before = models.iter().filter(|m| promoted(m)).count();
    assert!(done_before < models.len(), "the kill should land mid-queue");

    d.spawn();
    for m in &models {
        d.wait_for(&format!("{m} promoted after the restart"), WAIT, || {
            promoted(m)
        });
    }
    // Delayed work counts too: on a shared store the restarted process is a new replica, and
    // the models its previous run held wait (retried) until those leases run out.
    d.wait_for("the queue to drain", WAIT, || {
        let q = &d.status()["queue"];
        q["depth"] == json!(0) && q["in_flight"] == json!(0) && q["delayed"] == json!(0)
    });
    d.kill9();
    let (audits, queued) = block(async {
        let store = Store::open(&d.store_target()).await.unwrap();
        let mut audits = Vec::new();
        for m in &models {
            audits.push(store.audit_log(Some(m), 100).await.unwrap());
        }
        (audits, store.queued(i64::MAX).await.unwrap())
    });
    for (m, audit) in models.iter().zip(audits) {
        let promotions = audit.iter().filter(|a| a.action == "promoted").count();
        // Each was promoted once: before the kill or after the restart (a promotion the kill
        // interrupted is finished, and audited, by the restarted daemon), never twice.
        assert_eq!(promotions, 1, "{m} promoted {promotions} times");
        let v = block(version(m, "1"));
        assert_eq!(v.tag("stagegate.action"), Some("promoted"), "{m}");
    }
    assert!(
        queued.is_empty(),
        "the persisted queue is empty once converged"
    );
}

/// `kill -9` of the daemon mid-evaluation runs no destructor: the process guard alone must stop
/// the command gate's whole tree. Served models share the guard's code (`process::Group`);
/// tests/suite/served.rs kills `stagegate evaluate` during a served gate.
#[test]
fn kill_9_of_the_daemon_mid_evaluation_leaves_no_command_running() {
    let prefix = unique("kill9-command");
    let m = format!("{prefix}-m");
    register(&mlflow_uri(), &m, "Staging");
    let gate = r#"
  [[policies.gates]]
  name = "slow-suite"
  type = "command"
  run = ["sh", "-c", "sleep 300 & sleep 300"]
  timeout = "10m"
"#;
    // The start-up poll finds the candidate.
    let mut d = Daemon::start(
        &mlflow_uri(),
        &format!("{}{gate}", body(&prefix, "0 0 0 1 1 *", 1)),
    );
    let running = || processes_with_env(&format!("MODEL_NAME={m}"));
    let guards = || guard_processes(&m);
    // The shell and both sleeps.
    d.wait_for("the command gate to run", WAIT, || running().len() >= 2);
    assert!(!guards().is_empty(), "a guard watches the command");
    d.kill9();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(running().is_empty() && guards().is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "outlived the daemon: command {:?}, guards {:?}",
            running(),
            guards()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_exits_0_within_the_grace_period_and_sighup_with_a_bad_file_keeps_the_old_config() {
    let prefix = unique("signals");
    let mut d = Daemon::start(&mlflow_uri(), &body(&prefix, "0 0 0 1 1 *", 2));
    let policy_names = |d: &Daemon| {
        d.status()["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(policy_names(&d), vec!["ops"]);

    std::fs::write(
        d.config(),
        "[[policies]]\nname = \"broken\"\nbogus_key = 1\n",
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the refusal to be logged", WAIT, || {
        d.log().contains("configuration reload refused")
    });
    assert!(d.log().contains("bogus_key"), "the log says why");
    assert_eq!(policy_names(&d), vec!["ops"], "old config kept");
    assert_eq!(d.get("/healthz").unwrap().0, 200);

    d.write_config(&body(&prefix, "0 0 0 1 1 *", 2).replace("name = \"ops\"", "name = \"ops-v2\""));
    d.signal("HUP");
    d.wait_for("the new config", WAIT, || {
        policy_names(&d) == vec!["ops-v2"]
    });

    d.signal("TERM");
    // Bounded by the grace period (10 s) plus slack: a hang fails here, not a slow machine.
    let code = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "log:\n{}", d.log());
    assert!(d.log().contains("stopped"));
}

#[test]
fn a_non_loopback_listen_without_a_token_refuses_to_start() {
    let w = Workdir::new(&format!(
        "[server]\nlisten = \"0.0.0.0:{}\"\n\n[[policies]]\nname = \"p\"\n{STAGE_TARGETS}\n",
        common::daemon::free_port()
    ));
    let r = w.run(&["run"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("STAGEGATE_SERVER__API_TOKEN"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_status_command_summarises_a_running_daemon() {
    let prefix = unique("status");
    let d = Daemon::start(&mlflow_uri(), &body(&prefix, "0 0 0 1 1 *", 2));
    let m = format!("{prefix}-m");
    let v = register(&mlflow_uri(), &m, "Staging");
    let (s, _) = d.post("/v1/evaluations", &json!({"model": m}).to_string(), None);
    assert_eq!(s, 202);
    // The stage moves before the promotion is recorded: wait for the record too.
    d.wait_for("promotion", WAIT, || {
        block(version(&m, &v)).current_stage == "Production"
            && d.evaluations(&m)
                .iter()
                .any(|e| e["action"] == json!("promoted"))
    });
    let w = Workdir::new("");
    let r = w.run(&["status", "--url", &d.url()]);
    r.expect_code(0);
    for needle in ["running", "reachable", "promoted", &m, "accuracy:pass"] {
        assert!(
            r.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            r.stdout
        );
    }
    let r = w.run(&["status", "--url", "http://127.0.0.1:9"]);
    r.expect_code(2);
    assert!(r.stderr.contains("no stagegate answering"), "{}", r.stderr);
}
