//! Hardening: hostile reloads, secrets that must never leak, receivers that hang, a full
//! disk. Each runs the real daemon against the real MLflow server.

mod common;

use common::daemon::{Daemon, SECRET, free_port, now_unix};
use common::*;
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

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
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
