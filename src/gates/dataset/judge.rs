//! The dataset gate's verdict from collected predictions (pure): metric thresholds, the gap
//! across slices, and the paired comparison with the champion.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::predictions::build;
use super::score::{Scored, compare_bootstrap, is_regression, lower_is_better};
use crate::config::{DatasetGate, Inconclusive, Slices, VsChampion};
use crate::gates::{Judgement, Outcome, jnum, num};

/// Labels, slice groups and both models' predictions, row by row.
pub(super) struct Collected {
    pub labels: Vec<Option<String>>,
    pub slices: Vec<Option<String>>,
    pub candidate: Vec<Value>,
    pub champion: Option<Vec<Value>>,
}

/// What each check found, as message parts.
#[derive(Default)]
struct Findings {
    fails: Vec<String>,
    passes: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    fn judged(&mut self, ok: bool, text: String) {
        if ok {
            self.passes.push(text)
        } else {
            self.fails.push(text)
        }
    }
}

/// Turn the collected predictions into a verdict.
pub(super) fn judge_scores(
    g: &DatasetGate,
    data: &Collected,
    champion_version: Option<&str>,
) -> Result<Judgement, String> {
    let regression = g
        .metrics
        .keys()
        .chain(g.slices.iter().flat_map(|s| s.max_gap.keys()))
        .chain(g.vs_champion.iter().map(|v| &v.metric))
        .any(|m| is_regression(m));
    let (cand, champ) = build(
        regression,
        g.positive_label.as_deref(),
        &data.labels,
        &data.candidate,
        data.champion.as_deref(),
    )?;
    let rows = cand.rows();
    let mut f = Findings::default();
    let mut observed = json!({"rows": rows});
    observed["metrics"] = thresholds(&mut f, &g.metrics, &cand)?;
    if let Some(sl) = &g.slices {
        observed["slices"] = slices(&mut f, sl, &cand, &data.slices);
    }
    let mut inconclusive = false;
    if let Some(vs) = &g.vs_champion {
        match (&champ, champion_version) {
            (Some(ch), Some(version)) => {
                let counts = vs
                    .inconclusive
                    .or(g.inconclusive)
                    .unwrap_or(Inconclusive::Fail);
                let (unsure, value) = versus(&mut f, vs, counts, &cand, ch, version)?;
                inconclusive = unsure;
                observed["vs_champion"] = value;
            }
            _ => f
                .notes
                .push("no champion yet: vs_champion not compared".into()),
        }
    }
    let threshold = json!({"metrics": g.metrics, "slices": g.slices, "vs_champion": g.vs_champion});
    let tail = if f.notes.is_empty() {
        String::new()
    } else {
        format!("; {}", f.notes.join("; "))
    };
    let mut j = if f.fails.is_empty() {
        let msg = format!("{} on {rows} rows{tail}", f.passes.join(", "));
        Judgement::new(Outcome::Pass, observed, threshold, msg)
    } else {
        let msg = format!("{} on {rows} rows{tail}", f.fails.join("; "));
        Judgement::new(Outcome::Fail, observed, threshold, msg)
    };
    // Inconclusive only when nothing failed outright.
    j.inconclusive = inconclusive && f.fails.len() == 1;
    Ok(j)
}

/// Each metric against its limit (a minimum, or a maximum for error metrics); the values.
fn thresholds(
    f: &mut Findings,
    metrics: &BTreeMap<String, f64>,
    cand: &Scored,
) -> Result<Value, String> {
    let mut values = serde_json::Map::new();
    for (m, limit) in metrics {
        let v = cand.metric(m, None)?;
        values.insert(m.clone(), jnum(v));
        let (ok, op) = if lower_is_better(m) {
            (v <= *limit, if v <= *limit { "<=" } else { ">" })
        } else {
            (v >= *limit, if v >= *limit { ">=" } else { "<" })
        };
        f.judged(ok, format!("{m} {} {op} {}", num(v), num(*limit)));
    }
    Ok(Value::Object(values))
}

/// The largest gap of each metric across the slice groups judged (those of `min_rows` rows or
/// more); every group's rows and values.
fn slices(f: &mut Findings, sl: &Slices, cand: &Scored, groups_of: &[Option<String>]) -> Value {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, v) in groups_of.iter().enumerate() {
        groups
            .entry(v.clone().unwrap_or_else(|| "(null)".into()))
            .or_default()
            .push(i);
    }
    let mut report = serde_json::Map::new();
    for (m, max_gap) in &sl.max_gap {
        let mut per = Vec::new();
        for (k, r) in &groups {
            let v = cand.metric(m, Some(r)).ok();
            report
                .entry(k.clone())
                .or_insert_with(|| json!({"rows": r.len(), "judged": r.len() >= sl.min_rows}))[m] =
                v.map(jnum).unwrap_or(Value::Null);
            if let (Some(v), true) = (v, r.len() >= sl.min_rows) {
                per.push((k.clone(), v));
            }
        }
        let lo = per.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = per.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        let (Some(lo), Some(hi), true) = (lo, hi, per.len() >= 2) else {
            f.notes.push(format!(
                "{m}: fewer than two slices of {} rows or more, gap not judged",
                sl.min_rows
            ));
            continue;
        };
        let gap = hi.1 - lo.1;
        let text = format!(
            "{m} gap across {} {} ({} {} .. {} {})",
            sl.column,
            num(gap),
            lo.0,
            num(lo.1),
            hi.0,
            num(hi.1)
        );
        if gap > *max_gap {
            f.fails.push(format!("{text} > {}", num(*max_gap)))
        } else {
            f.passes.push(format!("{text} <= {}", num(*max_gap)))
        }
    }
    let small: Vec<String> = groups
        .iter()
        .filter(|(_, r)| r.len() < sl.min_rows)
        .map(|(k, r)| format!("{k} ({} rows)", r.len()))
        .collect();
    if !small.is_empty() {
        f.notes.push(format!(
            "not judged (under {} rows): {}",
            sl.min_rows,
            small.join(", ")
        ));
    }
    Value::Object(report)
}

/// The champion comparison's finding; whether it was inconclusive (and counted as a failure),
/// and the observed values.
fn versus(
    f: &mut Findings,
    vs: &VsChampion,
    counts: Inconclusive,
    cand: &Scored,
    champ: &Scored,
    version: &str,
) -> Result<(bool, Value), String> {
    let (verdict, text, value) = compare(vs, cand, champ, version)?;
    let mut inconclusive = false;
    match verdict {
        Compared::Better => f.passes.push(text),
        Compared::Worse => f.fails.push(text),
        Compared::Unsure if counts == Inconclusive::Pass => {
            f.passes.push(format!("{text} (counts as pass)"))
        }
        Compared::Unsure => {
            inconclusive = true;
            f.fails.push(text);
        }
    }
    Ok((inconclusive, value))
}

enum Compared {
    Better,
    Worse,
    Unsure,
}

/// Fail when the interval of (candidate - champion) lies wholly below -max_drop, pass when
/// wholly above, otherwise inconclusive: the data cannot tell the two apart at this
/// confidence. For lower-is-better metrics the difference is taken the other way round, so
/// "above" always means "candidate better".
fn compare(
    vs: &VsChampion,
    cand: &Scored,
    champ: &Scored,
    version: &str,
) -> Result<(Compared, String, Value), String> {
    let m = vs.metric.as_str();
    let sign = if lower_is_better(m) { -1.0 } else { 1.0 };
    let iv = compare_bootstrap(cand, champ, m, sign, vs.resamples, vs.confidence, vs.seed)?;
    let floor = -vs.max_drop;
    let pct = (vs.confidence * 100.0).round();
    let text = format!(
        "{m} vs champion v{version}: difference {} ({pct}% interval {} .. {}, resamples {})",
        num(iv.observed),
        num(iv.low),
        num(iv.high),
        vs.resamples
    );
    let verdict = if iv.high < floor {
        Compared::Worse
    } else if iv.low > floor {
        Compared::Better
    } else {
        Compared::Unsure
    };
    let word = match verdict {
        Compared::Worse => format!("{text} wholly below -max_drop {}", num(vs.max_drop)),
        Compared::Better => format!("{text} wholly above -max_drop {}", num(vs.max_drop)),
        Compared::Unsure => format!(
            "inconclusive: {text} straddles -max_drop {}",
            num(vs.max_drop)
        ),
    };
    let value = json!({"metric": m, "difference": jnum(iv.observed), "low": jnum(iv.low), "high": jnum(iv.high),
                       "champion": version, "candidate_value": jnum(cand.metric(m, None)?), "champion_value": jnum(champ.metric(m, None)?)});
    Ok((verdict, word, value))
}
