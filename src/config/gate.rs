//! `[[policies.gates]]` tables: the options every gate shares, plus one typed table per gate
//! `type`.
//!
//! serde cannot combine an internally tagged enum, shared flattened fields and
//! `deny_unknown_fields`, so a gate is read in two steps: the shared keys are taken out of the
//! table, then the rest must match the gate type's own struct exactly. That keeps "unknown key
//! inside a gate" an error that names the gate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::duration;

/// A gate: shared options plus its type-specific settings.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub name: String,
    /// `false` = shadow: runs and records "would block", never blocks.
    pub enforce: bool,
    /// Extra runs of a failing or erroring gate before its outcome stands.
    pub retries: u32,
    #[serde(flatten)]
    pub kind: GateKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GateKind {
    Metric(MetricGate),
    Tags(TagsGate),
    Run(RunGate),
    Champion(ChampionGate),
    Latency(LatencyGate),
    EdgeCases(EdgeCasesGate),
    Dataset(DatasetGate),
    Command(CommandGate),
}

pub const GATE_TYPES: &[&str] = &[
    "metric",
    "tags",
    "run",
    "champion",
    "latency",
    "edge_cases",
    "dataset",
    "command",
];

impl GateKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            GateKind::Metric(_) => "metric",
            GateKind::Tags(_) => "tags",
            GateKind::Run(_) => "run",
            GateKind::Champion(_) => "champion",
            GateKind::Latency(_) => "latency",
            GateKind::EdgeCases(_) => "edge_cases",
            GateKind::Dataset(_) => "dataset",
            GateKind::Command(_) => "command",
        }
    }
}

/// The latest value of a training-run metric within `[min, max]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricGate {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Model-version tags that must be present and non-empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagsGate {
    pub required: Vec<String>,
}

/// The training run logged what it should, and the model files exist.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunGate {
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub model_artifact: bool,
}

/// No regression against the currently promoted version.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChampionGate {
    pub metric: String,
    pub max_drop: Option<f64>,
    pub max_drop_ratio: Option<f64>,
    #[serde(default = "yes")]
    pub greater_is_better: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyGate {
    pub p99_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    #[serde(default = "default_requests")]
    pub requests: u32,
    #[serde(default = "one")]
    pub concurrency: u32,
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    pub input: Option<PathBuf>,
    pub max_ratio_to_champion: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeCasesGate {
    /// Rows of the large-batch case.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetGate {
    pub path: PathBuf,
    pub label: String,
    /// Metric name → threshold: minimums, except rmse/mae/log_loss which are maximums.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    pub slices: Option<Slices>,
    pub vs_champion: Option<VsChampion>,
    /// Rows per request to the served model.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The label value counted as positive for binary precision/recall/f1/roc_auc.
    pub positive_label: Option<String>,
    /// Same as `vs_champion.inconclusive`.
    pub inconclusive: Option<Inconclusive>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slices {
    pub column: String,
    #[serde(default)]
    pub max_gap: BTreeMap<String, f64>,
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VsChampion {
    pub metric: String,
    #[serde(default)]
    pub max_drop: f64,
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    #[serde(default = "default_resamples")]
    pub resamples: u32,
    #[serde(default)]
    pub seed: u64,
    pub inconclusive: Option<Inconclusive>,
}

/// How an inconclusive champion comparison counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Inconclusive {
    Pass,
    Fail,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandGate {
    pub run: Vec<String>,
    #[serde(default = "default_command_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_requests() -> u32 {
    200
}
fn default_warmup() -> u32 {
    20
}
fn default_batch_rows() -> usize {
    1000
}
fn default_batch_size() -> usize {
    1000
}
fn default_min_rows() -> usize {
    30
}
fn default_confidence() -> f64 {
    0.95
}
fn default_resamples() -> u32 {
    1000
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(600)
}

impl<'de> Deserialize<'de> for Gate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Object(mut table) = Value::deserialize(d)? else {
            return Err(D::Error::custom("a gate must be a table"));
        };
        let name = match table.remove("name") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`name` must be a string, found {other}"
                )));
            }
            None => return Err(D::Error::custom("missing field `name`")),
        };
        let ctx = |msg: String| D::Error::custom(format!("gate `{name}`: {msg}"));
        let type_name = match table.remove("type") {
            Some(Value::String(s)) => s,
            Some(other) => return Err(ctx(format!("`type` must be a string, found {other}"))),
            None => {
                return Err(ctx(format!(
                    "missing field `type` (one of {})",
                    GATE_TYPES.join(", ")
                )));
            }
        };
        let enforce = match table.remove("enforce") {
            None => true,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(ctx(format!(
                    "`enforce` must be true or false, found {other}"
                )));
            }
        };
        let retries = match table.remove("retries") {
            None => 0,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= 10)
                .ok_or_else(|| {
                    ctx(format!(
                        "`retries` must be a whole number from 0 to 10, found {v}"
                    ))
                })?,
        };
        let rest = Value::Object(table);
        let kind = match type_name.as_str() {
            "metric" => GateKind::Metric(typed(rest).map_err(ctx)?),
            "tags" => GateKind::Tags(typed(rest).map_err(ctx)?),
            "run" => GateKind::Run(typed(rest).map_err(ctx)?),
            "champion" => GateKind::Champion(typed(rest).map_err(ctx)?),
            "latency" => GateKind::Latency(typed(rest).map_err(ctx)?),
            "edge_cases" => GateKind::EdgeCases(typed(rest).map_err(ctx)?),
            "dataset" => GateKind::Dataset(typed(rest).map_err(ctx)?),
            "command" => GateKind::Command(typed(rest).map_err(ctx)?),
            other => {
                return Err(ctx(format!(
                    "unknown gate type `{other}` (expected one of {})",
                    GATE_TYPES.join(", ")
                )));
            }
        };
        Ok(Gate {
            name,
            enforce,
            retries,
            kind,
        })
    }
}

/// Deserialize the type-specific keys, naming the offending key on error.
fn typed<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || inner.starts_with("unknown field") || inner.starts_with("missing field") {
            inner
        } else {
            format!("`{path}`: {inner}")
        }
    })
}
