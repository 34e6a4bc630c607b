//! The config files the repository ships (config/ and config/examples/, found by listing the
//! directories, so a new file is covered) pass `stagegate check --offline`; a bad one is
//! refused with exit 2 naming the key; `--offline` never contacts MLflow and warns, without
//! failing, about what only the server can have (a dataset file, an API token).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Run, Workdir, root};

/// MLflow is never reachable here: an offline check that tried would fail.
const CLOSED_PORT: &str = "http://127.0.0.1:9";

/// `stagegate check --offline --config FILE`, with `env` added to a clean environment.
fn check_offline(config: &Path, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagegate"));
    cmd.args(["check", "--offline", "--config"])
        .arg(config)
        .env("MLFLOW_TRACKING_URI", CLOSED_PORT)
        .env_remove("STAGEGATE_CONFIG")
        .env_remove("STAGEGATE_SERVER__API_TOKEN")
        .env_remove("STAGEGATE_WEBHOOKS__SECRETS")
        .envs(env.iter().copied());
    Run::of(cmd)
}

/// The `.toml` files directly in `dir`, sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Uncommented lines that open `header` tables: what the check must have counted.
fn tables(text: &str, header: &str) -> usize {
    text.lines().filter(|l| l.trim() == header).count()
}

#[test]
fn every_shipped_config_passes_the_offline_check() {
    let mut files = toml_files(&root().join("config"));
    files.extend(toml_files(&root().join("config/examples")));
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "stagegate.toml",
        "seed-practice.toml",
        "alias-rollout.toml",
        "dry-run.toml",
        "approval.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for file in &files {
        let r = check_offline(file, &[]);
        assert_eq!(
            r.code,
            0,
            "{}:\nstdout:\n{}\nstderr:\n{}",
            file.display(),
            r.stdout,
            r.stderr
        );
        // Everything in the file was read: as many policies and gates as it declares.
        let text = std::fs::read_to_string(file).unwrap();
        let (policies, gates) = (
            tables(&text, "[[policies]]"),
            tables(&text, "[[policies.gates]]"),
        );
        let summary = format!(
            "ok ({policies} {}, {gates} {})",
            if policies == 1 { "policy" } else { "policies" },
            if gates == 1 { "gate" } else { "gates" }
        );
        assert!(
            r.stdout.contains(&summary) && r.stdout.contains("not contacted (--offline)"),
            "{}: expected {summary:?} in:\n{}",
            file.display(),
            r.stdout
        );
        // Warnings (a dataset absent here) are fine; nothing else may be said.
        assert!(
            r.stderr.lines().all(|l| l.starts_with("warning: ")),
            "{}: {}",
            file.display(),
            r.stderr
        );
    }
}

#[test]
fn a_bad_file_exits_2_naming_the_key() {
    // The reference config with one typo: strict everywhere, offline too.
    let reference = std::fs::read_to_string(root().join("config/stagegate.toml")).unwrap();
    let bad = reference.replacen("\nbackoff = \"2s\"", "\nbakoff = \"2s\"", 1);
    assert_ne!(bad, reference, "the reference config sets workers.backoff");
    let w = Workdir::new(&bad);
    let r = check_offline(&w.config(), &[]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("stagegate.toml")
            && r.stderr.contains("workers.bakoff")
            && r.stderr.contains("unknown key `bakoff`"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("ok ("), "{}", r.stdout);

    // A rule serde cannot express is checked offline as well.
    let bad = reference.replacen("max = 1.0 ", "max = 0.5 ", 1);
    assert_ne!(
        bad, reference,
        "the reference config's first gate sets max = 1.0"
    );
    let w = Workdir::new(&bad);
    let r = check_offline(&w.config(), &[]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("policies[0].gates[0]") && r.stderr.contains("min is greater than max"),
        "{}",
        r.stderr
    );
}

const POLICIES: &str = r#"
[server]
listen = "0.0.0.0:8080"

[[policies]]
name = "stages"
models = ["fraud-*"]
candidate = { stage = "Staging" }
promote = { stage = "Production" }
mode = "dry-run"

  [[policies.gates]]
  name = "acc"
  type = "metric"
  metric = "val_accuracy"
  min = 0.8

  [[policies.gates]]
  name = "holdout"
  type = "dataset"
  path = "data/holdout.csv"
  label = "y"
  metrics = { accuracy = 0.8 }
  enforce = false

[[policies]]
name = "aliases"
candidate = { alias = "challenger" }
promote = { alias = "champion" }
on_bypass = "ignore"
"#;

#[test]
fn offline_lists_policies_targets_and_gates_and_warns_without_failing() {
    let w = Workdir::new(POLICIES);
    let r = check_offline(&w.config(), &[]);
    r.expect_code(0);
    for row in [
        [
            "stages",
            "fraud-*",
            "stage Staging",
            "stage Production (archive existing)",
            "dry-run",
            "keep",
            "tag",
        ],
        [
            "aliases",
            "*",
            "alias @challenger",
            "alias @champion",
            "enforce",
            "keep",
            "ignore",
        ],
    ] {
        assert!(
            r.stdout.lines().any(|l| l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .eq(row)),
            "row {row:?} in:\n{}",
            r.stdout
        );
    }
    for row in [
        ["stages", "acc", "metric", "enforce"],
        ["stages", "holdout", "dataset", "shadow"],
    ] {
        assert!(
            r.stdout.lines().any(|l| l.split_whitespace().eq(row)),
            "row {row:?} in:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains("listen 0.0.0.0:8080, api token not set"),
        "{}",
        r.stdout
    );
    // The dataset may exist only where the daemon runs, the token arrives by environment
    // there: warnings, each naming what and where.
    let holdout = w.path().join("data/holdout.csv");
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", r.stderr);
    assert!(
        warnings.iter().any(|w| w.contains("policies[0].gates[1]")
            && w.contains("gate `holdout`")
            && w.contains("data/holdout.csv not found")
            && w.contains(&format!("looked at {}", holdout.display()))),
        "{}",
        r.stderr
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("STAGEGATE_SERVER__API_TOKEN")),
        "{}",
        r.stderr
    );

    // With the file present and the token set, nothing is left to warn about.
    std::fs::create_dir_all(w.path().join("data")).unwrap();
    std::fs::write(&holdout, "y\n1\n").unwrap();
    let r = check_offline(&w.config(), &[("STAGEGATE_SERVER__API_TOKEN", "t")]);
    r.expect_code(0);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    assert!(r.stdout.contains("api token set"), "{}", r.stdout);
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_output_quietly() {
    // `stagegate check --offline | head -1`: the pipe is closed before stagegate writes, so
    // every write fails with EPIPE. That is the reader's choice, not an error; `println!`
    // would panic (exit 101) on it.
    let config = root().join("config/stagegate.toml");
    for args in [
        vec!["check", "--offline", "--config", config.to_str().unwrap()],
        vec!["man"],
        vec!["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .args(&args)
            .env("MLFLOW_TRACKING_URI", CLOSED_PORT)
            .env_remove("STAGEGATE_CONFIG")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run stagegate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
