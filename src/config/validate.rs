//! Checks serde cannot express: cross-field rules, cron and glob syntax, registry names.
//! Also normalises stage names to MLflow's canonical spelling.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use super::{
    ChampionGate, CommandGate, Config, DATABRICKS_TRACKING_URI, DatasetGate, GateKind, LatencyGate,
    MetricGate, Policy, Promote, RunGate, ServingMode, StateUrl, Target,
};

/// `(key path, reason)` of the first problem found.
pub type Problem = (String, String);

const STAGES: &[&str] = &["None", "Staging", "Production", "Archived"];
const DATASET_METRICS: &[&str] = &[
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "roc_auc",
    "log_loss",
    "rmse",
    "mae",
    "r2",
];

/// Check `config` section by section; the first problem found is the one reported.
pub fn validate(config: &mut Config) -> Result<(), Problem> {
    mlflow(config)?;
    server(config)?;
    webhooks(config)?;
    poll(config)?;
    workers(config)?;
    state(config)?;
    serving(config)?;
    inputs(config)?;
    notify(config)?;
    policies(config)
}

fn mlflow(c: &Config) -> Result<(), Problem> {
    if let Some(uri) = &c.mlflow.tracking_uri
        && uri.trim() != DATABRICKS_TRACKING_URI
    {
        http_url(uri).map_err(|r| {
            let r = format!("{r} (or `{DATABRICKS_TRACKING_URI}`, for a Databricks workspace)");
            ("mlflow.tracking_uri".to_string(), r)
        })?;
    }
    nonzero(c.mlflow.request_timeout, "mlflow.request_timeout")?;
    tag_key_chars(&c.mlflow.tag_prefix).map_err(|r| ("mlflow.tag_prefix".into(), r))?;
    if c.mlflow.tag_prefix.is_empty() || c.mlflow.tag_prefix.len() > 100 {
        return Err((
            "mlflow.tag_prefix".into(),
            "must be 1 to 100 characters".into(),
        ));
    }
    Ok(())
}

fn server(c: &Config) -> Result<(), Problem> {
    if c.server.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err((
            "server.listen".into(),
            format!(
                "{:?} is not an IP:port address such as \"127.0.0.1:8080\"",
                c.server.listen
            ),
        ));
    }
    // An empty token would make a bare `Authorization: Bearer ` a valid credential.
    if c.server
        .api_token
        .as_ref()
        .is_some_and(|t| t.expose().trim().is_empty())
    {
        return Err((
            "server.api_token".into(),
            "must not be empty (leave it out for a loopback listener, or set a long random value)"
                .into(),
        ));
    }
    Ok(())
}

fn webhooks(c: &Config) -> Result<(), Problem> {
    for key in crate::webhook::secret_keys() {
        let secrets = c.webhooks.secrets_of(key);
        if let Some(i) = secrets.iter().position(|s| s.expose().is_empty()) {
            return Err((
                format!("webhooks.{key}[{i}]"),
                "a secret must not be empty".into(),
            ));
        }
    }
    Ok(())
}

fn poll(c: &Config) -> Result<(), Problem> {
    cron::Schedule::from_str(&c.poll.schedule).map_err(|e| {
        let fields = c.poll.schedule.split_whitespace().count();
        let why = if fields == 5 {
            "it has 5 fields but needs a seconds field first (6 or 7 fields)".to_string()
        } else {
            e.to_string()
                .lines()
                .last()
                .unwrap_or("unparsable")
                .trim()
                .to_string()
        };
        (
            "poll.schedule".into(),
            format!(
                "invalid cron {:?}: {why}; e.g. \"0 * * * * *\" runs every minute",
                c.poll.schedule
            ),
        )
    })?;
    Ok(())
}

fn workers(c: &Config) -> Result<(), Problem> {
    if !(1..=256).contains(&c.workers.count) {
        return Err(("workers.count".into(), "must be from 1 to 256".into()));
    }
    if c.workers.max_attempts == 0 {
        return Err(("workers.max_attempts".into(), "must be at least 1".into()));
    }
    Ok(())
}

fn state(c: &Config) -> Result<(), Problem> {
    if let Some(url) = &c.state.url {
        // The database is reached at start-up (`stagegate check` tries it); here only the
        // URL's form (and the CA file it names), without ever echoing a password.
        StateUrl::parse(url).map_err(|why| ("state.url".to_string(), why))?;
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&c.state.lease) {
        return Err((
            "state.lease".into(),
            "must be from 1s to 10m: the time another replica waits before taking over a model whose replica died".into(),
        ));
    }
    Ok(())
}

fn notify(c: &Config) -> Result<(), Problem> {
    for (i, n) in c.notify.iter().enumerate() {
        // A notification URL is often a secret itself (Slack's carry the key): never echoed.
        http_url(&n.url).map_err(|_| {
            (
                format!("notify[{i}].url"),
                "is not an http:// or https:// URL (the value is not shown: it may be a secret)"
                    .to_string(),
            )
        })?;
    }
    Ok(())
}

/// Every policy: names, globs and targets (stage names made canonical), then its gates.
fn policies(c: &mut Config) -> Result<(), Problem> {
    if c.policies.is_empty() {
        return Err((
            "policies".into(),
            "at least one [[policies]] table is required".into(),
        ));
    }
    let mut names = HashSet::new();
    let prefix_len = c.mlflow.tag_prefix.len();
    for (i, p) in c.policies.iter_mut().enumerate() {
        let at = format!("policies[{i}]");
        new_name(&p.name, &mut names, &at, || {
            format!("duplicate policy name {:?}", p.name)
        })?;
        if p.models.is_empty() {
            return Err((
                format!("{at}.models"),
                "needs at least one glob pattern".into(),
            ));
        }
        for (j, pat) in p.models.iter().enumerate() {
            globset::Glob::new(pat)
                .map_err(|e| (format!("{at}.models[{j}]"), format!("invalid glob: {e}")))?;
        }
        p.candidate = target(&p.candidate, false).map_err(|r| (format!("{at}.candidate"), r))?;
        let promoted = promote(&mut p.promote).map_err(|r| (format!("{at}.promote"), r))?;
        if promoted == p.candidate {
            return Err((
                format!("{at}.promote"),
                format!("the promote target ({promoted}) is the same as the candidate"),
            ));
        }
        gates(p, &at, prefix_len)?;
        if let Some(a) = &p.analysis {
            a.check().map_err(|(k, r)| {
                (
                    format!("{at}.analysis.{k}")
                        .trim_end_matches('.')
                        .to_string(),
                    r,
                )
            })?;
        }
    }
    Ok(())
}

/// The `name` of the table at `at`: not blank, and not one of `seen` (`duplicate` says so).
fn new_name(
    name: &str,
    seen: &mut HashSet<String>,
    at: &str,
    duplicate: impl FnOnce() -> String,
) -> Result<(), Problem> {
    if name.trim().is_empty() {
        return Err((format!("{at}.name"), "must not be empty".into()));
    }
    if !seen.insert(name.to_string()) {
        return Err((format!("{at}.name"), duplicate()));
    }
    Ok(())
}

/// A policy's gates: unique names that make valid tag keys, each gate's own rules.
fn gates(p: &Policy, at: &str, prefix_len: usize) -> Result<(), Problem> {
    let mut gate_names = HashSet::new();
    for (j, g) in p.gates.iter().enumerate() {
        let gat = format!("{at}.gates[{j}]");
        new_name(&g.name, &mut gate_names, &gat, || {
            format!("duplicate gate name {:?} in policy {:?}", g.name, p.name)
        })?;
        tag_key_chars(&g.name).map_err(|r| (format!("{gat}.name"), r))?;
        if prefix_len + "gate.".len() + g.name.len() > 250 {
            return Err((
                format!("{gat}.name"),
                "too long for an MLflow tag key (250 characters)".into(),
            ));
        }
        gate(&g.kind).map_err(|(k, r)| (format!("{gat}{k}"), format!("gate `{}`: {r}", g.name)))?;
    }
    Ok(())
}

fn inputs(c: &Config) -> Result<(), Problem> {
    let i = &c.inputs;
    nonzero(i.timeout, "inputs.timeout")?;
    if i.retries > 10 {
        return Err(("inputs.retries".into(), "must be at most 10".into()));
    }
    Ok(())
}

fn serving(c: &mut Config) -> Result<(), Problem> {
    let s = &mut c.serving;
    match (s.mode, &s.url) {
        (Some(ServingMode::Local), Some(_)) => {
            return Err((
                "serving.url".into(),
                "is set while serving.mode = \"local\"; use mode = \"url\" (or drop mode) to serve from an existing endpoint".into(),
            ));
        }
        (Some(ServingMode::Url), None) => {
            return Err((
                "serving.url".into(),
                "serving.mode = \"url\" needs serving.url".into(),
            ));
        }
        (Some(ServingMode::Host), Some(_)) => {
            return Err((
                "serving.url".into(),
                "is set while serving.mode = \"host\"; use mode = \"url\" (or drop mode) to serve from an existing endpoint".into(),
            ));
        }
        (None, url) => {
            s.mode = Some(if url.is_some() {
                ServingMode::Url
            } else {
                ServingMode::Host
            })
        }
        _ => {}
    }
    if s.warm_models > 1_000 {
        return Err(("serving.warm_models".into(), "must be at most 1000".into()));
    }
    if s.bulk_rows == 0 || s.bulk_rows > 10_000_000 {
        return Err((
            "serving.bulk_rows".into(),
            "must be from 1 to 10000000".into(),
        ));
    }
    for (key, v) in [
        ("serving.warm_memory", s.warm_memory),
        ("serving.model_memory", s.model_memory),
    ] {
        if v.is_some_and(|b| b < 16 << 20) {
            return Err((
                key.into(),
                "must be at least 16MiB (a Python process alone uses more)".into(),
            ));
        }
    }
    nonzero(s.request_timeout, "serving.request_timeout")?;
    if let Some(url) = &s.url {
        http_url(url).map_err(|r| ("serving.url".into(), r))?;
    }
    if s.command.trim().is_empty() {
        return Err(("serving.command".into(), "must not be empty".into()));
    }
    nonzero(s.startup_timeout, "serving.startup_timeout")
}

/// Canonical stage spelling, valid alias names.
fn target(t: &Target, promote: bool) -> Result<Target, String> {
    match t {
        Target::Stage(s) => {
            let canon = STAGES
                .iter()
                .find(|c| c.eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    format!(
                        "unknown stage {s:?} (expected one of {})",
                        STAGES.join(", ")
                    )
                })?;
            let allowed: &[&str] = if promote {
                &["Staging", "Production"]
            } else {
                &["None", "Staging", "Production"]
            };
            if !allowed.contains(canon) {
                return Err(format!(
                    "stage {canon:?} cannot be used here (use one of {})",
                    allowed.join(", ")
                ));
            }
            Ok(Target::Stage((*canon).to_string()))
        }
        Target::Alias(a) => {
            let ok_chars = !a.is_empty()
                && a.len() <= 255
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let reserved = a.eq_ignore_ascii_case("latest")
                || (a.len() > 1
                    && (a.starts_with('v') || a.starts_with('V'))
                    && a[1..].chars().all(|c| c.is_ascii_digit()));
            if !ok_chars {
                return Err(format!(
                    "alias {a:?} may only contain letters, digits, '_' and '-'"
                ));
            }
            if reserved {
                return Err(format!(
                    "alias {a:?} is reserved by MLflow (\"latest\" and v<number>)"
                ));
            }
            Ok(Target::Alias(a.clone()))
        }
    }
}

fn promote(p: &mut Promote) -> Result<Target, String> {
    let t = match (&p.stage, &p.alias) {
        (Some(s), None) => Target::Stage(s.clone()),
        (None, Some(a)) => {
            if p.archive_existing.is_some() {
                return Err("archive_existing applies only to a stage target, not an alias".into());
            }
            Target::Alias(a.clone())
        }
        _ => return Err("set exactly one of `stage` or `alias`".into()),
    };
    let t = target(&t, true)?;
    if let Target::Stage(s) = &t {
        p.stage = Some(s.clone());
    }
    Ok(t)
}

/// Per-type rules; the key part returned is relative to the gate (e.g. `.min`).
fn gate(kind: &GateKind) -> Result<(), Problem> {
    match kind {
        GateKind::Metric(m) => metric(m),
        GateKind::Tags(t) => {
            let entries = t.required.entries();
            if entries.is_empty() || entries.iter().any(|(k, _)| k.is_empty()) {
                return bad(".required", "list at least one tag key, none empty");
            }
            Ok(())
        }
        GateKind::Run(r) => run(r),
        GateKind::Champion(ch) => champion(ch),
        GateKind::Latency(l) => latency(l),
        GateKind::EdgeCases(e) => {
            if e.batch_rows == 0 || e.batch_rows > 100_000 {
                return bad(".batch_rows", "must be from 1 to 100000");
            }
            Ok(())
        }
        GateKind::Dataset(d) => dataset(d),
        GateKind::Command(c) => command(c),
    }
}

/// A gate's problem at `key` (relative to the gate).
fn bad(key: &str, reason: &str) -> Result<(), Problem> {
    Err((key.to_string(), reason.to_string()))
}

fn metric(m: &MetricGate) -> Result<(), Problem> {
    if m.metric.is_empty() {
        return bad(".metric", "must not be empty");
    }
    match (m.min, m.max) {
        (None, None) => bad("", "set `min` and/or `max`"),
        (Some(lo), Some(hi)) if lo > hi => bad(".min", "min is greater than max"),
        _ => Ok(()),
    }
}

fn run(r: &RunGate) -> Result<(), Problem> {
    if r.metrics.is_empty() && r.params.is_empty() && !r.model_artifact {
        return bad("", "set `metrics`, `params` and/or `model_artifact = true`");
    }
    Ok(())
}

fn champion(ch: &ChampionGate) -> Result<(), Problem> {
    if ch.metric.is_empty() {
        return bad(".metric", "must not be empty");
    }
    if ch.max_drop.is_some_and(|d| d < 0.0) {
        return bad(".max_drop", "must be 0 or more");
    }
    if ch.max_drop_ratio.is_some_and(|d| !(0.0..=1.0).contains(&d)) {
        return bad(".max_drop_ratio", "must be from 0 to 1");
    }
    Ok(())
}

fn latency(l: &LatencyGate) -> Result<(), Problem> {
    if l.p50_ms.is_none()
        && l.p95_ms.is_none()
        && l.p99_ms.is_none()
        && l.max_ratio_to_champion.is_none()
    {
        return bad(
            "",
            "set `p99_ms` (or p95_ms, p50_ms, max_ratio_to_champion)",
        );
    }
    for (k, v) in [
        (".p50_ms", l.p50_ms),
        (".p95_ms", l.p95_ms),
        (".p99_ms", l.p99_ms),
        (".max_ratio_to_champion", l.max_ratio_to_champion),
    ] {
        if v.is_some_and(|v| v <= 0.0 || !v.is_finite()) {
            return bad(k, "must be a positive number");
        }
    }
    if l.requests == 0 || l.requests > 1_000_000 {
        return bad(".requests", "must be from 1 to 1000000");
    }
    if l.concurrency == 0 || l.concurrency > 256 {
        return bad(".concurrency", "must be from 1 to 256");
    }
    Ok(())
}

fn dataset(d: &DatasetGate) -> Result<(), Problem> {
    match (&d.path, &d.context) {
        (Some(_), Some(_)) => return bad("", "set `path` or `context`, not both"),
        (None, None) => {
            return bad(
                "",
                "set `path` (the file) or `context` (the dataset logged on the candidate's run)",
            );
        }
        (None, Some(c)) if c.trim().is_empty() => return bad(".context", "must not be empty"),
        _ => {}
    }
    if d.label.is_empty() {
        return bad(".label", "must not be empty");
    }
    if d.metrics.is_empty() && d.slices.is_none() && d.vs_champion.is_none() {
        return bad("", "set `metrics`, `slices` and/or `vs_champion`");
    }
    for k in d.metrics.keys() {
        known_metric(k).map_err(|r| (format!(".metrics.{k}"), r))?;
    }
    let names = d
        .metrics
        .keys()
        .chain(d.slices.iter().flat_map(|s| s.max_gap.keys()))
        .chain(d.vs_champion.iter().map(|v| &v.metric));
    let kinds: std::collections::BTreeSet<bool> = names
        .map(|m| matches!(m.as_str(), "rmse" | "mae" | "r2"))
        .collect();
    if kinds.len() > 1 {
        return bad(
            "",
            "mixes regression metrics (rmse, mae, r2) with classification metrics",
        );
    }
    if d.batch_size == 0 || d.batch_size > 100_000 {
        return bad(".batch_size", "must be from 1 to 100000");
    }
    if let Some(s) = &d.slices {
        if s.column.is_empty() {
            return bad(".slices.column", "must not be empty");
        }
        for k in s.max_gap.keys() {
            known_metric(k).map_err(|r| (format!(".slices.max_gap.{k}"), r))?;
        }
    }
    if let Some(v) = &d.vs_champion {
        known_metric(&v.metric).map_err(|r| (".vs_champion.metric".to_string(), r))?;
        if !(v.confidence > 0.0 && v.confidence < 1.0) {
            return bad(
                ".vs_champion.confidence",
                "must be between 0 and 1, e.g. 0.95",
            );
        }
        if v.resamples < 100 || v.resamples > 100_000 {
            return bad(".vs_champion.resamples", "must be from 100 to 100000");
        }
        if v.max_drop < 0.0 {
            return bad(".vs_champion.max_drop", "must be 0 or more");
        }
    }
    Ok(())
}

fn command(c: &CommandGate) -> Result<(), Problem> {
    if c.run.is_empty() || c.run[0].is_empty() {
        return bad(
            ".run",
            "needs a program and its arguments, e.g. [\"pytest\", \"tests\"]",
        );
    }
    nonzero(c.timeout, ".timeout")
}

fn known_metric(k: &str) -> Result<(), String> {
    if DATASET_METRICS.contains(&k) {
        Ok(())
    } else {
        Err(format!(
            "unknown metric {k:?} (expected one of {})",
            DATASET_METRICS.join(", ")
        ))
    }
}

fn nonzero(d: std::time::Duration, key: &str) -> Result<(), Problem> {
    if d.is_zero() {
        Err((key.into(), "must be longer than zero".into()))
    } else {
        Ok(())
    }
}

fn http_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        _ => Err(format!("{u:?} is not an http:// or https:// URL")),
    }
}

/// MLflow tag keys: alphanumerics, `_ - . / ` and space.
fn tag_key_chars(s: &str) -> Result<(), String> {
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-./ ".contains(*c)))
    {
        Err(format!(
            "{s:?} has {c:?}; MLflow tag keys allow only letters, digits, '_', '-', '.', '/' and spaces"
        ))
    } else {
        Ok(())
    }
}
