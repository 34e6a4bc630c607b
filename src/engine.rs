//! The evaluate-and-act path shared by `stagegate evaluate` and the daemon's reconciler:
//! read the model, evaluate one version, record the result, decide, act.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::actions::{ActError, Actor};
use std::path::PathBuf;

use crate::config::{Config, Loaded, Policy};
use crate::decision::{self, Decision, Options};
use crate::evaluation::{self, EvalError, Evaluation};
use crate::inputs::{self, Files};
use crate::mlflow::{Client, MlflowError, ModelVersion};
use crate::model_state::{Depth, ModelState};
use crate::objects::logged_identity;
use crate::objects::{Identities, Limits};
use crate::report;
use crate::serving::Environment;
use crate::serving::host::Host;
use crate::tags::TagNames;
use crate::verdict::Verdict;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no policy matches registered model {0:?} (check the `models` globs of [[policies]])")]
    NoPolicy(String),
    #[error("registered model {0:?} does not exist in MLflow")]
    NoModel(String),
    #[error("{model:?} has no version {version}")]
    NoVersion { model: String, version: String },
    #[error("{model:?} has no candidate at {target} (policy {policy:?})")]
    NoCandidate {
        model: String,
        target: String,
        policy: String,
    },
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Act(#[from] ActError),
}

impl From<MlflowError> for EngineError {
    fn from(e: MlflowError) -> Self {
        EngineError::Eval(EvalError::Mlflow(e))
    }
}

impl EngineError {
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Eval(e) => e.is_transient(),
            EngineError::Act(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// The result of evaluating one version and acting on it.
#[derive(Debug)]
pub struct Outcome {
    pub evaluation: Evaluation,
    pub decision: Decision,
    /// Set when the decision could not be carried out (the evaluation is still recorded).
    pub act_error: Option<ActError>,
}

/// Shared state of every evaluation: the MLflow client and the loaded config.
#[derive(Clone)]
pub struct Engine {
    pub client: Client,
    pub config: Arc<Config>,
    pub names: TagNames,
    /// The config file's directory: policy working directories resolve against it.
    base_dir: PathBuf,
    /// The warm scoring host (`serving.mode = "host"`), shared by every evaluation.
    host: Option<Arc<Host>>,
    /// What the gates' input files are (local files' hashes kept between reads).
    identities: Identities,
}

impl Engine {
    /// An engine for `loaded`. With `previous` (a reload), its scoring host is kept when
    /// `[serving]` did not change; otherwise a new one starts at its first use, and the old
    /// one ends when the last evaluation holding it does: never during one.
    pub fn new(client: Client, loaded: &Loaded, previous: Option<&Engine>) -> Self {
        let config = Arc::new(loaded.config.clone());
        let names = TagNames::new(&config.mlflow.tag_prefix);
        let host = Host::for_config(
            &config.serving,
            client.tracking_uri(),
            previous.and_then(|p| p.host.as_ref()),
        );
        Engine {
            client,
            config,
            names,
            base_dir: loaded.base_dir(),
            host,
            identities: previous
                .map(|p| p.identities.clone())
                .unwrap_or_default()
                .with_limits(limits(&loaded.config.inputs)),
        }
    }

    /// The warm scoring host, in `host` mode.
    pub fn host(&self) -> Option<&Arc<Host>> {
        self.host.as_ref()
    }

    /// This engine with every MLflow write first cleared by `guard` (the daemon's lease).
    pub fn guarded(&self, guard: Arc<dyn crate::mlflow::WriteGuard>) -> Engine {
        Engine {
            client: self.client.clone().with_guard(guard),
            config: self.config.clone(),
            names: self.names.clone(),
            base_dir: self.base_dir.clone(),
            host: self.host.clone(),
            identities: self.identities.clone(),
        }
    }

    /// What each of `policy`'s gates' input files is now (gate → identity; `None` where it
    /// cannot be told at the moment). Candidates judged on other files are stale. A dataset
    /// logged on a candidate's run (`context`) is each candidate's own: [`Engine::logged_now`].
    pub async fn files_now(&self, policy: &Policy) -> Files {
        let mut inputs = Vec::new();
        let mut logged = Vec::new();
        for g in &policy.gates {
            for loc in g.kind.inputs() {
                inputs.push((g.name.clone(), loc.clone()));
            }
            if let crate::config::GateKind::Dataset(d) = &g.kind
                && d.context.is_some()
            {
                logged.push(g.name.clone());
            }
        }
        let mut now = self
            .identities
            .of(inputs, &policy.workdir_in(&self.base_dir), &self.client)
            .await;
        now.extend(logged.into_iter().map(|gate| (gate, None)));
        now
    }

    /// What the datasets `v`'s run logged are now, for `policy`'s gates that read one by its
    /// `context` (gate → identity, as the gate records it: the file's and MLflow's digest;
    /// `None` where it cannot be told now, a run with no such dataset included). Nothing is
    /// read for a policy without such a gate.
    pub async fn logged_now(&self, policy: &Policy, v: &ModelVersion) -> Files {
        let mut now = Files::new();
        let workdir = policy.workdir_in(&self.base_dir);
        for (gate, context) in logged_gates(policy) {
            let id = match crate::gates::dataset::logged_dataset(&self.client, v, &context).await {
                Ok(ds) => match ds.location() {
                    Ok(loc) => self
                        .identities
                        .of(vec![(gate.clone(), loc)], &workdir, &self.client)
                        .await
                        .into_values()
                        .next()
                        .flatten()
                        .map(|file| logged_identity(&file, &ds.digest)),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            now.insert(gate, id);
        }
        now
    }

    /// [`Engine::logged_now`] for each of `state`'s candidates but the champion (judged on
    /// what its report records); empty, and nothing read, for a policy without such a gate.
    pub async fn logged_for(&self, policy: &Policy, state: &ModelState) -> BTreeMap<String, Files> {
        if logged_gates(policy).is_empty() {
            return BTreeMap::new();
        }
        let champion = state.champion_version(policy);
        let candidates = state
            .candidates(policy)
            .into_iter()
            .filter(|v| Some(v.version.as_str()) != champion);
        futures::future::join_all(
            candidates
                .map(|v| async move { (v.version.clone(), self.logged_now(policy, v).await) }),
        )
        .await
        .into_iter()
        .collect()
    }

    /// Where a policy's command gates run and its relative paths resolve.
    pub fn environment(&self, policy: &Policy) -> Environment {
        Environment {
            serving: self.config.serving.clone(),
            workdir: policy.workdir_in(&self.base_dir),
            host: self.host.clone(),
            inputs: limits(&self.config.inputs),
        }
    }

    pub fn policy_for(&self, model: &str) -> Result<&Policy, EngineError> {
        self.config
            .policy_for(model)
            .ok_or_else(|| EngineError::NoPolicy(model.to_string()))
    }

    /// Read `model` (mapping "no such model" to a clear error).
    pub async fn read(
        &self,
        model: &str,
        policy: &Policy,
        depth: Depth,
        extra: &[&str],
    ) -> Result<ModelState, EngineError> {
        match ModelState::read(&self.client, model, policy, depth, extra).await {
            Err(e) if e.is_not_found() && extra.is_empty() => {
                Err(EngineError::NoModel(model.into()))
            }
            Err(e) if e.is_not_found() => {
                // Tell a missing model from a missing version.
                match self.client.registered_model(model).await {
                    Err(e2) if e2.is_not_found() => Err(EngineError::NoModel(model.into())),
                    _ => Err(EngineError::NoVersion {
                        model: model.into(),
                        version: extra.join(","),
                    }),
                }
            }
            other => Ok(other?),
        }
    }

    /// `stagegate evaluate`: evaluate `version` (default: the newest candidate), record it, and
    /// act as `opts` allow.
    pub async fn evaluate_and_act(
        &self,
        model: &str,
        version: Option<&str>,
        opts: Options,
    ) -> Result<Outcome, EngineError> {
        let policy = self.policy_for(model)?;
        // A cold process: the host's imports (seconds) overlap the registry's reads and the
        // registry gates rather than following them. A failure to start is the served gates'
        // to report, when they ask for the host.
        if let Some(host) = self.host.clone()
            && policy.gates.iter().any(|g| g.kind.served())
        {
            tokio::spawn(async move { host.start().await });
        }
        let extra: Vec<&str> = version.into_iter().collect();
        let state = self.read(model, policy, Depth::Summary, &extra).await?;
        let candidate = match version {
            Some(v) => state
                .version(v)
                .cloned()
                .ok_or_else(|| EngineError::NoVersion {
                    model: model.into(),
                    version: v.into(),
                })?,
            None => state
                .candidates(policy)
                .first()
                .map(|v| (*v).clone())
                .ok_or_else(|| EngineError::NoCandidate {
                    model: model.into(),
                    target: policy.candidate().to_string(),
                    policy: policy.name.clone(),
                })?,
        };
        self.evaluate_version(policy, &state, &candidate, opts)
            .await
    }

    /// Evaluate `candidate` as the registry stood in `state`, record the result and act on it.
    pub async fn evaluate_version(
        &self,
        policy: &Policy,
        state: &ModelState,
        candidate: &ModelVersion,
        opts: Options,
    ) -> Result<Outcome, EngineError> {
        let before = state.placement(policy, &self.names, &candidate.version);
        let mut files = self.files_now(policy).await;
        files.extend(self.logged_now(policy, candidate).await);
        let (evaluation, decision) = self
            .evaluate_recorded(policy, state, candidate, &files, opts)
            .await?;
        let act_error = self
            .actor(policy)
            .carry_out(
                &state.name,
                &candidate.version,
                &decision,
                evaluation.verdict,
                &before,
            )
            .await
            .err();
        Ok(Outcome {
            evaluation,
            decision,
            act_error,
        })
    }

    /// Run the gates and record the evaluation tags (with the intent of a promotion it leads
    /// to under `opts`); no action. `files`: the gates' files as [`Engine::files_now`] found
    /// them beside `state`. Returns the evaluation and the decision it leads to.
    pub async fn evaluate_recorded(
        &self,
        policy: &Policy,
        state: &ModelState,
        candidate: &ModelVersion,
        files: &Files,
        opts: Options,
    ) -> Result<(Evaluation, Decision), EngineError> {
        let evaluation = self.run_gates(policy, state, candidate, files).await?;
        let decision = decision::decide(policy, state, candidate, evaluation.verdict, opts);
        // A promotion's intent goes with the evaluation's tags, beside the fingerprint: one
        // round trip fewer before the move, which re-reads the version and does not write it
        // again. Anything that stops the move (a change, a pause) is seen by that re-read.
        let intent = match &decision {
            Decision::Promote { replaces } => self.actor(policy).intent_tags(replaces.as_deref()),
            _ => Vec::new(),
        };
        self.record(&evaluation, candidate, &intent).await?;
        Ok((evaluation, decision))
    }

    /// Acts on the registry under `policy`, through this engine's client.
    pub fn actor<'a>(&'a self, policy: &'a Policy) -> Actor<'a> {
        Actor {
            client: &self.client,
            names: &self.names,
            policy,
        }
    }

    /// Run the gates on `candidate` as `state` shows it, against the champion `state` shows.
    async fn run_gates(
        &self,
        policy: &Policy,
        state: &ModelState,
        candidate: &ModelVersion,
        files: &Files,
    ) -> Result<Evaluation, EngineError> {
        let champion = state
            .champion(policy)
            .filter(|c| c.version != candidate.version);
        // The fingerprint names the champion the comparison really used: for an alias target
        // the alias map may name a holder that was not read, and then it is compared with
        // nothing, which the fingerprint must say. The gates' files are taken as they were
        // beside `state`; a gate that reads one records what it read.
        let files = files
            .iter()
            .filter_map(|(gate, id)| Some((gate.clone(), id.clone()?)))
            .collect();
        let (names, digest) = (&self.names, policy.digest());
        let against = champion.map(|c| c.version.as_str());
        let seal =
            |data: &inputs::Data| inputs::fingerprint(names, &digest, candidate, against, data);
        Ok(evaluation::evaluate(
            &self.client,
            &self.environment(policy),
            policy,
            candidate,
            champion,
            files,
            seal,
        )
        .await?)
    }

    async fn record(
        &self,
        evaluation: &Evaluation,
        candidate: &ModelVersion,
        beside: &[(String, String)],
    ) -> Result<(), EngineError> {
        report::write_evaluation(&self.client, &self.names, evaluation, candidate, beside).await?;
        tracing::info!(
            model = %evaluation.model, version = %evaluation.version, verdict = evaluation.verdict.as_str(),
            policy = %evaluation.policy, "evaluated"
        );
        Ok(())
    }
}

/// The process exit code of `stagegate evaluate` for an outcome: 0 passed, 1 failed, 2 could
/// not tell (an error verdict, an inconclusive comparison, or an action that failed).
/// `[inputs]` as the object stores' clients take it.
pub fn limits(c: &crate::config::InputsConfig) -> Limits {
    Limits {
        timeout: c.timeout,
        retries: c.retries as usize,
    }
}

pub fn exit_code(outcome: &Outcome) -> u8 {
    if outcome.act_error.is_some() {
        return 2;
    }
    let blocking = || outcome.evaluation.gates.iter().filter(|g| g.blocks());
    match outcome.evaluation.verdict {
        Verdict::Passed => 0,
        // A verdict that failed only because a comparison could not tell is "inconclusive".
        Verdict::Failed if blocking().all(|g| g.inconclusive) => 2,
        Verdict::Failed => 1,
        Verdict::Error => 2,
    }
}

/// `policy`'s gates that read a dataset logged on the candidate's run: (gate, context).
fn logged_gates(policy: &Policy) -> Vec<(String, String)> {
    policy
        .gates
        .iter()
        .filter_map(|g| {
            let crate::config::GateKind::Dataset(d) = &g.kind else {
                return None;
            };
            d.context.clone().map(|c| (g.name.clone(), c))
        })
        .collect()
}
