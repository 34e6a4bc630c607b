//! `stagegate evaluate` against a real MLflow server, with models really trained and registered
//! by the Python fixtures in both MLflow 3 (logged model) and MLflow 2 (`runs:/`) form.

use crate::common;

use common::*;
use serde_json::{Value, json};

fn register(name: &str, extra: Value) -> String {
    let mut op = json!({"op": "register", "name": name, "tags": good_tags(), "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}});
    op.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    fixtures(json!([op]))[0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

fn seed_config(targets: &str, extra_gates: &str) -> Workdir {
    Workdir::new(&config(targets, &format!("{SEED_GATES}{extra_gates}")))
}

#[tokio::test]
async fn stage_candidate_passes_and_is_promoted_with_archiving() {
    let m = unique("stage-pass");
    let v1 = register(&m, json!({"stage": "Production"}));
    let old = register(&m, json!({"stage": "Staging"}));
    let v3 = register(&m, json!({"stage": "Staging"}));
    let w = seed_config(STAGE_TARGETS, CHAMPION_GATE);

    let r = w.run(&["evaluate", &m, "--promote", "--json"]);
    r.expect_code(0);
    let doc = r.json();
    // The newest candidate is the one evaluated when VERSION is omitted.
    assert_eq!(doc["version"], json!(v3));
    assert_eq!(doc["verdict"], json!("passed"));
    assert_eq!(doc["action"], json!("promoted"));
    assert_eq!(doc["gates"].as_array().unwrap().len(), 4);
    for key in [
        "model",
        "policy",
        "policy_digest",
        "champion",
        "evaluated_at",
    ] {
        assert!(!doc[key].is_null(), "--json lacks {key}: {doc}");
    }

    let promoted = version(&m, &v3).await;
    assert_eq!(promoted.current_stage, "Production");
    let t = |k: &str| promoted.tag(&format!("stagegate.{k}")).map(str::to_string);
    assert_eq!(t("verdict").as_deref(), Some("passed"));
    assert_eq!(t("policy").as_deref(), Some("default"));
    assert_eq!(t("action").as_deref(), Some("promoted"));
    assert_eq!(t("replaced_version"), Some(v1.clone()));
    let digest = t("policy_digest").unwrap();
    assert!(
        digest.len() == 12 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{digest}"
    );
    assert!(humantime::parse_rfc3339(&t("evaluated_at").unwrap()).is_ok());
    assert_eq!(
        t("gate.accuracy").as_deref(),
        Some("pass: val_accuracy=0.9 >= min 0.85")
    );
    assert!(
        t("gate.no-regression")
            .unwrap()
            .starts_with("pass: val_accuracy=0.9 vs champion v")
    );
    let report: Value = serde_json::from_str(&t("report").unwrap()).unwrap();
    assert_eq!(report["policy_digest"], json!(digest));
    assert_eq!(
        report["stagegate_version"],
        json!(env!("CARGO_PKG_VERSION"))
    );
    let gates = report["gates"].as_array().unwrap();
    assert!(gates.iter().all(|g| g["outcome"] == json!("pass")
        && g.get("duration_ms").is_some()
        && g.get("threshold").is_some()));

    let replaced = version(&m, &v1).await;
    assert_eq!(replaced.current_stage, "Archived");
    assert_eq!(replaced.tag("stagegate.replaced_by"), Some(v3.as_str()));
    assert!(
        replaced
            .tag("stagegate.replaced_at")
            .is_some_and(|t| humantime::parse_rfc3339(t).is_ok())
    );
    // The older candidate is untouched by a one-shot evaluation of the newest.
    assert_eq!(version(&m, &old).await.current_stage, "Staging");
}

#[tokio::test]
async fn alias_candidate_passes_and_the_champion_alias_moves() {
    let m = unique("alias-pass");
    let v1 = register(&m, json!({"alias": "champion"}));
    let v2 = register(&m, json!({"alias": "challenger"}));
    let w = seed_config(ALIAS_TARGETS, CHAMPION_GATE);

    w.run(&["evaluate", &m, "--promote"]).expect_code(0);

    let rm = client().registered_model(&m).await.unwrap();
    assert_eq!(rm.alias("champion"), Some(v2.as_str()));
    // The challenger alias is never moved or removed by stagegate (README, "Aliases"): it
    // stays on the promoted version until the next training job moves it.
    assert_eq!(rm.alias("challenger"), Some(v2.as_str()));
    let new = version(&m, &v2).await;
    assert_eq!(new.tag("stagegate.action"), Some("promoted"));
    assert_eq!(new.tag("stagegate.replaced_version"), Some(v1.as_str()));
    assert_eq!(
        version(&m, &v1).await.tag("stagegate.replaced_by"),
        Some(v2.as_str())
    );
}

#[tokio::test]
async fn failed_metric_blocks_and_tags_the_exact_reason() {
    let m = unique("metric-fail");
    let v = register(
        &m,
        json!({"stage": "Staging", "metrics": {"val_accuracy": 0.812, "val_f1": 0.8}}),
    );
    let w = seed_config(STAGE_TARGETS, "");

    let r = w.run(&["evaluate", &m, "--promote"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains("accuracy") && r.stdout.contains("fail"),
        "table:\n{}",
        r.stdout
    );

    let got = version(&m, &v).await;
    assert_eq!(
        got.tag("stagegate.gate.accuracy"),
        Some("fail: val_accuracy=0.812 < min 0.85")
    );
    assert_eq!(got.tag("stagegate.verdict"), Some("failed"));
    assert_eq!(got.tag("stagegate.action"), Some("kept"));
    assert_eq!(got.current_stage, "Staging");
}

#[tokio::test]
async fn missing_tags_fail_the_tags_gate() {
    let m = unique("tags-missing");
    let v = register(
        &m,
        json!({"stage": "Staging", "tags": {"accuracy": "0.9", "feature_schema_version": ""}}),
    );
    let w = seed_config(STAGE_TARGETS, "");
    w.run(&["evaluate", &m, "--promote"]).expect_code(1);
    let got = version(&m, &v).await;
    assert_eq!(
        got.tag("stagegate.gate.metadata").unwrap(),
        format!("fail: missing or empty on v{v}: training_dataset_version, feature_schema_version")
    );
    assert_eq!(got.current_stage, "Staging");
}

#[tokio::test]
async fn run_gate_sees_model_files_of_both_mlflow_2_and_mlflow_3_sources() {
    let m = unique("run-forms");
    let v2 = register(&m, json!({"form": "mlflow2"}));
    let v3 = register(&m, json!({"form": "mlflow3"}));
    let bare = register(
        &m,
        json!({"form": "mlflow2", "no_model_files": true, "params": null}),
    );
    let w = seed_config(STAGE_TARGETS, "");

    let r = w.run(&["evaluate", &m, &v2, "--json"]);
    r.expect_code(0);
    assert!(
        client()
            .model_version(&m, &v2)
            .await
            .unwrap()
            .source
            .starts_with("runs:/")
    );
    let r = w.run(&["evaluate", &m, &v3, "--json"]);
    r.expect_code(0);
    let got = version(&m, &v3).await;
    assert!(got.source.starts_with("models:/m-"), "{}", got.source);
    assert!(
        got.tag("stagegate.gate.run-complete")
            .unwrap()
            .contains("logged model m-")
    );

    let r = w.run(&["evaluate", &m, &bare, "--json"]);
    r.expect_code(1);
    let tag = version(&m, &bare)
        .await
        .tag("stagegate.gate.run-complete")
        .unwrap()
        .to_string();
    assert!(
        tag.starts_with("fail: ") && tag.contains("params seed") && tag.contains("model files"),
        "{tag}"
    );
}

#[tokio::test]
async fn champion_regression_is_blocked() {
    let m = unique("regression");
    let champ = register(
        &m,
        json!({"stage": "Production", "metrics": {"val_accuracy": 0.95, "val_f1": 0.9}}),
    );
    let cand = register(
        &m,
        json!({"stage": "Staging", "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}}),
    );
    let w = seed_config(STAGE_TARGETS, CHAMPION_GATE);
    w.run(&["evaluate", &m, "--promote"]).expect_code(1);
    let got = version(&m, &cand).await;
    assert_eq!(
        got.tag("stagegate.gate.no-regression").unwrap(),
        format!("fail: val_accuracy=0.9 vs champion v{champ} 0.95: drop 0.05 > max_drop 0.01")
    );
    assert_eq!(got.current_stage, "Staging");
    assert_eq!(version(&m, &champ).await.current_stage, "Production");
}

#[tokio::test]
async fn candidate_older_than_the_champion_is_superseded() {
    let m = unique("superseded");
    let older = register(&m, json!({"stage": "Staging"}));
    let newer = register(&m, json!({"stage": "Production"}));
    let w = seed_config(STAGE_TARGETS, "");
    w.run(&["evaluate", &m, &older, "--promote"]).expect_code(0);
    let got = version(&m, &older).await;
    assert_eq!(got.tag("stagegate.action"), Some("superseded"));
    assert_eq!(got.current_stage, "Staging");
    assert_eq!(version(&m, &newer).await.current_stage, "Production");
}

#[tokio::test]
async fn dry_run_records_would_promote_and_moves_nothing() {
    let m = unique("dry-run");
    let v = register(&m, json!({"stage": "Staging"}));
    let w = Workdir::new(&config(
        &format!("{STAGE_TARGETS}\nmode = \"dry-run\""),
        SEED_GATES,
    ));
    w.run(&["evaluate", &m, "--promote"]).expect_code(0);
    let got = version(&m, &v).await;
    assert_eq!(got.tag("stagegate.action"), Some("would-promote"));
    assert_eq!(got.current_stage, "Staging");
}

#[tokio::test]
async fn on_fail_archive_archives_a_failed_stage_candidate_only_with_promote() {
    let m = unique("archive");
    let v = register(
        &m,
        json!({"stage": "Staging", "metrics": {"val_accuracy": 0.5, "val_f1": 0.5}}),
    );
    let w = Workdir::new(&config(
        &format!("{STAGE_TARGETS}\non_fail = \"archive\""),
        SEED_GATES,
    ));
    w.run(&["evaluate", &m]).expect_code(1);
    let got = version(&m, &v).await;
    assert_eq!(got.current_stage, "Staging");
    assert_eq!(
        got.tag("stagegate.action"),
        Some("skipped: --promote not given (would archive)")
    );

    w.run(&["evaluate", &m, &v, "--promote"]).expect_code(1);
    let got = version(&m, &v).await;
    assert_eq!(got.current_stage, "Archived");
    assert_eq!(got.tag("stagegate.action"), Some("archived"));
}

#[tokio::test]
async fn without_promote_nothing_moves_and_the_action_says_so() {
    let m = unique("no-promote");
    let v = register(&m, json!({"stage": "Staging"}));
    let w = seed_config(STAGE_TARGETS, "");
    let r = w.run(&["evaluate", &m]);
    r.expect_code(0);
    assert!(r.stdout.contains("--promote not given"), "{}", r.stdout);
    let got = version(&m, &v).await;
    assert_eq!(got.current_stage, "Staging");
    assert_eq!(got.tag("stagegate.verdict"), Some("passed"));
    assert_eq!(
        got.tag("stagegate.action"),
        Some("skipped: --promote not given (would promote)")
    );
}

#[tokio::test]
async fn rollback_restores_the_replaced_version_and_refuses_when_there_is_none() {
    for (targets, stage_mode) in [(STAGE_TARGETS, true), (ALIAS_TARGETS, false)] {
        let m = unique(if stage_mode {
            "rollback-stage"
        } else {
            "rollback-alias"
        });
        let w = seed_config(targets, "");
        let place = |v: &str| {
            if stage_mode {
                json!({"op": "stage", "name": m, "version": v, "stage": "Staging"})
            } else {
                json!({"op": "alias", "name": m, "alias": "challenger", "version": v})
            }
        };
        let v1 = register(&m, json!({}));
        fixtures(json!([place(&v1)]));
        w.run(&["evaluate", &m, "--promote"]).expect_code(0);
        // Nothing was replaced by v1's promotion: nothing to restore.
        let r = w.run(&["rollback", &m]);
        r.expect_code(2);
        assert!(r.stderr.contains("nothing to restore"), "{}", r.stderr);

        let v2 = register(&m, json!({}));
        fixtures(json!([place(&v2)]));
        w.run(&["evaluate", &m, "--promote"]).expect_code(0);
        let r = w.run(&["rollback", &m]);
        r.expect_code(0);
        assert!(
            r.stdout.contains(&format!("v{v2} -> v{v1}")),
            "{}",
            r.stdout
        );

        let (bad, good) = (version(&m, &v2).await, version(&m, &v1).await);
        if stage_mode {
            assert_eq!(good.current_stage, "Production");
            assert_eq!(bad.current_stage, "Archived");
        } else {
            assert_eq!(
                client()
                    .registered_model(&m)
                    .await
                    .unwrap()
                    .alias("champion"),
                Some(v1.as_str())
            );
        }
        assert!(
            bad.tag("stagegate.rolled_back")
                .unwrap()
                .contains(&format!("rolled back to v{v1}"))
        );
        assert_eq!(bad.tag("stagegate.replaced_by"), Some(v1.as_str()));
        assert!(good.tag("stagegate.restored_at").is_some());
        assert_eq!(good.tag("stagegate.replaced_by"), None);
    }
}

#[tokio::test]
async fn unknown_model_version_or_candidate_is_a_clear_error() {
    let m = unique("errors");
    let v = register(&m, json!({}));
    let w = seed_config(STAGE_TARGETS, "");
    let r = w.run(&["evaluate", &format!("{m}-nope")]);
    r.expect_code(2);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    let r = w.run(&["evaluate", &m, "999"]);
    r.expect_code(2);
    assert!(r.stderr.contains("no version 999"), "{}", r.stderr);
    let r = w.run(&["evaluate", &m, "--json"]);
    r.expect_code(2);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no candidate at stage Staging")
    );
    // Nothing was written on the existing version.
    assert_eq!(version(&m, &v).await.tag("stagegate.verdict"), None);
}

#[tokio::test]
async fn check_lists_matched_models_with_candidate_and_champion() {
    let m = unique("check");
    register(&m, json!({"stage": "Production"}));
    let v2 = register(&m, json!({"stage": "Staging"}));
    let w = Workdir::new(
        &config(STAGE_TARGETS, SEED_GATES)
            .replace("models = [\"*\"]", &format!("models = [\"{m}\"]")),
    );
    let r = w.run(&["check"]);
    r.expect_code(0);
    assert!(r.stdout.contains("reachable"), "{}", r.stdout);
    // The suite's MLflow 3 server has webhooks (tests/compat_mlflow2.rs checks one without).
    assert!(
        r.stdout.contains("webhooks  offered by this server"),
        "{}",
        r.stdout
    );
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(&m))
        .unwrap_or_else(|| panic!("{m} not listed:\n{}", r.stdout));
    assert!(
        line.contains(&format!("v{v2} (Staging)")) && line.contains("(Production)"),
        "{line}"
    );
}

/// MLflow unreachable: a proxy in front of the real server drops every connection. The
/// proxy's log shows what stagegate tried (reads only), and the real registry, read directly,
/// shows that nothing changed on a candidate that would otherwise be promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_unreachable_exits_2_without_writing() {
    use common::proxy::{Fault, FaultProxy, Rule};
    let m = unique("unreachable");
    let champion = register(&m, json!({"stage": "Production"}));
    let candidate = register(&m, json!({"stage": "Staging"}));
    let proxy = FaultProxy::start(&mlflow_uri()).await;
    proxy.add(Rule::new(None, "/", Fault::Drop, 0));
    let w = Workdir::new(
        &config(STAGE_TARGETS, SEED_GATES).replace("[mlflow]", "[mlflow]\nretries = 1"),
    );
    let (dir, url, name) = (w.path().to_path_buf(), proxy.url.clone(), m.clone());
    let r = tokio::task::spawn_blocking(move || {
        // Off the runtime, so the proxy keeps answering meanwhile.
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"));
        cmd.args(["evaluate", &name, "--promote", "--json"])
            .current_dir(dir)
            .env("MLFLOW_TRACKING_URI", url)
            .env_remove("STAGEGATE_CONFIG");
        Run::of(cmd)
    })
    .await
    .unwrap();
    r.expect_code(2);
    assert!(
        r.json()["error"].as_str().unwrap().contains("unreachable"),
        "{}",
        r.stdout
    );
    let tried = proxy.requests();
    assert!(!tried.is_empty(), "stagegate never reached the proxy");
    let writes: Vec<&String> = tried.iter().filter(|r| !r.starts_with("GET ")).collect();
    assert!(writes.is_empty(), "write attempts: {writes:?}");
    for (v, stage) in [(&champion, "Production"), (&candidate, "Staging")] {
        let mv = version(&m, v).await;
        assert_eq!(mv.current_stage, stage, "v{v} moved");
        let ours: Vec<&String> = mv
            .tags
            .keys()
            .filter(|k| k.starts_with("stagegate."))
            .collect();
        assert!(ours.is_empty(), "v{v} got tags {ours:?}");
    }

    let r = w.run_at("http://127.0.0.1:9", &["check"]);
    r.expect_code(2);
    assert!(r.stderr.contains("unreachable"));
}
