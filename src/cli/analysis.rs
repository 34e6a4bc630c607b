//! `stagegate analysis list|show|end`: a running daemon's post-promotion analyses, through its
//! API (`/v1/analyses`), and a person's way to end one early as passed or failed. [`Daemon`]
//! is how every command that talks to a running daemon calls it (`status` too).

use super::output::{cell as s, table};
use super::stdout::{out, outln};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// Where the daemon answers, and the API token a mutating call sends.
pub struct Daemon {
    pub url: String,
    pub token: Option<String>,
}

impl Daemon {
    fn http() -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    /// Send `req` and return the JSON it answers; a non-2xx answer is an error with the
    /// daemon's own message.
    async fn call(&self, req: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("no stagegate answering at {url}"))?;
        let status = resp.status();
        let doc: Value = resp
            .json()
            .await
            .with_context(|| format!("{url} did not answer JSON"))?;
        if !status.is_success() {
            let msg = doc["error"]
                .as_str()
                .map_or(doc.to_string(), str::to_string);
            anyhow::bail!("{url} answered {status}: {msg}");
        }
        Ok(doc)
    }

    fn route(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    /// `GET path`'s JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = self.route(path);
        self.call(Daemon::http()?.get(&url), &url).await
    }
}

pub async fn list(d: &Daemon, model: Option<&str>, limit: u32, json: bool) -> anyhow::Result<u8> {
    let url = d.route("/v1/analyses");
    let mut query = vec![("limit", limit.to_string())];
    if let Some(m) = model {
        query.push(("model", m.to_string()));
    }
    let doc = d
        .call(Daemon::http()?.get(&url).query(&query), &url)
        .await?;
    if json {
        outln!("{doc}")?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = doc["analyses"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            vec![
                s(&a["id"]),
                s(&a["model"]),
                format!("v{}", s(&a["version"])),
                s(&a["target"]),
                s(&a["step"]),
                s(&a["started_at"]),
                outcome(a),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!("no analyses")?;
    } else {
        let header = [
            "ID", "MODEL", "VERSION", "TARGET", "ROUNDS", "STARTED", "OUTCOME",
        ];
        out!("{}", table(&header, &rows))?;
    }
    Ok(0)
}

pub async fn show(d: &Daemon, id: i64, json: bool) -> anyhow::Result<u8> {
    let a = d.get(&format!("/v1/analyses/{id}")).await?;
    if json {
        outln!("{a}")?;
        return Ok(0);
    }
    outln!(
        "analysis {id}: {} v{} ({}, replaced {}), {}",
        s(&a["model"]),
        s(&a["version"]),
        s(&a["target"]),
        a["previous"]
            .as_str()
            .map_or("nothing".into(), |p| format!("v{p}")),
        outcome(&a)
    )?;
    let mut rows = Vec::new();
    if let Some(metrics) = a["measurements"].as_object() {
        for (metric, points) in metrics {
            for p in points.as_array().map(Vec::as_slice).unwrap_or_default() {
                rows.push(vec![
                    metric.clone(),
                    s(&p["at"]),
                    s(&p["outcome"]),
                    s(&p["value"]),
                    s(&p["note"]),
                ]);
            }
        }
    }
    out!(
        "{}",
        table(&["METRIC", "AT", "OUTCOME", "VALUE", "NOTE"], &rows)
    )?;
    Ok(0)
}

pub async fn end(d: &Daemon, id: i64, outcome: &str, reason: Option<&str>) -> anyhow::Result<u8> {
    let url = d.route(&format!("/v1/analyses/{id}"));
    let body = json!({"outcome": outcome, "reason": reason});
    let doc = d.call(Daemon::http()?.post(&url).json(&body), &url).await?;
    outln!(
        "analysis {id} of {} v{}: {}: {}",
        s(&doc["model"]),
        s(&doc["version"]),
        s(&doc["status"]),
        s(&doc["reason"])
    )?;
    Ok(0)
}

/// `running`, or `failed: <why>`, as the version's tag says it.
fn outcome(a: &Value) -> String {
    match a["reason"].as_str() {
        Some(r) if !r.is_empty() => format!("{}: {r}", s(&a["status"])),
        _ => s(&a["status"]),
    }
}
