//! One evaluation: run every gate of a policy against one candidate version and reduce the
//! results to a verdict. Writes nothing; [`crate::report`] records it.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Gate, Policy};
use crate::gates::{self, Facts, GateResult, Outcome, Subject};
use crate::inputs::Data;
use crate::mlflow::{Client, MlflowError, ModelVersion};
use crate::serving::{Environment, Session};
use crate::store::FinishedEvaluation;
use crate::verdict::Verdict;

/// A dataset read by a gate, recorded so the verdict can be reproduced.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetRecord {
    pub gate: String,
    /// As the policy writes it (a URL redacted).
    pub path: String,
    /// What the dataset was: `sha256:…` for a local file, `etag:…` or `version:…` for an
    /// object.
    pub identity: String,
    /// A local file's SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub model: String,
    pub version: String,
    pub policy: String,
    pub policy_digest: String,
    pub verdict: Verdict,
    pub gates: Vec<GateResult>,
    /// RFC 3339 UTC.
    pub evaluated_at: String,
    pub duration_ms: u64,
    /// The promoted version at the time of evaluation.
    pub champion: Option<String>,
    /// The inputs fingerprint the verdict was judged from (see [`crate::inputs`]).
    pub fingerprint: String,
    /// What each gate's input file was, as the fingerprint covers it: as a gate read it, or,
    /// for a gate that read nothing, as it was when the evaluation began.
    pub inputs: Data,
    pub datasets: Vec<DatasetRecord>,
    /// Serving start-ups and request time (`null` when no gate served the model).
    pub serving: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// MLflow failed transiently; try again later.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
}

impl EvalError {
    pub fn is_transient(&self) -> bool {
        match self {
            EvalError::Mlflow(e) => e.is_transient(),
        }
    }
}

/// Evaluate `candidate` against every gate of `policy`. Registry gates are judged from facts
/// fetched up front; gates that exercise the model share one serving session, which is
/// stopped (its processes killed) when this returns or is cancelled. `files` is what each
/// gate's input file was when the caller read `candidate` and `champion`; what a gate really
/// read replaces it. `seal` turns those into the inputs fingerprint recorded with the verdict.
pub async fn evaluate(
    client: &Client,
    env: &Environment,
    policy: &Policy,
    candidate: &ModelVersion,
    champion: Option<&ModelVersion>,
    files: Data,
    seal: impl FnOnce(&Data) -> String,
) -> Result<Evaluation, EvalError> {
    let started = Instant::now();
    let evaluated_at = now_rfc3339();
    let session = Session::new(
        client.clone(),
        env.clone(),
        candidate.clone(),
        champion.cloned(),
    );
    // The candidate's model loads while the registry facts are read: both are on the way to
    // the first served gate. Facts that cannot be read end the evaluation at once, and the
    // load with it (a dropped load kills its process).
    let served = policy.gates.iter().any(|g| g.kind.served());
    let preload = async {
        session.preload(served).await;
        Ok::<(), MlflowError>(())
    };
    let (facts, ()) = tokio::try_join!(
        Facts::fetch(client, &policy.gates, candidate, champion),
        preload
    )?;
    let subject = Subject {
        candidate,
        champion,
        facts: &facts,
        session: &session,
        tracking_uri: client.tracking_uri(),
    };
    let mut results = Vec::with_capacity(policy.gates.len());
    for gate in &policy.gates {
        results.push(judge(gate, &subject).await);
    }
    let serving = session.usage();
    drop(session);
    let datasets: Vec<DatasetRecord> = results
        .iter()
        .filter_map(|g| {
            let d = g.details.as_ref()?.get("dataset")?;
            Some(DatasetRecord {
                gate: g.name.clone(),
                path: d["path"].as_str()?.to_string(),
                identity: d["identity"].as_str()?.to_string(),
                sha256: d["sha256"].as_str().map(str::to_string),
            })
        })
        .collect();
    let mut inputs = files;
    for d in &datasets {
        inputs.insert(d.gate.clone(), d.identity.clone());
    }
    Ok(Evaluation {
        model: candidate.name.clone(),
        version: candidate.version.clone(),
        policy: policy.name.clone(),
        policy_digest: policy.digest(),
        verdict: Verdict::of(results.iter().map(|g| (g.enforced, g.outcome))),
        gates: results,
        evaluated_at,
        duration_ms: started.elapsed().as_millis() as u64,
        champion: champion.map(|c| c.version.clone()),
        fingerprint: seal(&inputs),
        inputs,
        datasets,
        serving,
    })
}

/// One gate; a gate that does not pass is run again up to `retries` times where that can
/// change its outcome.
async fn judge(gate: &Gate, subject: &Subject<'_>) -> GateResult {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let j = gates::judge(&gate.kind, subject).await;
        let again = j.outcome != Outcome::Pass
            && attempts <= gate.retries
            && gates::retries_apply(&gate.kind);
        if !again {
            return GateResult::new(gate, j, started.elapsed().as_millis() as u64, attempts);
        }
        tracing::info!(gate = %gate.name, attempt = attempts, outcome = j.outcome.as_str(), message = %j.message, "gate did not pass; retrying");
    }
}

/// Now, RFC 3339 UTC with milliseconds (a settle period is measured from `evaluated_at`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl Evaluation {
    /// The report document (before any size cap).
    pub fn report_value(&self) -> Value {
        json!({
            "stagegate_version": env!("CARGO_PKG_VERSION"),
            "model": self.model,
            "version": self.version,
            "policy": self.policy,
            "policy_digest": self.policy_digest,
            "verdict": self.verdict,
            "evaluated_at": self.evaluated_at,
            "duration_ms": self.duration_ms,
            "champion": self.champion,
            "fingerprint": self.fingerprint,
            "inputs": self.inputs,
            "gates": self.gates,
            "datasets": self.datasets,
            "serving": self.serving,
        })
    }

    /// The row the store's history keeps of this evaluation. Gate results are JSON values
    /// already, so this fails only on a bug; the caller records the failure instead.
    pub fn history(&self) -> Result<FinishedEvaluation, serde_json::Error> {
        Ok(FinishedEvaluation {
            verdict: self.verdict.as_str().to_string(),
            gates: serde_json::to_value(&self.gates)?,
            champion: self.champion.clone(),
            serving: self.serving.clone(),
        })
    }

    /// A bare evaluation (tests, here and in tests/).
    #[doc(hidden)]
    pub fn for_test(model: &str, version: &str, verdict: Verdict, gates: Vec<GateResult>) -> Self {
        Evaluation {
            model: model.into(),
            version: version.into(),
            policy: "p".into(),
            policy_digest: "d".into(),
            verdict,
            gates,
            evaluated_at: now_rfc3339(),
            duration_ms: 0,
            champion: None,
            fingerprint: "f".into(),
            inputs: Data::new(),
            datasets: vec![],
            serving: Value::Null,
        }
    }
}
