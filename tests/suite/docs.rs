//! The documentation stands alone and stays true to the code: every key the configuration
//! structs accept and every value their enums take appears in `docs/configuration.md`'s
//! tables, every HTTP route the daemon serves and every tag stagegate writes appears in
//! `docs/`, every TOML example of the README and `docs/` loads, every local link resolves, the
//! README stays a landing page, and no document points outside the repository.
//!
//! What must be documented comes from the code, not from a list kept here: the complete
//! example is loaded and serialised back, which yields every field of every struct it reaches
//! (unset options as `null`); the enum values come from the error each enum gives for an
//! unknown value; the routes from the OpenAPI document the daemon's own router serves (which
//! the daemon's unit tests keep complete); the tags from the `TagNames` methods in
//! `src/tags.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use stagegate::config::{Config, Loaded, from_text};
use tower::ServiceExt;

const CONFIGURATION: &str = "docs/configuration.md";

/// Prepended to an example that has no `[[policies]]` of its own (a section or a gate).
const POLICY: &str = "[[policies]]\nname = \"p\"\ncandidate = { stage = \"Staging\" }\npromote = { stage = \"Production\" }\n";

/// An example whose first line starts so documents a key that is still being added; once it
/// exists, drop the marker and the example is checked like the others.
const NEW_MARKER: &str = "# (new)";

/// The README is a landing page; everything else belongs in `docs/`.
const README_MAX_LINES: usize = 250;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn load(toml: &str) -> Result<Config, String> {
    load_from(toml, CONFIGURATION)
}

/// `toml` loaded as if it were the file `name` (which its errors name).
fn load_from(toml: &str, name: &str) -> Result<Config, String> {
    from_text(toml, name, []).map_err(|e| e.to_string())
}

/// The README and every markdown file under `docs/`, as paths relative to the root.
fn markdown_files() -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = format!("{rel}/{name}");
            if path.is_dir() {
                walk(&path, &child, out);
            } else if name.ends_with(".md") {
                out.push(child);
            }
        }
    }
    let mut files = vec!["README.md".to_string()];
    walk(&root().join("docs"), "docs", &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f == CONFIGURATION),
        "no {CONFIGURATION} among {files:?}"
    );
    files
}

/// Every markdown file under `docs/`, one text.
fn all_of_docs() -> String {
    markdown_files()
        .iter()
        .filter(|f| f.starts_with("docs/"))
        .map(|f| read(f))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of a markdown text outside its fenced code blocks.
fn prose_lines(md: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    md.lines().filter(move |l| {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The fenced ```toml blocks of a markdown text, with the heading each falls under.
fn toml_blocks(md: &str) -> Vec<(String, String)> {
    let (mut out, mut heading, mut current) = (Vec::new(), String::new(), None::<String>);
    for line in md.lines() {
        match &mut current {
            Some(block) if line.trim_start().starts_with("```") => {
                out.push((heading.clone(), std::mem::take(block)));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line.trim_start() == "```toml" => current = Some(String::new()),
            None if line.starts_with('#') => heading = line.trim_start_matches('#').trim().into(),
            None => {}
        }
    }
    assert!(current.is_none(), "a ```toml block is not closed");
    out
}

/// The names in the first cell of every table row: "| `a.b`, `c` | …" gives `a.b` and `c`.
fn documented_keys(md: &str) -> BTreeSet<String> {
    md.lines()
        .filter_map(|l| l.strip_prefix('|'))
        .filter_map(|l| l.split('|').next())
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Keys whose value is a table of user names (metric → threshold, variable → value), not of
/// configuration keys: their own key is checked, their contents are not.
const USER_TABLES: &[&str] = &["metrics", "max_gap", "env", "required"];

/// Every `(parent, key)` in a serialised config; `parent` is "" at the top level.
fn keys(v: &Value, parent: &str, out: &mut BTreeSet<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                out.insert((parent.to_string(), k.clone()));
                if !(USER_TABLES.contains(&k.as_str()) && child.is_object()) {
                    keys(child, k, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| keys(i, parent, out)),
        _ => {}
    }
}

/// The values an error message offers after "expected": serde's "expected `a` or `b`",
/// figment's "expected `one of `a`, `b``" and stagegate's own "(expected one of a, b)".
fn expected_values(message: &str) -> Vec<String> {
    let (_, tail) = message
        .rsplit_once("expected")
        .unwrap_or_else(|| panic!("no list of values in: {message}"));
    tail.split(['`', ',', ' ', '(', ')'])
        .filter(|t| !t.is_empty() && !["or", "one", "of"].contains(t))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_toml_example_loads() {
    let blocks = toml_blocks(&read(CONFIGURATION));
    assert!(
        blocks.len() >= 10,
        "only {} toml examples found in {CONFIGURATION}",
        blocks.len()
    );
    for file in markdown_files() {
        for (heading, block) in toml_blocks(&read(&file)) {
            if block.starts_with(NEW_MARKER) {
                continue;
            }
            let whole = if block.contains("[[policies]]") {
                block.clone()
            } else {
                format!("{POLICY}{block}")
            };
            if let Err(e) = load_from(&whole, &file) {
                panic!("{file}: the example under \"{heading}\" does not load: {e}\n{block}");
            }
        }
    }
}

#[test]
fn every_key_the_config_accepts_is_in_a_table_of_the_reference() {
    let doc = read(CONFIGURATION);
    let (_, example) = toml_blocks(&doc)
        .into_iter()
        .find(|(heading, _)| heading == "A complete example")
        .expect("a \"A complete example\" section with a ```toml block");
    let config = load(&example).unwrap_or_else(|e| panic!("the complete example: {e}"));

    // A gate of every type, so that serialising reaches every gate struct.
    let unknown_type = load(&format!(
        "{POLICY}[[policies.gates]]\nname = \"g\"\ntype = \"no-such-type\"\n"
    ))
    .expect_err("an unknown gate type is refused");
    let types: BTreeSet<String> = expected_values(&unknown_type).into_iter().collect();
    let used: BTreeSet<String> = config.policies[0]
        .gates
        .iter()
        .map(|g| g.kind.type_name().to_string())
        .collect();
    assert_eq!(
        used, types,
        "the complete example needs one gate of each type"
    );

    let serialised = serde_json::to_value(&config).expect("a config serialises");
    let mut found = BTreeSet::new();
    keys(&serialised, "", &mut found);
    // Secrets never serialise (so they cannot leak through a dump): named here instead.
    found.insert(("webhooks".into(), "secrets".into()));
    found.insert(("server".into(), "api_token".into()));
    // An option left unset serialises as null and hides its keys: the example must set them.
    let gates = serialised["policies"][0]["gates"]
        .as_array()
        .expect("gates");
    let dataset = gates
        .iter()
        .find(|g| g["type"] == "dataset")
        .expect("a dataset gate");
    for table in ["slices", "vs_champion"] {
        assert!(
            dataset[table].is_object(),
            "the complete example's dataset gate must set `{table}`"
        );
    }

    let rows = documented_keys(&doc);
    let mut missing = Vec::new();
    for (parent, key) in &found {
        let documented = if parent.is_empty() {
            // A section: its heading names it.
            doc.contains(&format!("`[{key}]`")) || doc.contains(&format!("`[[{key}]]`"))
        } else {
            rows.contains(key) || rows.contains(&format!("{parent}.{key}"))
        };
        if !documented {
            missing.push(format!("{parent}.{key}"));
        }
    }
    assert!(
        missing.is_empty(),
        "keys the config accepts but no table of {CONFIGURATION} documents: {missing:?}"
    );
}

#[test]
fn every_value_of_every_enum_key_is_documented() {
    let doc = read(CONFIGURATION);
    let gate = |body: &str| format!("{POLICY}[[policies.gates]]\nname = \"g\"\n{body}\n");
    let policy = |key: &str| format!("{POLICY}{key} = \"no-such-value\"\n");
    let probes = [
        ("gate `type`", gate("type = \"no-such-value\"")),
        ("policy `on_fail`", policy("on_fail")),
        ("policy `mode`", policy("mode")),
        ("policy `on_bypass`", policy("on_bypass")),
        (
            "notify `on`",
            format!("{POLICY}[[notify]]\nurl = \"http://x\"\non = [\"no-such-value\"]\n"),
        ),
        (
            "serving `mode`",
            format!("{POLICY}[serving]\nmode = \"no-such-value\"\n"),
        ),
        (
            "edge_cases `cases`",
            gate("type = \"edge_cases\"\ncases = [\"no-such-value\"]"),
        ),
        (
            "dataset `metrics`",
            gate(
                "type = \"dataset\"\npath = \"d.csv\"\nlabel = \"y\"\nmetrics = { no-such-value = 1.0 }",
            ),
        ),
        (
            "`inconclusive`",
            gate(
                "type = \"dataset\"\npath = \"d.csv\"\nlabel = \"y\"\nvs_champion = { metric = \"accuracy\", inconclusive = \"no-such-value\" }",
            ),
        ),
    ];
    let mut missing = Vec::new();
    for (what, toml) in probes {
        let err = load(&toml).expect_err(what);
        let values = expected_values(&err);
        assert!(values.len() >= 2, "{what}: no values found in {err:?}");
        for v in values {
            if !doc.contains(&format!("`{v}`")) && !doc.contains(&format!("\"{v}\"")) {
                missing.push(format!("{what}: {v}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "values the config accepts but {CONFIGURATION} never names: {missing:?}"
    );
}

/// The repository must stand alone: its documents may not send a reader to a file it does not
/// contain (the design notes the project started from live outside it), neither by name nor
/// by a relative path that climbs out of it.
#[test]
fn no_document_points_outside_the_repository() {
    let files = documents(&root());
    assert!(files.iter().any(|f| f.ends_with(Path::new(CONFIGURATION))));
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("examples/pytest-gates/README.md"))
    );
    for f in files {
        let depth = f
            .parent()
            .and_then(|d| d.strip_prefix(root()).ok())
            .map_or(0, |d| d.components().count());
        let text = std::fs::read_to_string(&f).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let at = format!("{}:{}", f.display(), n + 1);
            assert!(
                !line.contains("SPEC") && !line.contains("../shared"),
                "{at}: refers to design notes that are not in the repository: {line}"
            );
            assert!(
                !line.contains('§') && !line.to_lowercase().contains("design card"),
                "{at}: refers to design notes that are not in the repository: {line}"
            );
            assert!(
                climbs(line) <= depth,
                "{at}: a relative path climbs out of the repository: {line}"
            );
        }
    }
}

/// The markdown files of the repository (build output and hidden directories left out).
fn documents(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("readable directory")
        .flatten()
    {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                found.extend(documents(&path));
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
    found
}

/// The most parent-directory steps (`../`) in a row anywhere in `line`.
fn climbs(line: &str) -> usize {
    let mut most = 0;
    let mut rest = line;
    while let Some(i) = rest.find("../") {
        let mut steps = 0;
        rest = &rest[i..];
        while let Some(after) = rest.strip_prefix("../") {
            steps += 1;
            rest = after;
        }
        most = most.max(steps);
    }
    most
}

#[test]
fn climbs_counts_parent_steps_in_a_row() {
    assert_eq!(climbs("see docs/configuration.md"), 0);
    assert_eq!(climbs("[x](../config/a.toml) and ../../b"), 2);
}

#[test]
fn the_readme_is_a_landing_page() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; at most {README_MAX_LINES}: move the details to docs/"
    );
}

/// The code stands alone too: a comment says the rule it follows, not where the rule was
/// written down outside the repository (a specification section, a design card).
#[test]
fn no_source_file_refers_outside_the_repository() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    assert!(files.len() > 50, "src/ has only {} .rs files", files.len());
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let refers = line.contains("SPEC")
                || line.contains('§')
                || lower.contains("design card")
                || line.contains("../shared");
            if refers {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "source files refer to documents that are not in the repository:\n{}",
        found.join("\n")
    );
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_local_link_of_the_docs_resolves() {
    let repository = root().canonicalize().expect("the repository");
    let mut files = markdown_files();
    files.push("examples/pytest-gates/README.md".into());
    for rel in files {
        let rel = rel.as_str();
        let text = prose_lines(&read(rel)).collect::<Vec<_>>().join("\n");
        let base = root().join(rel);
        let dir = base.parent().expect("a file has a directory");
        for target in text.split("](").skip(1).filter_map(|t| t.split(')').next()) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() {
                base.clone()
            } else {
                dir.join(path)
            };
            assert!(file.exists(), "{rel}: link to {target} does not resolve");
            assert!(
                file.canonicalize()
                    .is_ok_and(|f| f.starts_with(&repository)),
                "{rel}: link to {target} leaves the repository"
            );
            if !anchor.is_empty() {
                let linked = std::fs::read_to_string(&file).expect("readable");
                assert!(
                    anchors(&linked).contains(anchor),
                    "{rel}: link to {target}: no such heading"
                );
            }
        }
    }
}

/// The anchors GitHub gives a markdown file's headings: lower case, punctuation dropped,
/// spaces as hyphens. Comment lines in code blocks are not headings.
fn anchors(md: &str) -> BTreeSet<String> {
    prose_lines(md)
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The OpenAPI document the daemon serves, from its own router (no MLflow is reached: the
/// document is static, and preparing the daemon only opens its SQLite store).
async fn served_openapi() -> Value {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = load(POLICY).expect("the minimal policy loads");
    let loaded = Loaded {
        config,
        path: dir.path().join("stagegate.toml"),
    };
    let listen = "127.0.0.1:8080".parse().expect("an address");
    let app = stagegate::daemon::prepare(loaded, listen)
        .await
        .unwrap_or_else(|e| panic!("the daemon's state cannot be prepared: {e}"));
    let request = Request::get("/openapi.json")
        .body(Body::empty())
        .expect("a request");
    let response = stagegate::daemon::http::router(app)
        .oneshot(request)
        .await
        .expect("the router answers");
    assert_eq!(response.status(), StatusCode::OK, "GET /openapi.json");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    serde_json::from_slice(&body).expect("/openapi.json is JSON")
}

/// Whether `text` names `route` ("GET /status") as a whole: "GET /" is not found in
/// "GET /status", but is in "`GET /`".
fn names_route(text: &str, route: &str) -> bool {
    text.match_indices(route).any(|(at, _)| {
        !text[at + route.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || "/_-.{}".contains(c))
    })
}

#[tokio::test]
async fn every_route_the_daemon_serves_is_documented() {
    let spec = served_openapi().await;
    let paths = spec["paths"].as_object().expect("paths in /openapi.json");
    let routes: Vec<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    assert!(
        routes.len() >= 15,
        "only {} routes in /openapi.json: {routes:?}",
        routes.len()
    );
    let docs = all_of_docs();
    let missing: Vec<&String> = routes.iter().filter(|r| !names_route(&docs, r)).collect();
    assert!(
        missing.is_empty(),
        "routes the daemon serves but docs/ never names (as \"METHOD /path\"): {missing:?}"
    );
}

/// The tag names stagegate writes: the literal each `TagNames` method of `src/tags.rs` puts
/// after the prefix, up to a placeholder (`gate.{gate}` gives `gate.`).
fn tag_names() -> BTreeSet<String> {
    let source = read("src/tags.rs");
    let start = source
        .find("impl TagNames {")
        .expect("src/tags.rs has `impl TagNames`");
    let body = &source[start..];
    let body = &body[..body.find("\n}").expect("the impl block ends")];
    body.split("self.key(")
        .skip(1)
        .map(|call| {
            let literal = call
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("a key() call without a literal: {call}"));
            literal.split('{').next().unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn every_tag_stagegate_writes_is_documented() {
    let names = tag_names();
    assert!(
        names.len() >= 10 && names.contains("verdict") && names.contains("gate."),
        "the tag names were not found in src/tags.rs: {names:?}"
    );
    let prefix = load(POLICY)
        .expect("the minimal policy loads")
        .mlflow
        .tag_prefix;
    let docs = all_of_docs();
    let missing: Vec<String> = names
        .iter()
        .map(|n| format!("`{prefix}{n}"))
        .filter(|tag| !docs.contains(tag.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "tags stagegate writes but docs/ never names: {missing:?}"
    );
}
