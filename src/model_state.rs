//! What the registry says of one model, seen through a policy: its candidates and its
//! champion (the currently promoted version).
//!
//! Reading is the only IO here; everything else is pure so the decision core can use it.

use std::collections::BTreeMap;

use crate::config::{Policy, Target};
use crate::inputs;
use crate::mlflow::{Client, MlflowError, ModelVersion, RegisteredModel};
use crate::tags::TagNames;

/// A model's versions as far as they were read, and its aliases.
#[derive(Debug, Clone, Default)]
pub struct ModelState {
    pub name: String,
    /// Keyed by version number. A summary read holds only the newest version of each stage
    /// plus alias holders; a full read holds every version.
    pub versions: BTreeMap<u64, ModelVersion>,
    /// alias → version.
    pub aliases: BTreeMap<String, String>,
}

/// How much of the model to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// `registered-models/get` (+ alias holders): enough for the newest candidate and champion.
    Summary,
    /// Every version: what the reconciler needs to supersede older candidates.
    Full,
}

/// Where a version stands, and what its verdict is judged from: the facts that must not
/// change between evaluating a candidate and acting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub candidate_stage: String,
    pub is_candidate: bool,
    pub champion: Option<String>,
    /// The inputs fingerprint computed from the registry as it stands (`None`: no such version).
    pub inputs: Option<String>,
    /// The fingerprint the version carries: its verdict is current when the two are equal.
    pub recorded: Option<String>,
}

impl ModelState {
    /// Read a model through `client`, making sure `extra` versions are present too.
    pub async fn read(
        client: &Client,
        name: &str,
        policy: &Policy,
        depth: Depth,
        extra: &[&str],
    ) -> Result<ModelState, MlflowError> {
        // The alias map and the version list are two requests either way, never one snapshot,
        // so they are sent together: an alias naming a version the list lacks (created in
        // between) is fetched below like any other holder.
        let all = async {
            match depth {
                Depth::Full => client.all_versions(name).await.map(Some),
                Depth::Summary => Ok(None),
            }
        };
        let (rm, all) = tokio::try_join!(client.registered_model(name), all)?;
        let mut state = ModelState::from_registered(rm);
        if let Some(all) = all {
            state.versions = all.into_iter().map(|v| (v.number(), v)).collect();
        }
        let mut wanted: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for target in [policy.candidate(), &policy.promote.target()] {
            if let Target::Alias(a) = target
                && let Some(v) = state.aliases.get(a)
            {
                wanted.push(v.clone());
            }
        }
        wanted.retain(|v| !state.versions.contains_key(&v.parse().unwrap_or(0)));
        wanted.sort();
        wanted.dedup();
        // Independent reads (the candidate, the champion): sent together.
        let mut reads = Vec::with_capacity(wanted.len());
        for v in &wanted {
            reads.push(client.model_version(name, v));
        }
        for mv in futures::future::try_join_all(reads).await? {
            state.versions.insert(mv.number(), mv);
        }
        state.apply_aliases();
        Ok(state)
    }

    /// The summary view a `registered-models/get` or `search` entry gives without more calls:
    /// the newest version of each stage, and the alias map.
    pub fn from_registered(rm: RegisteredModel) -> ModelState {
        let mut state = ModelState {
            name: rm.name,
            versions: rm
                .latest_versions
                .into_iter()
                .map(|v| (v.number(), v))
                .collect(),
            aliases: rm
                .aliases
                .into_iter()
                .map(|a| (a.alias, a.version))
                .collect(),
        };
        state.apply_aliases();
        state
    }

    /// Add (or refresh) a version read some other way.
    pub fn insert(&mut self, v: ModelVersion) {
        self.versions.insert(v.number(), v);
        self.apply_aliases();
    }

    /// Search results and `latest_versions` carry no aliases; the model's alias map does.
    fn apply_aliases(&mut self) {
        for v in self.versions.values_mut() {
            v.aliases.clear();
        }
        for (alias, version) in &self.aliases {
            if let Some(v) = self.versions.get_mut(&version.parse().unwrap_or(0)) {
                v.aliases.push(alias.clone());
            }
        }
    }

    pub fn version(&self, version: &str) -> Option<&ModelVersion> {
        self.versions.get(&version.parse().ok()?)
    }

    /// Whether `v` sits at `target`.
    pub fn at(&self, v: &ModelVersion, target: &Target) -> bool {
        match target {
            Target::Stage(s) => &v.current_stage == s,
            Target::Alias(a) => self
                .aliases
                .get(a)
                .is_some_and(|holder| holder == &v.version),
        }
    }

    /// Candidates of the policy, newest first.
    pub fn candidates<'a>(&'a self, policy: &Policy) -> Vec<&'a ModelVersion> {
        let mut out: Vec<_> = self
            .versions
            .values()
            .filter(|v| self.at(v, policy.candidate()))
            .collect();
        out.reverse();
        out
    }

    /// The currently promoted version: the newest in the promote stage, or the alias holder.
    pub fn champion(&self, policy: &Policy) -> Option<&ModelVersion> {
        let target = policy.promote.target();
        self.versions.values().rev().find(|v| self.at(v, &target))
    }

    /// The champion's version number. For an alias target the alias map alone says it, even
    /// when the holder itself was not read (a summary read).
    pub fn champion_version(&self, policy: &Policy) -> Option<&str> {
        match policy.promote.target() {
            Target::Alias(a) => self.aliases.get(&a).map(String::as_str),
            Target::Stage(_) => self.champion(policy).map(|c| c.version.as_str()),
        }
    }

    /// The champion `v` is compared with: the champion, unless `v` is the champion.
    pub fn compared_with(&self, policy: &Policy, v: &ModelVersion) -> Option<&str> {
        self.champion_version(policy).filter(|c| *c != v.version)
    }

    /// The inputs fingerprint of `v` as the registry stands (see [`crate::inputs`]), its
    /// gates' files as its verdict was judged on them: whether they changed since is the
    /// plan's to see, with their identities read afresh.
    pub fn inputs(&self, policy: &Policy, names: &TagNames, v: &ModelVersion) -> String {
        let data = inputs::judged_data(names, v);
        inputs::fingerprint(
            names,
            &policy.digest(),
            v,
            self.compared_with(policy, v),
            &data,
        )
    }

    pub fn placement(&self, policy: &Policy, names: &TagNames, version: &str) -> Placement {
        let v = self.version(version);
        Placement {
            candidate_stage: v.map(|v| v.current_stage.clone()).unwrap_or_default(),
            is_candidate: v.is_some_and(|v| self.at(v, policy.candidate())),
            champion: self.champion_version(policy).map(str::to_string),
            inputs: v.map(|v| self.inputs(policy, names, v)),
            recorded: v.and_then(|v| v.tag(&names.fingerprint()).map(str::to_string)),
        }
    }
}

impl Placement {
    /// What changed from `self` to `now`, in words; `None` when nothing did.
    pub fn change_to(&self, now: &Placement) -> Option<String> {
        let mut what = Vec::new();
        if self.champion != now.champion {
            let show = |c: &Option<String>| {
                c.as_ref()
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "none".into())
            };
            what.push(format!(
                "the champion changed from {} to {}",
                show(&self.champion),
                show(&now.champion)
            ));
        }
        if self.is_candidate != now.is_candidate {
            what.push(if now.is_candidate {
                "it became a candidate".into()
            } else {
                "it is no longer a candidate".into()
            });
        } else if self.candidate_stage != now.candidate_stage {
            what.push(format!(
                "its stage changed from {} to {}",
                self.candidate_stage, now.candidate_stage
            ));
        }
        if self.champion == now.champion && self.inputs != now.inputs {
            what.push("its tags, run or source changed".into());
        }
        (!what.is_empty()).then(|| what.join("; "))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Policy, Promote};

    pub fn version(n: u64, stage: &str) -> ModelVersion {
        ModelVersion {
            name: "m".into(),
            version: n.to_string(),
            current_stage: stage.into(),
            source: format!("runs:/run{n}/model"),
            run_id: Some(format!("run{n}")),
            ..Default::default()
        }
    }

    pub fn policy(candidate: Target, promote: Target) -> Policy {
        let (stage, alias) = match promote {
            Target::Stage(s) => (Some(s), None),
            Target::Alias(a) => (None, Some(a)),
        };
        Policy {
            name: "p".into(),
            models: vec!["*".into()],
            candidate,
            promote: Promote {
                stage,
                alias,
                archive_existing: None,
            },
            on_fail: Default::default(),
            mode: Default::default(),
            on_bypass: Default::default(),
            workdir: None,
            gates: vec![],
            analysis: None,
            matcher: Default::default(),
        }
    }

    pub fn state(versions: Vec<ModelVersion>, aliases: &[(&str, &str)]) -> ModelState {
        let mut s = ModelState {
            name: "m".into(),
            versions: versions.into_iter().map(|v| (v.number(), v)).collect(),
            aliases: aliases
                .iter()
                .map(|(a, v)| (a.to_string(), v.to_string()))
                .collect(),
        };
        s.apply_aliases();
        s
    }

    #[test]
    fn stage_candidates_newest_first_and_champion_is_newest_promoted() {
        let p = policy(
            Target::Stage("Staging".into()),
            Target::Stage("Production".into()),
        );
        let s = state(
            vec![
                version(1, "Production"),
                version(2, "Production"),
                version(3, "Staging"),
                version(4, "Staging"),
            ],
            &[],
        );
        let c: Vec<_> = s.candidates(&p).iter().map(|v| v.number()).collect();
        assert_eq!(c, vec![4, 3]);
        assert_eq!(s.champion(&p).map(|v| v.number()), Some(2));
    }

    #[test]
    fn alias_targets_follow_the_alias_map() {
        let p = policy(
            Target::Alias("challenger".into()),
            Target::Alias("champion".into()),
        );
        let s = state(
            vec![version(1, "None"), version(2, "None")],
            &[("champion", "1"), ("challenger", "2")],
        );
        assert_eq!(s.candidates(&p)[0].number(), 2);
        assert_eq!(s.champion(&p).map(|v| v.number()), Some(1));
        assert_eq!(
            s.version("1").unwrap().aliases,
            vec!["champion".to_string()]
        );
    }

    #[test]
    fn placement_reports_a_changed_champion_and_changed_inputs() {
        let p = policy(
            Target::Stage("Staging".into()),
            Target::Stage("Production".into()),
        );
        let n = TagNames::new("stagegate.");
        let before = state(vec![version(1, "Production"), version(3, "Staging")], &[])
            .placement(&p, &n, "3");
        let after = state(vec![version(2, "Production"), version(3, "Staging")], &[])
            .placement(&p, &n, "3");
        let why = before.change_to(&after).unwrap();
        assert!(why.contains("from v1 to v2"), "{why}");
        assert_eq!(before.change_to(&before), None);
        let mut tagged = version(3, "Staging");
        tagged.tags.insert("owner".into(), "me".into());
        let retagged = state(vec![version(1, "Production"), tagged], &[]).placement(&p, &n, "3");
        let why = before.change_to(&retagged).unwrap();
        assert!(why.contains("tags, run or source"), "{why}");
    }
}
