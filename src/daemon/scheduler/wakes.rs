//! Delayed wake-ups, at most one pending per model: the earliest wins (as in kube-runtime's
//! scheduler). A retry backoff, a settle wait and a re-check series for the same model fold
//! into that one entry, so memory and timers grow with the number of models, never with the
//! number of events. Pure data: the scheduler owns the clock and the single timer task.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

/// A series of wake-ups at fixed offsets from its origin (re-checks after a creation).
#[derive(Debug, Clone)]
struct Series {
    origin: Instant,
    steps: &'static [Duration],
    next: usize,
    trigger: &'static str,
}

impl Series {
    fn due(&self) -> Option<Instant> {
        self.steps.get(self.next).map(|s| self.origin + *s)
    }
}

#[derive(Debug, Clone, Default)]
struct Wake {
    once: Option<(Instant, String)>,
    series: Option<Series>,
}

impl Wake {
    fn due(&self) -> Option<Instant> {
        let once = self.once.as_ref().map(|(at, _)| *at);
        match (once, self.series.as_ref().and_then(Series::due)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Default)]
pub struct Wakes {
    by_model: HashMap<String, Wake>,
    /// Each model's next due time, ordered: the timer sleeps until the first.
    order: BTreeSet<(Instant, String)>,
}

impl Wakes {
    /// Wake `model` once at `at`, unless it already wakes earlier.
    pub fn once(&mut self, model: &str, at: Instant, trigger: &str) {
        self.update(model, |w| {
            if w.once.as_ref().is_none_or(|(t, _)| at < *t) {
                w.once = Some((at, trigger.to_string()));
            }
        });
    }

    /// Wake `model` at `origin + step` for each step. A new series replaces the model's
    /// previous one: it starts later and reaches further, so it covers what was left of it.
    pub fn series(
        &mut self,
        model: &str,
        origin: Instant,
        steps: &'static [Duration],
        trigger: &'static str,
    ) {
        self.update(model, |w| {
            w.series = Some(Series {
                origin,
                steps,
                next: 0,
                trigger,
            })
        });
    }

    /// The earliest pending wake-up.
    pub fn next_due(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Take every wake-up due at `now`: `(model, trigger)` once per model.
    pub fn pop_due(&mut self, now: Instant) -> Vec<(String, String)> {
        let due: Vec<String> = self
            .order
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, m)| m.clone())
            .collect();
        let mut fired = Vec::with_capacity(due.len());
        for model in due {
            let mut label = None;
            self.update(&model, |w| {
                if w.once.as_ref().is_some_and(|(at, _)| *at <= now) {
                    label = w.once.take().map(|(_, t)| t);
                }
                if let Some(s) = w.series.as_mut() {
                    // Points missed while the timer was late fire once, not one by one.
                    while s.due().is_some_and(|at| at <= now) {
                        s.next += 1;
                        label.get_or_insert_with(|| s.trigger.to_string());
                    }
                    if s.due().is_none() {
                        w.series = None;
                    }
                }
            });
            fired.extend(label.map(|t| (model, t)));
        }
        fired
    }

    /// Models with a pending wake-up.
    pub fn len(&self) -> usize {
        self.by_model.len()
    }

    pub fn clear(&mut self) {
        self.by_model.clear();
        self.order.clear();
    }

    /// Change one model's entry, keeping `order` in step with it.
    fn update(&mut self, model: &str, f: impl FnOnce(&mut Wake)) {
        let mut w = self.by_model.remove(model).unwrap_or_default();
        if let Some(at) = w.due() {
            self.order.remove(&(at, model.to_string()));
        }
        f(&mut w);
        if let Some(at) = w.due() {
            self.order.insert((at, model.to_string()));
            self.by_model.insert(model.to_string(), w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [Duration; 3] = [
        Duration::from_secs(2),
        Duration::from_secs(5),
        Duration::from_secs(15),
    ];

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn the_earliest_one_shot_wins_and_one_entry_is_kept_per_model() {
        let (mut w, t0) = (Wakes::default(), Instant::now());
        w.once("m", secs(t0, 10), "retry");
        w.once("m", secs(t0, 3), "settle");
        w.once("m", secs(t0, 20), "retry");
        assert_eq!((w.len(), w.next_due()), (1, Some(secs(t0, 3))));
        assert!(w.pop_due(secs(t0, 2)).is_empty());
        assert_eq!(w.pop_due(secs(t0, 3)), vec![("m".into(), "settle".into())]);
        assert_eq!((w.len(), w.next_due()), (0, None));
    }

    #[test]
    fn a_series_fires_at_each_step_and_a_new_one_replaces_it() {
        let (mut w, t0) = (Wakes::default(), Instant::now());
        w.series("m", t0, &STEPS, "recheck");
        assert_eq!(w.pop_due(secs(t0, 2)).len(), 1);
        assert_eq!(w.next_due(), Some(secs(t0, 5)));
        // A second creation at t=4 restarts the series from there.
        w.series("m", secs(t0, 4), &STEPS, "recheck");
        assert_eq!(w.next_due(), Some(secs(t0, 6)));
        assert_eq!(w.len(), 1);
        // A late timer fires the missed points once.
        assert_eq!(w.pop_due(secs(t0, 12)).len(), 1);
        assert_eq!(w.next_due(), Some(secs(t0, 19)));
        assert_eq!(w.pop_due(secs(t0, 19)).len(), 1);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_one_shot_and_a_series_share_the_entry_and_the_earlier_fires_first() {
        let (mut w, t0) = (Wakes::default(), Instant::now());
        w.series("m", t0, &STEPS, "recheck");
        w.once("m", secs(t0, 1), "retry");
        assert_eq!(w.pop_due(secs(t0, 1)), vec![("m".into(), "retry".into())]);
        assert_eq!(w.pop_due(secs(t0, 2)), vec![("m".into(), "recheck".into())]);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn ten_thousand_series_for_a_hundred_models_keep_a_hundred_entries() {
        let (mut w, t0) = (Wakes::default(), Instant::now());
        for i in 0..10_000u64 {
            w.series(
                &format!("m{}", i % 100),
                t0 + Duration::from_millis(i),
                &STEPS,
                "recheck",
            );
        }
        assert_eq!(w.len(), 100);
        assert_eq!(w.order.len(), 100);
    }
}
