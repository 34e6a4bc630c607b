//! `stagegate check`: validate the config, reach MLflow (with auth) and the state store (its
//! schema version, nothing changed), say whether the server
//! offers webhooks, and list which registered models each policy matches, with their current
//! candidate and champion. With `--offline`,
//! only the config: what it defines (policies, targets, gates), MLflow never contacted.
//!
//! Warnings (stderr, exit code unchanged) are for what may be fine where the daemon runs but
//! not here: a dataset or input file that does not exist (it may exist only on the server; a
//! gate whose file is missing is an `error`, never a pass), or a non-loopback `listen` without
//! an API token (the token usually arrives by environment in the deployment).

use super::stdout::{out, outln};
use std::path::Path;

use reqwest::header::HeaderMap;
use stagegate::config::{Loaded, Policy, Target};
use stagegate::daemon;
use stagegate::location::Location;
use stagegate::mlflow::Client;
use stagegate::mlflow::MlflowError;
use stagegate::model_state::ModelState;
use stagegate::objects::{Located, Object};
use stagegate::webhook::{Mlflow, Source};

use super::output::table;

pub async fn run(config: Option<&Path>, offline: bool) -> anyhow::Result<u8> {
    let loaded = super::load_config(config)?;
    let policies = &loaded.config.policies;
    let gates: usize = policies.iter().map(|p| p.gates.len()).sum();
    outln!(
        "config  {}: ok ({} {}, {gates} {})",
        loaded.path.display(),
        policies.len(),
        plural(policies.len(), "policy", "policies"),
        plural(gates, "gate", "gates")
    )?;
    for w in warnings(&loaded) {
        eprintln!("warning: {w}");
    }
    if offline {
        out!("{}", offline_summary(&loaded))?;
        return Ok(0);
    }
    let client = super::client(&loaded)?;
    if let Err(e) = client.ping().await {
        eprintln!("error: {e}");
        return Ok(2);
    }
    outln!("mlflow  {}: reachable", client.shown_uri())?;
    match stagegate::store::Store::inspect(&daemon::store_target(&loaded)).await {
        Ok(line) => outln!("store   {line}")?,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    }
    outln!(
        "{}",
        webhooks_line(
            client.has_webhooks_api().await,
            &loaded.config.poll.schedule
        )
    )?;
    if !serving_line(&loaded, client.tracking_uri()).await? {
        return Ok(2);
    }
    for line in object_lines(&loaded, &client).await {
        outln!("{line}")?;
    }
    let models: Vec<ModelState> = client
        .all_registered_models()
        .await?
        .into_iter()
        .map(ModelState::from_registered)
        .collect();
    let (lines, answered) = super::check_analysis::lines(&loaded, &models).await;
    for line in lines {
        outln!("{line}")?;
    }
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    for state in models {
        match loaded.config.policy_for(&state.name) {
            Some(p) => rows.push(vec![
                p.name.clone(),
                state.name.clone(),
                describe(&state, p.candidate()),
                describe(&state, &p.promote.target()),
            ]),
            None => unmatched.push(state.name.clone()),
        }
    }
    outln!()?;
    if rows.is_empty() {
        outln!("no registered model matches a policy")?;
    } else {
        out!(
            "{}",
            table(&["POLICY", "MODEL", "CANDIDATE", "CHAMPION"], &rows)
        )?;
    }
    for p in policies
        .iter()
        .filter(|p| !rows.iter().any(|r| r[0] == p.name))
    {
        outln!("policy {} matches no registered model", p.name)?;
    }
    if !unmatched.is_empty() {
        outln!(
            "{} {} no policy: {}",
            unmatched.len(),
            plural(unmatched.len(), "model matches", "models match"),
            unmatched.join(", ")
        )?;
    }
    Ok(if answered { 0 } else { 2 })
}

/// How candidates are served. In `host` mode the host is started, so the line says whether
/// the configured environment can run it, and with which Python and MLflow; `false` when it
/// cannot and a policy has gates that need it.
async fn serving_line(loaded: &Loaded, tracking_uri: &str) -> anyhow::Result<bool> {
    use stagegate::config::ServingMode;
    use stagegate::serving::host::{Host, Settings};
    let s = &loaded.config.serving;
    let served = loaded
        .config
        .policies
        .iter()
        .any(|p| p.gates.iter().any(|g| g.kind.served()));
    match s.mode {
        Some(ServingMode::Host) => {
            let host = Host::new(Settings::of(s, tracking_uri));
            match host.versions().await {
                Ok(v) => {
                    let text = |k: &str| v[k].as_str().unwrap_or("?").to_string();
                    outln!(
                        "serving host: Python {}, mlflow {}, pandas {}, pyarrow {} ({}; imports {} ms)",
                        text("python"),
                        text("mlflow"),
                        text("pandas"),
                        text("pyarrow"),
                        stagegate::serving::host::python_of(&s.command)
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        v["import_ms"].as_u64().unwrap_or(0)
                    )?;
                    Ok(true)
                }
                Err(e) if served => {
                    eprintln!("error: serving.mode = \"host\": {e}");
                    Ok(false)
                }
                Err(e) => {
                    eprintln!(
                        "warning: serving.mode = \"host\" (no policy serves a model yet): {e}"
                    );
                    Ok(true)
                }
            }
        }
        Some(ServingMode::Local) => {
            outln!("serving local: `{} models serve` per evaluation", s.command)?;
            Ok(true)
        }
        Some(ServingMode::Url) | None => {
            outln!("serving url: {}", s.url.as_deref().unwrap_or("-"))?;
            Ok(true)
        }
    }
}

/// The newest version at `target`, e.g. `v3 (Staging)` or `v5 (@champion)`, or `-`.
fn describe(state: &ModelState, target: &Target) -> String {
    match target {
        Target::Stage(s) => state
            .versions
            .values()
            .rev()
            .find(|v| &v.current_stage == s)
            .map(|v| format!("v{} ({s})", v.version))
            .unwrap_or_else(|| "-".into()),
        Target::Alias(a) => state
            .aliases
            .get(a)
            .map(|v| format!("v{v} (@{a})"))
            .unwrap_or_else(|| "-".into()),
    }
}

/// What `--offline` validated: each policy's targets and modes, then every gate.
fn offline_summary(loaded: &Loaded) -> String {
    let c = &loaded.config;
    let mlflow_secrets = c.webhooks.secrets_of(Mlflow::SECRETS_KEY).len();
    let policies: Vec<Vec<String>> = c
        .policies
        .iter()
        .map(|p| {
            let archive = match p.promote.target() {
                Target::Stage(_) if p.promote.archive_existing() => " (archive existing)",
                _ => "",
            };
            vec![
                p.name.clone(),
                p.models.join(", "),
                p.candidate().to_string(),
                format!("{}{archive}", p.promote.target()),
                word(p.mode),
                word(p.on_fail),
                word(p.on_bypass),
            ]
        })
        .collect();
    let gates: Vec<Vec<String>> = c
        .policies
        .iter()
        .flat_map(|p| {
            p.gates.iter().map(|g| {
                vec![
                    p.name.clone(),
                    g.name.clone(),
                    g.kind.type_name().to_string(),
                    if g.enforce { "enforce" } else { "shadow" }.to_string(),
                ]
            })
        })
        .collect();
    let token = if c.server.api_token.is_some() {
        "set"
    } else {
        "not set"
    };
    let mut out = String::from("\n");
    out += &table(
        &[
            "POLICY",
            "MODELS",
            "CANDIDATE",
            "PROMOTE",
            "MODE",
            "ON_FAIL",
            "ON_BYPASS",
        ],
        &policies,
    );
    out += "\n";
    if gates.is_empty() {
        out += "no gates: every candidate passes\n";
    } else {
        out += &table(&["POLICY", "GATE", "TYPE", "ENFORCED"], &gates);
    }
    out += &format!(
        "\nserver  listen {}, api token {token}, {} webhook {}\n",
        c.server.listen,
        mlflow_secrets,
        plural(mlflow_secrets, "secret", "secrets")
    );
    out += "mlflow  not contacted (--offline)\n";
    out
}

/// An enum setting as the config spells it (`dry-run`, `keep`, …).
fn word(v: impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// What may be fine where the daemon runs but cannot be confirmed here.
fn warnings(loaded: &Loaded) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = daemon::check_listen(loaded) {
        out.push(format!(
            "{e} (`stagegate run` refuses to start without one)"
        ));
    }
    let base = loaded.base_dir();
    for (i, p) in loaded.config.policies.iter().enumerate() {
        out.extend(missing_files(i, p, &base));
    }
    out
}

fn missing_files(i: usize, p: &Policy, base: &Path) -> Vec<String> {
    let workdir = p.workdir_in(base);
    let mut out = Vec::new();
    for (j, g) in p.gates.iter().enumerate() {
        for input in g.kind.inputs() {
            let Location::Path(file) = input else {
                continue;
            };
            let at = workdir.join(file);
            if !at.is_file() {
                out.push(format!(
                    "policies[{i}].gates[{j}]: gate `{}`: {} not found (looked at {}); the gate is an `error` until it exists where stagegate runs",
                    g.name,
                    file.display(),
                    at.display()
                ));
            }
        }
    }
    out
}

/// Each input in an object store, on a web server or in MLflow's artifacts, opened (`HEAD`)
/// with the credentials the daemon would use: its size and identity, or why it cannot be read.
async fn object_lines(loaded: &Loaded, client: &Client) -> Vec<String> {
    let limits = stagegate::engine::limits(&loaded.config.inputs);
    let mut out = Vec::new();
    for p in &loaded.config.policies {
        for g in &p.gates {
            for input in g.kind.inputs() {
                let found = match input {
                    Location::Path(_) => continue,
                    Location::Object(url) => Object::open_with(url, &HeaderMap::new(), limits)
                        .await
                        .map_err(|e| e.to_string()),
                    Location::Artifact(uri) => match client.locate_artifact(uri).await {
                        Ok(Located {
                            location: Location::Object(url),
                            headers,
                        }) => Object::open_with(&url, &headers, limits)
                            .await
                            .map_err(|e| e.to_string()),
                        Ok(_) => continue,
                        Err(e) => Err(e),
                    },
                };
                out.push(match found {
                    Ok(o) => format!(
                        "input   {input} (gate `{}`): readable, {} bytes, {}",
                        g.name,
                        o.size(),
                        o.identity()
                    ),
                    Err(e) => format!(
                        "input   {input} (gate `{}`): NOT readable: {e}; the gate is an `error` until it is",
                        g.name
                    ),
                });
            }
        }
    }
    out
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// What the webhooks probe found. A server without webhooks is not an error: the poll finds
/// every candidate anyway, so `check` says so and still exits 0.
fn webhooks_line(probe: Result<bool, MlflowError>, schedule: &str) -> String {
    match probe {
        Ok(true) => "webhooks  offered by this server (stagegate webhook register --url …)".into(),
        Ok(false) => format!(
            "webhooks  none: this server has no webhooks API (they need MLflow 3.3 or later with a \
             database backend); the poll (poll.schedule = \"{schedule}\") still finds every \
             candidate, only later"
        ),
        Err(e) => format!("webhooks  unknown: could not tell whether this server offers them: {e}"),
    }
}
