//! `stagegate status [--url URL]`: a running daemon's `/status`, readable.

use super::stdout::{out, outln};
use std::time::Duration;

use serde_json::Value;

use super::output::{cell as s, table};

pub async fn run(url: &str, json: bool) -> anyhow::Result<u8> {
    let daemon = super::analysis::Daemon {
        url: url.to_string(),
        token: None,
    };
    let doc = daemon.get("/status").await?;
    if json {
        outln!("{doc}")?;
    } else {
        out!("{}", render(&doc))?;
    }
    Ok(0)
}

/// The whole document, one section a line or two, then the recent evaluations as a table.
pub fn render(d: &Value) -> String {
    [
        head(d),
        poll(&d["poll"]),
        counts(d),
        webhooks(&d["webhooks"]),
        cluster(d),
        recent(&d["recent"]),
    ]
    .concat()
}

/// Version, mode, uptime, config file; MLflow and whether it answers.
fn head(d: &Value) -> String {
    let up = humantime::format_duration(Duration::from_secs(d["uptime_s"].as_u64().unwrap_or(0)));
    let reach = if d["mlflow"]["reachable"].as_bool() == Some(true) {
        "reachable".to_string()
    } else {
        format!("UNREACHABLE ({})", s(&d["mlflow"]["last_error"]))
    };
    format!(
        "stagegate {}  {}  up {}  config {}\nmlflow    {}  {reach}\n",
        s(&d["version"]),
        s(&d["mode"]),
        up,
        s(&d["config"]),
        s(&d["mlflow"]["tracking_uri"])
    )
}

fn poll(p: &Value) -> String {
    let mut out = if p["here"].as_bool() == Some(false) && p["completed"].as_u64() == Some(0) {
        format!(
            "poll      \"{}\"  run by another replica\n",
            s(&p["schedule"])
        )
    } else {
        format!(
            "poll      \"{}\"  last {} ({} ms, {} models, {} queued)  next {}\n",
            s(&p["schedule"]),
            s(&p["last_started"]),
            s(&p["last_duration_ms"]),
            s(&p["last_models"]),
            s(&p["last_enqueued"]),
            s(&p["next"])
        )
    };
    if !p["last_error"].is_null() {
        out.push_str(&format!(
            "          last poll failed: {}\n",
            s(&p["last_error"])
        ));
    }
    out
}

/// The queue and the totals.
fn counts(d: &Value) -> String {
    let (q, t) = (&d["queue"], &d["totals"]);
    format!(
        "queue     {} waiting, {} running, {} scheduled re-checks ({} workers)\n\
         totals    {} evaluations: {} passed, {} failed, {} error; {} promotions\n",
        s(&q["depth"]),
        s(&q["in_flight"]),
        s(&q["delayed"]),
        s(&q["workers"]),
        s(&t["evaluations"]),
        s(&t["passed"]),
        s(&t["failed"]),
        s(&t["error"]),
        s(&t["promotions"])
    )
}

/// Each source by name; a daemon from before sources existed has only MLflow's fields.
fn webhooks(w: &Value) -> String {
    let state = |w: &Value| {
        if w["enabled"].as_bool() == Some(true) {
            format!("on ({} secrets)", s(&w["secrets"]))
        } else {
            "off (no secrets)".into()
        }
    };
    let webhooks = match w["sources"].as_object() {
        Some(sources) => sources
            .iter()
            .map(|(name, w)| format!("{name} {}", state(w)))
            .collect::<Vec<_>>()
            .join(", "),
        None => state(w),
    };
    format!("webhooks  {webhooks}\n")
}

/// The store and the replicas sharing it (a daemon from before the store seam has neither).
fn cluster(d: &Value) -> String {
    let mut out = String::new();
    if let Some(backend) = d["store"]["backend"].as_str() {
        let reach = match d["store"]["reachable"].as_bool() {
            Some(false) => format!("UNREACHABLE: {}", s(&d["store"]["last_error"])),
            _ => "reachable".into(),
        };
        out.push_str(&format!("store     {backend}  {reach}\n"));
    }
    if let Some(replicas) = d["replicas"].as_array() {
        let me = s(&d["replica"]["id"]);
        let ids: Vec<String> = replicas
            .iter()
            .map(|r| {
                let id = s(&r["id"]);
                if id == me {
                    format!("{id} (this one)")
                } else {
                    id
                }
            })
            .collect();
        out.push_str(&format!("replicas  {}: {}\n", ids.len(), ids.join(", ")));
    }
    out
}

fn recent(recent: &Value) -> String {
    let rows: Vec<Vec<String>> = recent
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let gates = e["gates"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .map(|g| format!("{}:{}", s(&g["name"]), s(&g["outcome"])))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            vec![
                s(&e["id"]),
                s(&e["model"]),
                format!("v{}", s(&e["version"])),
                s(&e["verdict"]),
                s(&e["action"]),
                s(&e["trigger"]),
                s(&e["started_at"]),
                gates,
            ]
        })
        .collect();
    if rows.is_empty() {
        return "\nno evaluations yet\n".into();
    }
    let header = [
        "ID", "MODEL", "VERSION", "VERDICT", "ACTION", "TRIGGER", "STARTED", "GATES",
    ];
    format!("\n{}", table(&header, &rows))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn each_webhook_source_is_shown_by_name_and_an_older_daemon_as_before() {
        let hooks = json!({"enabled": true, "secrets": 2, "sources": {
            "mlflow": {"enabled": true, "secrets": 2}, "databricks": {"enabled": false, "secrets": 0}}});
        let out = super::render(&json!({"webhooks": hooks}));
        assert!(
            out.contains("webhooks  databricks off (no secrets), mlflow on (2 secrets)"),
            "{out}"
        );
        let out = super::render(&json!({"webhooks": {"enabled": true, "secrets": 1}}));
        assert!(out.contains("webhooks  on (1 secrets)"), "{out}");
    }
}
