//! `[[notify]]`: verdicts and actions posted as JSON to chat or any HTTP endpoint. The body is
//! a Slack incoming-webhook message (`text`) with the structured fields beside it, which other
//! receivers can read. A reconcile only queues a message: sending, and retrying on 429 or
//! 5xx with backoff (bounded), happen on their own tasks, so a slow or hanging receiver never
//! holds one up. The URL never appears in a log line or an error.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;

use crate::backoff::full_jitter;
use crate::config::NotifyEvent;
use crate::daemon::App;
use crate::daemon::metrics::Metrics;
use crate::evaluation::Evaluation;
use crate::verdict::Verdict;

pub fn verdict(app: &App, e: &Evaluation) {
    let event = match e.verdict {
        Verdict::Passed => NotifyEvent::Passed,
        Verdict::Failed => NotifyEvent::Failed,
        Verdict::Error => NotifyEvent::Error,
    };
    let blocking: Vec<String> = e
        .gates
        .iter()
        .filter(|g| g.blocks())
        .map(|g| format!("{}: {}", g.name, g.message))
        .collect();
    let mut text = format!(
        "stagegate: {} v{} {} (policy {})",
        e.model,
        e.version,
        e.verdict.as_str(),
        e.policy
    );
    if !blocking.is_empty() {
        text.push_str(&format!(" — {}", blocking.join("; ")));
    }
    send(
        app,
        event,
        text,
        json!({"model": e.model, "version": e.version, "verdict": e.verdict, "policy": e.policy, "gates": e.gates}),
    );
}

pub fn action(app: &App, model: &str, version: &str, action: &str) {
    let event = match action {
        "promoted" => NotifyEvent::Promoted,
        "would-promote" => NotifyEvent::WouldPromote,
        "archived" => NotifyEvent::Archived,
        "superseded" => NotifyEvent::Superseded,
        _ => return,
    };
    send(
        app,
        event,
        format!("stagegate: {model} v{version} {action}"),
        json!({"model": model, "version": version, "action": action}),
    );
}

pub fn bypass(app: &App, model: &str, version: &str, note: &str) {
    send(
        app,
        NotifyEvent::Bypass,
        format!("stagegate: {model} v{version}: {note}"),
        json!({"model": model, "version": version, "bypass": note}),
    );
}

pub fn rollback(app: &App, model: &str, version: &str, note: &str) {
    send(
        app,
        NotifyEvent::Rollback,
        format!("stagegate: {model} v{version}: {note}"),
        json!({"model": model, "version": version, "rollback": note}),
    );
}

/// An analysis ended: `status` is its outcome, `outcome` the words of the tag.
pub fn analysis(
    app: &App,
    model: &str,
    version: &str,
    status: &str,
    outcome: &str,
    measurements: &serde_json::Value,
) {
    send(
        app,
        NotifyEvent::Analysis,
        format!("stagegate: {model} v{version} analysis {outcome}"),
        json!({"model": model, "version": version, "analysis": status, "outcome": outcome, "measurements": measurements}),
    );
}

fn send(app: &App, event: NotifyEvent, text: String, fields: serde_json::Value) {
    let live = app.live();
    let targets: Vec<(usize, String)> = live
        .loaded
        .config
        .notify
        .iter()
        .enumerate()
        .filter(|(_, n)| n.on.contains(&event))
        .map(|(i, n)| (i, n.url.clone()))
        .collect();
    let mut body = json!({"text": text, "event": event});
    if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
        b.extend(f.clone());
    }
    for (index, url) in targets {
        app.notifier
            .post(index, url, body.clone(), app.metrics.clone());
    }
}

/// The daemon's one notification sender: a shared HTTP client (one connection pool for
/// every message) and a bound on the messages in flight, so that a receiver that hangs costs
/// at most that many waiting tasks, never a reconcile's time.
pub struct Notifier {
    http: Option<reqwest::Client>,
    pending: Arc<Semaphore>,
    retry: Retry,
}

/// How a refused or failed message is retried: on 429, 5xx and transport errors only.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            base: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Messages waiting or being sent at once; beyond this, new ones are dropped (and counted).
const MAX_PENDING: usize = 1000;

impl Notifier {
    pub fn new(retry: Retry) -> Notifier {
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .user_agent(concat!("stagegate/", env!("CARGO_PKG_VERSION")))
            .build();
        if let Err(e) = &http {
            tracing::error!(error = %e.without_url_text(), "notifications disabled: no HTTP client");
        }
        Notifier {
            http: http.ok(),
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
            retry,
        }
    }

    /// Queue `body` for the `index`-th `[[notify]]` target; returns at once. The URL is a
    /// secret (a Slack webhook URL is its own key): logs name the target by its index.
    pub fn post(&self, index: usize, url: String, body: serde_json::Value, metrics: Arc<Metrics>) {
        let Some(http) = self.http.clone() else {
            return;
        };
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::warn!(
                target_index = index,
                "notification dropped: {MAX_PENDING} already pending"
            );
            metrics.notification("dropped");
            return;
        };
        let retry = self.retry;
        tokio::spawn(async move {
            let outcome = deliver(&http, index, &url, &body, retry).await;
            metrics.notification(outcome);
            drop(permit);
        });
    }
}

async fn deliver(
    http: &reqwest::Client,
    index: usize,
    url: &str,
    body: &serde_json::Value,
    retry: Retry,
) -> &'static str {
    for attempt in 0..retry.attempts.max(1) {
        let last = attempt + 1 >= retry.attempts.max(1);
        let why = match http.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return "sent",
            Ok(r) => {
                let status = r.status();
                if !(status.as_u16() == 429 || status.is_server_error()) {
                    tracing::warn!(
                        target_index = index,
                        status = status.as_u16(),
                        "notification refused"
                    );
                    return "failed";
                }
                format!("status {}", status.as_u16())
            }
            Err(e) => e.without_url_text(),
        };
        if last {
            tracing::warn!(target_index = index, attempts = attempt + 1, reason = %why, "notification failed; giving up");
            return "failed";
        }
        let delay = full_jitter(retry.base, retry.base * 16, attempt);
        tracing::debug!(target_index = index, attempt = attempt + 1, reason = %why, ?delay, "notification failed; retrying");
        tokio::time::sleep(delay).await;
    }
    "failed"
}

/// reqwest's errors name the URL; a notification URL is a secret.
trait WithoutUrl {
    fn without_url_text(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_text(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text.replace(u.as_str(), "<notify url>"),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A receiver on loopback that answers `statuses` in turn (then 200), counting requests.
    async fn receiver(statuses: &'static [u16]) -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        let app = axum::Router::new().route(
            "/services/T000/B000/very-secret",
            axum::routing::post(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let code = statuses.get(n).copied().unwrap_or(200);
                async move { axum::http::StatusCode::from_u16(code).unwrap() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/services/T000/B000/very-secret",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn quick() -> Retry {
        Retry {
            attempts: 4,
            base: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn a_429_and_a_503_are_retried_until_the_message_is_taken() {
        let (url, seen) = receiver(&[429, 503]).await;
        let got = deliver(&client(), 0, &url, &json!({"text": "x"}), quick()).await;
        assert_eq!((got, seen.load(Ordering::SeqCst)), ("sent", 3));
    }

    #[tokio::test]
    async fn a_400_is_not_retried_and_retries_are_bounded() {
        let (url, seen) = receiver(&[400]).await;
        let got = deliver(&client(), 0, &url, &json!({}), quick()).await;
        assert_eq!((got, seen.load(Ordering::SeqCst)), ("failed", 1));
        let (url, seen) = receiver(&[500, 500, 500, 500, 500, 500]).await;
        let got = deliver(&client(), 0, &url, &json!({}), quick()).await;
        assert_eq!((got, seen.load(Ordering::SeqCst)), ("failed", 4));
    }

    #[tokio::test]
    async fn transport_errors_never_show_the_url() {
        // Nothing listens on port 9 of loopback.
        let e = client()
            .post("http://127.0.0.1:9/services/T000/B000/very-secret")
            .send()
            .await
            .unwrap_err();
        let text = e.without_url_text();
        assert!(!text.contains("very-secret"), "{text}");
        assert!(!e.to_string().is_empty());
    }
}
