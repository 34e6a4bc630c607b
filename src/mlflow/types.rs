//! MLflow REST entities, as far as stagegate reads them.

use std::collections::BTreeMap;

use crate::location::Location;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub creation_timestamp: i64,
    #[serde(default = "none_stage")]
    pub current_stage: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "key_values")]
    pub tags: BTreeMap<String, String>,
    /// Present on `model-versions/get` and `get-latest-versions`, absent from search results.
    #[serde(default)]
    pub aliases: Vec<String>,
}

fn none_stage() -> String {
    "None".into()
}

impl ModelVersion {
    /// The version as a number; MLflow versions are positive integers sent as strings.
    pub fn number(&self) -> u64 {
        self.version.parse().unwrap_or(0)
    }

    /// The training run, if the version has one (MLflow 3 logged models may not).
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref().filter(|r| !r.is_empty())
    }

    /// The logged-model id of an MLflow 3 `models:/m-…` source. The OSS server never fills
    /// the version's `model_id` field, so it is parsed from `source`.
    pub fn logged_model_id(&self) -> Option<&str> {
        let rest = self.source.strip_prefix("models:/")?;
        let id = rest.split('/').next()?;
        id.starts_with("m-").then_some(id)
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    /// The newest version of each stage, with tags.
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(default)]
    pub aliases: Vec<AliasRef>,
}

impl RegisteredModel {
    pub fn alias(&self, alias: &str) -> Option<&str> {
        self.aliases
            .iter()
            .find(|a| a.alias == alias)
            .map(|a| a.version.as_str())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AliasRef {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
    #[serde(default)]
    pub inputs: RunInputs,
}

/// The datasets a run logged (`mlflow.log_input`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunInputs {
    #[serde(default)]
    pub dataset_inputs: Vec<DatasetInput>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatasetInput {
    #[serde(default)]
    pub tags: Vec<InputTag>,
    pub dataset: Dataset,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputTag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// A logged dataset: MLflow's name and digest for it, and where it came from (`source_type`,
/// with `source` a JSON document of that type).
#[derive(Debug, Clone, Deserialize)]
pub struct Dataset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub source_type: String,
    #[serde(default)]
    pub source: String,
}

impl Run {
    /// The dataset logged with `context` (`mlflow.data.context`); the last one if several.
    pub fn input_with_context(&self, context: &str) -> Option<&Dataset> {
        self.inputs
            .dataset_inputs
            .iter()
            .rev()
            .find(|i| {
                i.tags
                    .iter()
                    .any(|t| t.key == "mlflow.data.context" && t.value == context)
            })
            .map(|i| &i.dataset)
    }
}

impl Dataset {
    /// Where the dataset's file is, for the source kinds that are one file: a local path, an
    /// object-store URI (MLflow's artifact-repository sources: `s3`, `gs`, …) or an http(s)
    /// URL. Any other kind (a Delta table, a Hugging Face dataset, a Spark table, data logged
    /// from code) is named, never guessed at.
    pub fn location(&self) -> Result<Location, String> {
        let doc: serde_json::Value = serde_json::from_str(&self.source).unwrap_or_default();
        let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let at = match self.source_type.as_str() {
            "http" | "https" => field("url"),
            _ => field("uri"),
        };
        let unreadable = || {
            format!(
                "dataset {:?} is a `{}` source, which stagegate does not read (it reads a \
                 CSV or Parquet file: local, in an object store, or over http)",
                self.name, self.source_type
            )
        };
        match (self.source_type.as_str(), at) {
            ("delta_table" | "hugging_face" | "spark" | "code" | "uc_volume" | "dbfs", _)
            | (_, None) => Err(unreadable()),
            (_, Some(at)) => {
                Location::parse(&at).map_err(|e| format!("dataset {:?}: {e}", self.name))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub status: String,
    /// Where the run's artifacts are: `mlflow-artifacts:/…` behind the server's proxy, or a
    /// store the clients read directly (`s3://…`).
    #[serde(default)]
    pub artifact_uri: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default, deserialize_with = "key_values")]
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(deserialize_with = "lenient_f64")]
    pub value: f64,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub step: i64,
}

impl Run {
    /// The latest value of a metric (`runs/get` already returns the latest per key).
    pub fn metric(&self, key: &str) -> Option<f64> {
        latest(&self.data.metrics, key)
    }
}

/// The latest (by step, then timestamp) value of `key` among `metrics`.
pub fn latest(metrics: &[Metric], key: &str) -> Option<f64> {
    metrics
        .iter()
        .filter(|m| m.key == key)
        .max_by_key(|m| (m.step, m.timestamp))
        .map(|m| m.value)
}

/// An MLflow 3 logged model, for the metrics linked to it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoggedModel {
    #[serde(default)]
    pub info: LoggedModelInfo,
    #[serde(default)]
    pub data: LoggedModelData,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoggedModelInfo {
    /// Where the model's files are: `mlflow-artifacts:/…` behind the server's proxy, or a
    /// store the clients read directly (`s3://…`).
    #[serde(default)]
    pub artifact_uri: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoggedModelData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default, deserialize_with = "key_values")]
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Webhook {
    pub webhook_id: String,
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
    #[serde(default)]
    pub status: String,
}

/// MLflow sends maps as `[{"key": …, "value": …}]`.
fn key_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    struct Kv {
        key: String,
        #[serde(default)]
        value: String,
    }
    let list: Option<Vec<Kv>> = Option::deserialize(d)?;
    Ok(list
        .unwrap_or_default()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect())
}

/// Protobuf JSON writes non-finite doubles as the strings "NaN", "Infinity", "-Infinity".
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(f64),
        Str(String),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_model_id_is_parsed_from_source() {
        let mut v = ModelVersion {
            source: "models:/m-abc123".into(),
            ..Default::default()
        };
        assert_eq!(v.logged_model_id(), Some("m-abc123"));
        v.source = "runs:/r1/model".into();
        assert_eq!(v.logged_model_id(), None);
        v.source = "models:/MyModel/3".into();
        assert_eq!(v.logged_model_id(), None);
    }

    #[test]
    fn version_json_with_tags_and_nan_metric() {
        let v: ModelVersion = serde_json::from_str(
            r#"{"name":"m","version":"12","current_stage":"Staging","source":"runs:/x/model",
                "run_id":"","tags":[{"key":"a","value":"1"}]}"#,
        )
        .unwrap();
        assert_eq!(v.number(), 12);
        assert_eq!(v.run_id(), None);
        assert_eq!(v.tag("a"), Some("1"));
        let m: Metric = serde_json::from_str(r#"{"key":"k","value":"NaN"}"#).unwrap();
        assert!(m.value.is_nan());
    }
}
