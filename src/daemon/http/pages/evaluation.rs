//! `GET /evaluations/{id}`: one evaluation's report as a page — the gate table, serving
//! figures, datasets (name, rows, sha256), per-slice scores and the champion comparison's
//! interval against `-max_drop`.

use maud::{Markup, html};
use serde_json::Value;

use super::chart::interval;
use super::layout::{self, chip, model_href, verdict, when};
use crate::gates::num;
use crate::store::EvaluationRow;

pub struct EvaluationPage {
    pub row: EvaluationRow,
    pub mlflow_link: Option<String>,
}

pub fn render(p: &EvaluationPage) -> Markup {
    let r = &p.row;
    let gates = r.gates.as_array().map(Vec::as_slice).unwrap_or_default();
    html! {
        nav.crumbs { a href="/" { "status" } " / " a href=(model_href(&r.model)) { (r.model) } " / evaluation " (r.id) }
        h1.name { (r.model) " v" (r.version) " " (verdict(r)) }
        dl.meta {
            div { dt { "action" } dd { (layout::action(r)) } }
            div { dt { "policy" } dd { (r.policy) " " code.muted { (r.policy_digest) } } }
            div { dt { "trigger" } dd { (r.trigger) } }
            div { dt { "started" } dd { (when(Some(&r.started_at))) } }
            div { dt { "took" } dd { @if let Some(ms) = r.duration_ms { (ms) " ms" } @else { "—" } } }
            div { dt { "champion" } dd { @if let Some(c) = &r.champion { "v" (c) } @else { "none" } } }
            @if let Some(l) = &p.mlflow_link { div { dt { "MLflow" } dd { a href=(l) rel="noreferrer" { "this version in the MLflow UI" } } } }
        }
        @if let Some(e) = &r.error { p.banner.down { strong { "Could not evaluate: " } (e) } }
        section #gates {
            h2 { "Gates" }
            div.scroll {
                table.gates {
                    thead { tr { th { "gate" } th { "type" } th { "result" } th { "observed" } th { "threshold" } th { "message" } th { "time" } } }
                    tbody {
                        @for g in gates {
                            tr {
                                td { (g["name"].as_str().unwrap_or("?")) }
                                td { (g["type"].as_str().unwrap_or("")) @if g["enforced"] == false { br; em { "shadow" } } }
                                td { (chip(g)) }
                                td.json { (compact(&g["observed"])) }
                                td.json { (compact(&g["threshold"])) }
                                td.msg { (g["message"].as_str().unwrap_or("")) }
                                td.num { (g["duration_ms"].as_u64().unwrap_or(0)) " ms"
                                    @if g["attempts"].as_u64().unwrap_or(1) > 1 { br; (g["attempts"]) " attempts" } }
                            }
                        }
                    }
                }
            }
        }
        section #serving { h2 { "Serving" } (serving(&r.serving)) }
        @for g in gates.iter().filter(|g| g["type"] == "dataset") { (dataset(g)) }
    }
}

fn serving(s: &Value) -> Markup {
    if s.is_null() {
        return html! { p.muted { "No gate served the model." } };
    }
    html! {
        dl.meta {
            div { dt { "servers started" } dd { (shown(&s["servers_started"], "")) } }
            div { dt { "start-up" } dd { (shown(&s["startup_ms"], " ms")) } }
            div { dt { "requests" } dd { (shown(&s["requests"], "")) } }
            div { dt { "request time" } dd { (shown(&s["requests_ms"], " ms")) } }
        }
    }
}

/// A recorded figure with its unit, or a dash when the report has none (never `null`).
fn shown(v: &Value, unit: &str) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => format!("{s}{unit}"),
        v => format!("{v}{unit}"),
    }
}

fn dataset(g: &Value) -> Markup {
    let name = g["name"].as_str().unwrap_or("?");
    let d = &g["observed"]["dataset"];
    let file = d["path"]
        .as_str()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string());
    let slices = g["observed"]["slices"].as_object();
    let vs = &g["observed"]["vs_champion"];
    html! {
        section.dataset {
            h2 { "Dataset gate " (name) }
            @if let Some(file) = file {
                dl.meta {
                    div { dt { "dataset" } dd { span title=(d["path"].as_str().unwrap_or("")) { (file) } } }
                    div { dt { "rows" } dd { (shown(&d["rows"], "")) } }
                    div { dt { "sha256" } dd { code.hash { (d["sha256"].as_str().unwrap_or("")) } } }
                }
            }
            @if let Some(slices) = slices {
                @let metrics = slice_metrics(slices);
                h3 { "Slices" }
                div.scroll {
                    table.slices {
                        thead { tr { th { "slice" } th { "rows" } th { "judged" } @for m in &metrics { th { (m) } } } }
                        tbody {
                            @for (k, s) in slices {
                                tr {
                                    td { (k) } td.num { (s["rows"]) }
                                    td { (if s["judged"] == true { "yes" } else { "no (too few rows)" }) }
                                    @for m in &metrics { td.num { (s[m.as_str()].as_f64().map(num).unwrap_or_else(|| "—".into())) } }
                                }
                            }
                        }
                    }
                }
            }
            @if let (Some(low), Some(diff), Some(high)) = (vs["low"].as_f64(), vs["difference"].as_f64(), vs["high"].as_f64()) {
                @let max_drop = g["threshold"]["vs_champion"]["max_drop"].as_f64().unwrap_or(0.0);
                h3 { "Against the champion v" (vs["champion"].as_str().unwrap_or("?")) }
                p {
                    (vs["metric"].as_str().unwrap_or("")) " difference, signed so that positive means the candidate is better, " (num(diff))
                    ", interval " (num(low)) " .. " (num(high)) "; it must lie above −max_drop " (num(-max_drop)) "."
                }
                (interval(low, diff, high, max_drop))
            }
        }
    }
}

/// The metric columns of a slice table, in first-seen order.
fn slice_metrics(slices: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in slices.values() {
        for k in s.as_object().into_iter().flat_map(|o| o.keys()) {
            if k != "rows" && k != "judged" && !out.contains(k) {
                out.push(k.clone());
            }
        }
    }
    out
}

/// A gate's observed value or threshold in one readable line: `key=value` for the scalars
/// of an object, nested objects shown by their keys (their detail has its own section).
pub fn compact(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Number(n) => n.as_f64().map(num).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => a.iter().map(compact).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::Object(inner) if inner.values().all(|x| !x.is_object()) => {
                    format!("{k}: {{{}}}", compact(v))
                }
                Value::Object(_) => format!("{k}: …"),
                _ => format!("{k}={}", compact(v)),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_reads_as_a_line() {
        let v = serde_json::json!({"p99_ms": 12.5, "max_ms": null, "metrics": {"accuracy": 0.9},
                                   "slices": {"a": {"rows": 3}}});
        assert_eq!(
            compact(&v),
            "metrics: {accuracy=0.9}, p99_ms=12.5, slices: …"
        );
    }
}
