//! Server-side SVG charts (pure): a measure across versions, one marker per version whose
//! shape says what became of it (colour only repeats it), the threshold drawn as a dashed
//! line, and a native tooltip (`<title>`) per point. Also the number line of a champion
//! comparison's interval. No script draws anything, so a chart shows with JS off, prints,
//! and costs the browser nothing to lay out.

use maud::{Markup, html};

use super::layout::evaluation_href;
use super::series::{PointState, Series};
use crate::gates::num;

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 34.0;

/// A linear map from data to pixels.
pub(super) struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub(super) fn at(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// The y range: every value and threshold, padded; a flat series gets room around it.
pub(super) fn domain(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}

/// Four round tick values across `[lo, hi]`.
pub(super) fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    (first..=last)
        .take(8)
        .map(|k| round(k as f64 * step))
        .collect()
}

/// A plot's frame: `n` slots across, the y axis over `values` (padded), `h` pixels high.
pub(super) struct Frame {
    pub y: Scale,
    pub step: f64,
    /// Label every this many slots (at most 12 labels).
    pub every: usize,
    pub h: f64,
    lo: f64,
    hi: f64,
}

impl Frame {
    pub(super) fn new(n: usize, values: impl Iterator<Item = f64>, h: f64) -> Frame {
        let (lo, hi) = domain(values);
        Frame {
            y: Scale {
                d0: lo,
                d1: hi,
                r0: h - BOTTOM,
                r1: TOP,
            },
            step: (W - LEFT - RIGHT) / n.max(1) as f64,
            every: n.div_ceil(12).max(1),
            h,
            lo,
            hi,
        }
    }

    /// The middle of slot `i`.
    pub(super) fn x(&self, i: usize) -> f64 {
        LEFT + self.step * (i as f64 + 0.5)
    }

    /// The trend line's points through the slots that have a value.
    pub(super) fn line(&self, values: impl Iterator<Item = Option<f64>>) -> String {
        values
            .enumerate()
            .filter_map(|(i, v)| Some(format!("{:.1},{:.1}", self.x(i), self.y.at(v?))))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The view box, and the horizontal grid with its tick labels.
    pub(super) fn view_box(&self) -> String {
        format!("0 0 {W} {}", self.h)
    }

    pub(super) fn grid(&self) -> Markup {
        let y = &self.y;
        html! {
            @for t in ticks(self.lo, self.hi) {
                line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y.at(t)) y2=(y.at(t)) {}
                text.tick x=(LEFT - 6.0) y=(y.at(t) + 4.0) text-anchor="end" { (num(round(t))) }
            }
        }
    }

    /// Where a slot's label goes, under the plot.
    pub(super) fn label_y(&self) -> f64 {
        self.h - BOTTOM + 18.0
    }

    /// The bottom of the plot: where a slot without a value is drawn.
    pub(super) fn floor(&self) -> f64 {
        self.h - BOTTOM
    }

    /// The right edge of the plot, where limit labels end.
    pub(super) fn right(&self) -> f64 {
        W - RIGHT
    }
}

pub fn chart(s: &Series) -> Markup {
    let n = s.points.len();
    let values = s.points.iter().flat_map(|p| {
        p.value
            .into_iter()
            .chain(p.other)
            .chain(p.limits.iter().flatten().copied())
    });
    let f = Frame::new(n, values, H);
    let (y, step, every) = (&f.y, f.step, f.every);
    let x = |i: usize| f.x(i);
    let line = f.line(s.points.iter().map(|p| p.value));
    html! {
        figure.chart {
            figcaption { (s.title) }
            svg viewBox=(f.view_box()) role="img" aria-label={ (s.title) ", " (n) " versions" } {
                (f.grid())
                @for (i, p) in s.points.iter().enumerate() {
                    @if i % every == 0 || i + 1 == n {
                        text.tick x=(x(i)) y=(H - BOTTOM + 18.0) text-anchor="middle" { "v" (p.version) }
                    }
                }
                @for (k, name) in s.limits.iter().enumerate() {
                    @if let Some(path) = threshold_path(s, k, step, &x, y) {
                        path.threshold d=(path.0) data-limit=(name) {}
                        // Inside the plot, right-aligned above its line (below it when the
                        // line runs along the top), so a long name is never cut off.
                        text.limit x=(W - RIGHT) y=(if path.1 - 5.0 < 11.0 { path.1 + 13.0 } else { path.1 - 5.0 }) text-anchor="end" { (name) " " (num(round(path.2))) }
                    }
                }
                @if line.contains(' ') { polyline.trend points=(line) {} }
                @for (i, p) in s.points.iter().enumerate() {
                    @if let Some(o) = p.other {
                        circle.other cx=(x(i)) cy=(y.at(o)) r="3" { title { "v" (p.version) ": champion " (num(o)) } }
                    }
                }
                @for (i, p) in s.points.iter().enumerate() {
                    a href=(evaluation_href(p.id)) {
                        g class={ "pt " (p.state.class()) } data-version=(p.version) data-state=(p.state.class()) {
                            title {
                                "v" (p.version) ": " (p.value.map(num).unwrap_or_else(|| "no value".into()))
                                " · " (p.verdict) " · " (p.action) " · " (p.at)
                            }
                            (marker(p.state, x(i), p.value.map(|v| y.at(v)).unwrap_or(H - BOTTOM)))
                            // No value (an error, no champion yet): on the axis, and said so,
                            // so it does not read as a very low one.
                            @if p.value.is_none() {
                                text.tick x=(x(i)) y=(H - BOTTOM - 9.0) text-anchor="middle" { "n/a" }
                            }
                        }
                    }
                }
            }
            (legend(s))
        }
    }
}

/// Tick and limit labels: a few significant digits are enough to read a chart.
pub(super) fn round(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 4 - v.abs().log10().floor() as i32;
    let f = 10f64.powi(digits.clamp(0, 12));
    (v * f).round() / f
}

/// The `k`th threshold as a step line across the points that have it: `(d, y of its last
/// step, its last value)`.
fn threshold_path(
    s: &Series,
    k: usize,
    step: f64,
    x: &dyn Fn(usize) -> f64,
    y: &Scale,
) -> Option<(String, f64, f64)> {
    let mut d = String::new();
    let mut last = None;
    for (i, p) in s.points.iter().enumerate() {
        let Some(v) = p.limits.get(k).copied().flatten() else {
            continue;
        };
        let (x0, x1, yy) = (x(i) - step / 2.0, x(i) + step / 2.0, y.at(v));
        if last.is_none() {
            d.push_str(&format!("M{x0:.1},{yy:.1}"));
        } else {
            d.push_str(&format!("V{yy:.1}"));
        }
        d.push_str(&format!("H{x1:.1}"));
        last = Some((yy, v));
    }
    last.map(|(yy, v)| (d, yy, v))
}

/// A marker per state: the shape alone tells them apart.
pub(super) fn marker(state: PointState, cx: f64, cy: f64) -> Markup {
    let r = 5.5;
    let d = match state {
        PointState::Promoted | PointState::Superseded => {
            return html! { circle cx=(cx) cy=(cy) r=(r) {} };
        }
        PointState::HeldBack => format!(
            "M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}",
            cx - r,
            cy - r,
            cx + r,
            cy + r,
            cx - r,
            cy + r,
            cx + r,
            cy - r
        ),
        PointState::Error => format!(
            "M{cx:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z",
            cy - r,
            cx + r,
            cy + r,
            cx - r,
            cy + r
        ),
        PointState::WouldPromote => format!(
            "M{cx:.1},{:.1}L{:.1},{cy:.1}L{cx:.1},{:.1}L{:.1},{cy:.1}Z",
            cy - r,
            cx + r,
            cy + r,
            cx - r
        ),
        PointState::Passed => format!(
            "M{:.1},{:.1}h{:.1}v{:.1}h{:.1}Z",
            cx - r + 1.0,
            cy - r + 1.0,
            2.0 * r - 2.0,
            2.0 * r - 2.0,
            -(2.0 * r - 2.0)
        ),
    };
    html! { path d=(d) {} }
}

fn legend(s: &Series) -> Markup {
    let present: Vec<PointState> = PointState::ALL
        .into_iter()
        .filter(|st| s.points.iter().any(|p| p.state == *st))
        .collect();
    html! {
        ul.legend {
            @for st in present {
                li {
                    svg.key viewBox="0 0 14 14" aria-hidden="true" {
                        g class={ "pt " (st.class()) } { (marker(st, 7.0, 7.0)) }
                    }
                    (st.label())
                }
            }
            @if !s.limits.is_empty() {
                li { svg.key viewBox="0 0 14 14" aria-hidden="true" { path.threshold d="M0,7H14" {} } "threshold" }
            }
            @if let Some(o) = &s.other {
                li { svg.key viewBox="0 0 14 14" aria-hidden="true" { circle.other cx="7" cy="7" r="3" {} } (o) }
            }
        }
    }
}

/// The bootstrap interval of (candidate − champion) against `-max_drop`: the comparison
/// passes when the interval lies wholly above the line, fails when wholly below.
pub fn interval(low: f64, diff: f64, high: f64, max_drop: f64) -> Markup {
    let floor = -max_drop;
    let (lo, hi) = domain([low, diff, high, floor, 0.0].into_iter());
    let (w, h) = (W, 70.0);
    let xs = Scale {
        d0: lo,
        d1: hi,
        r0: 20.0,
        r1: w - 20.0,
    };
    html! {
        svg.interval viewBox={ "0 0 " (w) " " (h) } role="img"
            aria-label={ "difference " (num(diff)) ", interval " (num(low)) " to " (num(high)) ", -max_drop " (num(floor)) } {
            line.axis x1="20" x2=(w - 20.0) y1="40" y2="40" {}
            line.zero x1=(xs.at(0.0)) x2=(xs.at(0.0)) y1="30" y2="50" {}
            text.tick x=(xs.at(0.0)) y="64" text-anchor="middle" { "0" }
            line.threshold x1=(xs.at(floor)) x2=(xs.at(floor)) y1="8" y2="56" {}
            text.limit x=(xs.at(floor)) y="8" text-anchor="middle" { "−max_drop " (num(round(floor))) }
            rect.band x=(xs.at(low)) y="34" width=((xs.at(high) - xs.at(low)).max(1.0)) height="12" {}
            circle.diff cx=(xs.at(diff)) cy="40" r="5" {}
            text.tick x=(xs.at(low)) y="28" text-anchor="end" { (num(round(low))) }
            text.tick x=(xs.at(high)) y="28" text-anchor="start" { (num(round(high))) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::series::Point;
    use super::*;

    fn point(v: &str, value: Option<f64>, limit: f64, state: PointState) -> Point {
        Point {
            id: 1,
            version: v.into(),
            value,
            limits: vec![Some(limit)],
            other: None,
            state,
            verdict: "passed".into(),
            action: "promoted".into(),
            at: "t".into(),
        }
    }

    #[test]
    fn one_marker_per_version_and_a_threshold_line() {
        let s = Series {
            title: "acc <x>".into(),
            limits: vec!["min".into()],
            other: None,
            points: vec![
                point("1", Some(0.9), 0.85, PointState::Promoted),
                point("2", Some(0.5), 0.85, PointState::HeldBack),
                point("3", None, 0.85, PointState::Error),
            ],
        };
        let svg = chart(&s).into_string();
        assert_eq!(
            svg.matches(r#"<g class="pt "#).count(),
            3 + 3,
            "3 points + 3 legend keys"
        );
        assert_eq!(svg.matches(r#"data-version="#).count(), 3);
        assert_eq!(
            svg.matches(r#"data-limit="min""#).count(),
            1,
            "one threshold line"
        );
        assert!(svg.contains("acc &lt;x&gt;"), "escaped title");
        assert!(svg.contains("min 0.85"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 0.5, 1.0]);
        assert_eq!(ticks(0.42, 0.93), vec![0.6, 0.8]);
        assert_eq!(ticks(-0.05, 0.02), vec![-0.04, -0.02, 0.0, 0.02]);
    }
}
