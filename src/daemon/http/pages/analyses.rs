//! Post-promotion analyses on the status page (pure): per analysis, how it stands or ended,
//! and per metric a chart of its measurements, round by round, against the metric's `min` and
//! `max`. Markers repeat the version charts' shapes: a filled square passed, a cross failed, a
//! triangle on the axis is a round with no value (inconclusive).

use maud::{Markup, html};

use super::chart::{Frame, marker, round};
use super::layout::{model_href, when};
use super::series::PointState;
use crate::analysis::round::{Recorded, parse};
use crate::config::analysis::Analysis;
use crate::gates::num;
use crate::store::AnalysisRow;

const H: f64 = 180.0;

/// The outcome as the version's tag says it.
fn outcome(a: &AnalysisRow) -> String {
    crate::daemon::analyses::outcome(&a.status, a.reason.as_deref().unwrap_or(""))
}

/// A model page's section: its analyses, newest first, each with its charts. `cfg` is the
/// policy's analysis now (its thresholds and count); `None` when it has none any more.
pub fn section(rows: &[AnalysisRow], cfg: Option<&Analysis>) -> Markup {
    html! {
        section #analyses {
            h2 { "Analyses after promotion" }
            @if rows.is_empty() {
                p.muted {
                    @if cfg.is_some() { "No promotion analysed yet." }
                    @else { "The policy has no analysis." }
                }
            }
            @for a in rows {
                article.analysis data-status=(a.status) {
                    h3 {
                        "v" (a.version) " "
                        span class={ "outcome " (a.status) } { (outcome(a)) }
                    }
                    p.muted {
                        (a.target) ", replaced "
                        (a.previous.as_deref().map_or("nothing".into(), |p| format!("v{p}")))
                        " · started " (when(Some(&a.started_at)))
                        " · " (a.step) @if let Some(c) = cfg { " of " (c.count) } " rounds"
                        @if let Some(f) = &a.finished_at { " · ended " (when(Some(f))) }
                    }
                    div.charts {
                        @for (metric, points) in parse(&a.measurements) {
                            @let m = cfg.and_then(|c| c.metrics.iter().find(|m| m.name == metric));
                            (chart(&metric, &points, m.and_then(|m| m.min), m.and_then(|m| m.max)))
                        }
                    }
                }
            }
        }
    }
}

/// The home page's table: running analyses and the most recent ended ones, a line each.
pub fn table(rows: &[AnalysisRow]) -> Markup {
    html! {
        section #analyses {
            h2 { "Analyses after promotion" }
            div.scroll {
                table.analyses {
                    thead { tr { th { "model" } th { "version" } th { "rounds" } th { "outcome" } th { "started" } } }
                    tbody {
                        @for a in rows {
                            tr data-status=(a.status) {
                                td { a href={ (model_href(&a.model)) "#analyses" } { (a.model) } }
                                td { "v" (a.version) }
                                td.num { (a.step) }
                                td { span class={ "outcome " (a.status) } { (outcome(a)) } }
                                td { (when(Some(&a.started_at))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One metric's rounds against its thresholds.
pub fn chart(metric: &str, points: &[Recorded], min: Option<f64>, max: Option<f64>) -> Markup {
    let n = points.len();
    let values = points.iter().filter_map(|p| p.value).chain(min).chain(max);
    let f = Frame::new(n, values, H);
    let y = &f.y;
    let line = f.line(points.iter().map(|p| p.value));
    let limits: Vec<(&str, f64)> = [("min", min), ("max", max)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    html! {
        figure.chart {
            figcaption { (metric) }
            svg viewBox=(f.view_box()) role="img" aria-label={ (metric) ", " (n) " rounds" } {
                (f.grid())
                @for (i, _) in points.iter().enumerate() {
                    @if i % f.every == 0 || i + 1 == n {
                        text.tick x=(f.x(i)) y=(f.label_y()) text-anchor="middle" { (i + 1) }
                    }
                }
                @for (name, v) in &limits {
                    path.threshold d=(format!("M{:.1},{:.1}H{:.1}", f.x(0) - f.step / 2.0, y.at(*v), f.right())) data-limit=(name) {}
                    text.limit x=(f.right()) y=(y.at(*v) - 5.0) text-anchor="end" { (name) " " (num(round(*v))) }
                }
                @if line.contains(' ') { polyline.trend points=(line) {} }
                @for (i, p) in points.iter().enumerate() {
                    @let state = match p.outcome.as_str() {
                        "pass" => PointState::Passed,
                        "fail" => PointState::HeldBack,
                        _ => PointState::Error,
                    };
                    g class={ "pt " (state.class()) } data-outcome=(p.outcome) {
                        title {
                            "round " (i + 1) ": " (p.value.map(num).unwrap_or_else(|| "no value".into()))
                            " · " (p.outcome)
                            @if let Some(note) = &p.note { " · " (note) }
                            " · " (p.at)
                        }
                        (marker(state, f.x(i), p.value.map(|v| y.at(v)).unwrap_or(f.floor())))
                        @if p.value.is_none() {
                            text.tick x=(f.x(i)) y=(f.floor() - 9.0) text-anchor="middle" { "n/a" }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(outcome: &str, value: Option<f64>) -> Recorded {
        Recorded {
            at: "2026-12-07T10:00:00Z".into(),
            outcome: outcome.into(),
            value,
            note: (outcome != "pass").then(|| "why <b>".into()),
        }
    }

    #[test]
    fn a_marker_per_round_and_a_line_per_threshold() {
        let points = [
            point("pass", Some(0.01)),
            point("inconclusive", None),
            point("fail", Some(0.3)),
        ];
        let svg = chart("error-rate", &points, None, Some(0.05)).into_string();
        assert_eq!(svg.matches("data-outcome=").count(), 3);
        assert_eq!(svg.matches(r#"data-outcome="fail""#).count(), 1);
        assert_eq!(svg.matches("data-limit=").count(), 1, "max only");
        assert!(svg.contains("max 0.05"));
        assert!(svg.contains("n/a"), "the round without a value says so");
        assert!(svg.contains("why &lt;b&gt;"), "notes are escaped");
        let both = chart("p99", &points, Some(0.0), Some(1.0)).into_string();
        assert_eq!(both.matches("data-limit=").count(), 2);
    }
}
