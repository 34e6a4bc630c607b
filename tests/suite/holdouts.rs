//! What a verdict is judged from includes its holdout: a replaced holdout re-judges the
//! candidate judged on the old one (never the champion), and a gate can read the dataset the
//! candidate's own run logged (`context`). Against the real MLflow server and a real
//! S3-compatible server (moto).

use crate::common;
use crate::objects::{dataset_gate, evaluate};

use common::s3::S3;
use common::served::*;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn flipped(csv: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(csv.to_vec()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let at = header.split(',').position(|c| c == "target").unwrap();
    let mut out = format!("{header}\n");
    for line in lines {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        cells[at] = if cells[at] == "1" {
            "0".into()
        } else {
            "1".into()
        };
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

fn champion(m: &str) -> Option<String> {
    alias_of(m, "champion")
}

/// The holdout identity `v`'s report says it was judged on.
fn judged_on(m: &str, v: &str) -> Value {
    let report = block(version(m, v))
        .tag("stagegate.report")
        .unwrap()
        .to_string();
    serde_json::from_str::<Value>(&report).unwrap()["inputs"]["holdout"].clone()
}

/// A daemon polling every 2 s, with one policy over `prefix*` whose one gate, `holdout`, is a
/// dataset gate reading `source` (a `path = …` or `context = …` line), and `s3`'s environment.
fn daemon(prefix: &str, source: &str, s3: &S3) -> common::daemon::Daemon {
    let body = format!(
        "[poll]\nschedule = \"*/2 * * * * *\"\n\n[[policies]]\nname = \"holdout\"\nmodels = [\"{prefix}*\"]\n{ALIAS_TARGETS}\n\n  [[policies.gates]]\n  name = \"holdout\"\n  type = \"dataset\"\n  {source}\n  label = \"target\"\n  metrics = {{ accuracy = 0.8 }}\n\n{}",
        serving_section("")
    );
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::daemon::Daemon::start_env(&mlflow_uri(), common::daemon::free_port(), &body, &env)
}

fn verdict(m: &str, v: &str) -> Option<String> {
    block(version(m, v))
        .tag("stagegate.verdict")
        .map(str::to_string)
}

#[test]
fn holdouts_a_replaced_holdout_rejudges_the_candidate_and_never_the_champion() {
    let s3 = S3::start(None);
    s3.create_bucket("replaced");
    let prefix = unique("holdout-replaced");
    let m = format!("{prefix}-m");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("holdout.csv");
    fixtures(json!([{"op": "dataset", "path": local.display().to_string(), "rows": 400}]));
    let good = std::fs::read(&local).unwrap();
    s3.put("replaced", "holdout.csv", good.clone());
    let d = daemon(&prefix, "path = \"s3://replaced/holdout.csv\"", &s3);
    register(&m, &[json!({"alias": "challenger"})]);
    d.wait_for(
        "v1 promoted on the good holdout",
        Duration::from_secs(120),
        || champion(&m).as_deref() == Some("1"),
    );

    // The holdout is replaced by one every model fails: the next candidate fails on it, and
    // the champion, judged on the old one, is not judged again.
    s3.put("replaced", "holdout.csv", flipped(&good));
    register(&m, &[json!({"alias": "challenger"})]);
    d.wait_for(
        "v2 failed on the bad holdout",
        Duration::from_secs(120),
        || verdict(&m, "2").as_deref() == Some("failed"),
    );
    let failed_on = judged_on(&m, "2");
    assert!(
        failed_on.as_str().unwrap().starts_with("etag:"),
        "{failed_on}"
    );

    // Fixed: the failed candidate is judged again (no webhook says a file changed; the poll
    // sees it) and promoted. v1 was judged once in all.
    s3.put("replaced", "holdout.csv", good);
    d.wait_for(
        "v2 judged again and promoted",
        Duration::from_secs(120),
        || champion(&m).as_deref() == Some("2"),
    );
    let v2: Vec<Value> = d
        .evaluations(&m)
        .into_iter()
        .filter(|e| e["version"] == json!("2"))
        .collect();
    assert!(v2.len() >= 2, "{v2:?}");
    let v1 = d
        .evaluations(&m)
        .into_iter()
        .filter(|e| e["version"] == json!("1"))
        .count();
    assert_eq!(v1, 1, "the champion is never judged again for its holdout");
    let passed_on = judged_on(&m, "2");
    assert_ne!(passed_on, failed_on);
}

#[test]
fn holdouts_a_gate_reads_the_dataset_the_candidates_run_logged_by_its_context() {
    let s3 = S3::start(None);
    s3.create_bucket("logged");
    let m = unique("objects-context");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("holdout.parquet");
    let local_s = local.display().to_string();
    fixtures(json!([{"op": "dataset", "path": local_s, "rows": 400, "segment": true}]));
    s3.put(
        "logged",
        "eval/holdout.parquet",
        std::fs::read(&local).unwrap(),
    );
    let v = register(&m, &[json!({}), json!({}), json!({})]);
    let runs: Vec<String> = v
        .iter()
        .map(|ver| block(version(&m, ver)).run_id.unwrap())
        .collect();
    let logged = fixtures(json!([
        {"op": "log_input", "run_id": runs[0], "path": local_s,
         "source": "s3://logged/eval/holdout.parquet", "context": "holdout", "name": m},
        {"op": "log_input", "run_id": runs[1], "path": local_s, "context": "training"},
        {"op": "log_input", "run_id": runs[2], "path": local_s, "source": "/tmp/delta/holdout",
         "source_type": "delta_table", "context": "holdout"},
    ]));
    assert_eq!(logged[0]["source_type"], json!("s3"), "{logged:?}");
    let context_gate =
        dataset_gate("logged", "unused").replace("path = \"unused\"", "context = \"holdout\"");
    let w = workdir(&[dataset_gate("disk", &local_s), context_gate].concat(), "");

    let r = evaluate(&w, &s3, &m, &v[0]);
    assert_no_host_left(r.pid);
    r.expect_code(0);
    let doc = r.json();
    let (disk, logged_gate) = (gate(&doc, "disk"), gate(&doc, "logged"));
    for key in ["accuracy", "f1", "slices"] {
        assert_eq!(disk["observed"][key], logged_gate["observed"][key], "{key}");
    }
    let ds = &logged_gate["observed"]["dataset"];
    assert_eq!(
        ds["path"],
        json!("s3://logged/eval/holdout.parquet"),
        "{ds}"
    );
    assert_eq!(ds["context"], json!("holdout"));
    let digest = logged[0]["digest"].as_str().unwrap();
    let identity = ds["identity"].as_str().unwrap();
    assert!(
        identity.starts_with("etag:") && identity.ends_with(&format!("digest:{digest}")),
        "the object's ETag and MLflow's digest: {identity}"
    );

    let message = |version: &str| {
        let r = evaluate(&w, &s3, &m, version);
        r.expect_code(2);
        let g = gate(&r.json(), "logged").clone();
        assert_eq!(g["outcome"], json!("error"), "{g}");
        g["message"].as_str().unwrap().to_string()
    };
    let none = message(&v[1]);
    assert!(
        none.contains(&format!(
            "run {} of v{} logged no dataset with context \"holdout\"",
            runs[1], v[1]
        )),
        "{none}"
    );
    let delta = message(&v[2]);
    assert!(
        delta.contains("is a `delta_table` source, which stagegate does not read"),
        "{delta}"
    );
}

#[test]
fn holdouts_a_dataset_logged_or_replaced_after_the_verdict_rejudges_the_candidate() {
    let s3 = S3::start(None);
    s3.create_bucket("logsrc");
    let prefix = unique("holdout-logged");
    let m = format!("{prefix}-m");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("holdout.csv");
    let local_s = local.display().to_string();
    fixtures(json!([{"op": "dataset", "path": local_s, "rows": 400}]));
    let good = std::fs::read(&local).unwrap();
    // The object the run will name holds the rows with every label flipped.
    s3.put("logsrc", "holdout.csv", flipped(&good));
    let d = daemon(&prefix, "context = \"holdout\"", &s3);
    register(&m, &[json!({"alias": "challenger"})]);
    d.wait_for(
        "v1 judged before its run logged a holdout",
        Duration::from_secs(120),
        || verdict(&m, "1").as_deref() == Some("error"),
    );

    // The run logs its holdout afterwards (no webhook says so): the poll judges v1 again, on
    // the object the dataset names, which fails it.
    let run = block(version(&m, "1")).run_id.unwrap();
    fixtures(json!([{"op": "log_input", "run_id": run, "path": local_s,
        "source": "s3://logsrc/holdout.csv", "context": "holdout", "name": m}]));
    d.wait_for(
        "v1 judged again on the logged holdout",
        Duration::from_secs(120),
        || verdict(&m, "1").as_deref() == Some("failed"),
    );
    let failed_on = judged_on(&m, "1");
    assert!(
        failed_on.as_str().unwrap().contains(" digest:"),
        "{failed_on}"
    );

    // The object under the logged dataset is fixed: judged again, and promoted.
    s3.put("logsrc", "holdout.csv", good);
    d.wait_for(
        "v1 judged on the fixed source and promoted",
        Duration::from_secs(120),
        || champion(&m).as_deref() == Some("1"),
    );
    let passed_on = judged_on(&m, "1");
    assert_ne!(passed_on, failed_on);
    let judged = d
        .evaluations(&m)
        .into_iter()
        .filter(|e| e["version"] == json!("1"))
        .count();
    assert!(judged >= 3, "judged {judged} times");
}
