//! MLflow reachability, for `/readyz` and `/status`. Every MLflow answer is proof of life, so
//! the watcher pings only when the daemon has been quiet — a ping must not compete with the
//! poll or a reconcile for the server's workers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::metrics::Metrics;
use crate::mlflow::RequestObserver;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Reachability {
    pub reachable: bool,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    now: Reachability,
    last_answer: Option<Instant>,
}

pub struct Health {
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Health {
        Health {
            metrics,
            state: Mutex::new(State::default()),
        }
    }

    pub fn record(&self, result: Result<(), String>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let up = result.is_ok();
        if up != s.now.reachable {
            match &result {
                Ok(()) => tracing::info!("MLflow reachable"),
                Err(e) => tracing::warn!(error = %e, "MLflow unreachable"),
            }
        }
        if up {
            s.last_answer = Some(Instant::now());
        }
        s.now = Reachability {
            reachable: up,
            last_error: result.err(),
        };
        self.metrics.mlflow_up.set(up as i64);
    }

    pub fn snapshot(&self) -> Reachability {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .now
            .clone()
    }

    /// How long since MLflow last answered (forever if never).
    pub fn quiet_for(&self) -> Duration {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.last_answer.map(|t| t.elapsed()).unwrap_or(Duration::MAX)
    }
}

impl RequestObserver for Health {
    fn observe(&self, endpoint: &str, outcome: &str, elapsed: Duration) {
        self.metrics.observe(endpoint, outcome, elapsed);
        match outcome {
            // A gateway in front of a dead MLflow answers these itself.
            "unreachable" | "502" | "503" | "504" => {
                self.record(Err(format!("MLflow {outcome} on {endpoint}")))
            }
            _ => self.record(Ok(())),
        }
    }
}
