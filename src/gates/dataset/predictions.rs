//! From the scoring server's answers to scores: labels and predicted classes as comparable
//! keys, probability vectors, one shared class list for candidate and champion.

use std::collections::BTreeSet;

use serde_json::Value;

use super::score::{Classes, Scored};

/// Predicted class keys, and the probabilities behind them when the model returns them.
type Decoded = (Vec<String>, Option<Vec<Vec<f64>>>);

/// A label or a predicted class as a comparable key: integral numbers without a decimal point.
fn class_key(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", f as i64)
            } else {
                format!("{f}")
            }
        }),
        Value::String(s) => Some(norm_text(s)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn norm_text(s: &str) -> String {
    match s.trim().parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => s.trim().to_string(),
    }
}

fn sorted_classes(set: BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = set.into_iter().collect();
    if v.iter().all(|c| c.parse::<f64>().is_ok()) {
        v.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
    }
    v
}

fn probabilities(p: &Value) -> Option<Vec<f64>> {
    let a = p.as_array()?;
    (a.len() >= 2)
        .then(|| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
        .flatten()
}

fn scalar(p: &Value) -> Option<f64> {
    match p {
        Value::Number(n) => n.as_f64(),
        Value::Array(a) if a.len() == 1 => scalar(&a[0]),
        Value::Object(o) => o.values().find_map(scalar),
        _ => None,
    }
}

/// Build the candidate's (and champion's) scores over one shared class list.
pub(super) fn build(
    regression: bool,
    positive: Option<&str>,
    labels: &[Option<String>],
    cand: &[Value],
    champ: Option<&[Value]>,
) -> Result<(Scored, Option<Scored>), String> {
    if let Some(i) = labels.iter().position(Option::is_none) {
        return Err(format!("the label is empty on row {i}"));
    }
    let labels: Vec<&str> = labels.iter().map(|l| l.as_deref().unwrap_or("")).collect();
    if regression {
        regression_scores(&labels, cand, champ)
    } else {
        classification_scores(positive, &labels, cand, champ)
    }
}

fn regression_scores(
    labels: &[&str],
    cand: &[Value],
    champ: Option<&[Value]>,
) -> Result<(Scored, Option<Scored>), String> {
    let truth: Vec<f64> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.trim()
                .parse::<f64>()
                .map_err(|_| format!("label {l:?} on row {i} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    let preds = |p: &[Value]| -> Result<Vec<f64>, String> {
        p.iter()
            .enumerate()
            .map(|(i, v)| {
                scalar(v).ok_or_else(|| format!("prediction {v} on row {i} is not a number"))
            })
            .collect()
    };
    let c = Scored::Regression {
        truth: truth.clone(),
        pred: preds(cand)?,
    };
    let ch = champ
        .map(|p| preds(p).map(|pred| Scored::Regression { truth, pred }))
        .transpose()?;
    Ok((c, ch))
}

/// One model's answers as class keys, with the probabilities behind them when it returns
/// them (indexed by `label_classes`, the dataset's labels in sorted order).
fn decode(p: &[Value], label_classes: &[String]) -> Result<Decoded, String> {
    if p.first().and_then(probabilities).is_none() {
        let keys = p
            .iter()
            .enumerate()
            .map(|(i, v)| {
                class_key(v)
                    .ok_or_else(|| format!("prediction {v} on row {i} is not a class label"))
            })
            .collect::<Result<_, _>>()?;
        return Ok((keys, None));
    }
    let proba: Vec<Vec<f64>> = p
        .iter()
        .map(|v| {
            probabilities(v).ok_or_else(|| format!("prediction {v} is not a probability vector"))
        })
        .collect::<Result<_, _>>()?;
    if proba[0].len() != label_classes.len() {
        return Err(format!(
            "the model returns {} probabilities per row but the labels have {} classes",
            proba[0].len(),
            label_classes.len()
        ));
    }
    let keys = proba
        .iter()
        .map(|r| {
            let best = r
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|x| x.0)
                .unwrap_or(0);
            label_classes[best].clone()
        })
        .collect();
    Ok((keys, Some(proba)))
}

/// The index of the positive class: `positive_label` if given, else 1 of a 0/1, -1/1 or
/// false/true pair, else none (macro averages only).
fn positive_index(positive: Option<&str>, classes: &[String]) -> Result<Option<usize>, String> {
    match positive {
        Some(p) => classes
            .iter()
            .position(|c| *c == norm_text(p))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "positive_label {p:?} is not among the classes {}",
                    classes.join(", ")
                )
            }),
        None => Ok(
            match classes
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["0", "1"] | ["-1", "1"] | ["false", "true"] => Some(1),
                _ => None,
            },
        ),
    }
}

fn classification_scores(
    positive: Option<&str>,
    labels: &[&str],
    cand: &[Value],
    champ: Option<&[Value]>,
) -> Result<(Scored, Option<Scored>), String> {
    let truth_keys: Vec<String> = labels.iter().map(|l| norm_text(l)).collect();
    let label_classes = sorted_classes(truth_keys.iter().cloned().collect());
    let (cand_keys, cand_proba) = decode(cand, &label_classes)?;
    let champ_dec = champ.map(|p| decode(p, &label_classes)).transpose()?;
    let mut all: BTreeSet<String> = label_classes.iter().cloned().collect();
    all.extend(cand_keys.iter().cloned());
    if let Some((k, _)) = &champ_dec {
        all.extend(k.iter().cloned());
    }
    let classes = sorted_classes(all);
    let id = |k: &String| classes.iter().position(|c| c == k).unwrap_or(0);
    let positive = positive_index(positive, &classes)?;
    // Probabilities are indexed by the label classes; re-index them onto the shared classes.
    let reindex = |proba: Option<Vec<Vec<f64>>>| {
        proba.map(|rows| {
            rows.into_iter()
                .map(|r| {
                    let mut full = vec![0.0; classes.len()];
                    for (j, p) in r.into_iter().enumerate() {
                        full[id(&label_classes[j])] = p;
                    }
                    full
                })
                .collect()
        })
    };
    let truth: Vec<usize> = truth_keys.iter().map(id).collect();
    let make = |keys: Vec<String>, proba| Classes {
        classes: classes.clone(),
        truth: truth.clone(),
        pred: keys.iter().map(id).collect(),
        proba: reindex(proba),
        positive,
    };
    let c = Scored::Classification(make(cand_keys, cand_proba));
    let ch = champ_dec.map(|(k, p)| Scored::Classification(make(k, p)));
    Ok((c, ch))
}
