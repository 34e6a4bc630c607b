//! Prometheus metrics of the daemon (`GET /metrics`), in the text exposition format.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::evaluation::Evaluation;
use crate::mlflow::RequestObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabel {
    pub gate_type: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// A webhook delivery: which sender (`mlflow`, `databricks`) and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    pub source: String,
    pub outcome: String,
}

/// A model version loaded in the scoring host.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostModelLabel {
    pub model: String,
    pub version: String,
    pub champion: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub endpoint: String,
    pub outcome: String,
}

/// Every outcome of a notification (see `notify.rs`). Their series are exported from the
/// start, at 0: "none finished yet" reads as 0, not as a series that is missing.
const NOTIFICATION_OUTCOMES: [&str; 3] = ["sent", "failed", "dropped"];
/// `running` counts analyses begun; the others, how they ended.
const ANALYSIS_OUTCOMES: [&str; 5] = ["running", "passed", "failed", "inconclusive", "ended"];

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub queue_depth: Gauge<i64, AtomicI64>,
    pub in_flight: Gauge<i64, AtomicI64>,
    pub delayed: Gauge<i64, AtomicI64>,
    pub paused: Gauge<i64, AtomicI64>,
    pub mlflow_up: Gauge<i64, AtomicI64>,
    pub evaluations: Family<VerdictLabel, Counter>,
    pub gates: Family<GateLabel, Counter>,
    pub actions: Family<ActionLabel, Counter>,
    pub promotions: Counter,
    pub deliveries: Family<DeliveryLabel, Counter>,
    pub notifications: Family<OutcomeLabel, Counter>,
    pub analyses: Family<OutcomeLabel, Counter>,
    pub mlflow_requests: Family<RequestLabel, Histogram, fn() -> Histogram>,
    pub poll_duration: Histogram,
    pub poll_models: Gauge<i64, AtomicI64>,
    pub host_up: Gauge<i64, AtomicI64>,
    pub host_memory: Gauge<i64, AtomicI64>,
    pub host_models: Gauge<i64, AtomicI64>,
    pub host_model_memory: Family<HostModelLabel, Gauge<i64, AtomicI64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stagegate");
        let m = Metrics {
            queue_depth: Gauge::default(),
            in_flight: Gauge::default(),
            delayed: Gauge::default(),
            paused: Gauge::default(),
            mlflow_up: Gauge::default(),
            evaluations: Family::default(),
            gates: Family::default(),
            actions: Family::default(),
            promotions: Counter::default(),
            deliveries: Family::default(),
            notifications: Family::default(),
            analyses: Family::default(),
            mlflow_requests: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            poll_duration: latency_histogram(),
            poll_models: Gauge::default(),
            host_up: Gauge::default(),
            host_memory: Gauge::default(),
            host_models: Gauge::default(),
            host_model_memory: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "queue_depth",
            "Models waiting for a worker",
            m.queue_depth.clone(),
        );
        registry.register("in_flight", "Reconciles running now", m.in_flight.clone());
        registry.register(
            "delayed",
            "Scheduled re-checks and retries not yet due",
            m.delayed.clone(),
        );
        registry.register("paused", "1 while acting is paused", m.paused.clone());
        registry.register("mlflow_up", "1 while MLflow answers", m.mlflow_up.clone());
        registry.register(
            "evaluations",
            "Evaluations by verdict",
            m.evaluations.clone(),
        );
        registry.register(
            "gate_outcomes",
            "Gate results by gate type and outcome",
            m.gates.clone(),
        );
        registry.register("actions", "Actions recorded, by action", m.actions.clone());
        registry.register("promotions", "Promotions carried out", m.promotions.clone());
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by source and outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "notifications",
            "Notifications by outcome (sent, failed after retries, dropped when too many were pending)",
            m.notifications.clone(),
        );
        registry.register(
            "analyses",
            "Post-promotion analyses begun (running) and ended, by outcome",
            m.analyses.clone(),
        );
        registry.register(
            "mlflow_request_duration_seconds",
            "MLflow REST request latency",
            m.mlflow_requests.clone(),
        );
        registry.register(
            "poll_duration_seconds",
            "Duration of a reconcile poll",
            m.poll_duration.clone(),
        );
        registry.register(
            "poll_models",
            "Registered models matched by a policy at the last poll",
            m.poll_models.clone(),
        );
        registry.register(
            "host_up",
            "1 while the scoring host (serving.mode = \"host\") runs",
            m.host_up.clone(),
        );
        registry.register(
            "host_memory_bytes",
            "Resident memory of the scoring host's own process",
            m.host_memory.clone(),
        );
        registry.register(
            "host_models",
            "Model versions loaded in the scoring host",
            m.host_models.clone(),
        );
        registry.register(
            "host_model_memory_bytes",
            "Resident memory of each model version's process in the scoring host",
            m.host_model_memory.clone(),
        );
        for outcome in ANALYSIS_OUTCOMES {
            let _ = m.analyses.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        for outcome in NOTIFICATION_OUTCOMES {
            let _ = m.notifications.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        Metrics { registry, ..m }
    }

    /// The scoring host as it stands (at each scrape): evicted models leave the family.
    pub fn host(&self, snap: Option<&crate::serving::host::Snapshot>) {
        self.host_model_memory.clear();
        let Some(s) = snap else {
            self.host_up.set(0);
            return;
        };
        self.host_up.set(i64::from(s.running));
        self.host_memory.set(s.rss_bytes.unwrap_or(0) as i64);
        self.host_models.set(s.models.len() as i64);
        for m in &s.models {
            let label = HostModelLabel {
                model: m.model.clone(),
                version: m.version.clone(),
                champion: m.champion.to_string(),
            };
            self.host_model_memory
                .get_or_create(&label)
                .set(m.rss_bytes.unwrap_or(0) as i64);
        }
    }

    pub fn evaluation(&self, e: &Evaluation) {
        self.evaluations
            .get_or_create(&VerdictLabel {
                verdict: e.verdict.as_str().into(),
            })
            .inc();
        for g in &e.gates {
            let label = GateLabel {
                gate_type: g.gate_type.into(),
                outcome: g.outcome.as_str().into(),
            };
            self.gates.get_or_create(&label).inc();
        }
    }

    pub fn action(&self, action: &str) {
        // `skipped: <why>` would explode the label set; the reason is in the store.
        let action = action.split(':').next().unwrap_or(action).to_string();
        if action == "promoted" {
            self.promotions.inc();
        }
        self.actions.get_or_create(&ActionLabel { action }).inc();
    }

    pub fn notification(&self, outcome: &str) {
        debug_assert!(NOTIFICATION_OUTCOMES.contains(&outcome), "{outcome}");
        self.notifications
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn analysis(&self, outcome: &str) {
        debug_assert!(ANALYSIS_OUTCOMES.contains(&outcome), "{outcome}");
        self.analyses
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn delivery(&self, source: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabel {
                source: source.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl RequestObserver for Metrics {
    fn observe(&self, endpoint: &str, outcome: &str, elapsed: Duration) {
        // Paths with ids (logged-models/m-…, webhooks/…) fold into their family.
        let endpoint = match endpoint.split_once('/') {
            Some((head @ ("logged-models" | "webhooks"), _)) => head.to_string(),
            _ => endpoint.to_string(),
        };
        let label = RequestLabel {
            endpoint,
            outcome: outcome.into(),
        };
        self.mlflow_requests
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_text_with_the_expected_families() {
        let m = Metrics::new();
        m.delivery("databricks", "queued");
        m.action("skipped: paused (would promote)");
        m.action("promoted");
        m.observe("logged-models/m-123", "ok", Duration::from_millis(3));
        let text = m.encode();
        for needle in [
            "stagegate_webhook_deliveries_total{source=\"databricks\",outcome=\"queued\"} 1",
            "stagegate_actions_total{action=\"skipped\"} 1",
            "stagegate_promotions_total 1",
            "stagegate_mlflow_request_duration_seconds_count{endpoint=\"logged-models\",outcome=\"ok\"} 1",
            "stagegate_queue_depth",
            "stagegate_poll_duration_seconds",
            "stagegate_notifications_total{outcome=\"sent\"} 0",
            "stagegate_notifications_total{outcome=\"failed\"} 0",
            "stagegate_notifications_total{outcome=\"dropped\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
