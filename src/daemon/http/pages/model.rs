//! `GET /models/{name}`: a chart per threshold gate across versions, the post-promotion
//! analyses with a chart per metric, the evaluation history a page at a time, and the audit log.

use maud::{Markup, html};

use super::chart::chart;
use super::home::{candidates, champion};
use super::layout::{self, model_href, seg, when};
use super::series::Series;
use crate::config::analysis::Analysis;
use crate::daemon::Glance;
use crate::store::{AnalysisRow, AuditRow, EvaluationRow};

pub struct ModelPage {
    pub name: String,
    pub policy: Option<String>,
    pub glance: Option<Glance>,
    pub series: Vec<Series>,
    /// The most versions a chart shows (the newest ones).
    pub charted_at_most: usize,
    /// This page of history, newest first.
    pub history: Vec<EvaluationRow>,
    pub total: i64,
    /// Whether this page starts below the newest row (`?before=` was given).
    pub paged: bool,
    /// Whether older rows exist beyond this page.
    pub more: bool,
    pub audit: Vec<AuditRow>,
    /// Its post-promotion analyses, newest first, and the policy's analysis now.
    pub analyses: Vec<AnalysisRow>,
    pub analysis: Option<Analysis>,
    /// The MLflow UI page of the model, when the tracking URI is a web address.
    pub mlflow_link: Option<String>,
}

pub fn render(p: &ModelPage) -> Markup {
    let href = model_href(&p.name);
    html! {
        nav.crumbs { a href="/" { "status" } " / model" }
        h1.name { (p.name) }
        dl.meta {
            div { dt { "champion" } dd { (champion(p.glance.as_ref())) } }
            div { dt { "candidates" } dd { (candidates(p.glance.as_ref())) } }
            div { dt { "policy" } dd { (p.policy.as_deref().unwrap_or("none matches now")) } }
            div { dt { "evaluations" } dd { (p.total) } }
            @if let Some(l) = &p.mlflow_link { div { dt { "MLflow" } dd { a href=(l) rel="noreferrer" { "open in the MLflow UI" } } } }
        }
        section #charts {
            h2 { "Thresholds across versions" }
            @if p.series.is_empty() {
                p.muted { "No threshold gate has a recorded value yet." }
            }
            @if p.series.iter().any(|s| s.points.len() >= p.charted_at_most) {
                p.muted { "The newest " (p.charted_at_most) " versions; the history below has them all." }
            }
            div.charts { @for s in &p.series { (chart(s)) } }
        }
        @if !p.analyses.is_empty() || p.analysis.is_some() {
            (super::analyses::section(&p.analyses, p.analysis.as_ref()))
        }
        section #history {
            h2 { "History" }
            (layout::history(&p.history, false))
            nav.pager {
                @if p.paged { a href=(href) { "← newest" } }
                @if p.more {
                    @if let Some(last) = p.history.last() {
                        a rel="next" href={ (href) "?before=" (last.id) } { "older →" }
                    }
                }
            }
        }
        section #audit {
            h2 { "Audit log" }
            @if p.audit.is_empty() {
                p.muted { "Nothing done to this model yet." }
            } @else {
                div.scroll {
                    table.audit {
                        thead { tr { th { "when" } th { "version" } th { "action" } th { "detail" } } }
                        tbody {
                            @for a in &p.audit {
                                tr {
                                    td { (when(Some(&a.at))) }
                                    td { @if let Some(v) = &a.version { "v" (v) } }
                                    td { (a.action) }
                                    td { (a.detail.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The MLflow UI page of a model or one of its versions, from the tracking URI as shown
/// (credentials removed); `None` for a URI that is no web address.
pub fn mlflow_link(shown_uri: &str, model: &str, version: Option<&str>) -> Option<String> {
    let base = shown_uri.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('@') {
        return None;
    }
    Some(match version {
        Some(v) => format!("{base}/#/models/{}/versions/{}", seg(model), seg(v)),
        None => format!("{base}/#/models/{}", seg(model)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_mlflow_only_for_web_addresses_without_credentials() {
        assert_eq!(
            mlflow_link("http://127.0.0.1:5000/", "a b", Some("3")).as_deref(),
            Some("http://127.0.0.1:5000/#/models/a%20b/versions/3")
        );
        assert_eq!(mlflow_link("databricks", "m", None), None);
        assert_eq!(mlflow_link("https://u:p@host", "m", None), None);
    }
}
