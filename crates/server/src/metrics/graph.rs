//! Graphs drawn as SVG on the server, no charting library: a line per series, each point with its value on
//! hover, time and value axes, every deploy and flag change in range as a labelled vertical marker that links
//! to it, and a threshold line. The Metrics page draws its panels with it, and postmortems their impact graph
//! ([`Metrics::graph`]).

use super::query::Query;
use super::{split_key, Metrics};
use crate::error::ApiError;
use crew_core::kind;
use maud::{html, Markup};

/// A deploy or flag change to draw.
pub struct Marker {
    /// Unix seconds.
    pub t: i64,
    /// `deploy`, `flag` or `judged`: its CSS class.
    pub kind: &'static str,
    pub label: String,
    pub href: String,
}

/// The deploys, flag changes and verdicts in [from, to] (Unix seconds), oldest first, as markers.
pub async fn markers(metrics: &Metrics, from: i64, to: i64) -> Vec<Marker> {
    let mut out = vec![];
    let events = metrics.markers(from * 1000, (to + 1) * 1000 - 1, true, true).await.unwrap_or_default();
    {
        for e in events {
            let (class, href) = match e.kind.as_str() {
                kind::DEPLOY_FINISHED | kind::DEPLOY_FAILED | kind::DEPLOY_ROLLED_BACK => {
                    let href = e.data["deploy"]
                        .as_i64()
                        .map(|id| format!("/deploys/{id}"))
                        .unwrap_or_else(|| "/deploys".into());
                    ("deploy", href)
                }
                kind::FLAG_CHANGED => {
                    let key = e.subject.strip_prefix("flag:").unwrap_or(&e.subject).to_string();
                    ("flag", format!("/flags/{key}"))
                }
                // The judge's verdicts: a canary's or a ramp step's, drawn in their own colour.
                kind::DEPLOY_JUDGED => {
                    let href = e.data["deploy"].as_i64().map(|id| format!("/deploys/{id}")).unwrap_or_default();
                    ("judged", href)
                }
                kind::FLAG_JUDGED => {
                    let key = e.subject.strip_prefix("flag:").unwrap_or(&e.subject).to_string();
                    ("judged", format!("/flags/{key}"))
                }
                _ => continue,
            };
            out.push(Marker { t: e.at.timestamp(), kind: class, label: e.summary.clone(), href });
        }
    }
    out.sort_by_key(|m| m.t);
    out
}

const W: f64 = 760.0;
const H: f64 = 170.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 22.0;

pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One graph as SVG: a line per series (points as (Unix seconds, value)), hover values, time and value axes,
/// the markers, and a threshold as a dashed line when there is one. Every text in it (the label, the markers'
/// summaries) is escaped by maud.
pub fn svg(pts: &[Vec<(i64, f64)>], markers: &[Marker], from: i64, to: i64, threshold: Option<f64>) -> Markup {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, v) in pts.iter().flatten().chain(threshold.map(|t| (0, t)).iter()) {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    lo = lo.min(0.0);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let span = (to - from).max(1) as f64;
    let x = |t: i64| LEFT + (t - from) as f64 / span * (W - LEFT - 8.0);
    let y = |v: f64| TOP + (1.0 - (v - lo) / (hi - lo)) * (H - TOP - BOTTOM);
    let time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| {
                if to - from > 2 * 86_400 {
                    d.format("%b %d %H:%M").to_string()
                } else {
                    d.format("%H:%M").to_string()
                }
            })
            .unwrap_or_default()
    };
    // Markers closer than 5 px are spread leftwards from the latest, so each stays visible and clickable;
    // their labels take turns on three rows.
    let shown: Vec<&Marker> = markers.iter().filter(|m| m.t >= from && m.t <= to).collect();
    let mut xs: Vec<f64> = shown.iter().map(|m| x(m.t)).collect();
    for i in (0..xs.len().saturating_sub(1)).rev() {
        if xs[i] > xs[i + 1] - 5.0 {
            xs[i] = xs[i + 1] - 5.0;
        }
    }
    // Labels where there is room: the latest markers first, each on the first of three rows where it overlaps no
    // other label; a marker without room keeps its line and its hover text.
    let mut rows: [Vec<(f64, f64)>; 3] = Default::default();
    let mut label_row: Vec<Option<usize>> = vec![None; shown.len()];
    for i in (0..shown.len()).rev() {
        let text_w = shown[i].label.chars().take(28).count() as f64 * 5.2;
        let right = xs[i] > W * 0.7;
        let span = if right { (xs[i] - 3.0 - text_w, xs[i] - 1.0) } else { (xs[i] + 1.0, xs[i] + 3.0 + text_w) };
        if let Some(r) = rows.iter().position(|row| row.iter().all(|(a, b)| span.1 < *a || span.0 > *b)) {
            rows[r].push(span);
            label_row[i] = Some(r);
        }
    }
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (H) } role="img" {
            line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - 8.0) y2=(H - BOTTOM) {}
            text.tick x=(LEFT - 4.0) y=(TOP + 4.0) text-anchor="end" { (fmt_value(hi)) }
            text.tick x=(LEFT - 4.0) y=(H - BOTTOM) text-anchor="end" { (fmt_value(lo)) }
            text.tick x=(LEFT) y=(H - 6.0) { (time(from)) }
            text.tick x=(W - 8.0) y=(H - 6.0) text-anchor="end" { (time(to)) }
            @if let Some(th) = threshold {
                line.threshold x1=(LEFT) y1=(format!("{:.1}", y(th))) x2=(W - 8.0) y2=(format!("{:.1}", y(th))) {
                    title { "threshold " (fmt_value(th)) }
                }
            }
            @for (i, (m, mx)) in shown.iter().zip(&xs).enumerate() {
                a href=(m.href) {
                    line class={ "marker " (m.kind) } x1=(format!("{mx:.1}")) y1=(TOP - 6.0) x2=(format!("{mx:.1}")) y2=(H - BOTTOM) data-kind=(m.kind) {
                        title { (m.label) " · " (time(m.t)) }
                    }
                    @let right = *mx > W * 0.7;
                    @if let Some(row) = label_row[i] {
                        text class={ "marker-label " (m.kind) } x=(format!("{:.1}", if right { mx - 3.0 } else { mx + 3.0 })) y=(TOP + 2.0 + row as f64 * 10.0)
                            text-anchor=(if right { "end" } else { "start" }) {
                            (m.label.chars().take(28).collect::<String>())
                        }
                    }
                }
            }
            @for (i, line) in pts.iter().enumerate() {
                @let d: Vec<String> = line.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
                polyline class={ "series s" (i % 6) } points=(d.join(" ")) {}
                @for (t, v) in line {
                    circle class={ "pt s" (i % 6) } cx=(format!("{:.1}", x(*t))) cy=(format!("{:.1}", y(*v))) r="2.5" {
                        title { (fmt_value(*v)) " at " (time(*t)) }
                    }
                }
            }
        }
    }
}

impl Metrics {
    /// The graph of the series `key` (`name` or `name{label=value,...}`: every series of that name carrying
    /// those labels) over [from, to] (Unix seconds) as SVG, with its markers and `threshold`; `None` when the
    /// series has no points in range.
    pub async fn graph(
        &self,
        key: &str,
        stat: Option<&str>,
        from: i64,
        to: i64,
        threshold: Option<f64>,
    ) -> Result<Option<String>, ApiError> {
        let (name, labels) = split_key(key);
        let q = Query {
            name: name.to_string(),
            labels: labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            from: from * 1000,
            to: to * 1000,
            step: None,
            stat: stat.filter(|s| !s.is_empty()).map(str::to_string),
        };
        let out = self.query(&q).await?;
        let pts: Vec<Vec<(i64, f64)>> =
            out.series.into_iter().map(|s| s.points).filter(|p: &Vec<(i64, f64)>| !p.is_empty()).collect();
        if pts.is_empty() {
            return Ok(None);
        }
        let marks = markers(self, from, to).await;
        Ok(Some(svg(&pts, &marks, from, to, threshold).into_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_escapes_what_people_wrote_and_draws_the_threshold() {
        let marks = [Marker {
            t: 150,
            kind: "deploy",
            label: "<script>alert(1)</script> \"quoted\"".into(),
            href: "/deploys/1".into(),
        }];
        let s = svg(&[vec![(100, 1.0), (200, 9.0)]], &marks, 100, 200, Some(5.0)).into_string();
        assert!(s.starts_with("<svg") && s.contains("<polyline") && s.contains("class=\"threshold\""), "{s}");
        assert!(!s.contains("<script>") && s.contains("&lt;script&gt;"), "{s}");
        assert!(s.contains("href=\"/deploys/1\""), "{s}");
    }
}
