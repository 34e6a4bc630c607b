//! Beginning an analysis: a champion stagegate promoted (or, with `after_bypass`, one it
//! noticed promoted by hand) that nothing watches yet. Timed from the promotion as the
//! registry records it, not from when this store first heard of it, so that a promotion made
//! by `stagegate evaluate --promote` in CI, or a store that was reset, neither starts an
//! analysis late nor judges a champion promoted long ago.

use std::time::Duration;

use super::{Next, Watch, target};
use crate::config::Policy;
use crate::daemon::reconciler::ReconcileError;
use crate::decision::{PROMOTED, REPLACED_NOTHING};
use crate::mlflow::ModelVersion;
use crate::model_state::ModelState;
use crate::store::{NewAnalysis, now_ms};
use crate::tags::TagNames;

/// The `analysis` tag of a champion that was promoted before its analysis window: said once,
/// so that no poll keeps asking.
const TOO_OLD: &str = "not run: promoted before its analysis window";

/// The tag of an analysis whose record is gone (a store replaced under a running one).
const LOST: &str = "running";

impl Watch<'_> {
    pub(super) async fn begin(&self, state: &ModelState) -> Result<Next, ReconcileError> {
        let names = &self.engine.names;
        let (Some(cfg), Some(champion)) = (&self.policy.analysis, state.champion(self.policy))
        else {
            return Ok(Next::Idle);
        };
        if !owed(self.policy, state, names) {
            return Ok(Next::Idle);
        }
        let Some(at_ms) = promoted_at(state, champion, names) else {
            return Ok(Next::Idle);
        };
        let window = cfg.initial_delay + cfg.interval * cfg.count;
        let age = Duration::from_millis((now_ms() - at_ms).max(0) as u64);
        if age > window + cfg.interval {
            self.engine
                .client
                .set_version_tag(self.model, &champion.version, &names.analysis(), TOO_OLD)
                .await
                .map_err(crate::actions::ActError::from)?;
            return Ok(Next::Again);
        }
        let ours = champion.tag(&names.action()) == Some(PROMOTED);
        let new = NewAnalysis {
            model: self.model.into(),
            version: champion.version.clone(),
            previous: previous(state, champion, names, ours),
            target: target(self.policy),
            policy: self.policy.name.clone(),
            first_in: cfg.initial_delay.saturating_sub(age),
        };
        if let Some(id) = self.app.store.begin_analysis(&new).await? {
            tracing::info!(model = self.model, version = %new.version, id, "analysis begun");
            self.app.metrics.analysis("running");
        }
        Ok(Next::Again)
    }
}

/// Whether the champion is owed an analysis it has not begun: promoted by stagegate (or a
/// bypass, with `after_bypass`), not rolled back, and with no `analysis` tag, or one that says
/// `running` with no record left of it. The poll asks this too, so a promotion no event
/// announced (a stage moved by CI on MLflow OSS) is found.
pub fn owed(policy: &Policy, state: &ModelState, names: &TagNames) -> bool {
    let (Some(cfg), Some(champion)) = (&policy.analysis, state.champion(policy)) else {
        return false;
    };
    let ours = champion.tag(&names.action()) == Some(PROMOTED);
    let bypass = cfg.after_bypass && champion.tag(&names.bypass()).is_some();
    let unwatched = matches!(champion.tag(&names.analysis()), None | Some(LOST));
    (ours || bypass) && unwatched && champion.tag(&names.rolled_back()).is_none()
}

/// When the champion was promoted, as the registry records it (unix ms): the time the version
/// it replaced was marked replaced; for a first promotion, its verdict's time (the promotion
/// follows it); for a bypass, when stagegate noticed it.
fn promoted_at(state: &ModelState, champion: &ModelVersion, names: &TagNames) -> Option<i64> {
    let replaced = state.versions.values().find_map(|o| {
        (o.tag(&names.replaced_by()) == Some(champion.version.as_str()))
            .then(|| o.tag(&names.replaced_at()))
            .flatten()
    });
    let at = match champion.tag(&names.action()) {
        Some(PROMOTED) => replaced.or_else(|| champion.tag(&names.evaluated_at()))?,
        _ => champion.tag(&names.bypass())?.split(": ").next()?,
    };
    chrono::DateTime::parse_from_rfc3339(at.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// What a rollback restores: the champion this promotion replaced, as recorded; for a
/// promotion by hand, the last version stagegate promoted (as a bypass revert would).
fn previous(
    state: &ModelState,
    champion: &ModelVersion,
    names: &TagNames,
    ours: bool,
) -> Option<String> {
    if ours {
        return champion
            .tag(&names.replaced_version())
            .filter(|p| *p != REPLACED_NOTHING)
            .map(str::to_string);
    }
    state
        .versions
        .values()
        .rev()
        .find(|o| {
            o.version != champion.version
                && o.tag(&names.action()) == Some(PROMOTED)
                && o.tag(&names.rolled_back()).is_none()
        })
        .map(|o| o.version.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;
    use crate::model_state::tests::{policy, state, version};

    fn tagged(mut v: ModelVersion, tags: &[(&str, &str)]) -> ModelVersion {
        for (k, val) in tags {
            v.tags.insert(k.to_string(), val.to_string());
        }
        v
    }

    #[test]
    fn the_promotion_time_is_read_from_the_registry() {
        let names = TagNames::new("stagegate.");
        let p = policy(
            Target::Alias("challenger".into()),
            Target::Alias("champion".into()),
        );
        let old = tagged(
            version(1, "None"),
            &[
                ("stagegate.replaced_by", "2"),
                ("stagegate.replaced_at", "2026-12-07T10:00:00Z"),
            ],
        );
        let new = tagged(
            version(2, "None"),
            &[
                ("stagegate.action", "promoted"),
                ("stagegate.evaluated_at", "2026-12-07T09:00:00Z"),
            ],
        );
        let s = state(vec![old, new.clone()], &[("champion", "2")]);
        let at = promoted_at(&s, &new, &names).unwrap();
        assert_eq!(at, 1_796_637_600_000, "the replaced version's replaced_at");
        // A first promotion: its verdict's time.
        let first = state(vec![new.clone()], &[("champion", "2")]);
        assert_eq!(promoted_at(&first, &new, &names), Some(at - 3_600_000));
        // A bypass: when stagegate noticed it.
        let by = tagged(
            version(3, "None"),
            &[(
                "stagegate.bypass",
                "2026-12-07T11:00:00Z: promoted outside stagegate; gates: passed",
            )],
        );
        let s = state(vec![by.clone()], &[("champion", "3")]);
        assert_eq!(promoted_at(&s, &by, &names), Some(at + 3_600_000));
        // Owed: promoted by stagegate and not watched; not once tagged.
        let s = state(vec![new.clone()], &[("champion", "2")]);
        assert!(owed(&p_with_analysis(p.clone()), &s, &names));
        let watched = tagged(new, &[("stagegate.analysis", "passed")]);
        let s = state(vec![watched], &[("champion", "2")]);
        assert!(!owed(&p_with_analysis(p.clone()), &s, &names));
        assert!(!owed(&p, &s, &names), "no analysis, nothing owed");
    }

    fn p_with_analysis(mut p: Policy) -> Policy {
        p.analysis = Some(
            serde_json::from_value(
                serde_json::json!({"interval": "1s", "count": 1, "metrics": [
                {"name": "e", "provider": "web", "url": "http://x/", "pointer": "/e", "max": 1}]}),
            )
            .unwrap(),
        );
        p
    }
}
