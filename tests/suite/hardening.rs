//! Hardening: hostile reloads, secrets that must never leak, receivers that hang, a full
//! disk. Each runs the real daemon against the real MLflow server.

use crate::common;

use common::daemon::{Daemon, SECRET, free_port, now_unix};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "hardening-token-5f2a";

fn listening_everywhere(port: u16, token: Option<&str>) -> String {
    let token = token
        .map(|t| format!("api_token = \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        "[server]\nlisten = \"0.0.0.0:{port}\"\n{token}\n[state]\npath = \"state.db\"\n\n\
         [[policies]]\nname = \"p\"\nmodels = [\"{}*\"]\n{STAGE_TARGETS}\n\n\
         [[policies.gates]]\nname = \"owner\"\ntype = \"tags\"\nrequired = [\"owner\"]\n",
        unique("hardening")
    )
}

#[test]
fn a_reload_that_drops_the_token_on_a_non_loopback_listener_is_refused() {
    let port = free_port();
    let d = Daemon::start_text(
        &mlflow_uri(),
        port,
        &listening_everywhere(port, Some(TOKEN)),
        &[],
    );
    assert_eq!(
        d.post("/v1/pause", "", None).0,
        401,
        "the token is required"
    );

    std::fs::write(d.config(), listening_everywhere(port, None)).unwrap();
    d.signal("HUP");
    d.wait_for("the refusal to be logged", WAIT, || {
        d.log().contains("configuration reload refused")
    });
    assert!(d.log().contains("no API token"), "the log says why");
    assert_eq!(
        d.post("/v1/pause", "", None).0,
        401,
        "mutating routes stay closed after the refused reload"
    );
    assert_eq!(d.post("/v1/pause", "", Some(TOKEN)).0, 200);
    assert_eq!(d.status()["mode"], "paused");
}

fn created(model: &str) -> String {
    format!(
        r#"{{"entity":"model_version","action":"created","timestamp":"x","data":{{"name":"{model}","version":"1","source":"s","run_id":null}}}}"#
    )
}

/// Delivered in four threads, as MLflow's webhook workers would; returns the statuses seen.
fn deliver_all(d: &Daemon, prefix: &str, events: usize, models: usize) -> Vec<u16> {
    std::thread::scope(|s| {
        let lanes: Vec<_> = (0..4)
            .map(|lane| {
                s.spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    (lane..events)
                        .step_by(4)
                        .map(|i| {
                            let body = created(&format!("{prefix}-ghost-{}", i % models));
                            let id = format!("{prefix}-{i}");
                            d.deliver_on(&client, &id, now_unix(), SECRET, &body).0
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        lanes.into_iter().flat_map(|l| l.join().unwrap()).collect()
    })
}

#[test]
fn ten_thousand_creations_keep_one_recheck_per_model_and_a_kill_9_restart_converges() {
    let prefix = unique("rechecks");
    let body = format!(
        "[webhooks]\nsecrets = [\"{SECRET}\"]\n\n[poll]\nschedule = \"0 0 0 1 1 *\"\n\n\
         [workers]\ncount = 2\nbackoff = \"1s\"\n\n\
         [[policies]]\nname = \"p\"\nmodels = [\"{prefix}*\"]\n{STAGE_TARGETS}\n\n\
         [[policies.gates]]\nname = \"owner\"\ntype = \"tags\"\nrequired = [\"owner\"]\n"
    );
    let mut d = Daemon::start(&mlflow_uri(), &body);
    // 10,000 creations over 500 model names that do not exist (yet): each used to leave six
    // timers behind it, 60,000 in all.
    let statuses = deliver_all(&d, &prefix, 10_000, 500);
    assert_eq!(statuses.len(), 10_000);
    assert!(
        statuses.iter().all(|s| *s == 202),
        "every delivery accepted"
    );
    let delayed = d.status()["queue"]["delayed"].as_u64().unwrap();
    assert!(
        (1..=500).contains(&delayed),
        "one pending re-check per model at most, found {delayed}"
    );

    // Real candidates arrive while that backlog is worked off; no event announces them.
    let real: Vec<String> = (0..3).map(|i| format!("{prefix}-real-{i}")).collect();
    let ops: Vec<serde_json::Value> = real
        .iter()
        .map(|m| {
            serde_json::json!({"op": "register", "name": m, "tags": {"owner": "ml"},
                "stage": "Staging", "light": true})
        })
        .collect();
    fixtures(serde_json::json!(ops));
    d.kill9();

    // The start-up poll finds them; the persisted queue is worked off; nothing is lost.
    d.spawn();
    let client = client();
    for m in &real {
        d.wait_for(&format!("{m} promoted after the restart"), WAIT, || {
            block(client.model_version(m, "1")).is_ok_and(|v| {
                v.current_stage == "Production" && v.tag("stagegate.action") == Some("promoted")
            })
        });
    }
    d.wait_for("the backlog to drain", Duration::from_secs(180), || {
        let q = &d.status()["queue"];
        q["depth"] == 0 && q["in_flight"] == 0
    });
}

/// A receiver that reads each request and never answers; the count of requests it holds.
fn hanging_receiver() -> (Arc<AtomicUsize>, String) {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services/T0/B0/hang", l.local_addr().unwrap());
    let held = Arc::new(AtomicUsize::new(0));
    let count = held.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for mut conn in l.incoming().flatten() {
            // A request has arrived once its head has (the body follows it).
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            if head.starts_with(b"POST ") {
                count.fetch_add(1, Ordering::SeqCst);
            }
            open.push(conn);
        }
    });
    (held, url)
}

fn policy_with_notify(prefix: &str, urls: &[&str], extra: &str) -> String {
    let notify: String = urls
        .iter()
        .map(|u| format!("[[notify]]\nurl = \"{u}\"\n\n"))
        .collect();
    format!(
        "[webhooks]\nsecrets = [\"{SECRET}\"]\n\n[poll]\nschedule = \"*/2 * * * * *\"\n\n{extra}\n{notify}\
         [[policies]]\nname = \"p\"\nmodels = [\"{prefix}*\"]\n{STAGE_TARGETS}\n\n\
         [[policies.gates]]\nname = \"owner\"\ntype = \"tags\"\nrequired = [\"owner\"]\n"
    )
}

fn staged(models: &[(&str, bool)]) {
    let ops: Vec<serde_json::Value> = models
        .iter()
        .map(|(m, good)| {
            let tags = if *good {
                serde_json::json!({"owner": "ml"})
            } else {
                serde_json::json!({})
            };
            serde_json::json!({"op": "register", "name": m, "tags": tags, "stage": "Staging", "light": true})
        })
        .collect();
    fixtures(serde_json::json!(ops));
}

fn promoted(m: &str) -> bool {
    block(client().model_version(m, "1")).is_ok_and(|v| {
        v.current_stage == "Production" && v.tag("stagegate.action") == Some("promoted")
    })
}

#[test]
fn a_notification_receiver_that_hangs_holds_up_no_reconcile() {
    let prefix = unique("hang");
    let (held, url) = hanging_receiver();
    // One worker: a reconcile that waited for its notifications would hold up the next.
    let d = Daemon::start(
        &mlflow_uri(),
        &policy_with_notify(&prefix, &[&url], "[workers]\ncount = 1\n"),
    );
    let models: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    let pairs: Vec<(&str, bool)> = models.iter().map(|m| (m.as_str(), true)).collect();
    staged(&pairs);
    for m in &models {
        d.wait_for(&format!("{m} promoted"), WAIT, || promoted(m));
    }
    // The three promotions were posted, and the receiver holds them unanswered.
    d.wait_for("the promotions' messages at the receiver", WAIT, || {
        held.load(Ordering::SeqCst) >= models.len()
    });
    // Each message to this receiver takes four 10 s timeouts to give up; every promotion
    // happened while all of them were still pending: none has finished either way.
    for outcome in ["sent", "failed", "dropped"] {
        let series = format!("stagegate_notifications_total{{outcome=\"{outcome}\"}}");
        assert_eq!(
            d.metric(&series),
            Some(0.0),
            "{series}: no notification finished, yet every reconcile did"
        );
    }
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

#[test]
fn secrets_never_appear_in_logs_status_metrics_or_tags() {
    let prefix = unique("secrets");
    let (webhook_secret, password, notify_key, uri_secret) = (
        SECRET,
        "mlflow-password-93c1e7",
        "notify-key-4be0a2",
        "uri-secret-d81f55",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(common::proxy::FaultProxy::start(&mlflow_uri()));
    let port = free_port();
    let dead = free_port();
    let notify = format!("http://127.0.0.1:{dead}/services/T0/B0/{notify_key}");
    let tracking = proxy
        .url
        .replace("http://", &format!("http://sg-user:{uri_secret}@"));
    let text = format!(
        "[mlflow]\nrequest_timeout = \"3s\"\nretries = 1\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{TOKEN}\"\n\n[state]\npath = \"state.db\"\n\n{}",
        policy_with_notify(&prefix, &[&notify], "")
    );
    // The URI, with its credentials, comes from MLFLOW_TRACKING_URI as MLflow's own tools read it.
    let d = Daemon::start_text(
        &tracking,
        port,
        &text,
        &[
            ("MLFLOW_TRACKING_USERNAME", "sg-user"),
            ("MLFLOW_TRACKING_PASSWORD", password),
        ],
    );
    let (good, bad) = (format!("{prefix}-good"), format!("{prefix}-bad"));
    staged(&[(&good, true), (&bad, false)]);
    d.wait_for("the good candidate promoted", WAIT, || promoted(&good));
    d.wait_for("the notifications to fail", WAIT, || {
        d.log().contains("notification failed; giving up")
    });

    // The error paths: forged and unsigned deliveries, a wrong token, MLflow gone, a bad reload.
    let event = created(&bad);
    assert_eq!(
        d.deliver("forged", now_unix(), "wrong-secret", &event).0,
        401
    );
    assert_eq!(
        d.deliver("signed", now_unix(), webhook_secret, &event).0,
        202
    );
    assert_eq!(d.post("/v1/pause", "", Some("wrong-token")).0, 401);
    proxy.add(common::proxy::Rule::new(
        None,
        "/api/",
        common::proxy::Fault::Drop,
        50,
    ));
    d.wait_for("MLflow errors to be logged", WAIT, || {
        d.log().contains("poll failed")
    });
    std::fs::write(
        d.config(),
        text.replace(&notify, &format!("hooks.example/{notify_key}")),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the bad reload to be refused", WAIT, || {
        d.log().contains("configuration reload refused")
    });

    let get = |path: &str| {
        reqwest::blocking::get(format!("{}{path}", d.url()))
            .unwrap()
            .text()
            .unwrap()
    };
    let mut seen = vec![
        ("the log", d.log()),
        ("/status", get("/status")),
        ("/metrics", get("/metrics")),
        ("/v1/evaluations", get("/v1/evaluations")),
    ];
    for m in [&good, &bad] {
        let v = block(client().model_version(m, "1")).unwrap();
        seen.push(("tags", format!("{:?}", v.tags)));
    }
    for secret in [webhook_secret, TOKEN, password, notify_key, uri_secret] {
        for (place, text) in &seen {
            assert!(!text.contains(secret), "{secret:?} appears in {place}");
        }
    }
}

/// A small tmpfs, unmounted on drop: the disk that fills up.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    /// Fill what is left; returns the filler's path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&[0u8; 512]);
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_corrupts_nothing_and_work_resumes_with_space() {
    // The SQLite file on a full disk is this test's subject, so the daemon keeps its state in
    // SQLite on every pass (scripts/test.sh leaves the test out of the PostgreSQL pass, which
    // would only repeat it): a database server's disk is not the daemon's to fill, and a
    // database that stops answering is tests/suite/replicas.rs's outage.
    let prefix = unique("diskfull");
    let disk = SmallDisk::mount("4m");
    let state = disk.dir.path().join("state.db");
    let port = free_port();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[state]\npath = \"{}\"\n\n{}",
        state.display(),
        policy_with_notify(&prefix, &[], "[workers]\nbackoff = \"1s\"\n")
    );
    let mut d = Daemon::start_sqlite_text(&mlflow_uri(), port, &text);
    let filler = disk.fill();

    let m = format!("{prefix}-m");
    staged(&[(&m, true)]);
    d.wait_for("the full disk to be reported", WAIT, || {
        d.log().contains("database or disk is full")
    });
    assert!(
        !promoted(&m),
        "nothing is promoted that could not be recorded"
    );
    assert_eq!(d.get("/healthz").unwrap().0, 200, "the daemon stays up");
    let (s, _) = d.get("/status").unwrap();
    assert_eq!(s, 200);

    std::fs::remove_file(filler).unwrap();
    // Promoted in MLflow, then recorded in the history: the store write follows the tags, so
    // the kill waits for both (a kill in between is the gap the closing note names).
    let history = format!("/v1/evaluations?model={m}");
    d.wait_for(
        "the candidate promoted and recorded once there is space",
        WAIT,
        || {
            promoted(&m)
                && d.get(&history).is_some_and(|(_, v)| {
                    v["evaluations"]
                        .as_array()
                        .is_some_and(|rows| rows.iter().any(|r| r["action"] == "promoted"))
                })
        },
    );
    d.kill9();
    let conn = rusqlite::Connection::open(&state).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let recorded: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM evaluations WHERE model = ?1 AND action = 'promoted'",
            [&m],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 1, "the promotion is in the history exactly once");
}
