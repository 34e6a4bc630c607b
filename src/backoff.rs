//! Exponential backoff with full jitter, shared by the MLflow client and the scheduler.

use std::time::Duration;

/// A random delay in `[step/10, step]` where `step = min(cap, base * 2^attempt)`: exponential,
/// jittered so retries spread out, never so close to zero that they stampede.
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let step = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let ms = step.as_millis().max(1) as u64;
    let floor = ms / 10;
    Duration::from_millis(floor + rand::random_range(0..=ms - floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_capped_step() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..20 {
            let d = full_jitter(base, cap, attempt);
            let step = base.saturating_mul(1 << attempt.min(16)).min(cap);
            assert!(d <= step, "attempt {attempt}: {d:?} > {step:?}");
            assert!(d >= step / 10, "attempt {attempt}: {d:?} below floor");
        }
    }
}
