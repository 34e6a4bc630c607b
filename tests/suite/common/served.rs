//! Helpers of the served-gate tests (latency, edge cases, datasets, commands).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

pub fn register(name: &str, ops: &[Value]) -> Vec<String> {
    let ops: Vec<Value> = ops
        .iter()
        .map(|extra| {
            let mut op = json!({"op": "register", "name": name});
            op.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            op
        })
        .collect();
    fixtures(json!(ops))
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect()
}

/// A workdir whose policy has `gates` and the venv's serving.
pub fn workdir(gates: &str, serving_extra: &str) -> Workdir {
    Workdir::new(&format!(
        "{}\n{}",
        config(ALIAS_TARGETS, gates),
        serving_section(serving_extra)
    ))
}

/// Models served for an evaluation (its report's `serving`): servers started, or models the
/// scoring host loaded or found loaded.
pub fn served_models(doc: &Value) -> u64 {
    let s = &doc["serving"];
    ["servers_started", "host_models_loaded", "host_models_warm"]
        .iter()
        .filter_map(|k| s[*k].as_u64())
        .sum()
}

pub fn gate<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == json!(name))
        .unwrap_or_else(|| panic!("no gate {name} in {doc}"))
}

/// Nothing of the scoring host that stagegate process `owner` started is left.
pub fn assert_no_host_left(owner: u32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if host_processes(owner).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the scoring host of {owner} outlived it: {:?}",
        host_processes(owner)
    );
}

pub fn assert_no_serving_left(model: &str) {
    // Killing is immediate, but reaping orphans takes the kernel a moment, and a guard whose
    // owner died gives the group a grace period (2 s) between SIGTERM and SIGKILL.
    let left = || [serving_processes(model), guard_processes(model)].concat();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if left().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "serving processes or guards of {model} outlived the evaluation: {:?}",
        left()
    );
}
