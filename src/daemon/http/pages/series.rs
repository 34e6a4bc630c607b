//! The model page's chart data, read from recorded gate results (pure): for each threshold
//! gate, the observed value of each version's newest evaluation beside the threshold it was
//! judged against then (a threshold changed by a reload shows as a step, not a rewrite).

use serde_json::Value;

use crate::config::GateType;
use crate::store::EvaluationRow;

/// What became of a version, as a chart marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointState {
    Promoted,
    HeldBack,
    Superseded,
    Error,
    WouldPromote,
    /// Passed, not (yet) acted on: paused, dry-run or skipped.
    Passed,
}

impl PointState {
    pub fn of(row: &EvaluationRow) -> PointState {
        match (row.action.as_deref(), row.verdict.as_deref()) {
            (Some("promoted"), _) => PointState::Promoted,
            (Some("would-promote"), _) => PointState::WouldPromote,
            // A failed version stays "held back" when a newer one later supersedes it.
            (_, Some("error")) | (_, None) => PointState::Error,
            (_, Some("failed")) => PointState::HeldBack,
            (Some("superseded"), _) => PointState::Superseded,
            _ => PointState::Passed,
        }
    }

    pub const ALL: [PointState; 6] = [
        PointState::Promoted,
        PointState::HeldBack,
        PointState::Superseded,
        PointState::Error,
        PointState::WouldPromote,
        PointState::Passed,
    ];

    /// CSS class (and `data-state`).
    pub fn class(self) -> &'static str {
        match self {
            PointState::Promoted => "promoted",
            PointState::HeldBack => "held",
            PointState::Superseded => "superseded",
            PointState::Error => "error",
            PointState::WouldPromote => "would",
            PointState::Passed => "passed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PointState::Promoted => "promoted",
            PointState::HeldBack => "held back (failed)",
            PointState::Superseded => "superseded",
            PointState::Error => "error",
            PointState::WouldPromote => "would promote",
            PointState::Passed => "passed, not acted on",
        }
    }
}

/// One version on a chart.
#[derive(Debug, Clone)]
pub struct Point {
    pub id: i64,
    pub version: String,
    pub value: Option<f64>,
    /// One per [`Series::limits`], as recorded with this evaluation.
    pub limits: Vec<Option<f64>>,
    /// The comparison value where there is one (the champion's p99).
    pub other: Option<f64>,
    pub state: PointState,
    pub verdict: String,
    pub action: String,
    pub at: String,
}

/// One chart: a measure of one gate across versions.
#[derive(Debug, Clone)]
pub struct Series {
    pub title: String,
    /// Threshold names (`min`, `max`, `max_drop`…), each drawn as a line.
    pub limits: Vec<String>,
    /// What [`Point::other`] is, when some point has one.
    pub other: Option<String>,
    pub points: Vec<Point>,
}

/// A gate of the policy: its name and type.
pub struct GateRef<'a> {
    pub name: &'a str,
    pub kind: GateType,
}

/// Metrics the dataset gate judges as maximums (rmse, mae, log_loss); the others are minimums.
fn lower_is_better(metric: &str) -> bool {
    matches!(metric, "rmse" | "mae" | "log_loss")
}

/// Every chart for `gates`, over `rows` (one per version, oldest first).
pub fn all(gates: &[GateRef], rows: &[EvaluationRow]) -> Vec<Series> {
    let mut out = Vec::new();
    for g in gates {
        let results = Results {
            gate: g.name,
            rows,
            each: rows.iter().map(|r| result(r, g.name)).collect(),
        };
        let Some(latest) = results.each.iter().rev().flatten().next().copied() else {
            continue;
        };
        match g.kind {
            GateType::Metric => out.push(metric(&results)),
            GateType::Champion => out.push(champion(&results, latest)),
            GateType::Latency => out.push(latency(&results)),
            GateType::Dataset => out.extend(dataset(&results, latest)),
            // Nothing measured against a threshold to chart.
            GateType::Tags | GateType::Run | GateType::EdgeCases | GateType::Command => {}
        }
    }
    out
}

type Getter = Box<dyn Fn(&Value) -> Option<f64>>;

/// One gate's recorded results, one per row (`None` where a row has none).
struct Results<'a> {
    gate: &'a str,
    rows: &'a [EvaluationRow],
    each: Vec<Option<&'a Value>>,
}

fn result<'a>(row: &'a EvaluationRow, gate: &str) -> Option<&'a Value> {
    row.gates
        .as_array()?
        .iter()
        .find(|g| g["name"].as_str() == Some(gate))
}

/// `metric`: the observed value between `min` and `max`, as each evaluation recorded them.
fn metric(results: &Results) -> Series {
    let metric = results
        .each
        .iter()
        .rev()
        .flatten()
        .find_map(|r| metric_name(r))
        .unwrap_or_else(|| "value".into());
    let mut limits: Vec<(&str, Getter)> = Vec::new();
    for bound in ["min", "max"] {
        let recorded = |r: &&Value| r["threshold"][bound].is_number();
        if results.each.iter().flatten().any(recorded) {
            limits.push((bound, Box::new(move |r| r["threshold"][bound].as_f64())));
        }
    }
    results.chart(
        format!("{} — {metric}", results.gate),
        limits,
        Box::new(|r| r["observed"].as_f64()),
        None,
    )
}

/// `champion`: the drop against the champion, absolute unless only a ratio is allowed.
fn champion(results: &Results, latest: &Value) -> Series {
    let ratio_only = latest["threshold"]["max_drop"].is_null()
        && latest["threshold"]["max_drop_ratio"].is_number();
    let (key, limit) = if ratio_only {
        ("drop_ratio", "max_drop_ratio")
    } else {
        ("drop", "max_drop")
    };
    let bound: Getter = Box::new(move |r| {
        // No bound at all means "no drop": max_drop 0 (as the gate judges).
        let t = &r["threshold"];
        t[limit]
            .as_f64()
            .or_else(|| (t["max_drop"].is_null() && t["max_drop_ratio"].is_null()).then_some(0.0))
    });
    results.chart(
        format!("{} — {key} vs the champion", results.gate),
        vec![(limit, bound)],
        Box::new(move |r| r["observed"][key].as_f64()),
        None,
    )
}

/// `latency`: p99 against its bound, beside the champion's p99 where it was measured.
fn latency(results: &Results) -> Series {
    results.chart(
        format!("{} — p99 ms", results.gate),
        vec![("p99_ms", Box::new(|r| r["threshold"]["p99_ms"].as_f64()))],
        Box::new(|r| r["observed"]["p99_ms"].as_f64()),
        Some(Box::new(|r| r["observed"]["champion_p99_ms"].as_f64())),
    )
}

/// The metric a `metric` gate reads, from its message (`val_accuracy=0.9 …`).
fn metric_name(r: &Value) -> Option<String> {
    r["message"]
        .as_str()
        .and_then(|m| m.split_once('='))
        .map(|(name, _)| name.to_string())
        .filter(|n| !n.contains(' '))
}

/// `dataset`: each metric against its bound, and each metric's widest gap across slices.
fn dataset(results: &Results, latest: &Value) -> Vec<Series> {
    let name = results.gate;
    let empty = serde_json::Map::new();
    let mut out = Vec::new();
    let metrics = latest["threshold"]["metrics"].as_object().unwrap_or(&empty);
    for m in metrics.keys() {
        let bound = if lower_is_better(m) { "max" } else { "min" };
        let (m1, m2) = (m.clone(), m.clone());
        out.push(results.chart(
            format!("{name} — {m}"),
            vec![(
                bound,
                Box::new(move |r| r["threshold"]["metrics"][&m1].as_f64()),
            )],
            Box::new(move |r| r["observed"]["metrics"][&m2].as_f64()),
            None,
        ));
    }
    let gaps = latest["threshold"]["slices"]["max_gap"]
        .as_object()
        .unwrap_or(&empty);
    for m in gaps.keys() {
        let (m1, m2) = (m.clone(), m.clone());
        out.push(results.chart(
            format!("{name} — {m} gap across slices"),
            vec![(
                "max_gap",
                Box::new(move |r| r["threshold"]["slices"]["max_gap"][&m1].as_f64()),
            )],
            Box::new(move |r| slice_gap(&r["observed"]["slices"], &m2)),
            None,
        ));
    }
    out
}

/// The widest gap of `metric` between judged slices (as the gate computes it).
pub fn slice_gap(slices: &Value, metric: &str) -> Option<f64> {
    let values: Vec<f64> = slices
        .as_object()?
        .values()
        .filter(|s| s["judged"] == true)
        .filter_map(|s| s[metric].as_f64())
        .collect();
    if values.len() < 2 {
        return None;
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(hi - lo)
}

impl Results<'_> {
    /// A chart of `value`, with each of `limits` drawn as a line, and `other` (the champion's
    /// value) beside each point that has one.
    fn chart(
        &self,
        title: String,
        limits: Vec<(&str, Getter)>,
        value: Getter,
        other: Option<Getter>,
    ) -> Series {
        let points: Vec<Point> = self
            .rows
            .iter()
            .zip(&self.each)
            .filter_map(|(row, r)| {
                let r = (*r)?;
                Some(Point {
                    id: row.id,
                    version: row.version.clone(),
                    value: value(r),
                    limits: limits.iter().map(|(_, get)| get(r)).collect(),
                    other: other.as_ref().and_then(|o| o(r)),
                    state: PointState::of(row),
                    verdict: row.verdict.clone().unwrap_or_else(|| row.status.clone()),
                    action: row.action.clone().unwrap_or_else(|| "none".into()),
                    at: row.started_at.clone(),
                })
            })
            .collect();
        let other = points
            .iter()
            .any(|p| p.other.is_some())
            .then(|| "champion".to_string());
        Series {
            title,
            limits: limits.iter().map(|(n, _)| n.to_string()).collect(),
            other,
            points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(
        id: i64,
        version: &str,
        verdict: &str,
        action: Option<&str>,
        gates: Value,
    ) -> EvaluationRow {
        EvaluationRow {
            id,
            model: "m".into(),
            version: version.into(),
            policy: "p".into(),
            policy_digest: "d".into(),
            trigger: "poll".into(),
            status: "done".into(),
            verdict: Some(verdict.into()),
            action: action.map(str::to_string),
            gates,
            error: None,
            started_at: "2026-11-01T00:00:00.000Z".into(),
            finished_at: None,
            duration_ms: None,
            champion: None,
            serving: Value::Null,
        }
    }

    #[test]
    fn one_point_per_version_with_its_own_threshold_and_state() {
        let g = |v: f64, min: f64, outcome: &str| {
            json!([{"name": "acc", "type": "metric", "outcome": outcome, "enforced": true,
                    "observed": v, "threshold": {"min": min, "max": null},
                    "message": format!("val_accuracy={v} …")}])
        };
        let rows = vec![
            row(1, "1", "passed", Some("promoted"), g(0.9, 0.85, "pass")),
            row(2, "2", "failed", Some("archived"), g(0.5, 0.85, "fail")),
            row(
                3,
                "3",
                "error",
                None,
                json!([{"name": "acc", "outcome": "error", "observed": null,
                                              "threshold": {"min": 0.8}, "message": "run gone"}]),
            ),
        ];
        let s = all(
            &[GateRef {
                name: "acc",
                kind: GateType::Metric,
            }],
            &rows,
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].title, "acc — val_accuracy");
        assert_eq!(s[0].limits, vec!["min"]);
        let p = &s[0].points;
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].value, p[0].state), (Some(0.9), PointState::Promoted));
        assert_eq!((p[1].value, p[1].state), (Some(0.5), PointState::HeldBack));
        assert_eq!((p[2].value, p[2].state), (None, PointState::Error));
        assert_eq!(p[2].limits, vec![Some(0.8)], "the threshold as judged then");
    }

    #[test]
    fn dataset_gates_chart_each_metric_and_slice_gap() {
        let gates = json!([{"name": "holdout", "type": "dataset", "outcome": "pass", "enforced": true,
            "observed": {"metrics": {"accuracy": 0.9, "rmse": 2.0},
                         "slices": {"a": {"rows": 50, "judged": true, "accuracy": 0.95},
                                    "b": {"rows": 50, "judged": true, "accuracy": 0.85},
                                    "c": {"rows": 2, "judged": false, "accuracy": 0.1}}},
            "threshold": {"metrics": {"accuracy": 0.8, "rmse": 3.0},
                          "slices": {"column": "seg", "min_rows": 10, "max_gap": {"accuracy": 0.2}}},
            "message": "ok"}]);
        let rows = vec![row(1, "1", "passed", Some("promoted"), gates)];
        let s = all(
            &[GateRef {
                name: "holdout",
                kind: GateType::Dataset,
            }],
            &rows,
        );
        let titles: Vec<&str> = s.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "holdout — accuracy",
                "holdout — rmse",
                "holdout — accuracy gap across slices"
            ]
        );
        assert_eq!(s[1].limits, vec!["max"], "rmse is a maximum");
        let gap = s[2].points[0].value.unwrap();
        assert!(
            (gap - 0.1).abs() < 1e-9,
            "unjudged slices do not count: {gap}"
        );
    }
}
