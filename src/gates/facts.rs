//! The registry facts the registry-only gates judge: fetched once per evaluation, concurrently,
//! and only what the policy's gates need.

use std::collections::BTreeMap;

use crate::config::{Gate, GateKind};
use crate::mlflow::{Client, MlflowError, ModelVersion, latest};

/// What a training produced: metrics and params, from the run and (MLflow 3) the logged model.
#[derive(Debug, Clone, Default)]
pub struct Training {
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, String>,
    /// Where the values came from, for messages: `run 1a2b…`, `logged model m-…`.
    pub sources: Vec<String>,
}

/// Facts about the candidate and the champion. A fact that could not be had for a
/// non-transient reason is kept as its message, so the gates that need it report `error`.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub training: Option<Result<Training, String>>,
    pub champion_training: Option<Result<Training, String>>,
    /// Whether the version's model files exist (`MLmodel` is readable).
    pub model_files: Option<Result<bool, String>>,
}

/// What a policy's gates read of the registry.
#[derive(Debug, Default)]
struct Needs<'a> {
    training: bool,
    champion_training: bool,
    model_files: bool,
    /// Metric names the gates read, so the logged model is consulted only when the run
    /// lacks one; likewise params.
    metrics: Vec<&'a str>,
    params: Vec<&'a str>,
}

fn needs(gates: &[Gate], has_champion: bool) -> Needs<'_> {
    let mut n = Needs::default();
    for g in gates {
        match &g.kind {
            GateKind::Metric(m) => {
                n.training = true;
                n.metrics.push(&m.metric);
            }
            GateKind::Run(r) => {
                n.training |= !r.metrics.is_empty() || !r.params.is_empty();
                n.model_files |= r.model_artifact;
                n.metrics.extend(r.metrics.iter().map(String::as_str));
                n.params.extend(r.params.iter().map(String::as_str));
            }
            GateKind::Champion(c) => {
                n.training = true;
                n.champion_training |= has_champion;
                n.metrics.push(&c.metric);
            }
            // The version's own tags, or the model itself: nothing to fetch up front.
            GateKind::Tags(_)
            | GateKind::Latency(_)
            | GateKind::EdgeCases(_)
            | GateKind::Dataset(_)
            | GateKind::Command(_) => {}
        }
    }
    n
}

impl Facts {
    /// Fetch what `gates` need. Transient MLflow failures abort (the evaluation is retried
    /// later); permanent ones are recorded per fact.
    pub async fn fetch(
        client: &Client,
        gates: &[Gate],
        candidate: &ModelVersion,
        champion: Option<&ModelVersion>,
    ) -> Result<Facts, MlflowError> {
        let need = needs(gates, champion.is_some());
        let (metrics, params) = (&need.metrics, &need.params);
        let own = async {
            if need.training {
                Some(training(client, candidate, metrics, params).await).transpose()
            } else {
                Ok(None)
            }
        };
        let champion_training = async {
            match champion {
                Some(ch) if need.champion_training => {
                    Some(training(client, ch, metrics, &[]).await).transpose()
                }
                _ => Ok(None),
            }
        };
        let model_files = async {
            if need.model_files {
                Some(model_files(client, candidate).await).transpose()
            } else {
                Ok(None)
            }
        };
        let (training, champion_training, model_files) =
            tokio::try_join!(own, champion_training, model_files)?;
        Ok(Facts {
            training,
            champion_training,
            model_files,
        })
    }
}

/// `Err(Transient)` propagates; a permanent failure becomes `Ok(Err(message))`.
fn keep_permanent<T>(
    r: Result<T, MlflowError>,
    what: impl FnOnce(&MlflowError) -> String,
) -> Result<Result<T, String>, MlflowError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => Ok(Err(what(&e))),
    }
}

async fn training(
    client: &Client,
    v: &ModelVersion,
    metrics: &[&str],
    params: &[&str],
) -> Result<Result<Training, String>, MlflowError> {
    let mut t = Training::default();
    if let Some(run_id) = v.run_id() {
        let run = keep_permanent(client.run(run_id).await, |e| {
            format!(
                "training run {run_id} of v{} could not be read: {e}",
                v.version
            )
        })?;
        let run = match run {
            Ok(r) => r,
            Err(msg) => return Ok(Err(msg)),
        };
        for m in &run.data.metrics {
            t.metrics
                .entry(m.key.clone())
                .or_insert_with(|| run.metric(&m.key).unwrap_or(m.value));
        }
        t.params = run.data.params;
        t.sources.push(format!("run {run_id}"));
    }
    // MLflow 3: metrics and params may be linked to the logged model instead of the run.
    let missing = metrics.iter().any(|m| !t.metrics.contains_key(*m))
        || params.iter().any(|p| !t.params.contains_key(*p));
    if let (true, Some(model_id)) = (missing, v.logged_model_id()) {
        match keep_permanent(client.logged_model(model_id).await, |e| e.to_string())? {
            Ok(lm) => {
                for m in &lm.data.metrics {
                    if !t.metrics.contains_key(&m.key) {
                        t.metrics.insert(
                            m.key.clone(),
                            latest(&lm.data.metrics, &m.key).unwrap_or(m.value),
                        );
                    }
                }
                for (k, val) in lm.data.params {
                    t.params.entry(k).or_insert(val);
                }
                t.sources.push(format!("logged model {model_id}"));
            }
            Err(msg) if t.sources.is_empty() => {
                return Ok(Err(format!(
                    "logged model {model_id} could not be read: {msg}"
                )));
            }
            Err(_) => {}
        }
    }
    if t.sources.is_empty() {
        return Ok(Err(format!(
            "v{} has neither a training run nor a logged model (source {:?})",
            v.version, v.source
        )));
    }
    Ok(Ok(t))
}

async fn model_files(
    client: &Client,
    v: &ModelVersion,
) -> Result<Result<bool, String>, MlflowError> {
    keep_permanent(
        client
            .version_artifact(v, "MLmodel")
            .await
            .map(|f| f.is_some()),
        |e| format!("model files of v{} could not be listed: {e}", v.version),
    )
}
