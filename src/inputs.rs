//! What a verdict is judged from, as one short hash: the inputs fingerprint. A verdict counts
//! only while the fingerprint it carries equals the one its version's inputs give now.
//!
//! A verdict is current while its inputs are unchanged: the policy digest, the version's own
//! (non-stagegate) tags, its run and source, the champion it was compared with, and what each
//! gate's input file was (its [`Data`]: a holdout's SHA-256, an object's ETag). The hash of
//! those is written on the version as `stagegate.fingerprint`, last of all the evaluation's
//! tags, so the registry alone says whether a verdict is current: recompute the hash from what
//! the registry says now and compare. No bookkeeping, no event, can make a stale verdict look
//! current, and a lost event costs nothing (level-triggered, like a controller's reconcile).
//!
//! Pure: no IO.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::mlflow::types::ModelVersion;
use crate::tags::TagNames;
use crate::verdict::Verdict;

/// Bump when the encoding below changes: old fingerprints then read as stale, which only costs
/// one re-evaluation.
const SCHEME: &str = "sg1";

/// What each gate that reads a file judged it as: gate name → identity (`sha256:…`,
/// `etag:…`, `version:…`, `absent`). Recorded in the report as `inputs`.
pub type Data = BTreeMap<String, String>;

/// What each gate's file is now: gate name → identity, `None` where it cannot be told at the
/// moment (a store that does not answer, a dataset logged on the candidate's run).
pub type Files = BTreeMap<String, Option<String>>;

/// The fingerprint of `v`'s inputs under the policy digest `digest`, compared with `champion`
/// (`None`: no champion, or `v` is the champion itself), its gates' files being `data`.
pub fn fingerprint(
    names: &TagNames,
    digest: &str,
    v: &ModelVersion,
    champion: Option<&str>,
    data: &Data,
) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no value can be made to look like another field.
    let mut field = |label: &str, value: &str| {
        for part in [label, value] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    };
    field("scheme", SCHEME);
    field("policy_digest", digest);
    field("run_id", v.run_id.as_deref().unwrap_or(""));
    field("source", &v.source);
    field("champion", champion.unwrap_or(""));
    // Tags are a sorted map: the order is stable. stagegate's own tags are outputs, not inputs.
    for (k, val) in own_tags(names, v) {
        field(k, val);
    }
    // After the tags, under a label no tag can take: a policy without input files keeps the
    // fingerprints it had before files counted.
    for (gate, identity) in data {
        field("\0data", gate);
        field("\0identity", identity);
    }
    let hash = h.finalize();
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The version's tags that are not stagegate's (the ones a verdict is judged from).
pub fn own_tags<'a>(
    names: &'a TagNames,
    v: &'a ModelVersion,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    v.tags
        .iter()
        .filter(|(k, _)| !k.starts_with(names.prefix()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The verdict `v` carries if it was judged from exactly the inputs `now` (a fingerprint
/// computed from the registry as it stands); `None` if it has none or it is stale.
pub fn current_verdict(names: &TagNames, v: &ModelVersion, now: &str) -> Option<Verdict> {
    if v.tag(&names.fingerprint()) != Some(now) {
        return None;
    }
    v.tag(&names.verdict()).and_then(Verdict::parse)
}

/// The champion `v`'s verdict was compared with, from its report (`None`: there was none, or
/// the report is unreadable). The report is written before the fingerprint, so it is
/// complete whenever the fingerprint is current.
pub fn judged_against(names: &TagNames, v: &ModelVersion) -> Option<String> {
    let report: serde_json::Value = serde_json::from_str(v.tag(&names.report())?).ok()?;
    report.get("champion")?.as_str().map(str::to_string)
}

/// The gates' files as `v`'s verdict was judged on them, from its report (empty: none, or no
/// report).
pub fn judged_data(names: &TagNames, v: &ModelVersion) -> Data {
    let Some(report) = v
        .tag(&names.report())
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
    else {
        return Data::new();
    };
    report
        .get("inputs")
        .and_then(|i| i.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The files as they are now (`now`: gate → identity, `None` where it cannot be told at the
/// moment), with what `v` was judged on standing in for what cannot be told: a store that does
/// not answer makes no verdict stale.
pub fn data_now(names: &TagNames, v: &ModelVersion, now: &Files) -> Data {
    if now.values().all(Option::is_some) {
        return now
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
    }
    let judged = judged_data(names, v);
    now.iter()
        .filter_map(|(gate, id)| {
            let id = id.clone().or_else(|| judged.get(gate).cloned())?;
            Some((gate.clone(), id))
        })
        .collect()
}

/// The verdict `v` carries if it is current in everything but the champion: what the gates
/// said of it when it was judged, against whichever champion was there then. Used for a
/// champion itself (a version promoted by hand, or by stagegate, is no longer compared with
/// anything).
pub fn verdict_as_judged(names: &TagNames, digest: &str, v: &ModelVersion) -> Option<Verdict> {
    let against = judged_against(names, v);
    let data = judged_data(names, v);
    current_verdict(
        names,
        v,
        &fingerprint(names, digest, v, against.as_deref(), &data),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_state::tests::version;

    fn names() -> TagNames {
        TagNames::new("stagegate.")
    }

    #[test]
    fn every_input_changes_the_fingerprint_and_stagegate_tags_do_not() {
        let n = names();
        let v = version(3, "Staging");
        let base = fingerprint(&n, "d1", &v, Some("2"), &Data::new());
        assert_eq!(
            base,
            fingerprint(&n, "d1", &v.clone(), Some("2"), &Data::new()),
            "stable"
        );
        assert_ne!(
            base,
            fingerprint(&n, "d2", &v, Some("2"), &Data::new()),
            "policy digest"
        );
        assert_ne!(
            base,
            fingerprint(&n, "d1", &v, Some("1"), &Data::new()),
            "champion"
        );
        assert_ne!(
            base,
            fingerprint(&n, "d1", &v, None, &Data::new()),
            "no champion"
        );
        let mut t = v.clone();
        t.tags.insert("owner".into(), "me".into());
        assert_ne!(
            base,
            fingerprint(&n, "d1", &t, Some("2"), &Data::new()),
            "a tag added"
        );
        let mut t2 = t.clone();
        t2.tags.insert("owner".into(), "you".into());
        assert_ne!(
            fingerprint(&n, "d1", &t, Some("2"), &Data::new()),
            fingerprint(&n, "d1", &t2, Some("2"), &Data::new()),
            "a tag's value"
        );
        let mut r = v.clone();
        r.run_id = Some("other".into());
        assert_ne!(
            base,
            fingerprint(&n, "d1", &r, Some("2"), &Data::new()),
            "run"
        );
        let mut s = v.clone();
        s.source = "models:/m-other".into();
        assert_ne!(
            base,
            fingerprint(&n, "d1", &s, Some("2"), &Data::new()),
            "source"
        );
        let mut ours = v.clone();
        ours.tags
            .insert("stagegate.verdict".into(), "passed".into());
        ours.tags.insert("stagegate.action".into(), "kept".into());
        assert_eq!(
            base,
            fingerprint(&n, "d1", &ours, Some("2"), &Data::new()),
            "own tags"
        );
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let n = names();
        let mut a = version(1, "None");
        a.tags.insert("ab".into(), "c".into());
        let mut b = version(1, "None");
        b.tags.insert("a".into(), "bc".into());
        assert_ne!(
            fingerprint(&n, "d", &a, None, &Data::new()),
            fingerprint(&n, "d", &b, None, &Data::new())
        );
    }

    #[test]
    fn a_verdict_is_current_only_with_its_exact_fingerprint() {
        let n = names();
        let mut v = version(4, "Staging");
        v.tags.insert("stagegate.verdict".into(), "failed".into());
        let fp = fingerprint(&n, "d", &v, None, &Data::new());
        assert_eq!(current_verdict(&n, &v, &fp), None, "no fingerprint yet");
        v.tags.insert("stagegate.fingerprint".into(), fp.clone());
        assert_eq!(current_verdict(&n, &v, &fp), Some(Verdict::Failed));
        v.tags.insert("feature_schema_version".into(), "3".into());
        let now = fingerprint(&n, "d", &v, None, &Data::new());
        assert_eq!(current_verdict(&n, &v, &now), None, "a tag arrived since");
    }

    #[test]
    fn as_judged_uses_the_champion_recorded_in_the_report() {
        let n = names();
        let mut v = version(5, "Production");
        v.tags.insert("stagegate.verdict".into(), "passed".into());
        v.tags.insert(
            "stagegate.report".into(),
            serde_json::json!({"champion": "4"}).to_string(),
        );
        let fp = fingerprint(&n, "d", &v, Some("4"), &Data::new());
        v.tags.insert("stagegate.fingerprint".into(), fp);
        assert_eq!(verdict_as_judged(&n, "d", &v), Some(Verdict::Passed));
        assert_eq!(
            current_verdict(&n, &v, &fingerprint(&n, "d", &v, None, &Data::new())),
            None,
            "against no champion it is stale"
        );
    }
}
