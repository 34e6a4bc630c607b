//! CI-native output of `stagegate evaluate` on really registered models: `--junit` parsed back
//! as XML, `--summary` read as markdown rows; and the CI examples in `examples/ci/` validated
//! against the GitHub Actions and GitLab CI schemas.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::block;
use common::*;
use serde_json::json;

/// The seed's gates plus a shadow gate no model here passes.
const SHADOW: &str = r#"
  [[policies.gates]]
  name = "f1-stretch"
  type = "metric"
  metric = "val_f1"
  min = 0.99
  enforce = false
"#;

fn register(name: &str, accuracy: f64) -> String {
    let op = json!({"op": "register", "name": name, "tags": good_tags(), "stage": "Staging",
                    "metrics": {"val_accuracy": accuracy, "val_f1": 0.9}});
    fixtures(json!([op]))[0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A `<testcase>`: classname, name, and its failure/error/skipped child with its message.
type Testcase = (String, String, Option<(String, String)>);

fn case(classname: &str, name: &str, result: Option<(&str, &str)>) -> Testcase {
    let result = result.map(|(k, m)| (k.to_string(), m.to_string()));
    (classname.to_string(), name.to_string(), result)
}

fn cases(doc: &roxmltree::Document) -> Vec<Testcase> {
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            let child = n.children().find(|c| c.is_element()).map(|c| {
                (
                    c.tag_name().name().to_string(),
                    c.attribute("message").unwrap_or_default().to_string(),
                )
            });
            let attr = |a| n.attribute(a).unwrap_or_default().to_string();
            (attr("classname"), attr("name"), child)
        })
        .collect()
}

fn suite_counts(doc: &roxmltree::Document) -> Vec<(String, String)> {
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a <testsuite>");
    ["tests", "failures", "errors", "skipped"]
        .iter()
        .map(|a| {
            (
                a.to_string(),
                suite.attribute(*a).unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn properties(doc: &roxmltree::Document) -> Vec<(String, String)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("property"))
        .map(|n| {
            let a = |k| n.attribute(k).unwrap_or_default().to_string();
            (a("name"), a("value"))
        })
        .collect()
}

fn counts(t: &str, f: &str, e: &str, s: &str) -> Vec<(String, String)> {
    [("tests", t), ("failures", f), ("errors", e), ("skipped", s)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn junit_and_summary_of_a_passing_and_a_failing_version() {
    let good = unique("ci-pass");
    let bad = unique("ci-fail");
    let vg = register(&good, 0.9);
    let vb = register(&bad, 0.812);
    let w = Workdir::new(&config(STAGE_TARGETS, &format!("{SEED_GATES}{SHADOW}")));
    let junit = w.path().join("reports/junit.xml");
    std::fs::create_dir(w.path().join("reports")).unwrap();
    let summary = w.path().join("summary.md");
    std::fs::write(&summary, "# Training\n\nearlier step\n\n").unwrap();
    let run = |model: &str| {
        w.run(&[
            "evaluate",
            model,
            "--promote",
            "--junit",
            "reports/junit.xml",
            "--summary",
            summary.to_str().unwrap(),
        ])
    };

    // The passing version: promoted, every enforced gate a plain test case, the shadow skipped.
    run(&good).expect_code(0);
    let xml = read(&junit);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(suite_counts(&doc), counts("4", "0", "0", "1"), "{xml}");
    let props = properties(&doc);
    for (k, v) in [
        ("verdict", "passed"),
        ("action", "promoted"),
        ("policy", "default"),
    ] {
        assert!(
            props.contains(&(k.into(), v.into())),
            "{k}={v} not in {props:?}"
        );
    }
    let digest = block(version(&good, &vg))
        .tag("stagegate.policy_digest")
        .unwrap()
        .to_string();
    assert!(
        props.contains(&("policy_digest".into(), digest)),
        "{props:?}"
    );
    let classname = format!("{good}/{vg}");
    let shadow_msg = "shadow gate, would block: fail: val_f1=0.9 < min 0.99".to_string();
    assert_eq!(
        cases(&doc),
        [
            case(&classname, "accuracy", None),
            case(&classname, "metadata", None),
            case(&classname, "run-complete", None),
            case(&classname, "f1-stretch", Some(("skipped", &shadow_msg))),
        ]
    );

    // The failing version (exit 1, as without --junit): the report replaces the previous one.
    run(&bad).expect_code(1);
    let xml = read(&junit);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(suite_counts(&doc), counts("4", "1", "0", "1"), "{xml}");
    assert!(properties(&doc).contains(&("verdict".into(), "failed".into())));
    assert!(properties(&doc).contains(&("action".into(), "kept".into())));
    let got = cases(&doc);
    assert_eq!(
        got[0].2,
        Some((
            "failure".into(),
            "fail: val_accuracy=0.812 < min 0.85".into()
        )),
        "{xml}"
    );
    assert_eq!(got[3].2, Some(("skipped".into(), shadow_msg)), "{xml}");
    assert_eq!(got[0].0, format!("{bad}/{vb}"));
    // Only the report is in its directory: the temporary file was renamed over it.
    assert_eq!(
        std::fs::read_dir(w.path().join("reports")).unwrap().count(),
        1
    );

    // The summary kept the earlier step's text and has one section per run, in order.
    let md = read(&summary);
    assert!(md.starts_with("# Training\n\nearlier step\n\n"), "{md}");
    let good_at = md
        .find(&format!("### stagegate: {good} v{vg}: ✅ passed"))
        .expect(&md);
    let bad_at = md
        .find(&format!("### stagegate: {bad} v{vb}: ❌ failed"))
        .expect(&md);
    assert!(good_at < bad_at, "{md}");
    let rows: Vec<&str> = md[bad_at..]
        .lines()
        .filter(|l| l.starts_with("| "))
        .collect();
    assert_eq!(rows.len(), 5, "{md}");
    assert_eq!(
        rows[1],
        "| accuracy | metric | ❌ fail | 0.812 | min 0.85 | val_accuracy=0.812 &lt; min 0.85 |"
    );
    assert!(
        rows[2].starts_with("| metadata | tags | ✅ pass |"),
        "{}",
        rows[2]
    );
    assert!(
        rows[4].starts_with("| f1-stretch | metric | ⚠️ fail (shadow, would block) | 0.9 |"),
        "{}",
        rows[4]
    );
    assert!(
        md.contains("**Verdict:** passed · **Action:** promoted"),
        "{md}"
    );
    assert!(
        md.contains("**Verdict:** failed · **Action:** kept"),
        "{md}"
    );
}

#[test]
fn a_run_that_cannot_evaluate_still_writes_its_reports() {
    let w = Workdir::new(&config(STAGE_TARGETS, SEED_GATES));
    let model = unique("ci-unknown");
    let r = w.run(&[
        "evaluate",
        &model,
        "--junit",
        "junit.xml",
        "--summary",
        "summary.md",
    ]);
    r.expect_code(2);
    let xml = read(&w.path().join("junit.xml"));
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(suite_counts(&doc), counts("1", "0", "1", "0"), "{xml}");
    let (_, name, result) = &cases(&doc)[0];
    assert_eq!(name, "evaluate");
    let (kind, message) = result.as_ref().expect("an <error>");
    assert_eq!(kind, "error");
    assert!(message.contains(&model), "{message}");
    assert!(read(&w.path().join("summary.md")).contains("⚠️ error"));
}

#[test]
fn a_report_in_a_missing_directory_is_refused_before_evaluating() {
    let m = unique("ci-nodir");
    let v = register(&m, 0.9);
    let w = Workdir::new(&config(STAGE_TARGETS, SEED_GATES));
    let r = w.run(&[
        "evaluate",
        &m,
        "--promote",
        "--junit",
        "no/such/dir/junit.xml",
    ]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("--junit no/such/dir/junit.xml: directory no/such/dir does not exist"),
        "{}",
        r.stderr
    );
    // Nothing was evaluated, so nothing moved.
    let got = block(version(&m, &v));
    assert_eq!(got.tag("stagegate.verdict"), None);
    assert_eq!(got.current_stage, "Staging");
}

fn check_jsonschema(schema: &str, file: &Path) -> std::process::Output {
    let tool = venv().join("bin/check-jsonschema");
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/setup.sh (requirements.txt installs check-jsonschema)",
        tool.display()
    );
    Command::new(&tool)
        .args(["--builtin-schema", schema])
        .arg(file)
        .output()
        .expect("run check-jsonschema")
}

#[test]
fn the_ci_examples_match_their_schemas_and_use_the_reports() {
    for (file, schema, wiring) in [
        (
            "examples/ci/github-actions.yml",
            "vendor.github-workflows",
            &[
                "--junit reports/stagegate.xml",
                "--summary \"$GITHUB_STEP_SUMMARY\"",
                "actions/upload-artifact@",
            ][..],
        ),
        (
            "examples/ci/gitlab-ci.yml",
            "vendor.gitlab-ci",
            &[
                "--junit reports/stagegate.xml",
                "junit: reports/stagegate.xml",
                "when: always",
            ][..],
        ),
    ] {
        let path = root().join(file);
        let out = check_jsonschema(schema, &path);
        assert!(
            out.status.success(),
            "{file} does not match {schema}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = read(&path);
        for w in wiring {
            assert!(text.contains(w), "{file} lacks {w}");
        }
        assert!(
            text.contains("stagegate evaluate \"$MODEL_NAME\" --promote"),
            "{file}"
        );
        // The validator does judge: the same file with a misspelt top-level key fails.
        let broken = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
        let misspelt = text
            .replacen("\njobs:", "\njobz:", 1)
            .replacen("\nstages:", "\nstagez:", 1)
            .replacen("\n  script:", "\n  scripts:", 1);
        std::fs::write(broken.path(), misspelt).unwrap();
        assert!(
            !check_jsonschema(schema, broken.path()).status.success(),
            "{schema} accepted a broken copy of {file}"
        );
    }
}
