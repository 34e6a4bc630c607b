//! Carrying out decisions on the registry: promotion (stage transition with archiving, or an
//! alias move), archiving, rollback, and their bookkeeping tags.
//!
//! Every move re-reads the candidate and the champion first and refuses if either changed
//! since the evaluation began, or if the verdict is no longer current for the version's
//! inputs (its fingerprint). Every step is idempotent, and a promotion is bracketed by
//! `replaced_version` and `promoted` so an interrupted one is finished, never redone.
//!
//! stagegate never deletes or moves the *candidate* alias: MLflow has no conditional alias
//! write, so removing it could take it from a newer version pointed at in the meantime. The
//! alias belongs to the training pipeline; a promoted version may keep it until the next
//! candidate takes it, and the plan treats that as settled.

use crate::config::{OnBypass, Policy, Target};
use crate::decision::{Decision, PROMOTED, REPLACED_NOTHING};
use crate::evaluation::now_rfc3339;
use crate::mlflow::{Client, MlflowError};
use crate::model_state::{Depth, ModelState, Placement};
use crate::tags::{TagNames, clip};
use crate::verdict::Verdict;

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The registry changed between evaluation and action: nothing was moved.
    #[error("not acting on {model} v{version}: {why} since the evaluation began")]
    Changed {
        model: String,
        version: String,
        why: String,
    },
    /// A request that cannot be carried out as asked (rollback with nothing to restore…).
    #[error("{0}")]
    Refused(String),
}

impl ActError {
    pub fn is_transient(&self) -> bool {
        match self {
            ActError::Mlflow(e) => e.is_transient(),
            // The world moved on: evaluate again against the new world.
            ActError::Changed { .. } => true,
            ActError::Refused(_) => false,
        }
    }
}

const ARCHIVED: &str = "Archived";

/// Acts on one model under one policy.
pub struct Actor<'a> {
    pub client: &'a Client,
    pub names: &'a TagNames,
    pub policy: &'a Policy,
}

/// A move made whose bookkeeping tags are not yet written ([`Actor::complete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub version: String,
    /// The `action` tag the version gets: `promoted` or `archived`.
    pub action: String,
    /// For a promotion, the champion it replaced (`None`: there was none).
    pub replaced: Option<String>,
}

impl Actor<'_> {
    /// Carry out `decision`, made from `verdict`, on `model` v`version`. `before` is the
    /// registry as it was when the evaluation began; a move is refused if the candidate, the
    /// champion or the candidate's inputs differ now, or if its verdict is no longer current.
    pub async fn carry_out(
        &self,
        model: &str,
        version: &str,
        decision: &Decision,
        verdict: Verdict,
        before: &Placement,
    ) -> Result<(), ActError> {
        if !decision.moves() {
            return self
                .set_action(model, version, &decision.action_tag())
                .await;
        }
        let now =
            ModelState::read(self.client, model, self.policy, Depth::Summary, &[version]).await?;
        let moved = self
            .move_on(&now, version, decision, verdict, before)
            .await?;
        self.complete(model, &moved).await
    }

    /// The move of a decision that moves (promote, archive), on `now`: the registry as read
    /// after the evaluation, immediately before this call. Refused, with the reason recorded
    /// on the version, if the candidate, the champion or the candidate's inputs differ from
    /// `before`, or if its verdict is no longer current. The bookkeeping tags are left to
    /// [`Actor::complete`], so a caller can record the move elsewhere meanwhile.
    pub async fn move_on(
        &self,
        now: &ModelState,
        version: &str,
        decision: &Decision,
        verdict: Verdict,
        before: &Placement,
    ) -> Result<Moved, ActError> {
        let model = now.name.as_str();
        let placed = now.placement(self.policy, self.names, version);
        let why = before
            .change_to(&placed)
            .or_else(|| self.not_current(now, version, verdict, &placed));
        if let Some(why) = why {
            // An intent written with the evaluation announces a move that is not made: left
            // there, it would make a later move by hand read as our promotion cut short
            // (finished instead of judged as a bypass). It goes before the note.
            let intent = self.names.replaced_version();
            let carried = now.version(version);
            if carried.is_some_and(|v| {
                v.tag(&intent).is_some() && v.tag(&self.names.action()) != Some(PROMOTED)
            }) {
                self.client
                    .delete_version_tag(model, version, &intent)
                    .await?;
            }
            let note = format!("skipped: {why} during evaluation; re-evaluating");
            self.set_action(model, version, &note).await?;
            return Err(ActError::Changed {
                model: model.into(),
                version: version.into(),
                why,
            });
        }
        let replaced = match decision {
            Decision::Promote { .. } => self.promote(now, version).await?,
            Decision::Archive => self.archive(now, version).await?,
            _ => unreachable!("only promote and archive move"),
        };
        Ok(Moved {
            version: version.into(),
            action: decision.action_tag(),
            replaced,
        })
    }

    /// Why the verdict on the freshly read version is not the current `verdict` (`None`: it is).
    fn not_current(
        &self,
        now: &ModelState,
        version: &str,
        verdict: Verdict,
        placed: &Placement,
    ) -> Option<String> {
        if placed.recorded.is_none() || placed.recorded != placed.inputs {
            return Some("its verdict is no longer current".into());
        }
        let recorded = now
            .version(version)
            .and_then(|v| v.tag(&self.names.verdict()))
            .and_then(Verdict::parse);
        (recorded != Some(verdict)).then(|| {
            format!(
                "its verdict is now {}",
                recorded.map(Verdict::as_str).unwrap_or("missing")
            )
        })
    }

    /// The tag that announces a promotion before it happens: `replaced_version`, the
    /// champion being replaced (`none` if there is none). It is what `rollback` restores, and
    /// if we die after the move, the next reconcile sees it on a champion not yet marked
    /// `promoted` and finishes the bookkeeping instead of mistaking it for a bypass.
    pub fn intent_tags(&self, replaced: Option<&str>) -> Vec<(String, String)> {
        let value = replaced.unwrap_or(REPLACED_NOTHING).to_string();
        vec![(self.names.replaced_version(), value)]
    }

    /// The intent, then the move; returns the champion it replaced.
    async fn promote(&self, state: &ModelState, version: &str) -> Result<Option<String>, ActError> {
        let (client, model) = (self.client, state.name.as_str());
        let replaced = state.champion(self.policy).map(|c| c.version.clone());
        // An intent already on the version as read now (written with the evaluation, which
        // named the champion seen then, proved unchanged since) is not written again.
        let carried = state.version(version);
        for (k, v) in self.intent_tags(replaced.as_deref()) {
            if carried.and_then(|c| c.tag(&k)) != Some(v.as_str()) {
                client.set_version_tag(model, version, &k, &v).await?;
            }
        }
        match self.policy.promote.target() {
            Target::Stage(stage) => {
                client
                    .transition_stage(
                        model,
                        version,
                        &stage,
                        self.policy.promote.archive_existing(),
                    )
                    .await?;
            }
            Target::Alias(alias) => client.set_alias(model, &alias, version).await?,
        }
        tracing::info!(model, version, replaced = ?replaced, target = %self.policy.promote.target(), "promoted");
        Ok(replaced)
    }

    /// Finish a promotion that was interrupted after the move (the version is champion and
    /// carries `replaced_version`, but not yet `promoted`).
    pub async fn finish(&self, model: &str, version: &str) -> Result<(), ActError> {
        let v = self.client.model_version(model, version).await?;
        let moved = Moved {
            version: version.into(),
            action: PROMOTED.into(),
            replaced: v
                .tag(&self.names.replaced_version())
                .filter(|r| *r != REPLACED_NOTHING)
                .map(str::to_string),
        };
        self.complete(model, &moved).await
    }

    /// The bookkeeping after a move: mark the replaced version, then record the action
    /// (`promoted`, `archived`). Safe to repeat. The candidate alias is left where it is
    /// (see the module doc).
    pub async fn complete(&self, model: &str, moved: &Moved) -> Result<(), ActError> {
        // The replaced version is marked before `promoted` is written: `promoted` is what
        // tells the next reconcile the bookkeeping is done, so if marking fails, `finish`
        // redoes all of it instead of leaving the old champion unmarked for good.
        if let Some(old) = &moved.replaced {
            self.mark_replaced(model, old, &moved.version).await?;
        }
        self.set_action(model, &moved.version, &moved.action).await
    }

    async fn mark_replaced(&self, model: &str, old: &str, by: &str) -> Result<(), ActError> {
        let (now, by_key, at_key) = (
            now_rfc3339(),
            self.names.replaced_by(),
            self.names.replaced_at(),
        );
        tokio::try_join!(
            self.client.set_version_tag(model, old, &by_key, by),
            self.client.set_version_tag(model, old, &at_key, &now),
        )?;
        Ok(())
    }

    /// A failed candidate moves to the Archived stage. An alias candidate keeps its alias
    /// (see the module doc): the stage and the `archived` action say it is out.
    async fn archive(&self, state: &ModelState, version: &str) -> Result<Option<String>, ActError> {
        let model = state.name.as_str();
        if state
            .version(version)
            .is_none_or(|v| v.current_stage != ARCHIVED)
        {
            self.client
                .transition_stage(model, version, ARCHIVED, false)
                .await?;
        }
        tracing::info!(model, version, "archived failed candidate");
        Ok(None)
    }

    pub async fn set_action(
        &self,
        model: &str,
        version: &str,
        action: &str,
    ) -> Result<(), ActError> {
        Ok(self
            .client
            .set_version_tag(model, version, &self.names.action(), action)
            .await?)
    }

    /// Restore the version recorded in the champion's `replaced_version`. Returns
    /// `(rolled back, restored)`.
    pub async fn rollback(&self, model: &str) -> Result<(String, String), ActError> {
        self.rollback_checked(model, None, None, "").await
    }

    /// [`Actor::rollback`] of `bad` only: refused, with nothing written, unless the registry,
    /// read now, still names `bad` the champion (an analysis that failed must not move a
    /// champion that changed while it measured). `restore` names the version to put back when
    /// the caller knows it (a champion promoted by hand records none); `why` is appended to
    /// the `rolled_back` note.
    pub async fn rollback_checked(
        &self,
        model: &str,
        bad: Option<&str>,
        restore: Option<&str>,
        why: &str,
    ) -> Result<(String, String), ActError> {
        let state = ModelState::read(self.client, model, self.policy, Depth::Summary, &[]).await?;
        let champion_now = state.champion_version(self.policy);
        if let Some(bad) = bad
            && champion_now != Some(bad)
        {
            return Err(ActError::Changed {
                model: model.into(),
                version: bad.into(),
                why: format!(
                    "the champion is now {}",
                    champion_now.map_or("none".into(), |v| format!("v{v}"))
                ),
            });
        }
        let champion = state.champion(self.policy).ok_or_else(|| {
            ActError::Refused(format!(
                "nothing to roll back: {model} has no promoted version at {}",
                self.policy.promote.target()
            ))
        })?;
        let bad = champion.version.clone();
        let restore = restore
            .or_else(|| champion.tag(&self.names.replaced_version()))
            .filter(|r| *r != REPLACED_NOTHING)
            .map(str::to_string)
            .ok_or_else(|| {
                ActError::Refused(format!(
                    "nothing to restore: {model} v{bad} did not replace a version through stagegate \
                     (its {} tag is missing or \"{REPLACED_NOTHING}\")",
                    self.names.replaced_version()
                ))
            })?;
        // Checked before anything is written: a version that cannot be restored leaves no
        // `rolled_back` claiming a rollback that never happened.
        self.restorable(model, &restore).await?;
        // Mark the bad version first so that no reconcile promotes it again. A mark left by an
        // attempt cut short stays as it was: it says when the rollback began.
        if champion.tag(&self.names.rolled_back()).is_none() {
            let note = format!("{}: rolled back to v{restore}{why}", now_rfc3339());
            self.client
                .set_version_tag(model, &bad, &self.names.rolled_back(), &note)
                .await?;
        }
        self.move_back(model, &bad, &restore).await?;
        tracing::info!(model, from = %bad, to = %restore, "rolled back");
        Ok((bad, restore))
    }

    /// Put `good` back in the promote target in place of `bad` (rollback, bypass revert).
    async fn restore(&self, model: &str, bad: &str, good: &str) -> Result<(), ActError> {
        self.restorable(model, good).await?;
        self.move_back(model, bad, good).await
    }

    /// [`Actor::restore`] once `good` is known to exist.
    async fn move_back(&self, model: &str, bad: &str, good: &str) -> Result<(), ActError> {
        match self.policy.promote.target() {
            // Archive whatever holds the stage, whatever the policy's archive_existing says:
            // the point is that the bad version stops serving.
            Target::Stage(stage) => {
                self.client
                    .transition_stage(model, good, &stage, true)
                    .await?;
            }
            Target::Alias(alias) => self.client.set_alias(model, &alias, good).await?,
        }
        self.mark_restored(model, bad, good).await
    }

    /// Refused unless `good` still exists.
    async fn restorable(&self, model: &str, good: &str) -> Result<(), ActError> {
        match self.client.model_version(model, good).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(ActError::Refused(format!(
                "cannot restore {model} v{good}: it no longer exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The bookkeeping tags of a restore whose move is made: `bad` replaced by `good`, `good`
    /// restored. Idempotent, and moves nothing, so a restore cut short after its move is
    /// finished by calling it again.
    pub async fn mark_restored(&self, model: &str, bad: &str, good: &str) -> Result<(), ActError> {
        self.mark_replaced(model, bad, good).await?;
        self.client
            .set_version_tag(model, good, &self.names.restored_at(), &now_rfc3339())
            .await?;
        self.client
            .delete_version_tag(model, good, &self.names.replaced_by())
            .await?;
        self.client
            .delete_version_tag(model, good, &self.names.replaced_at())
            .await?;
        Ok(())
    }

    /// Handle a champion promoted past the gates (policy `on_bypass`): tag it with when it was
    /// seen and what the gates say, and with `revert` (if `allow_revert`) restore the last
    /// version stagegate promoted. Returns the tag written.
    pub async fn bypass(
        &self,
        state: &ModelState,
        version: &str,
        allow_revert: bool,
    ) -> Result<String, ActError> {
        let model = state.name.as_str();
        let v = state
            .version(version)
            .ok_or_else(|| ActError::Refused(format!("{model} v{version} is gone")))?;
        let verdict = v.tag(&self.names.verdict()).unwrap_or("not evaluated");
        let gate_prefix = self.names.gate("");
        let blocking: Vec<&str> = v
            .tags
            .iter()
            .filter(|(k, val)| k.starts_with(&gate_prefix) && !val.starts_with("pass"))
            .map(|(k, _)| &k[gate_prefix.len()..])
            .collect();
        let mut note = format!(
            "{}: promoted outside stagegate; gates: {verdict}",
            now_rfc3339()
        );
        if !blocking.is_empty() {
            note.push_str(&format!(" (not passed: {})", blocking.join(", ")));
        }
        let revert_to = state
            .versions
            .values()
            .rev()
            .find(|o| {
                o.version != version
                    && o.tag(&self.names.action()) == Some(PROMOTED)
                    && o.tag(&self.names.rolled_back()).is_none()
            })
            .map(|o| o.version.clone());
        match (self.policy.on_bypass, allow_revert, &revert_to) {
            (OnBypass::Revert, true, Some(good)) => {
                note.push_str(&format!("; reverted to v{good}"))
            }
            (OnBypass::Revert, true, None) => {
                note.push_str("; nothing stagegate promoted to revert to")
            }
            (OnBypass::Revert, false, _) => note.push_str("; not reverted (paused or dry-run)"),
            _ => {}
        }
        self.client
            .set_version_tag(model, version, &self.names.bypass(), &clip(&note, 5_000))
            .await?;
        if let (OnBypass::Revert, true, Some(good)) =
            (self.policy.on_bypass, allow_revert, &revert_to)
        {
            self.restore(model, version, good).await?;
            tracing::warn!(model, version, restored = %good, "bypass reverted");
        } else {
            tracing::warn!(
                model,
                version,
                "bypass: champion promoted outside stagegate"
            );
        }
        Ok(note)
    }
}

/// The rollbacks the registry records: each version carrying `rolled_back`, with that tag's
/// note (`<when>: rolled back to v<N>`). `stagegate rollback` may run anywhere, so the daemon
/// learns of them by reading, as `(version, note)`.
pub fn rollbacks<'a>(state: &'a ModelState, names: &TagNames) -> Vec<(&'a str, &'a str)> {
    let key = names.rolled_back();
    state
        .versions
        .values()
        .filter_map(|v| Some((v.version.as_str(), v.tag(&key)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_state::tests::{state, version};

    #[test]
    fn rollbacks_are_read_from_the_rolled_back_tag() {
        let names = TagNames::new("stagegate.");
        let mut bad = version(2, "Archived");
        bad.tags.insert(
            names.rolled_back(),
            "2026-12-02T10:00:00Z: rolled back to v1".into(),
        );
        let s = state(
            vec![version(1, "Production"), bad, version(3, "Staging")],
            &[],
        );
        assert_eq!(
            rollbacks(&s, &names),
            vec![("2", "2026-12-02T10:00:00Z: rolled back to v1")]
        );
    }
}
