//! The `vs_champion` bootstrap on a large holdout, both ways in one process: the per-row path
//! the dataset gate takes for means over rows (`compare_bootstrap`) and the general one, which
//! computes the metric of both models on every resample. Two classifiers of about 81% accuracy
//! on ROWS rows; prints one JSON line with both times, the floor (drawing the row indices
//! alone, from the same seeded generator, with nothing read), the ratios, and whether the
//! intervals are the same to the bit.
//!
//!     cargo run --release --example bootstrap -- [ROWS] [RESAMPLES]

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use stagegate::gates::dataset::score::{Classes, Scored, compare_bootstrap, paired_bootstrap};

fn model(truth: &[usize], wrong_every: usize, offset: usize) -> Scored {
    Scored::Classification(Classes {
        classes: vec!["0".into(), "1".into()],
        truth: truth.to_vec(),
        pred: (0..truth.len())
            .map(|i| {
                if (i + offset) % wrong_every < 2 {
                    1 - truth[i]
                } else {
                    truth[i]
                }
            })
            .collect(),
        proba: None,
        positive: Some(1),
    })
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a whole number"))
    };
    let (rows, resamples) = (arg(1, 1_000_000), arg(2, 1_000) as u32);
    let truth: Vec<usize> = (0..rows).map(|i| (i * 7919 % 13 < 6) as usize).collect();
    let (cand, champ) = (model(&truth, 11, 0), model(&truth, 10, 3));

    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(1);
    let mut checksum = 0usize;
    for _ in 0..resamples as usize * rows {
        checksum = checksum.wrapping_add(rng.random_range(0..rows));
    }
    let floor_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let fast =
        compare_bootstrap(&cand, &champ, "accuracy", 1.0, resamples, 0.95, 1).expect("per row");
    let per_row_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let general = paired_bootstrap(rows, resamples, 0.95, 1, |idx| {
        Ok(cand.metric("accuracy", Some(idx))? - champ.metric("accuracy", Some(idx))?)
    })
    .expect("general");
    let general_s = started.elapsed().as_secs_f64();
    println!(
        "{{\"rows\":{rows},\"resamples\":{resamples},\"floor_s\":{floor_s:.3},\"per_row_s\":{per_row_s:.3},\"per_row_over_floor\":{:.2},\"general_s\":{general_s:.3},\
         \"general_over_per_row\":{:.2},\"same_interval\":{},\"low\":{},\"high\":{}}}",
        per_row_s / floor_s,
        general_s / per_row_s,
        fast == general,
        fast.low,
        fast.high
    );
    std::hint::black_box(checksum);
}
