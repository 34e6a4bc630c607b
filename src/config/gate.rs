//! `[[policies.gates]]` tables: the options every gate shares, plus one typed table per gate
//! `type`.
//!
//! serde cannot combine an internally tagged enum, shared flattened fields and
//! `deny_unknown_fields`, so a gate is read in two steps: the shared keys are taken out of the
//! table, then the rest must match the gate type's own struct exactly. That keeps "unknown key
//! inside a gate" an error that names the gate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::duration;
use super::required_tags::RequiredTags;
use crate::location::Location;

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

/// Declares [`GateType`] and its list from one table, so that the list cannot miss a type.
macro_rules! gate_types {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// A gate's `type`, without its settings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum GateType {
            $($variant),*
        }

        impl GateType {
            /// Every type, in the order the documentation and messages list them.
            pub const ALL: &[GateType] = &[$(GateType::$variant),*];

            /// The name `type = "…"` gives it.
            pub fn name(self) -> &'static str {
                match self {
                    $(GateType::$variant => $name),*
                }
            }
        }
    };
}

// A new gate type: its line here, its `GateKind` variant with a settings struct, and its
// module in `src/gates`; the compiler then names every match that must judge it.
gate_types! {
    Metric = "metric",
    Tags = "tags",
    Run = "run",
    Champion = "champion",
    Latency = "latency",
    EdgeCases = "edge_cases",
    Dataset = "dataset",
    Command = "command",
}

impl GateType {
    pub fn parse(name: &str) -> Option<GateType> {
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// `metric, tags, …`: the types, for messages.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl GateKind {
    pub fn gate_type(&self) -> GateType {
        match self {
            GateKind::Metric(_) => GateType::Metric,
            GateKind::Tags(_) => GateType::Tags,
            GateKind::Run(_) => GateType::Run,
            GateKind::Champion(_) => GateType::Champion,
            GateKind::Latency(_) => GateType::Latency,
            GateKind::EdgeCases(_) => GateType::EdgeCases,
            GateKind::Dataset(_) => GateType::Dataset,
            GateKind::Command(_) => GateType::Command,
        }
    }

    /// Whether the gate exercises the served model (`[serving]` serves it).
    pub fn served(&self) -> bool {
        match self {
            GateKind::Latency(_) | GateKind::EdgeCases(_) | GateKind::Dataset(_) => true,
            GateKind::Metric(_)
            | GateKind::Tags(_)
            | GateKind::Run(_)
            | GateKind::Champion(_)
            | GateKind::Command(_) => false,
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.gate_type().name()
    }

    /// The inputs the gate reads, as written (relative paths resolve against the policy's
    /// workdir): a dataset, a latency input. `stagegate check` looks for them.
    pub fn inputs(&self) -> Vec<&Location> {
        match self {
            GateKind::Latency(l) => l.input.iter().collect(),
            GateKind::Dataset(d) => d.path.iter().collect(),
            GateKind::Metric(_)
            | GateKind::Tags(_)
            | GateKind::Run(_)
            | GateKind::Champion(_)
            | GateKind::EdgeCases(_)
            | GateKind::Command(_) => Vec::new(),
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

/// Model-version tags that must be present and non-empty, and optionally hold given values.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagsGate {
    pub required: RequiredTags,
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
    pub input: Option<Location>,
    pub max_ratio_to_champion: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeCasesGate {
    /// Rows of the large-batch case.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// The case families to send, sorted and without repeats. Omitted = the default set,
    /// filled in here so the policy digest covers the effective set: when a release changes
    /// the default, versions judged by the old set are re-evaluated.
    #[serde(
        default = "CaseFamily::default_set",
        deserialize_with = "case_families"
    )]
    pub cases: Vec<CaseFamily>,
}

/// A family of `edge_cases` requests (`cases = [...]`). The declaration order is the order the
/// cases are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum CaseFamily {
    /// 0 in every numeric column or tensor.
    Zeros,
    /// +1e6 and -1e6 in every numeric column or tensor.
    Large,
    /// NaN in every float column (required or not) and float tensor.
    Nan,
    /// null in every optional column.
    Missing,
    /// Empty, long and unicode strings in string columns.
    Strings,
    /// `true` and `false` in boolean columns and tensors.
    Booleans,
    /// One typical row.
    OneRow,
    /// `batch_rows` typical rows.
    Batch,
    /// Each type's minimum and maximum. Opt-in: scikit-learn's trees work in float32 and
    /// refuse float64 extremes, which would fail the most common tabular models by default.
    DtypeLimits,
}

impl CaseFamily {
    pub const ALL: &[CaseFamily] = &[
        CaseFamily::Zeros,
        CaseFamily::Large,
        CaseFamily::Nan,
        CaseFamily::Missing,
        CaseFamily::Strings,
        CaseFamily::Booleans,
        CaseFamily::OneRow,
        CaseFamily::Batch,
        CaseFamily::DtypeLimits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CaseFamily::Zeros => "zeros",
            CaseFamily::Large => "large",
            CaseFamily::Nan => "nan",
            CaseFamily::Missing => "missing",
            CaseFamily::Strings => "strings",
            CaseFamily::Booleans => "booleans",
            CaseFamily::OneRow => "one_row",
            CaseFamily::Batch => "batch",
            CaseFamily::DtypeLimits => "dtype_limits",
        }
    }

    /// What a healthy production model passes: everything but `dtype_limits`.
    pub fn default_set() -> Vec<CaseFamily> {
        Self::ALL
            .iter()
            .copied()
            .filter(|f| *f != CaseFamily::DtypeLimits)
            .collect()
    }
}

impl std::fmt::Display for CaseFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for CaseFamily {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown case family {s:?} (expected one of {})",
                    Self::ALL
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// `cases = [...]`: at least one family; sorted and de-duplicated, so that order and repeats
/// in the file change neither what is sent nor the policy digest.
fn case_families<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CaseFamily>, D::Error> {
    let mut v = Vec::<CaseFamily>::deserialize(d)?;
    if v.is_empty() {
        return Err(D::Error::custom(
            "list at least one case family, or omit `cases` for the default set",
        ));
    }
    v.sort();
    v.dedup();
    Ok(v)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetGate {
    /// A local path, an object-store or web URL, or an MLflow artifact URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Location>,
    /// Instead of `path`: the dataset logged on the candidate's run with this context
    /// (`mlflow.log_input(..., context=...)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
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
                    GateType::names()
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
        let Some(gate_type) = GateType::parse(&type_name) else {
            return Err(ctx(format!(
                "unknown gate type `{type_name}` (expected one of {})",
                GateType::names()
            )));
        };
        let kind = match gate_type {
            GateType::Metric => GateKind::Metric(typed(rest).map_err(ctx)?),
            GateType::Tags => GateKind::Tags(typed(rest).map_err(ctx)?),
            GateType::Run => GateKind::Run(typed(rest).map_err(ctx)?),
            GateType::Champion => GateKind::Champion(typed(rest).map_err(ctx)?),
            GateType::Latency => GateKind::Latency(typed(rest).map_err(ctx)?),
            GateType::EdgeCases => GateKind::EdgeCases(typed(rest).map_err(ctx)?),
            GateType::Dataset => GateKind::Dataset(typed(rest).map_err(ctx)?),
            GateType::Command => GateKind::Command(typed(rest).map_err(ctx)?),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Policy;

    fn policy(edge_gate: Value) -> Result<Policy, String> {
        let mut gate = json!({"name": "edges", "type": "edge_cases"});
        gate.as_object_mut()
            .unwrap()
            .extend(edge_gate.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "name": "p",
            "candidate": {"stage": "Staging"},
            "promote": {"stage": "Production"},
            "gates": [gate],
        }))
        .map_err(|e| e.to_string())
    }

    fn cases(p: &Policy) -> Vec<CaseFamily> {
        match &p.gates[0].kind {
            GateKind::EdgeCases(e) => e.cases.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_gate_type_reads_back_from_its_name() {
        for t in GateType::ALL {
            assert_eq!(GateType::parse(t.name()), Some(*t));
        }
        assert_eq!(GateType::parse("Metric"), None);
        assert!(GateType::names().starts_with("metric, tags, run, champion"));
    }

    #[test]
    fn cases_default_to_everything_but_dtype_limits() {
        let p = policy(json!({})).unwrap();
        assert_eq!(
            cases(&p).iter().map(|f| f.name()).collect::<Vec<_>>(),
            [
                "zeros", "large", "nan", "missing", "strings", "booleans", "one_row", "batch"
            ]
        );
    }

    #[test]
    fn cases_are_sorted_and_deduplicated_so_the_digest_follows_the_set() {
        let a = policy(json!({"cases": ["nan", "zeros", "nan"]})).unwrap();
        assert_eq!(cases(&a), [CaseFamily::Zeros, CaseFamily::Nan]);
        let b = policy(json!({"cases": ["zeros", "nan"]})).unwrap();
        assert_eq!(a.digest(), b.digest());
        // Omitted and the default set written out are the same policy…
        let default = policy(json!({})).unwrap();
        let names: Vec<&str> = CaseFamily::default_set().iter().map(|f| f.name()).collect();
        assert_eq!(
            default.digest(),
            policy(json!({ "cases": names })).unwrap().digest()
        );
        // …and a different set is a different one: its versions are re-evaluated.
        let limits = policy(json!({"cases": ["zeros", "nan", "dtype_limits"]})).unwrap();
        assert_ne!(limits.digest(), b.digest());
        assert_ne!(limits.digest(), default.digest());
    }

    #[test]
    fn unknown_or_no_case_families_are_refused() {
        let e = policy(json!({"cases": ["zeros", "dtype_limit"]})).unwrap_err();
        assert!(
            e.contains("`cases[1]`")
                && e.contains("unknown case family \"dtype_limit\"")
                && e.contains(
                    "zeros, large, nan, missing, strings, booleans, one_row, batch, dtype_limits"
                ),
            "{e}"
        );
        let e = policy(json!({"cases": []})).unwrap_err();
        assert!(e.contains("`cases`") && e.contains("at least one"), "{e}");
    }
}
