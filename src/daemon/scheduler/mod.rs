//! The scheduler: a queue of model names and a pool of workers. It owns de-duplication, delays,
//! retry backoff and "at most one reconcile in flight per model"; the reconciler it drives
//! never knows why it was called.
//!
//! - A model queued while already queued runs once.
//! - A model queued while it runs runs once more afterwards.
//! - Different models run in parallel, up to the worker count.
//! - `Retry` backs off exponentially with jitter, up to the configured attempts.
//! - Delayed work (retries, settle waits, re-checks) is at most one pending wake-up per model,
//!   the earliest wins ([`wakes`]), served by one timer task and dropped at shutdown.
//!
//! Each queued model carries the label of its latest trigger (webhook, poll, recheck…), which
//! the history records; the reconcile itself never sees it.

mod wakes;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::backoff::full_jitter;
use wakes::Wakes;

/// How a reconcile ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Converged (or nothing to do).
    Done,
    /// A transient failure: try again after a backoff.
    Retry(String),
    /// The world changed under it: run again right away.
    Requeue,
    /// Converged for now; run again after this long (a candidate settling).
    After(Duration),
    /// Another replica holds the model: run again after this long, for the same trigger.
    Busy(Duration),
}

/// Which attempt this is; `last` means no retry follows a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub n: u32,
    pub last: bool,
}

pub type ReconcileFn = Arc<dyn Fn(String, Attempt) -> BoxFuture<'static, Outcome> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    rerun: HashSet<String>,
    attempts: HashMap<String, u32>,
    /// The latest trigger of each queued model, taken by the reconcile for its history.
    labels: HashMap<String, String>,
    wakes: Wakes,
    closed: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes a worker when a model becomes ready.
    wake: Notify,
    /// Wakes the timer when an earlier wake-up is scheduled.
    timer: Notify,
    /// Replaced by a reload; an attempt reads it when it starts, a retry when it is planned.
    backoff: Mutex<Backoff>,
}

/// Cheap to clone; every clone is the same queue.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    pub fn new(backoff: Backoff) -> Scheduler {
        Scheduler {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                timer: Notify::new(),
                backoff: Mutex::new(backoff),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The retry settings in force.
    pub fn backoff(&self) -> Backoff {
        *self.inner.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New retry settings (a reload): attempts that start from now on count against them.
    pub fn set_backoff(&self, backoff: Backoff) {
        *self.inner.backoff.lock().unwrap_or_else(|p| p.into_inner()) = backoff;
    }

    /// Queue `model` to be reconciled as soon as a worker is free, for `trigger`. Returns
    /// whether this changed anything (`false`: it was already waiting, or the queue is closed).
    pub fn enqueue(&self, model: &str, trigger: &str) -> bool {
        let mut s = self.state();
        if s.closed {
            return false;
        }
        s.labels.insert(model.to_string(), trigger.to_string());
        if s.running.contains(model) {
            s.rerun.insert(model.to_string())
        } else if s.queued.insert(model.to_string()) {
            s.ready.push_back(model.to_string());
            drop(s);
            self.inner.wake.notify_one();
            true
        } else {
            false
        }
    }

    /// Whether `model` waits for a worker (queued, not running): a trigger now adds nothing.
    pub fn is_waiting(&self, model: &str) -> bool {
        self.state().queued.contains(model)
    }

    /// Queue `model` after `delay`, unless it already has an earlier wake-up.
    pub fn enqueue_after(&self, model: &str, delay: Duration, trigger: &str) {
        let at = tokio::time::Instant::now() + delay;
        self.schedule(|w| w.once(model, at, trigger));
    }

    /// Queue `model` at each of `steps` from now, replacing its previous series.
    pub fn recheck(&self, model: &str, steps: &'static [Duration], trigger: &'static str) {
        let now = tokio::time::Instant::now();
        self.schedule(|w| w.series(model, now, steps, trigger));
    }

    fn schedule(&self, f: impl FnOnce(&mut Wakes)) {
        let mut s = self.state();
        if s.closed {
            return;
        }
        let before = s.wakes.next_due();
        f(&mut s.wakes);
        if s.wakes.next_due() != before {
            self.inner.timer.notify_one();
        }
    }

    /// The latest trigger of `model` ("retry" if it was queued by nothing else).
    pub fn take_trigger(&self, model: &str) -> String {
        self.state()
            .labels
            .remove(model)
            .unwrap_or_else(|| "retry".into())
    }

    /// Models waiting for a worker (delayed re-checks and retries not included).
    pub fn depth(&self) -> usize {
        self.state().ready.len()
    }

    /// Models with a pending delayed wake-up.
    pub fn delayed(&self) -> usize {
        self.state().wakes.len()
    }

    pub fn in_flight(&self) -> usize {
        self.state().running.len()
    }

    /// Run `workers` workers until `shutdown` resolves; then stop taking work and return once
    /// in-flight reconciles finish. The caller bounds that wait (the shutdown grace).
    pub async fn run(
        &self,
        workers: usize,
        reconcile: ReconcileFn,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut pool = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let (me, f) = (self.clone(), reconcile.clone());
            pool.spawn(async move { me.work(f).await });
        }
        tokio::select! {
            _ = shutdown => {}
            _ = self.timers() => {}
        }
        {
            let mut s = self.state();
            s.closed = true;
            // Delayed work dies with the process anyway; the next start-up's poll finds it.
            s.wakes.clear();
        }
        self.inner.wake.notify_waiters();
        while pool.join_next().await.is_some() {}
    }

    /// The one timer task: sleep until the earliest wake-up, queue what is due, repeat.
    async fn timers(&self) {
        loop {
            let (due, next) = {
                let mut s = self.state();
                let due = s.wakes.pop_due(tokio::time::Instant::now());
                (due, s.wakes.next_due())
            };
            for (model, trigger) in due {
                self.enqueue(&model, &trigger);
            }
            // A wake-up scheduled meanwhile leaves a permit: `notified` returns at once.
            match next {
                Some(at) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.inner.timer.notified() => {}
                },
                None => self.inner.timer.notified().await,
            }
        }
    }

    async fn work(&self, reconcile: ReconcileFn) {
        while let Some(model) = self.next().await {
            let attempt = {
                let s = self.state();
                let n = s.attempts.get(&model).copied().unwrap_or(0);
                Attempt {
                    n,
                    last: n + 1 >= self.backoff().max_attempts,
                }
            };
            let outcome = reconcile(model.clone(), attempt).await;
            self.finish(&model, attempt, outcome);
        }
    }

    async fn next(&self) -> Option<String> {
        loop {
            let notified = self.inner.wake.notified();
            {
                let mut s = self.state();
                if s.closed {
                    return None;
                }
                if let Some(model) = s.ready.pop_front() {
                    s.queued.remove(&model);
                    s.running.insert(model.clone());
                    return Some(model);
                }
            }
            notified.await;
        }
    }

    fn finish(&self, model: &str, attempt: Attempt, outcome: Outcome) {
        let b = self.backoff();
        let mut s = self.state();
        s.running.remove(model);
        // A model another replica holds runs again at its busy wake-up, not at once.
        let rerun = s.rerun.remove(model) && !matches!(outcome, Outcome::Busy(_));
        let mut retry_after = None;
        let mut wake_after = None;
        let mut busy_after = None;
        let rerun_label = s.labels.get(model).cloned();
        match outcome {
            Outcome::Done => {
                s.attempts.remove(model);
            }
            Outcome::After(d) => {
                s.attempts.remove(model);
                wake_after = Some(d);
            }
            Outcome::Busy(d) => {
                s.attempts.remove(model);
                busy_after = Some(d);
            }
            Outcome::Retry(why) if !attempt.last => {
                s.attempts.insert(model.to_string(), attempt.n + 1);
                let delay = full_jitter(b.base, b.max, attempt.n);
                tracing::warn!(model, attempt = attempt.n + 1, ?delay, reason = %why, "reconcile failed; retrying");
                retry_after = Some(delay);
            }
            Outcome::Retry(why) => {
                s.attempts.remove(model);
                tracing::error!(model, attempts = attempt.n + 1, reason = %why, "reconcile failed; giving up until the next trigger");
            }
            Outcome::Requeue => {
                // Counted, so a registry that keeps changing cannot spin a worker forever.
                if attempt.last {
                    s.attempts.remove(model);
                } else {
                    s.attempts.insert(model.to_string(), attempt.n + 1);
                    retry_after = Some(Duration::ZERO);
                }
            }
        }
        drop(s);
        let again = rerun_label.as_deref().unwrap_or("retry");
        match retry_after {
            Some(d) if d.is_zero() => {
                self.enqueue(model, again);
            }
            Some(d) => self.enqueue_after(model, d, "retry"),
            None if rerun => {
                self.enqueue(model, again);
            }
            None => {}
        }
        // A trigger that came during the run is served now; the wake-up still follows.
        if let Some(d) = wake_after {
            self.enqueue_after(model, d, "settle");
        }
        // Not run: the trigger that queued it is still the reason, and its label stays.
        if let Some(d) = busy_after {
            let label = self.state().labels.remove(model);
            self.enqueue_after(model, d, label.as_deref().unwrap_or("retry"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn backoff(max_attempts: u32) -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts,
        }
    }

    /// A reconcile that takes `took`, records calls and concurrency, and answers `answer`.
    struct Probe {
        calls: Mutex<Vec<(String, u32)>>,
        now: AtomicUsize,
        peak: AtomicUsize,
        peak_per_model: Mutex<HashMap<String, usize>>,
        live: Mutex<HashMap<String, usize>>,
    }

    fn probe(took: Duration, answer: fn(&str, u32) -> Outcome) -> (Arc<Probe>, ReconcileFn) {
        let p = Arc::new(Probe {
            calls: Mutex::new(vec![]),
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            peak_per_model: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        });
        let q = p.clone();
        let f: ReconcileFn = Arc::new(move |model: String, a: Attempt| {
            let p = q.clone();
            async move {
                p.calls.lock().unwrap().push((model.clone(), a.n));
                let n = p.now.fetch_add(1, Ordering::SeqCst) + 1;
                p.peak.fetch_max(n, Ordering::SeqCst);
                {
                    let mut live = p.live.lock().unwrap();
                    let c = live.entry(model.clone()).or_default();
                    *c += 1;
                    let mut peaks = p.peak_per_model.lock().unwrap();
                    let pk = peaks.entry(model.clone()).or_default();
                    *pk = (*pk).max(*c);
                }
                tokio::time::sleep(took).await;
                *p.live.lock().unwrap().get_mut(&model).unwrap() -= 1;
                p.now.fetch_sub(1, Ordering::SeqCst);
                answer(&model, a.n)
            }
            .boxed()
        });
        (p, f)
    }

    async fn run_for(s: &Scheduler, workers: usize, f: ReconcileFn, d: Duration) {
        s.run(workers, f, tokio::time::sleep(d)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_model_queued_while_queued_runs_once() {
        let s = Scheduler::new(backoff(3));
        let (p, f) = probe(Duration::from_millis(10), |_, _| Outcome::Done);
        for _ in 0..5 {
            s.enqueue("m", "test");
        }
        run_for(&s, 2, f, Duration::from_secs(1)).await;
        assert_eq!(p.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_model_queued_while_running_runs_once_more_afterwards() {
        let s = Scheduler::new(backoff(3));
        let (p, f) = probe(Duration::from_secs(1), |_, _| Outcome::Done);
        s.enqueue("m", "test");
        let s2 = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for _ in 0..3 {
                s2.enqueue("m", "test");
            }
        });
        run_for(&s, 4, f, Duration::from_secs(10)).await;
        assert_eq!(p.calls.lock().unwrap().len(), 2);
        assert_eq!(
            p.peak_per_model.lock().unwrap()["m"],
            1,
            "never two at once for one model"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn different_models_run_in_parallel_up_to_the_worker_count() {
        let s = Scheduler::new(backoff(3));
        let (p, f) = probe(Duration::from_secs(1), |_, _| Outcome::Done);
        for i in 0..10 {
            s.enqueue(&format!("m{i}"), "test");
        }
        assert_eq!(s.depth(), 10);
        run_for(&s, 3, f, Duration::from_secs(60)).await;
        assert_eq!(p.calls.lock().unwrap().len(), 10);
        assert_eq!(p.peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_back_off_then_give_up_after_the_configured_attempts() {
        let s = Scheduler::new(backoff(4));
        let (p, f) = probe(Duration::from_millis(1), |_, _| {
            Outcome::Retry("mlflow down".into())
        });
        s.enqueue("m", "test");
        run_for(&s, 1, f, Duration::from_secs(600)).await;
        let calls = p.calls.lock().unwrap().clone();
        assert_eq!(
            calls.iter().map(|c| c.1).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_succeeds_and_the_attempt_count_resets() {
        let s = Scheduler::new(backoff(5));
        let (p, f) = probe(Duration::from_millis(1), |_, n| {
            if n < 2 {
                Outcome::Retry("x".into())
            } else {
                Outcome::Done
            }
        });
        s.enqueue("m", "test");
        let s2 = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(300)).await;
            s2.enqueue("m", "test");
        });
        run_for(&s, 1, f, Duration::from_secs(600)).await;
        let ns: Vec<u32> = p.calls.lock().unwrap().iter().map(|c| c.1).collect();
        // The second trigger starts again from attempt 0 (and again needs two retries).
        assert_eq!(ns, vec![0, 1, 2, 0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_enqueue_fires_after_the_delay() {
        let s = Scheduler::new(backoff(3));
        let (p, f) = probe(Duration::from_millis(1), |_, _| Outcome::Done);
        s.enqueue_after("m", Duration::from_secs(5), "test");
        assert_eq!(s.delayed(), 1);
        run_for(&s, 1, f.clone(), Duration::from_secs(4)).await;
        assert!(p.calls.lock().unwrap().is_empty());
        let s = Scheduler::new(backoff(3));
        s.enqueue_after("m", Duration::from_secs(5), "test");
        run_for(&s, 1, f, Duration::from_secs(6)).await;
        assert_eq!(p.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recheck_series_runs_the_model_at_each_step_and_shutdown_drops_the_rest() {
        const STEPS: [Duration; 3] = [
            Duration::from_secs(2),
            Duration::from_secs(5),
            Duration::from_secs(15),
        ];
        let s = Scheduler::new(backoff(3));
        let (p, f) = probe(Duration::from_millis(1), |_, _| Outcome::Done);
        for _ in 0..1000 {
            s.recheck("m", &STEPS, "recheck");
        }
        assert_eq!(s.delayed(), 1);
        // Stop between the second and third step.
        run_for(&s, 1, f, Duration::from_secs(10)).await;
        assert_eq!(p.calls.lock().unwrap().len(), 2);
        assert_eq!(s.delayed(), 0, "pending wake-ups are dropped at shutdown");
        assert_eq!(
            s.take_trigger("m"),
            "recheck",
            "fired wake-ups carry their label"
        );
    }

    /// A reconcile that reports the model busy `busy` times (queueing it again each time, as
    /// a webhook would), then records the trigger it was run for.
    fn held_elsewhere(
        s: &Scheduler,
        busy: usize,
    ) -> (Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>, ReconcileFn) {
        let (attempts, seen) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::<Mutex<Vec<String>>>::default(),
        );
        let (a, w, s) = (attempts.clone(), seen.clone(), s.clone());
        let f: ReconcileFn = Arc::new(move |model: String, _| {
            let (a, w, s) = (a.clone(), w.clone(), s.clone());
            async move {
                if a.fetch_add(1, Ordering::SeqCst) < busy {
                    s.enqueue(&model, "webhook");
                    return Outcome::Busy(Duration::from_secs(1));
                }
                w.lock().unwrap().push(s.take_trigger(&model));
                Outcome::Done
            }
            .boxed()
        });
        (attempts, seen, f)
    }

    /// Another replica holds the model: it runs again a delay later, for the same trigger; a
    /// trigger arriving meanwhile does not make it spin.
    #[tokio::test(start_paused = true)]
    async fn a_busy_model_runs_again_after_the_delay_keeping_its_trigger() {
        let s = Scheduler::new(backoff(3));
        let (attempts, seen, f) = held_elsewhere(&s, usize::MAX);
        s.enqueue("m", "webhook");
        run_for(&s, 2, f, Duration::from_millis(5500)).await;
        let n = attempts.load(Ordering::SeqCst);
        assert!(
            (5..=7).contains(&n),
            "one attempt a second, not a spin: {n}"
        );
        assert!(seen.lock().unwrap().is_empty());

        let s = Scheduler::new(backoff(3));
        let (attempts, seen, f) = held_elsewhere(&s, 2);
        s.enqueue("m", "webhook");
        run_for(&s, 2, f, Duration::from_secs(10)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(*seen.lock().unwrap(), vec!["webhook".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_intake_and_waits_for_in_flight_work() {
        let s = Scheduler::new(backoff(3));
        let (p, f) = probe(Duration::from_secs(5), |_, _| Outcome::Done);
        s.enqueue("a", "test");
        s.enqueue("b", "test");
        // Shut down at t=1s while "a" runs; "b" is never started (one worker).
        run_for(&s, 1, f, Duration::from_secs(1)).await;
        assert_eq!(p.calls.lock().unwrap().len(), 1);
        assert_eq!(
            p.now.load(Ordering::SeqCst),
            0,
            "in-flight work finished before run returned"
        );
        s.enqueue("c", "test");
        assert_eq!(s.depth(), 1, "b is still queued; c is refused after close");
    }
}
