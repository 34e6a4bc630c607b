//! CI's fuzzing smoke test: each cargo-fuzz target of `fuzz/fuzz_targets/`, compiled into this
//! ordinary test, runs over its seed corpus and then for a few seconds on seeded mutations of
//! it (bit flips, byte edits, cut, repeated and spliced ranges). A target that no longer
//! compiles, a seed that now fails, or a property a mutation breaks fails CI.
//!
//! Why not libFuzzer itself here: its instrumented build of stagegate (arrow, parquet, tokio…)
//! costs CI about ten minutes on two cores, twice the whole test build. The same target code
//! runs under libFuzzer, with coverage guidance, in `scripts/fuzz-smoke.sh` and the campaign
//! `bench/fuzz.sh` (fuzz/README.md). The targets' bodies are shared, not copied: each file
//! takes `fuzz_target!` from libfuzzer-sys when built by cargo-fuzz (`cfg(fuzzing)`) and from
//! the macro below otherwise, which makes it a plain `run(&[u8])`.
//!
//! `STAGEGATE_FUZZ_SMOKE_SECS` sets the seconds of mutations per target (default 3).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn run($data: &[u8]) $body
    };
}

#[path = "../../fuzz/fuzz_targets/config.rs"]
mod config;
#[path = "../../fuzz/fuzz_targets/dataset.rs"]
mod dataset;
#[path = "../../fuzz/fuzz_targets/edge_cases.rs"]
mod edge_cases;
#[path = "../../fuzz/fuzz_targets/mlmodel.rs"]
mod mlmodel;
#[path = "../../fuzz/fuzz_targets/webhook.rs"]
mod webhook;

/// A small xorshift generator: seeded, so a failure names an input that can be made again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One mutation of `input`, sometimes spliced with `other`: the edits libFuzzer starts with.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0, 0xff, b'"', b'[', b'{', b'\n', b'=', b'\\'][rng.below(8)];
            }
            2 => out.insert(at, rng.next() as u8),
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let chunk = out[start..end].to_vec();
                for _ in 0..1 + rng.below(8) {
                    out.splice(at..at, chunk.iter().copied());
                }
            }
            5 if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(64)).min(other.len());
                out.splice(at..at, other[start..end].iter().copied());
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed corpus {} must be readable: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("a seed"))
        .collect()
}

/// Every seed, then mutations for the time budget. Returns how many inputs ran. A panicking
/// input is written next to the test's scratch files and named in the failure.
fn smoke(target: &str, run: fn(&[u8])) -> usize {
    let corpus = seeds(target);
    assert!(
        corpus.len() >= 3,
        "{target}: too few seeds: {}",
        corpus.len()
    );
    let secs = std::env::var("STAGEGATE_FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(secs);
    let mut rng = Rng(0x005e_ed0f_f022 ^ target.len() as u64);
    let started = Instant::now();
    let mut ran = 0usize;
    let input_of = |i: usize, rng: &mut Rng| -> Vec<u8> {
        if i < corpus.len() {
            return corpus[i].clone();
        }
        let a = &corpus[rng.below(corpus.len())];
        let b = &corpus[rng.below(corpus.len())];
        mutate(rng, a, b)
    };
    while ran < corpus.len() || started.elapsed() < budget {
        let input = input_of(ran, &mut rng);
        if let Err(panic) = std::panic::catch_unwind(|| run(&input)) {
            let dir = std::env::var("STAGEGATE_TEST_TMP").unwrap_or_else(|_| "/tmp".into());
            let path = Path::new(&dir).join(format!("fuzz-smoke-{target}-{ran}"));
            let _ = std::fs::write(&path, &input);
            std::panic::resume_unwind(Box::new(format!(
                "{target}: input {ran} failed (saved to {}; replay it with the cargo-fuzz \
                 target): {:?}",
                path.display(),
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
            )));
        }
        ran += 1;
    }
    eprintln!(
        "fuzz smoke {target}: {ran} inputs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ran
}

#[test]
fn webhook_target() {
    assert!(smoke("webhook", webhook::run) > seeds("webhook").len());
}

#[test]
fn config_target() {
    assert!(smoke("config", config::run) > seeds("config").len());
}

#[test]
fn mlmodel_target() {
    assert!(smoke("mlmodel", mlmodel::run) > seeds("mlmodel").len());
}

#[test]
fn edge_cases_target() {
    assert!(smoke("edge_cases", edge_cases::run) > seeds("edge_cases").len());
}

#[test]
fn dataset_target() {
    assert!(smoke("dataset", dataset::run) > seeds("dataset").len());
}

/// The harness itself: mutations change inputs, stay seeded, and a failing target fails.
#[test]
fn the_harness_mutates_reproducibly_and_reports_failures() {
    let (mut a, mut b) = (Rng(7), Rng(7));
    let seed = b"[mlflow]\ntracking_uri = \"http://x\"\n".to_vec();
    let one: Vec<_> = (0..50).map(|_| mutate(&mut a, &seed, b"{}")).collect();
    let two: Vec<_> = (0..50).map(|_| mutate(&mut b, &seed, b"{}")).collect();
    assert_eq!(one, two);
    assert!(one.iter().filter(|m| **m != seed).count() > 40);
    let failed =
        std::panic::catch_unwind(|| smoke("webhook", |data| assert!(data.len() < 3, "too long")));
    assert!(failed.is_err());
}
