//! `[[notify]]`: verdicts and actions posted as JSON to chat or any HTTP endpoint. The body is
//! a Slack incoming-webhook message (`text`) with the structured fields beside it, which other
//! receivers can read. Fire and forget: a failed notification is logged, never retried, and
//! never holds up a reconcile.

use std::time::Duration;

use serde_json::json;

use crate::config::NotifyEvent;
use crate::daemon::App;
use crate::evaluation::{Evaluation, Verdict};

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

fn send(app: &App, event: NotifyEvent, text: String, fields: serde_json::Value) {
    let live = app.live();
    let targets: Vec<String> = live
        .loaded
        .config
        .notify
        .iter()
        .filter(|n| n.on.contains(&event))
        .map(|n| n.url.clone())
        .collect();
    if targets.is_empty() {
        return;
    }
    let mut body = json!({"text": text, "event": event});
    if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
        b.extend(f.clone());
    }
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build();
        let Ok(http) = http else { return };
        for url in targets {
            match http.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "notification refused"),
                Err(e) => tracing::warn!(error = %e, "notification failed"),
            }
        }
    });
}
