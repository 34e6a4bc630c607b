//! The configuration schema, every key of `stagegate.toml` (docs/configuration.md), as typed
//! Rust values.
//!
//! Every table denies unknown keys so that a typo is an error, never a silently ignored
//! setting. Loading (file search, env overrides, error messages) lives in [`load`]; the
//! checks that serde cannot express (duplicate gate names, cron syntax, targets) in
//! [`validate`]; the gate tables in [`gate`].

pub mod analysis;
mod gate;
mod load;
mod required_tags;
mod state_url;
mod validate;
mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use gate::{
    CaseFamily, ChampionGate, CommandGate, DatasetGate, EdgeCasesGate, Gate, GateKind, GateType,
    Inconclusive, LatencyGate, MetricGate, RunGate, Slices, TagsGate, VsChampion,
};
pub use load::{ConfigError, Loaded, from_text, load, locate};
pub use required_tags::RequiredTags;
pub use state_url::{StateUrl, redact_url};
pub use webhooks::WebhooksConfig;

pub use crate::secret::Secret;

/// The whole `stagegate.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mlflow: MlflowConfig,
    pub server: ServerConfig,
    pub webhooks: WebhooksConfig,
    pub poll: PollConfig,
    pub workers: WorkersConfig,
    pub state: StateConfig,
    pub policies: Vec<Policy>,
    pub notify: Vec<Notify>,
    pub serving: ServingConfig,
    pub inputs: InputsConfig,
}

/// Reading gate inputs that are not local files (objects, URLs, MLflow artifacts).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputsConfig {
    /// How long one request to a store may take, connecting included.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Extra tries of a request that failed transiently (timeout, lost connection, 429, 5xx).
    pub retries: u32,
}

impl Default for InputsConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            retries: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlflowConfig {
    /// An http(s) URL, or [`DATABRICKS_TRACKING_URI`]. Overridden by `MLFLOW_TRACKING_URI`
    /// (the environment wins over the file), and that by `STAGEGATE_MLFLOW__TRACKING_URI`.
    pub tracking_uri: Option<String>,
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Extra tries of one REST call on a transient failure (connect, 429, 502-504).
    pub retries: u32,
    /// Prefix of every tag stagegate writes.
    pub tag_prefix: String,
    /// Reuse connections. Off by default: MLflow 3's uvicorn server answers every request
    /// after the first on a kept-alive connection ~40 ms late (a Nagle/delayed-ACK stall),
    /// while a fresh loopback or LAN connection costs well under a millisecond. Turn it on
    /// when MLflow sits behind a TLS proxy far away.
    pub keep_alive: bool,
}

/// The tracking URI that means "the Databricks workspace of `$DATABRICKS_HOST`", reached with
/// `$DATABRICKS_TOKEN`, wherever the URI is set.
pub const DATABRICKS_TRACKING_URI: &str = "databricks";

impl Default for MlflowConfig {
    fn default() -> Self {
        Self {
            tracking_uri: None,
            request_timeout: Duration::from_secs(30),
            retries: 3,
            tag_prefix: "stagegate.".into(),
            keep_alive: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Normally from `STAGEGATE_SERVER__API_TOKEN`.
    #[serde(skip_serializing)]
    pub api_token: Option<Secret>,
    /// How long SIGTERM waits for in-flight evaluations.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_token: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// Cron with a seconds field; checked by [`validate`].
    pub schedule: String,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            schedule: "0 * * * * *".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    pub count: usize,
    /// Reconcile attempts on a transient error before the verdict is `error`.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    #[serde(with = "duration")]
    pub backoff: Duration,
    /// How long a failed candidate's inputs must stay unchanged before `on_fail = "archive"`
    /// archives it: its training job may still be writing its tags one call at a time.
    #[serde(with = "duration")]
    pub settle: Duration,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            count: 4,
            max_attempts: 5,
            backoff: Duration::from_secs(2),
            settle: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub path: PathBuf,
    pub url: Option<String>,
    /// How long a replica's claim on a model (or on the poll) lasts without renewal: the
    /// longest another replica waits to take over from one that died.
    #[serde(with = "duration")]
    pub lease: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: "stagegate.db".into(),
            url: None,
            lease: Duration::from_secs(15),
        }
    }
}

/// One `[[policies]]` table: which models, what a candidate is, where it goes, and its gates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    pub candidate: Target,
    pub promote: Promote,
    #[serde(default)]
    pub on_fail: OnFail,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub on_bypass: OnBypass,
    /// Where `command` gates run and relative dataset paths resolve; defaults to the
    /// directory of the config file.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    #[serde(default)]
    pub gates: Vec<Gate>,
    /// What to watch after each promotion this policy makes. Not part of the digest: it
    /// judges the champion in production, not the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<analysis::Analysis>,
    /// `models` compiled (lazily, once).
    #[serde(skip)]
    pub matcher: std::sync::OnceLock<globset::GlobSet>,
}

fn all_models() -> Vec<String> {
    vec!["*".into()]
}

/// Where a version sits in the registry: a stage, or an alias.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "RawTarget")]
pub enum Target {
    Stage(String),
    Alias(String),
}

/// `{ stage = "Staging" }` or `{ alias = "challenger" }`, read as a table for clear errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    stage: Option<String>,
    alias: Option<String>,
}

impl TryFrom<RawTarget> for Target {
    type Error = String;
    fn try_from(raw: RawTarget) -> Result<Self, String> {
        match (raw.stage, raw.alias) {
            (Some(s), None) => Ok(Target::Stage(s)),
            (None, Some(a)) => Ok(Target::Alias(a)),
            _ => Err("set exactly one of `stage` or `alias`".into()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Stage(s) => write!(f, "stage {s}"),
            Target::Alias(a) => write!(f, "alias @{a}"),
        }
    }
}

/// `promote = { stage = "Production", archive_existing = true }` or `{ alias = "champion" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    pub stage: Option<String>,
    pub alias: Option<String>,
    pub archive_existing: Option<bool>,
}

impl Promote {
    /// The target; [`validate`] guarantees exactly one of stage/alias is set.
    pub fn target(&self) -> Target {
        match (&self.stage, &self.alias) {
            (Some(s), _) => Target::Stage(s.clone()),
            (None, Some(a)) => Target::Alias(a.clone()),
            (None, None) => Target::Stage("Production".into()),
        }
    }

    pub fn archive_existing(&self) -> bool {
        self.archive_existing.unwrap_or(true)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    #[default]
    Keep,
    Archive,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBypass {
    Ignore,
    #[default]
    Tag,
    Revert,
}

/// One `[[notify]]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub url: String,
    #[serde(default = "default_notify_events")]
    pub on: Vec<NotifyEvent>,
}

fn default_notify_events() -> Vec<NotifyEvent> {
    vec![
        NotifyEvent::Failed,
        NotifyEvent::Error,
        NotifyEvent::Promoted,
        NotifyEvent::Bypass,
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    Passed,
    Failed,
    Error,
    Promoted,
    WouldPromote,
    Archived,
    Superseded,
    Bypass,
    Rollback,
    /// A post-promotion analysis ended: passed, failed (and what was done), inconclusive, or
    /// ended early.
    Analysis,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingConfig {
    pub mode: Option<ServingMode>,
    pub url: Option<String>,
    pub command: String,
    #[serde(with = "duration")]
    pub startup_timeout: Duration,
    /// How long a served model may take to answer one request (a batch of rows).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// `host` mode: models kept loaded between evaluations.
    pub warm_models: usize,
    /// `host` mode: the memory the warm models may hold together.
    #[serde(with = "bytes::optional")]
    pub warm_memory: Option<u64>,
    /// `host` mode: a model whose process grows past this is stopped (its gate an `error`).
    #[serde(with = "bytes::optional")]
    pub model_memory: Option<u64>,
    /// `host` mode: rows per bulk request of the `dataset` gate.
    pub bulk_rows: usize,
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            mode: None,
            url: None,
            command: "mlflow".into(),
            startup_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(60),
            warm_models: 4,
            warm_memory: None,
            model_memory: None,
            bulk_rows: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServingMode {
    /// The warm scoring host (the default).
    Host,
    /// `mlflow models serve` per evaluation.
    Local,
    /// An existing endpoint.
    Url,
}

impl Config {
    /// The policy for `model`: policies are tried in the file's order and the first whose
    /// `models` globs match wins; later ones are never consulted.
    pub fn policy_for(&self, model: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(model))
    }

    /// The literal beginnings of every policy's `models` globs, sorted, none of them starting
    /// with another: the models whose names start with one of them include every model a
    /// policy can match, so a registry of many models need not be listed whole. `None` when a
    /// glob starts with a wildcard (only the whole registry covers it) or a beginning holds a
    /// quote or a backslash (which a search filter would have to escape).
    pub fn name_prefixes(&self) -> Option<Vec<String>> {
        let mut prefixes: Vec<String> = Vec::new();
        for glob in self.policies.iter().flat_map(|p| &p.models) {
            let literal = glob
                .find(['*', '?', '[', '{', '\\'])
                .map_or(glob.as_str(), |at| &glob[..at]);
            if literal.is_empty() || literal.contains(['\'', '"']) || glob.contains('\\') {
                return None;
            }
            prefixes.push(literal.to_string());
        }
        prefixes.sort();
        // Sorted, a name that starts with another comes right after it (or after one that
        // also starts with it).
        prefixes.dedup_by(|later, kept| later.starts_with(kept.as_str()));
        Some(prefixes)
    }
}

impl Policy {
    pub fn matches(&self, model: &str) -> bool {
        // Compiled once: matching runs per webhook delivery and per model at every poll.
        self.matcher
            .get_or_init(|| {
                let mut set = globset::GlobSetBuilder::new();
                // `validate` already refused invalid patterns.
                for g in self
                    .models
                    .iter()
                    .filter_map(|p| globset::Glob::new(p).ok())
                {
                    set.add(g);
                }
                set.build().unwrap_or_else(|_| globset::GlobSet::empty())
            })
            .is_match(model)
    }

    pub fn candidate(&self) -> &Target {
        &self.candidate
    }

    /// Where the policy's command gates run and its relative paths resolve: `workdir`
    /// (relative to `base`, the config file's directory), else `base` itself.
    pub fn workdir_in(&self, base: &Path) -> PathBuf {
        match &self.workdir {
            Some(w) => base.join(w),
            None => base.to_path_buf(),
        }
    }
}

/// `"512MiB"`, `"4 GB"` or a number of bytes, as bytes (bytesize syntax).
pub mod bytes {
    pub mod optional {
        use serde::{Deserialize, Deserializer, Serializer};

        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }

        pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_str(&bytesize::ByteSize::b(*b).display().iec().to_string()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            match Option::<Raw>::deserialize(d)? {
                None => Ok(None),
                Some(Raw::Bytes(b)) => Ok(Some(b)),
                Some(Raw::Text(t)) => super::parse(&t).map(Some).map_err(serde::de::Error::custom),
            }
        }
    }

    pub fn parse(s: &str) -> Result<u64, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| {
                format!("unparsable size {s:?} ({e}); write it like \"512MiB\" or \"4GiB\"")
            })
    }
}

/// `"30s"`, `"10m"`, `"1h 30m"` as [`Duration`] (humantime syntax).
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s.trim()).map_err(|e| {
            format!("unparsable duration {s:?} ({e}); write it like \"30s\", \"10m\" or \"1h\"")
        })
    }
}

impl Policy {
    /// A short, stable hash of the policy's effective settings (defaults included), written
    /// with every verdict: a changed policy re-evaluates.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        // Serialising a struct is deterministic: field order is declaration order. The
        // analysis is left out (it watches the champion, it does not judge candidates), and so
        // is absent exactly as a policy without one is: adding one changes no digest.
        let judged = Policy {
            analysis: None,
            ..self.clone()
        };
        let canonical = serde_json::to_string(&judged).unwrap_or_default();
        let hash = sha2::Sha256::digest(canonical.as_bytes());
        hash[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}
