//! Unit tests of the dataset gate's judging, on collected predictions.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::config::{Inconclusive, Slices, VsChampion};
use crate::gates::Outcome;
use crate::location::Location;

fn gate(metrics: &[(&str, f64)]) -> DatasetGate {
    DatasetGate {
        path: Some(Location::Path("d.csv".into())),
        context: None,
        label: "target".into(),
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        slices: None,
        vs_champion: None,
        batch_size: 100,
        positive_label: None,
        inconclusive: None,
    }
}

fn data(
    labels: &[&str],
    cand: Vec<Value>,
    champ: Option<Vec<Value>>,
    slices: &[&str],
) -> Collected {
    Collected {
        labels: labels.iter().map(|l| Some(l.to_string())).collect(),
        slices: slices.iter().map(|s| Some(s.to_string())).collect(),
        candidate: cand,
        champion: champ,
    }
}

#[test]
fn minimums_and_maximums() {
    let d = data(
        &["1", "0", "1", "1"],
        vec![json!(1), json!(0), json!(0), json!(1)],
        None,
        &[],
    );
    let j = judge_scores(&gate(&[("accuracy", 0.7), ("f1", 0.9)]), &d, None).unwrap();
    assert_eq!(j.outcome, Outcome::Fail);
    assert!(j.message.contains("f1 0.8 < 0.9"), "{}", j.message);
    let j = judge_scores(&gate(&[("accuracy", 0.75)]), &d, None).unwrap();
    assert_eq!(j.outcome, Outcome::Pass, "{}", j.message);
    assert_eq!(j.observed["metrics"]["accuracy"], json!(0.75));

    let reg = data(&["1.0", "2.0"], vec![json!(1.5), json!([2.5])], None, &[]);
    let j = judge_scores(&gate(&[("rmse", 0.4)]), &reg, None).unwrap();
    assert_eq!(j.outcome, Outcome::Fail);
    assert!(j.message.contains("rmse 0.5 > 0.4"), "{}", j.message);
}

#[test]
fn string_labels_and_probabilities() {
    // Probabilities for classes [no, yes] (sorted), as predict_proba returns them.
    let d = data(
        &["yes", "no", "yes"],
        vec![json!([0.2, 0.8]), json!([0.9, 0.1]), json!([0.6, 0.4])],
        None,
        &[],
    );
    let mut g = gate(&[("accuracy", 0.6), ("roc_auc", 0.9)]);
    g.positive_label = Some("yes".into());
    let j = judge_scores(&g, &d, None).unwrap();
    assert_eq!(j.outcome, Outcome::Pass, "{}", j.message);
    // Without a positive label, a binary metric on string classes is an error that says so.
    g.positive_label = None;
    assert!(
        judge_scores(&g, &d, None)
            .unwrap_err()
            .contains("positive_label")
    );
    // Labels only: roc_auc cannot be had.
    let d = data(&["1", "0"], vec![json!(1), json!(0)], None, &[]);
    assert!(
        judge_scores(&gate(&[("roc_auc", 0.5)]), &d, None)
            .unwrap_err()
            .contains("probabilities")
    );
}

#[test]
fn slices_judge_the_largest_gap_and_report_small_groups() {
    let mut labels = Vec::new();
    let mut preds = Vec::new();
    let mut seg = Vec::new();
    for i in 0..40 {
        labels.push("1");
        preds.push(json!(1));
        seg.push("a");
        labels.push("1");
        preds.push(json!(if i < 30 { 1 } else { 0 })); // b: 75% right
        seg.push("b");
    }
    for _ in 0..5 {
        labels.push("1");
        preds.push(json!(0));
        seg.push("c"); // tiny and all wrong: reported, not judged
    }
    let d = data(&labels, preds, None, &seg);
    let mut g = gate(&[]);
    g.slices = Some(Slices {
        column: "segment".into(),
        max_gap: BTreeMap::from([("accuracy".into(), 0.2)]),
        min_rows: 30,
    });
    let j = judge_scores(&g, &d, None).unwrap();
    assert_eq!(j.outcome, Outcome::Fail, "{}", j.message);
    assert!(
        j.message
            .contains("accuracy gap across segment 0.25 (b 0.75 .. a 1)"),
        "{}",
        j.message
    );
    assert!(j.message.contains("c (5 rows)"), "{}", j.message);
    assert_eq!(j.observed["slices"]["c"]["judged"], json!(false));
    g.slices
        .as_mut()
        .unwrap()
        .max_gap
        .insert("accuracy".into(), 0.3);
    assert_eq!(judge_scores(&g, &d, None).unwrap().outcome, Outcome::Pass);
}

fn vs(max_drop: f64) -> VsChampion {
    VsChampion {
        metric: "accuracy".into(),
        max_drop,
        confidence: 0.95,
        resamples: 500,
        seed: 1,
        inconclusive: None,
    }
}

#[test]
fn vs_champion_passes_fails_or_is_inconclusive() {
    let n = 300;
    let labels: Vec<&str> = (0..n).map(|i| if i % 2 == 0 { "1" } else { "0" }).collect();
    let right: Vec<Value> = labels
        .iter()
        .map(|l| json!(l.parse::<i64>().unwrap()))
        .collect();
    let wrong_fifth: Vec<Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!(if i % 5 == 0 {
                1 - l.parse::<i64>().unwrap()
            } else {
                l.parse::<i64>().unwrap()
            })
        })
        .collect();
    let mut g = gate(&[]);
    g.vs_champion = Some(vs(0.0));
    // Candidate better than the champion everywhere it differs: pass.
    let j = judge_scores(
        &g,
        &data(&labels, right.clone(), Some(wrong_fifth.clone()), &[]),
        Some("4"),
    )
    .unwrap();
    assert_eq!(j.outcome, Outcome::Pass, "{}", j.message);
    assert!(j.message.contains("vs champion v4"));
    // Candidate worse: fail.
    let j = judge_scores(
        &g,
        &data(&labels, wrong_fifth.clone(), Some(right.clone()), &[]),
        Some("4"),
    )
    .unwrap();
    assert_eq!(j.outcome, Outcome::Fail, "{}", j.message);
    assert!(!j.inconclusive);
    // The same model: the interval is [0, 0], neither wholly above nor below 0.
    let j = judge_scores(
        &g,
        &data(&labels, right.clone(), Some(right.clone()), &[]),
        Some("4"),
    )
    .unwrap();
    assert_eq!(j.outcome, Outcome::Fail);
    assert!(
        j.inconclusive && j.message.starts_with("inconclusive"),
        "{}",
        j.message
    );
    g.inconclusive = Some(Inconclusive::Pass);
    assert_eq!(
        judge_scores(
            &g,
            &data(&labels, right.clone(), Some(right), &[]),
            Some("4")
        )
        .unwrap()
        .outcome,
        Outcome::Pass
    );
    // Seeded: the same data gives the same interval.
    g.inconclusive = None;
    let a = judge_scores(
        &g,
        &data(&labels, wrong_fifth.clone(), Some(wrong_fifth.clone()), &[]),
        Some("4"),
    )
    .unwrap();
    let b = judge_scores(
        &g,
        &data(&labels, wrong_fifth.clone(), Some(wrong_fifth), &[]),
        Some("4"),
    )
    .unwrap();
    assert_eq!(a.observed["vs_champion"], b.observed["vs_champion"]);
}

#[test]
fn feature_columns_follow_the_signature() {
    use crate::model_files::{ColType, Column};
    let cols = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let sig = Signature::Columns(vec![
        Column {
            name: Some("f0".into()),
            ty: ColType::Double,
            required: true,
        },
        Column {
            name: Some("f1".into()),
            ty: ColType::Double,
            required: false,
        },
    ]);
    assert_eq!(
        feature_columns(Some(&sig), &cols(&["f0", "target"]), "target", None).unwrap(),
        vec!["f0"]
    );
    let err = feature_columns(Some(&sig), &cols(&["f1", "target"]), "target", None).unwrap_err();
    assert!(err.contains("requires: f0"), "{err}");
    assert_eq!(
        feature_columns(None, &cols(&["a", "seg", "target"]), "target", Some("seg")).unwrap(),
        vec!["a"]
    );
}
