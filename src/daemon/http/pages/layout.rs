//! The page shell shared by every status page — head, the live header, the paused and
//! MLflow banners — and the small pieces pages share: gate chips, verdict badges, times and
//! links. maud escapes every `(expr)`, so names, tags and messages are always text.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::store::EvaluationRow;

/// The daemon's live state, shown at the top of every page and refreshed by `status.js` from
/// `/status` (which carries the same figures).
pub struct Header {
    pub uptime_s: u64,
    pub paused: bool,
    pub reachable: bool,
    pub mlflow_error: Option<String>,
    pub mlflow_uri: String,
    pub poll_last: Option<String>,
    pub poll_next: Option<String>,
    pub webhooks: bool,
    pub depth: usize,
    pub in_flight: usize,
    pub delayed: usize,
    /// What `status.js` compares with `/status` to know the page is stale; see [`stamp`].
    pub stamp: String,
}

/// What a page was drawn from, for its freshness stamp.
pub struct Fresh {
    /// The newest evaluations, as `/status` lists them in `recent`.
    pub recent: Vec<EvaluationRow>,
    /// The newest audit row's id (`/status` `changes.audit`).
    pub audit: i64,
    /// The generation of what the daemon last saw of the models (`changes.registry`).
    pub seen: u64,
    /// Whether acting is paused (the cluster's mode, from the store).
    pub paused: bool,
}

/// The page's freshness stamp: each recent evaluation as `id.status.action`, then the audit
/// id and the seen generation, so a rollback or a champion moved by hand redraws the page as
/// a new evaluation does. `status.js` computes the same from `/status`; when the two differ
/// it fetches the page again and swaps its `<main>`.
pub fn stamp(fresh: &Fresh) -> String {
    let rows: Vec<String> = fresh
        .recent
        .iter()
        .map(|r| {
            format!(
                "{}.{}.{}",
                r.id,
                r.status,
                r.action.as_deref().unwrap_or("")
            )
        })
        .collect();
    format!("{}|{}|{}", rows.join(","), fresh.audit, fresh.seen)
}

/// `1h 02m 03s` (status.js formats uptime the same way).
pub fn uptime(s: u64) -> String {
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `N waiting, N running, N scheduled re-checks` (status.js writes the same).
pub fn queue(depth: usize, in_flight: usize, delayed: usize) -> String {
    format!("{depth} waiting, {in_flight} running, {delayed} scheduled re-checks")
}

pub fn page(title: &str, header: &Header, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · stagegate" }
                link rel="stylesheet" href=(super::CSS_PATH);
                // No favicon request either: the page asks nothing of anyone but the daemon.
                link rel="icon" href="data:,";
            }
            body data-stamp=(header.stamp) {
                (top(header))
                main { (main) }
                script src=(super::JS_PATH) defer {}
            }
        }
    }
}

fn top(h: &Header) -> Markup {
    let mlflow = if h.reachable {
        "reachable".to_string()
    } else {
        "unreachable".to_string()
    };
    html! {
        header.top {
            a.brand href="/" { "stagegate" }
            span.muted { "v" (env!("CARGO_PKG_VERSION")) }
            dl.facts {
                div { dt { "state" } dd #h-mode .state .paused[h.paused] { (if h.paused { "paused" } else { "running" }) } }
                div { dt { "MLflow" } dd #h-mlflow .down[!h.reachable] title=(h.mlflow_uri) { (mlflow) } }
                div { dt { "up" } dd #h-uptime { (uptime(h.uptime_s)) } }
                div { dt { "last poll" } dd #h-poll-last { (when(h.poll_last.as_deref())) } }
                div { dt { "next poll" } dd #h-poll-next { (when(h.poll_next.as_deref())) } }
                div { dt { "webhooks" } dd #h-webhooks { (if h.webhooks { "on" } else { "off" }) } }
                div { dt { "queue" } dd #h-queue { (queue(h.depth, h.in_flight, h.delayed)) } }
                div { dt { "updates" } dd #h-live { "every 2 s" } }
            }
        }
        div #b-paused .banner.paused hidden[!h.paused] role="status" {
            strong { "Paused." } " stagegate records verdicts but promotes and archives nothing until resumed."
        }
        div #b-mlflow .banner.down hidden[h.reachable] role="status" {
            strong { "MLflow unreachable." } " "
            span #b-mlflow-why { (h.mlflow_error.as_deref().unwrap_or("not reached yet")) }
            " — this page shows what stagegate recorded until then."
        }
    }
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SSZ` (UTC), or a dash.
pub fn when(t: Option<&str>) -> Markup {
    match t {
        Some(t) => {
            let short = match (t.get(..10), t.get(11..19)) {
                (Some(d), Some(hms)) => format!("{d} {hms}Z"),
                _ => t.to_string(),
            };
            html! { time datetime=(t) { (short) } }
        }
        None => html! { "—" },
    }
}

/// A path segment, percent-encoded (a model name may hold `/`, `?`, `#` or spaces).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn model_href(model: &str) -> String {
    format!("/models/{}", seg(model))
}

pub fn evaluation_href(id: i64) -> String {
    format!("/evaluations/{id}")
}

/// Whether a failed verdict failed only because a comparison could not tell (a champion
/// comparison whose interval straddles the bound, counted as a failure by
/// `inconclusive = "fail"`): every enforced gate that did not pass is an inconclusive one.
pub fn inconclusive(row: &EvaluationRow) -> bool {
    let gates = row.gates.as_array().map(Vec::as_slice).unwrap_or_default();
    let blocking: Vec<&Value> = gates
        .iter()
        .filter(|g| g["enforced"] == true && g["outcome"] != "pass")
        .collect();
    row.verdict.as_deref() == Some("failed")
        && !blocking.is_empty()
        && blocking.iter().all(|g| g["inconclusive"] == true)
}

/// The verdict as a badge: a symbol and a word, never colour alone.
pub fn verdict(row: &EvaluationRow) -> Markup {
    let (class, text) = match (row.status.as_str(), row.verdict.as_deref()) {
        ("running", _) => ("running", "… evaluating"),
        ("interrupted", _) => ("error", "! interrupted"),
        ("failed", _) => ("error", "! could not evaluate"),
        (_, Some("passed")) => ("pass", "✓ passed"),
        (_, Some("failed")) if inconclusive(row) => ("inconclusive", "? inconclusive"),
        (_, Some("failed")) => ("fail", "✗ failed"),
        _ => ("error", "! error"),
    };
    html! { span class={ "badge " (class) } { (text) } }
}

/// One gate result as a chip: symbol, name and (for shadow or inconclusive) a word; the
/// message on hover and to screen readers.
pub fn chip(g: &Value) -> Markup {
    let name = g["name"].as_str().unwrap_or("?");
    let message = g["message"].as_str().unwrap_or("");
    let shadow = g["enforced"] == false;
    let (class, symbol) = match g["outcome"].as_str() {
        Some("pass") => ("pass", "✓"),
        Some("fail") if g["inconclusive"] == true => ("inconclusive", "?"),
        Some("fail") => ("fail", "✗"),
        _ => ("error", "!"),
    };
    let note = match (class, shadow) {
        ("pass", true) => "shadow",
        ("pass", false) => "",
        (_, true) => "would block",
        ("inconclusive", false) => "inconclusive",
        ("error", false) => "error",
        _ => "",
    };
    html! {
        span class={ "chip " (class) @if shadow { " shadow" } } title=(message) aria-label={ (name) ": " (g["outcome"].as_str().unwrap_or("error")) @if shadow { " (shadow)" } ". " (message) } data-gate=(name) {
            (symbol) " " (name)
            @if !note.is_empty() { " · " em { (note) } }
        }
    }
}

pub fn chips(row: &EvaluationRow) -> Markup {
    html! {
        span.chips {
            @for g in row.gates.as_array().map(Vec::as_slice).unwrap_or_default() { (chip(g)) " " }
            @if let Some(e) = &row.error { span.chip.error title=(e) { "! " (e) } }
        }
    }
}

/// What was done with the version, in words.
pub fn action(row: &EvaluationRow) -> Markup {
    html! {
        @match row.action.as_deref() {
            Some(a) => span class={ "action " (action_class(a)) } { (a) },
            None => span.muted { "—" },
        }
    }
}

fn action_class(a: &str) -> &'static str {
    match a {
        "promoted" => "promoted",
        "archived" | "kept" => "held",
        "would-promote" => "would",
        _ => "other",
    }
}

/// The evaluation history as a table (home page and model page).
pub fn history(rows: &[EvaluationRow], with_model: bool) -> Markup {
    html! {
        div.scroll {
            table.history {
                thead { tr {
                    @if with_model { th { "model" } }
                    th { "version" } th { "verdict" } th { "action" } th { "trigger" } th { "when" } th { "gates" }
                } }
                tbody {
                    @for r in rows {
                        tr data-id=(r.id) {
                            @if with_model { td { a href=(model_href(&r.model)) { (r.model) } } }
                            td { a href=(evaluation_href(r.id)) { "v" (r.version) } }
                            td { (verdict(r)) }
                            td { (action(r)) }
                            td { (r.trigger) }
                            td { (when(Some(&r.started_at))) }
                            td { (chips(r)) }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No evaluations yet." } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_times_read_well() {
        assert_eq!(seg("fraud-model_1.x"), "fraud-model_1.x");
        assert_eq!(seg("a/b <c>"), "a%2Fb%20%3Cc%3E");
        assert_eq!(uptime(3723), "1h 02m 03s");
        assert_eq!(uptime(61), "1m 01s");
        assert_eq!(
            when(Some("2026-11-01T12:00:03.123Z")).into_string(),
            r#"<time datetime="2026-11-01T12:00:03.123Z">2026-11-01 12:00:03Z</time>"#
        );
    }

    #[test]
    fn a_shadow_failure_says_would_block_and_escapes_its_message() {
        let g = serde_json::json!({"name": "<b>", "outcome": "fail", "enforced": false,
                                    "message": "x < 1 & \"y\""});
        let html = chip(&g).into_string();
        assert!(html.contains("would block"), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(
            html.contains(r#"title="x &lt; 1 &amp; &quot;y&quot;""#),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
    }
}
