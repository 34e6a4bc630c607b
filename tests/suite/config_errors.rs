//! Bad configuration is refused with exit 2 and one message naming the file, the key path and
//! the reason — before anything talks to MLflow.

use crate::common;

use common::Workdir;

const POLICY: &str = r#"
[[policies]]
name = "p"
candidate = { stage = "Staging" }
promote = { stage = "Production" }
"#;

fn gate(body: &str) -> String {
    format!("{POLICY}\n  [[policies.gates]]\n{body}\n")
}

/// Run `check` and `evaluate` on `toml`; both must exit 2 with every `expect` in stderr.
fn refused(toml: &str, expect: &[&str]) {
    let w = Workdir::new(toml);
    for args in [vec!["check"], vec!["evaluate", "m", "--promote"]] {
        // A closed port: if the config were accepted, MLflow would not be reachable anyway,
        // but the message must be about the config.
        let r = w.run_at("http://127.0.0.1:9", &args);
        r.expect_code(2);
        assert!(
            r.stderr.contains("stagegate.toml"),
            "file not named:\n{}",
            r.stderr
        );
        for e in expect {
            assert!(
                r.stderr.contains(e),
                "{args:?}: expected {e:?} in:\n{}",
                r.stderr
            );
        }
        assert_eq!(
            r.stderr.matches("error:").count(),
            1,
            "one message:\n{}",
            r.stderr
        );
    }
}

#[test]
fn unknown_key_at_top_level_and_in_a_table() {
    refused("[mlflw]\nx = 1\n", &["mlflw", "unknown key `mlflw`"]);
    refused(
        "[server]\nlisen = \"127.0.0.1:1\"\n",
        &["server.lisen", "unknown key"],
    );
}

#[test]
fn unknown_key_inside_a_gate() {
    let t = gate("  name = \"acc\"\n  type = \"metric\"\n  metric = \"val_accuracy\"\n  mn = 0.8");
    refused(
        &t,
        &["policies[0].gates[0]", "gate `acc`", "unknown field `mn`"],
    );
}

#[test]
fn wrong_type() {
    refused(
        "[workers]\ncount = \"four\"\n",
        &["workers.count", "invalid type"],
    );
    let t = gate("  name = \"acc\"\n  type = \"metric\"\n  metric = \"m\"\n  min = \"high\"");
    refused(&t, &["policies[0].gates[0]", "`min`", "invalid type"]);
}

#[test]
fn duplicate_gate_name() {
    let t = format!(
        "{POLICY}\n  [[policies.gates]]\n  name = \"a\"\n  type = \"tags\"\n  required = [\"x\"]\n\n  [[policies.gates]]\n  name = \"a\"\n  type = \"tags\"\n  required = [\"y\"]\n"
    );
    refused(
        &t,
        &["policies[0].gates[1].name", "duplicate gate name \"a\""],
    );
}

#[test]
fn unknown_gate_type() {
    refused(
        &gate("  name = \"a\"\n  type = \"metrc\""),
        &["policies[0].gates[0]", "unknown gate type `metrc`"],
    );
}

#[test]
fn missing_required_field() {
    refused(
        &gate("  name = \"a\"\n  type = \"metric\""),
        &["policies[0].gates[0]", "missing field `metric`"],
    );
    refused(
        "[[policies]]\nname = \"p\"\npromote = { stage = \"Production\" }\n",
        &["policies[0].candidate", "missing"],
    );
}

#[test]
fn invalid_cron() {
    refused(
        &format!("[poll]\nschedule = \"0 * * * *\"\n{POLICY}"),
        &["poll.schedule", "invalid cron", "seconds field"],
    );
    refused(
        &format!("[poll]\nschedule = \"every minute\"\n{POLICY}"),
        &["poll.schedule", "invalid cron"],
    );
}

#[test]
fn unparsable_duration() {
    refused(
        &format!("[mlflow]\nrequest_timeout = \"30 parsecs\"\n{POLICY}"),
        &["mlflow.request_timeout", "unparsable duration"],
    );
    let t = gate("  name = \"t\"\n  type = \"command\"\n  run = [\"true\"]\n  timeout = \"soon\"");
    refused(
        &t,
        &["policies[0].gates[0]", "`timeout`", "unparsable duration"],
    );
}

#[test]
fn candidate_equal_to_promote_target() {
    let t = "[[policies]]\nname = \"p\"\ncandidate = { stage = \"staging\" }\npromote = { stage = \"Staging\" }\n";
    refused(t, &["policies[0].promote", "same as the candidate"]);
    let t =
        "[[policies]]\nname = \"p\"\ncandidate = { alias = \"a\" }\npromote = { alias = \"a\" }\n";
    refused(t, &["policies[0].promote", "same as the candidate"]);
}

#[test]
fn target_and_value_rules() {
    refused(
        "[[policies]]\nname = \"p\"\ncandidate = { stage = \"Staging\", alias = \"x\" }\npromote = { stage = \"Production\" }\n",
        &["policies[0].candidate", "exactly one"],
    );
    refused(
        "[[policies]]\nname = \"p\"\ncandidate = { stage = \"Staging\" }\npromote = { alias = \"champ\", archive_existing = true }\n",
        &["archive_existing"],
    );
    refused(
        &gate("  name = \"a\"\n  type = \"metric\"\n  metric = \"m\"\n  min = 0.9\n  max = 0.1"),
        &["min is greater than max"],
    );
    refused(
        &gate("  name = \"bad:name\"\n  type = \"tags\"\n  required = [\"x\"]"),
        &["policies[0].gates[0].name", "tag keys"],
    );
    // An empty token would let a bare `Authorization: Bearer ` through.
    refused(
        &format!("[server]\napi_token = \" \"\n{POLICY}"),
        &["server.api_token", "must not be empty"],
    );
}

#[test]
fn invalid_toml_syntax() {
    refused("[mlflow\nx", &["invalid TOML", "line 1"]);
}

#[test]
fn environment_override_is_validated_and_named() {
    let w = Workdir::new(POLICY);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["check"])
        .current_dir(w.path())
        .env("STAGEGATE_WORKERS__COUNT", "abc")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("STAGEGATE_WORKERS__COUNT") && stderr.contains("invalid type"),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["evaluate", "m"])
        .current_dir(dir.path())
        .env_remove("STAGEGATE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    if !std::path::Path::new("/etc/stagegate/stagegate.toml").exists() {
        assert!(stderr.contains("no config file found"), "{stderr}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["check"])
        .env("STAGEGATE_CONFIG", dir.path().join("nope.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("nope.toml") && stderr.contains("STAGEGATE_CONFIG"),
        "{stderr}"
    );
}

#[test]
fn served_gate_tables_are_strict_too() {
    refused(
        &gate("  name = \"lat\"\n  type = \"latency\"\n  p99_ms = 10.0\n  timeout = \"1s\""),
        &["unknown field `timeout`"],
    );
    refused(
        &gate("  name = \"lat\"\n  type = \"latency\"\n  requests = 10"),
        &["p99_ms"],
    );
    refused(
        &gate(
            "  name = \"d\"\n  type = \"dataset\"\n  path = \"x.csv\"\n  label = \"y\"\n  metrics = { accuracy = 0.8, rmse = 1.0 }",
        ),
        &["mixes regression metrics"],
    );
    refused(
        &gate(
            "  name = \"d\"\n  type = \"dataset\"\n  path = \"x.csv\"\n  label = \"y\"\n  metrics = { acuracy = 0.8 }",
        ),
        &["unknown metric \"acuracy\""],
    );
    refused(
        &gate(
            "  name = \"d\"\n  type = \"dataset\"\n  path = \"x.csv\"\n  context = \"holdout\"\n  label = \"y\"\n  metrics = { accuracy = 0.8 }",
        ),
        &["set `path` or `context`, not both"],
    );
    refused(
        &gate(
            "  name = \"d\"\n  type = \"dataset\"\n  label = \"y\"\n  metrics = { accuracy = 0.8 }",
        ),
        &["set `path` (the file) or `context`"],
    );
    refused(
        &gate(
            "  name = \"d\"\n  type = \"dataset\"\n  path = \"ftp://host/x.csv\"\n  label = \"y\"\n  metrics = { accuracy = 0.8 }",
        ),
        &["the scheme `ftp` is not one stagegate reads"],
    );
    refused(
        &gate("  name = \"c\"\n  type = \"command\"\n  run = []"),
        &["needs a program"],
    );
    refused(
        &gate(
            "  name = \"d\"\n  type = \"dataset\"\n  path = \"x.csv\"\n  label = \"y\"\n  vs_champion = { metric = \"accuracy\", confidence = 1.5 }",
        ),
        &["vs_champion.confidence"],
    );
}

#[test]
fn unknown_or_empty_edge_case_families() {
    let t =
        gate("  name = \"edges\"\n  type = \"edge_cases\"\n  cases = [\"zeros\", \"dtype_limit\"]");
    refused(
        &t,
        &[
            "policies[0].gates[0]",
            "gate `edges`",
            "`cases[1]`",
            "unknown case family \"dtype_limit\"",
            "expected one of zeros, large, nan, missing, strings, booleans, one_row, batch, dtype_limits",
        ],
    );
    refused(
        &gate("  name = \"edges\"\n  type = \"edge_cases\"\n  cases = []"),
        &["gate `edges`", "`cases`", "list at least one case family"],
    );
    refused(
        &gate("  name = \"edges\"\n  type = \"edge_cases\"\n  cases = \"nan\""),
        &["gate `edges`", "`cases`", "invalid type"],
    );
}

/// A shared store's URL is checked for its form before anything is reached, and the message
/// never shows its password.
#[test]
fn unusable_state_urls_and_leases_are_refused_without_the_password() {
    let with = |state: &str| format!("[state]\n{state}\n{POLICY}");
    for (state, expect) in [
        (r#"url = "mysql://sg:hunter2@db/x""#, "not a postgres://"),
        (r#"url = "postgres://sg:hunter2@db/""#, "names no database"),
        (
            r#"url = "postgres://sg:hunter2@db/x?colour=blue""#,
            "colour",
        ),
        (
            r#"url = "postgres://sg:hunter2@db/x?sslrootcert=/nonexistent/ca.pem""#,
            "sslrootcert /nonexistent/ca.pem",
        ),
    ] {
        refused(&with(state), &["state.url", expect, "sg:***@db"]);
        let w = Workdir::new(&with(state));
        let r = w.run_at("http://127.0.0.1:9", &["check"]);
        assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    }
    refused(
        &with(r#"lease = "100ms""#),
        &["state.lease", "from 1s to 10m"],
    );
}

#[test]
fn a_bad_analysis_names_its_key() {
    let analysis = |body: &str| {
        format!("{POLICY}\n  [policies.analysis]\n  interval = \"5s\"\n  count = 3\n{body}\n")
    };
    let prom = "  [[policies.analysis.metrics]]\n  name = \"errors\"\n  provider = \"prometheus\"\n  address = \"http://127.0.0.1:9090\"\n  query = \"up\"\n";
    refused(
        &analysis(""),
        &["policies[0].analysis.metrics", "required key is missing"],
    );
    refused(
        &analysis(prom),
        &[
            "policies[0].analysis.metrics[0]",
            "set `min`, `max` or both",
        ],
    );
    refused(
        &analysis(&format!("{prom}  max = 0.01\n  url = \"http://x\"\n")),
        &[
            "policies[0].analysis.metrics[0].url",
            "not a key of provider = \"prometheus\"",
        ],
    );
    refused(
        &analysis(&format!("{prom}  min = 2.0\n  max = 1.0\n")),
        &["policies[0].analysis.metrics[0].min", "above max"],
    );
    refused(
        &analysis(
            "  [[policies.analysis.metrics]]\n  name = \"p99\"\n  provider = \"web\"\n  url = \"ftp://x\"\n  pointer = \"/p99\"\n  max = 1.0\n",
        ),
        &["policies[0].analysis.metrics[0].url", "not an http(s) URL"],
    );
    refused(
        &analysis(&format!("{prom}  max = 0.01\n  username_env = \"U\"\n")),
        &["policies[0].analysis.metrics[0].username_env", "both"],
    );
    refused(
        &format!("{POLICY}\n  [policies.analysis]\n  interval = \"soon\"\n  count = 3\n"),
        &["interval", "unparsable duration"],
    );
    refused(
        &analysis(&format!("  on_failure = \"page\"\n{prom}  max = 0.01\n")),
        &["on_failure"],
    );
}
