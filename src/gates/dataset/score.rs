//! Scores of a labelled dataset, and the paired bootstrap used to compare two models on the
//! same rows. Pure: the data comes in as vectors, so every formula is unit-tested.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Metrics where lower is better (thresholds are maximums).
pub fn lower_is_better(metric: &str) -> bool {
    matches!(metric, "rmse" | "mae" | "log_loss")
}

pub fn is_regression(metric: &str) -> bool {
    matches!(metric, "rmse" | "mae" | "r2")
}

/// Classification data: class ids per row (into `classes`), optional probabilities.
#[derive(Debug, Clone, Default)]
pub struct Classes {
    /// Sorted class names.
    pub classes: Vec<String>,
    pub truth: Vec<usize>,
    pub pred: Vec<usize>,
    /// Per row, one probability per class (same order), when the model returns them.
    pub proba: Option<Vec<Vec<f64>>>,
    /// The positive class for binary metrics.
    pub positive: Option<usize>,
}

/// What a dataset scored, by row.
#[derive(Debug, Clone)]
pub enum Scored {
    Classification(Classes),
    Regression { truth: Vec<f64>, pred: Vec<f64> },
}

impl Scored {
    pub fn rows(&self) -> usize {
        match self {
            Scored::Classification(c) => c.truth.len(),
            Scored::Regression { truth, .. } => truth.len(),
        }
    }

    /// `metric` over the rows `idx` (all rows when `None`).
    pub fn metric(&self, metric: &str, idx: Option<&[usize]>) -> Result<f64, String> {
        let all: Vec<usize>;
        let idx = match idx {
            Some(i) => i,
            None => {
                all = (0..self.rows()).collect();
                &all
            }
        };
        if idx.is_empty() {
            return Err("no rows".into());
        }
        match self {
            Scored::Regression { truth, pred } => regression(metric, truth, pred, idx),
            Scored::Classification(c) => classification(metric, c, idx),
        }
    }
}

/// A metric that is a mean of one value per row: the values, and what turns their mean into
/// the metric (`sqrt` for rmse). Summed in row order, they give exactly what
/// [`Scored::metric`] gives.
pub struct PerRow {
    pub values: Vec<f64>,
    pub finish: fn(f64) -> f64,
}

impl Scored {
    /// `metric` as [`PerRow`] values, when it is a mean over rows (accuracy, log_loss, mae,
    /// rmse); `None` for the others (and when `metric` cannot be computed here, which
    /// [`Scored::metric`] then reports).
    pub fn per_row(&self, metric: &str) -> Option<PerRow> {
        let same = |x: f64| x;
        let (values, finish): (Vec<f64>, fn(f64) -> f64) = match (self, metric) {
            (Scored::Classification(c), "accuracy") => (
                c.truth
                    .iter()
                    .zip(&c.pred)
                    .map(|(t, p)| if t == p { 1.0 } else { 0.0 })
                    .collect(),
                same,
            ),
            (Scored::Classification(c), "log_loss") => {
                let eps = 1e-15;
                let proba = c.proba.as_ref()?;
                let values = c.truth.iter().zip(proba);
                (
                    values
                        .map(|(&t, p)| -p[t].clamp(eps, 1.0 - eps).ln())
                        .collect(),
                    same,
                )
            }
            (Scored::Regression { truth, pred }, "mae") => (
                truth.iter().zip(pred).map(|(t, p)| (t - p).abs()).collect(),
                same,
            ),
            (Scored::Regression { truth, pred }, "rmse") => (
                truth
                    .iter()
                    .zip(pred)
                    .map(|(t, p)| (t - p).powi(2))
                    .collect(),
                f64::sqrt,
            ),
            _ => return None,
        };
        Some(PerRow { values, finish })
    }
}

/// The paired bootstrap of `sign * (candidate - champion)` on `metric`. A metric that is a mean
/// over rows reads one pair of numbers per drawn row, from one array, instead of both models'
/// labels, predictions or probabilities from four or more: the same interval, to the bit, and
/// several times faster on a large holdout, where the draws' scattered memory reads are most
/// of the cost.
pub fn compare_bootstrap(
    cand: &Scored,
    champ: &Scored,
    metric: &str,
    sign: f64,
    resamples: u32,
    confidence: f64,
    seed: u64,
) -> Result<Interval, String> {
    let n = cand.rows();
    match (cand.per_row(metric), champ.per_row(metric)) {
        (Some(a), Some(b)) if b.values.len() == n => {
            let finish = a.finish;
            let pairs: Vec<[f64; 2]> = a
                .values
                .into_iter()
                .zip(b.values)
                .map(|(x, y)| [x, y])
                .collect();
            let rows = n as f64;
            let diff = |sa: f64, sb: f64| sign * (finish(sa / rows) - finish(sb / rows));
            let (sa, sb) = pairs
                .iter()
                .fold((0.0, 0.0), |(sa, sb), p| (sa + p[0], sb + p[1]));
            let mut idx = vec![0usize; n];
            // The indices are drawn first, then read: loads whose addresses are all known
            // overlap their cache misses, where a load fed straight by the generator waits.
            if pairs.iter().flatten().all(|v| *v == 0.0 || *v == 1.0) {
                // Right or wrong per row (accuracy): a byte per row instead of 16, which stays
                // in cache. Sums of ones are whole numbers, exact in either form.
                let codes: Vec<u8> = pairs
                    .iter()
                    .map(|p| p[0] as u8 | (p[1] as u8) << 1)
                    .collect();
                resample(diff(sa, sb), resamples, confidence, seed, |rng| {
                    draw(rng, &mut idx);
                    let (mut ca, mut cb) = (0u64, 0u64);
                    for &i in &idx {
                        ca += u64::from(codes[i] & 1);
                        cb += u64::from(codes[i] >> 1);
                    }
                    Some(diff(ca as f64, cb as f64))
                })
            } else {
                resample(diff(sa, sb), resamples, confidence, seed, |rng| {
                    draw(rng, &mut idx);
                    let (mut sa, mut sb) = (0.0, 0.0);
                    for &i in &idx {
                        sa += pairs[i][0];
                        sb += pairs[i][1];
                    }
                    Some(diff(sa, sb))
                })
            }
        }
        _ => paired_bootstrap(n, resamples, confidence, seed, |idx| {
            Ok(sign * (cand.metric(metric, Some(idx))? - champ.metric(metric, Some(idx))?))
        }),
    }
}

fn regression(metric: &str, t: &[f64], p: &[f64], idx: &[usize]) -> Result<f64, String> {
    let n = idx.len() as f64;
    match metric {
        "rmse" => Ok((idx.iter().map(|&i| (t[i] - p[i]).powi(2)).sum::<f64>() / n).sqrt()),
        "mae" => Ok(idx.iter().map(|&i| (t[i] - p[i]).abs()).sum::<f64>() / n),
        "r2" => {
            let mean = idx.iter().map(|&i| t[i]).sum::<f64>() / n;
            let ss_tot: f64 = idx.iter().map(|&i| (t[i] - mean).powi(2)).sum();
            let ss_res: f64 = idx.iter().map(|&i| (t[i] - p[i]).powi(2)).sum();
            Ok(if ss_tot == 0.0 {
                if ss_res == 0.0 { 1.0 } else { 0.0 }
            } else {
                1.0 - ss_res / ss_tot
            })
        }
        other => Err(format!(
            "{other} is a classification metric, but this dataset is scored as a regression"
        )),
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Precision, recall and f1 of class `k` over `idx`.
fn prf(c: &Classes, k: usize, idx: &[usize]) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    for &i in idx {
        match (c.truth[i] == k, c.pred[i] == k) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fneg += 1,
            _ => {}
        }
    }
    let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fneg));
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

fn classification(metric: &str, c: &Classes, idx: &[usize]) -> Result<f64, String> {
    let positive = || {
        c.positive.ok_or_else(|| {
            format!("{metric} is a binary metric but the positive class is unknown (classes: {}); set positive_label or use {metric}_macro", c.classes.join(", "))
        })
    };
    match metric {
        "accuracy" => Ok(ratio(
            idx.iter().filter(|&&i| c.truth[i] == c.pred[i]).count(),
            idx.len(),
        )),
        "precision" => Ok(prf(c, positive()?, idx).0),
        "recall" => Ok(prf(c, positive()?, idx).1),
        "f1" => Ok(prf(c, positive()?, idx).2),
        "precision_macro" | "recall_macro" | "f1_macro" => {
            // Like scikit-learn: the classes present in the labels or the predictions.
            let present: BTreeSet<usize> =
                idx.iter().flat_map(|&i| [c.truth[i], c.pred[i]]).collect();
            let pick = |t: (f64, f64, f64)| match metric {
                "precision_macro" => t.0,
                "recall_macro" => t.1,
                _ => t.2,
            };
            Ok(present.iter().map(|&k| pick(prf(c, k, idx))).sum::<f64>() / present.len() as f64)
        }
        "roc_auc" => {
            let proba = c.proba.as_ref().ok_or(NO_PROBA)?;
            let k = positive()?;
            roc_auc(idx.iter().map(|&i| (proba[i][k], c.truth[i] == k)))
        }
        "log_loss" => {
            let proba = c.proba.as_ref().ok_or(NO_PROBA)?;
            let eps = 1e-15;
            Ok(-idx
                .iter()
                .map(|&i| proba[i][c.truth[i]].clamp(eps, 1.0 - eps).ln())
                .sum::<f64>()
                / idx.len() as f64)
        }
        other => Err(format!(
            "{other} is a regression metric, but this dataset is scored as a classification"
        )),
    }
}

const NO_PROBA: &str = "needs probabilities, but the model returns labels (log it with pyfunc_predict_fn=\"predict_proba\")";

/// Area under the ROC curve from (score, is_positive), ties given their average rank.
pub fn roc_auc(points: impl Iterator<Item = (f64, bool)>) -> Result<f64, String> {
    let mut v: Vec<(f64, bool)> = points.collect();
    let pos = v.iter().filter(|p| p.1).count();
    let neg = v.len() - pos;
    if pos == 0 || neg == 0 {
        return Err("roc_auc needs both classes among the rows".into());
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * v[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    Ok((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// The result of a paired bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub observed: f64,
    pub low: f64,
    pub high: f64,
}

/// Paired bootstrap of `diff` over `n` rows: `resamples` draws of n row indices with
/// replacement (seeded, so the same inputs give the same interval), and the central
/// `confidence` percentile interval of the differences.
pub fn paired_bootstrap(
    n: usize,
    resamples: u32,
    confidence: f64,
    seed: u64,
    diff: impl Fn(&[usize]) -> Result<f64, String>,
) -> Result<Interval, String> {
    let all: Vec<usize> = (0..n).collect();
    let observed = diff(&all)?;
    let mut idx = vec![0usize; n];
    resample(observed, resamples, confidence, seed, |rng| {
        draw(rng, &mut idx);
        // A resample can lack a class roc_auc needs; it is skipped, not fatal.
        diff(&idx).ok()
    })
}

/// One resample's row indices, with replacement, in order from the generator: every way of
/// computing a resample draws through here, so that all of them see the same rows.
fn draw(rng: &mut StdRng, idx: &mut [usize]) {
    let n = idx.len();
    for slot in idx.iter_mut() {
        *slot = rng.random_range(0..n);
    }
}

/// The bootstrap itself: `resamples` calls of `one`, each of which [`draw`]s its rows from the
/// one seeded generator it is given; `None` skips a resample.
fn resample(
    observed: f64,
    resamples: u32,
    confidence: f64,
    seed: u64,
    mut one: impl FnMut(&mut StdRng) -> Option<f64>,
) -> Result<Interval, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut diffs: Vec<f64> = (0..resamples).filter_map(|_| one(&mut rng)).collect();
    if diffs.len() < (resamples as usize) / 2 {
        return Err("too few usable bootstrap resamples".into());
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| diffs[((q * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)];
    Ok(Interval {
        observed,
        low: at(tail),
        high: at(1.0 - tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(truth: &[usize], pred: &[usize]) -> Classes {
        Classes {
            classes: vec!["0".into(), "1".into()],
            truth: truth.to_vec(),
            pred: pred.to_vec(),
            proba: None,
            positive: Some(1),
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn binary_and_macro_scores_match_scikit_learn() {
        // sklearn: y_true=[0,1,1,0,1], y_pred=[0,1,0,0,1] -> acc .8, precision 1, recall 2/3, f1 .8
        let s = Scored::Classification(classes(&[0, 1, 1, 0, 1], &[0, 1, 0, 0, 1]));
        close(s.metric("accuracy", None).unwrap(), 0.8);
        close(s.metric("precision", None).unwrap(), 1.0);
        close(s.metric("recall", None).unwrap(), 2.0 / 3.0);
        close(s.metric("f1", None).unwrap(), 0.8);
        // f1 per class: class 0 p=2/3 r=1 f=.8; class 1 f=.8 -> macro .8
        close(s.metric("f1_macro", None).unwrap(), 0.8);
        close(
            s.metric("precision_macro", None).unwrap(),
            (2.0 / 3.0 + 1.0) / 2.0,
        );
        assert!(
            s.metric("roc_auc", None)
                .unwrap_err()
                .contains("probabilities")
        );
        assert!(s.metric("rmse", None).is_err());
    }

    #[test]
    fn roc_auc_and_log_loss_from_probabilities() {
        // sklearn.roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.75
        close(
            roc_auc([(0.1, false), (0.4, false), (0.35, true), (0.8, true)].into_iter()).unwrap(),
            0.75,
        );
        close(
            roc_auc([(0.5, false), (0.5, true)].into_iter()).unwrap(),
            0.5,
        );
        let mut c = classes(&[0, 1], &[0, 1]);
        c.proba = Some(vec![vec![0.9, 0.1], vec![0.2, 0.8]]);
        // -(ln .9 + ln .8)/2
        close(
            Scored::Classification(c).metric("log_loss", None).unwrap(),
            -(0.9f64.ln() + 0.8f64.ln()) / 2.0,
        );
    }

    #[test]
    fn regression_scores() {
        let s = Scored::Regression {
            truth: vec![3.0, -0.5, 2.0, 7.0],
            pred: vec![2.5, 0.0, 2.0, 8.0],
        };
        // sklearn: mae .5, rmse sqrt(.375), r2 0.9486081370449679
        close(s.metric("mae", None).unwrap(), 0.5);
        close(s.metric("rmse", None).unwrap(), 0.375f64.sqrt());
        close(s.metric("r2", None).unwrap(), 0.9486081370449679);
        close(s.metric("mae", Some(&[0, 1])).unwrap(), 0.5);
    }

    #[test]
    fn the_per_row_bootstrap_gives_the_same_interval_as_the_metrics_themselves() {
        // Two models on the same 300 rows, with some disagreement and uneven probabilities.
        let truth: Vec<usize> = (0..300).map(|i| (i * 7 % 3 == 0) as usize).collect();
        let pred = |k: usize| -> Vec<usize> {
            (0..300)
                .map(|i| if i % k == 0 { 1 - truth[i] } else { truth[i] })
                .collect()
        };
        let proba = |k: usize| -> Vec<Vec<f64>> {
            (0..300)
                .map(|i| {
                    let p = ((i * k) % 97) as f64 / 97.0;
                    vec![1.0 - p, p]
                })
                .collect()
        };
        let model = |k: usize| {
            Scored::Classification(Classes {
                classes: vec!["0".into(), "1".into()],
                truth: truth.clone(),
                pred: pred(k),
                proba: Some(proba(k)),
                positive: Some(1),
            })
        };
        let reg = |k: usize| Scored::Regression {
            truth: (0..300).map(|i| i as f64 / 10.0).collect(),
            pred: (0..300)
                .map(|i| i as f64 / 10.0 + ((i * k) % 11) as f64 / 7.0 - 0.6)
                .collect(),
        };
        let cases = [
            (model(4), model(9), "accuracy"),
            (model(4), model(9), "log_loss"),
            (reg(3), reg(5), "mae"),
            (reg(3), reg(5), "rmse"),
        ];
        for (cand, champ, m) in cases {
            assert!(cand.per_row(m).is_some(), "{m} is a mean over rows");
            let sign = if lower_is_better(m) { -1.0 } else { 1.0 };
            let fast = compare_bootstrap(&cand, &champ, m, sign, 400, 0.95, 3).unwrap();
            let slow = paired_bootstrap(300, 400, 0.95, 3, |idx| {
                Ok(sign * (cand.metric(m, Some(idx))? - champ.metric(m, Some(idx))?))
            })
            .unwrap();
            assert_eq!(fast, slow, "{m}: the same interval, to the bit");
            assert_ne!(fast.low, fast.high, "{m}: the models differ");
        }
        // The others go the general way, and still compare.
        assert!(model(4).per_row("f1").is_none());
        let f1 = compare_bootstrap(&model(4), &model(9), "f1", 1.0, 100, 0.95, 3).unwrap();
        assert!(f1.low <= f1.observed && f1.observed <= f1.high, "{f1:?}");
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_a_clear_difference() {
        let n = 500;
        // Candidate right on every row, champion right on 80%.
        let diff = |idx: &[usize]| {
            Ok(idx
                .iter()
                .map(|&i| if i % 5 == 0 { 1.0 } else { 0.0 })
                .sum::<f64>()
                / idx.len() as f64)
        };
        let a = paired_bootstrap(n, 1000, 0.95, 7, diff).unwrap();
        let b = paired_bootstrap(n, 1000, 0.95, 7, diff).unwrap();
        assert_eq!(a, b, "same seed, same interval");
        close(a.observed, 0.2);
        assert!(
            a.low > 0.1 && a.high < 0.3 && a.low < a.observed && a.observed < a.high,
            "{a:?}"
        );
        let zero = paired_bootstrap(n, 200, 0.95, 7, |_| Ok(0.0)).unwrap();
        assert_eq!((zero.low, zero.high), (0.0, 0.0));
    }
}
