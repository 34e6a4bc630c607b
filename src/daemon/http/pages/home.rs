//! `GET /`: every model at a glance (champion, candidates, newest verdict), the analyses after
//! promotion, the recent evaluations with their gate chips, and the threshold charts of the most recently evaluated
//! models.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::chart::chart;
use super::layout::{self, evaluation_href, model_href, verdict};
use super::series::Series;
use crate::daemon::Glance;
use crate::store::{AnalysisRow, EvaluationRow, ModelRow, Totals};

pub struct Home {
    pub models: Vec<ModelRow>,
    /// Each model's newest evaluation, by name.
    pub latest: BTreeMap<String, EvaluationRow>,
    pub seen: BTreeMap<String, Glance>,
    pub recent: Vec<EvaluationRow>,
    pub totals: Totals,
    /// The most recently evaluated models' threshold charts (a model with none is left out).
    pub charts: Vec<(String, Vec<Series>)>,
    /// How many versions each of those charts shows at most.
    pub chart_versions: usize,
    /// Running analyses and the most recent ended ones.
    pub analyses: Vec<AnalysisRow>,
}

pub fn render(h: &Home) -> Markup {
    // Models the registry showed but the store never evaluated are listed too.
    let mut names: Vec<&str> = h.models.iter().map(|m| m.model.as_str()).collect();
    names.extend(h.seen.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    let count = |name: &str| {
        h.models
            .iter()
            .find(|m| m.model == name)
            .map_or(0, |m| m.evaluations)
    };
    let t = &h.totals;
    html! {
        section {
            h1 { "Models" }
            p.muted #totals {
                (t.evaluations) " evaluations: " (t.passed) " passed, " (t.failed) " failed, "
                (t.error) " errors; " (t.promotions) " promotions"
            }
            div.scroll {
                table.models {
                    thead { tr { th { "model" } th { "champion" } th { "candidates" } th { "newest evaluation" } th { "evaluations" } } }
                    tbody {
                        @for name in &names {
                            @let glance = h.seen.get(*name);
                            tr {
                                td { a href=(model_href(name)) { (name) } }
                                td { (champion(glance)) }
                                td { (candidates(glance)) }
                                td {
                                    @if let Some(r) = h.latest.get(*name) {
                                        a href=(evaluation_href(r.id)) { "v" (r.version) } " " (verdict(r)) " " (layout::action(r))
                                    } @else { span.muted { "none yet" } }
                                }
                                td.num { (count(name)) }
                            }
                        }
                    }
                }
            }
            @if names.is_empty() { p.muted { "No model seen yet: the first poll or webhook brings them." } }
        }
        @if !h.analyses.is_empty() { (super::analyses::table(&h.analyses)) }
        section {
            h2 { "Recent evaluations" }
            (layout::history(&h.recent, true))
        }
        @if !h.charts.is_empty() {
            section #thresholds {
                h2 { "Thresholds across versions" }
                p.muted {
                    "The most recently evaluated models, their newest " (h.chart_versions)
                    " versions: what was promoted and what was held back, against each gate's threshold. "
                    "A model's page has every version."
                }
                @for (name, series) in &h.charts {
                    h3 { a href=(model_href(name)) { (name) } }
                    div.charts { @for s in series { (chart(s)) } }
                }
            }
        }
    }
}

pub fn champion(glance: Option<&Glance>) -> Markup {
    html! {
        @match glance {
            Some(Glance { champion: Some(c), .. }) => span.champion { "★ v" (c) },
            Some(_) => span.muted { "none" },
            None => span.muted { "not read yet" },
        }
    }
}

pub fn candidates(glance: Option<&Glance>) -> Markup {
    html! {
        @match glance {
            Some(g) if !g.candidates.is_empty() => {
                @for (i, c) in g.candidates.iter().enumerate() {
                    @if i > 0 { ", " }
                    "v" (c)
                }
            },
            Some(_) => span.muted { "none" },
            None => span.muted { "not read yet" },
        }
    }
}
