//! A flag's Results page: each phase of its bucket test, newest first — per variant its users, conversions and
//! rate, the lift against the control with its interval and p-value, the sample-ratio check, the winner if any,
//! the launch plan's series per variant (guardrails), and a chart of each variant's rate with its interval over
//! time with the deploys on it.

use super::{Experiments, Marker, Phase};
use crate::web::{layout, WebError, WebUser};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use crew_experiments::Point;
use maud::{html, Markup};

const W: f64 = 760.0;
const H: f64 = 200.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn signed_pct(v: f64) -> String {
    format!("{:+.1}%", v * 100.0)
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%b %d %H:%M:%S").to_string()).unwrap_or_default()
}

/// Each variant's cumulative rate as a line inside its interval band, the deploys as markers.
fn chart(series: &[Point], names: &[String], deploys: &[Marker], from: i64, to: i64) -> Markup {
    let hi = series
        .iter()
        .flat_map(|p| p.variants.iter())
        .filter(|v| v.users > 0)
        .map(|v| v.high.unwrap_or(v.rate))
        .fold(0.0f64, f64::max)
        .max(0.01);
    let span = (to - from).max(1) as f64;
    let x = |t: i64| LEFT + (t - from) as f64 / span * (W - LEFT - 8.0);
    let y = |v: f64| TOP + (1.0 - v / hi) * (H - TOP - BOTTOM);
    html! {
        svg.graph.results xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (H) } role="img" {
            line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - 8.0) y2=(H - BOTTOM) {}
            text.tick x=(LEFT - 4.0) y=(TOP + 8.0) text-anchor="end" { (pct(hi)) }
            text.tick x=(LEFT - 4.0) y=(H - BOTTOM) text-anchor="end" { "0%" }
            text.tick x=(LEFT) y=(H - 6.0) { (time(from)) }
            text.tick x=(W - 8.0) y=(H - 6.0) text-anchor="end" { (time(to)) }
            @for (i, name) in names.iter().enumerate() {
                @let pts: Vec<(i64, f64, f64, f64)> = series.iter()
                    .filter_map(|p| p.variants.get(i).filter(|v| v.users > 0).map(|v| (p.at, v.rate, v.low.unwrap_or(v.rate), v.high.unwrap_or(v.rate))))
                    .collect();
                @let upper: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", x(p.0), y(p.3))).collect();
                @let lower: Vec<String> = pts.iter().rev().map(|p| format!("{:.1},{:.1}", x(p.0), y(p.2))).collect();
                @let line: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1))).collect();
                g data-variant=(name) {
                    polygon class={ "band s" (i % 6) } points=(format!("{} {}", upper.join(" "), lower.join(" "))) { title { (name) ": interval" } }
                    polyline class={ "series s" (i % 6) } points=(line.join(" ")) { title { (name) } }
                }
            }
            @for m in deploys.iter().filter(|m| m.at_ms >= from && m.at_ms <= to) {
                a href=(m.href) {
                    line class="marker deploy" x1=(format!("{:.1}", x(m.at_ms))) y1=(TOP) x2=(format!("{:.1}", x(m.at_ms))) y2=(H - BOTTOM) data-kind="deploy" {
                        title { (m.summary) " · " (time(m.at_ms)) }
                    }
                }
            }
        }
    }
}

fn phase_section(p: &Phase, first: bool) -> Markup {
    let names: Vec<String> = p.analysis.variants.iter().map(|v| v.name.clone()).collect();
    let to = p.ended_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    html! {
        section.phase data-phase=(p.phase) {
            h2 { "Phase from " (time(p.started_ms)) @if let Some(e) = p.ended_ms { " to " (time(e)) } @else { " (now)" } }
            @if let Some(c) = &p.change { p.meta { (c.summary) } }
            p.users { (p.users) " users"
                @if p.sampled { strong.warning { " — sampled: the store keeps at most this many users a phase" } } }
            @match &p.winner {
                Some(w) => p.winner { "Winner: " strong { (w) } },
                None => p.winner.none { "No winner yet: the intervals still overlap." },
            }
            @if p.analysis.srm.mismatch {
                p.error.srm role="alert" { "Sample ratio mismatch: the users per variant are off the weights (chi-square p = "
                    (format!("{:.1e}", p.analysis.srm.p_value)) "). The split or the exposure logging is broken; do not trust these figures." }
            } @else {
                p.srm { "Sample ratio: fine (p = " (format!("{:.3}", p.analysis.srm.p_value)) ")." }
            }
            table.results {
                thead { tr { th { "Variant" } th { "Weight" } th { "Users" } th { "Conversions" } th { "Rate" } th { "Lift vs " (names.first().map(String::as_str).unwrap_or("control")) } th { "p-value" } } }
                tbody {
                    @for v in &p.analysis.variants {
                        tr data-variant=(v.name) {
                            td { code { (v.name) } }
                            td { (v.weight) }
                            td.users { (v.users) }
                            td.conversions { (v.conversions) }
                            td { (pct(v.rate)) @if let (Some(l), Some(h)) = (v.rate_low, v.rate_high) { " [" (pct(l)) ", " (pct(h)) "]" } }
                            @match &v.comparison {
                                Some(c) => { td.lift { (signed_pct(c.lift)) " [" (signed_pct(c.low)) ", " (signed_pct(c.high)) "]" } td { (format!("{:.4}", c.p_value)) } },
                                None => { td { "—" } td { "—" } },
                            }
                        }
                    }
                }
            }
            @if !p.guardrails.is_empty() {
                h3 { "Guardrails (the launch plan's series, per variant)" }
                table.guardrails {
                    thead { tr { th { "Series" } th { "Bad when" } @for n in &names { th { (n) } } } }
                    tbody { @for g in &p.guardrails { tr {
                        td { code { (g.series) } } td { (g.direction) }
                        @if let Some(e) = &g.error { td colspan=(names.len()) { (e) } }
                        @else { @for (_, v, n) in &g.variants { td { @match v { Some(v) => { (format!("{v:.4}")) " (" (n) ")" }, None => "no data" } } } }
                    } } }
                }
            }
            @if first { (chart(&p.analysis.series, &names, &p.deploys, p.started_ms, to)) }
        }
    }
}

/// `GET /flags/{key}/results?metric=&method=`.
pub async fn show(
    user: WebUser,
    State(x): State<Experiments>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, WebError> {
    let (mut metric, mut method) = (None, None);
    for (k, v) in crate::http::query_pairs(q.as_deref()) {
        match k.as_str() {
            "metric" if !v.is_empty() => metric = Some(v),
            "method" if !v.is_empty() => method = Some(v),
            _ => {}
        }
    }
    let m = super::method(method.as_deref())?;
    let r = x.results(&key, metric.as_deref(), m).await?;
    let body = html! {
        h1 { "Results of " a href={ "/flags/" (key) } { code { (key) } } }
        form.inline method="get" {
            label { "Metric " input name="metric" value=(r.metric); }
            label { "Interval " select name="method" {
                option value="sequential" selected[r.method == "sequential"] { "sequential (safe to peek)" }
                option value="fixed" selected[r.method == "fixed"] { "fixed horizon (Welch)" }
            } }
            button.secondary type="submit" { "Show" }
        }
        p.meta { "Conversions of " code { (r.metric) } " by users after their first exposure; " ((1.0 - r.alpha) * 100.0) "% intervals, "
            (if r.method == "sequential" { "valid however often you look" } else { "valid for one look at a fixed horizon" }) "." }
        @if r.phases.is_empty() {
            p.empty { "Not a bucket test: " code { "crew flag " (key) " split control=50,new=50 -r why" } " makes one." }
        }
        @for (i, p) in r.phases.iter().enumerate() { (phase_section(p, i == 0)) }
    };
    Ok(layout(&format!("Results of {key}"), Some(&user), "/flags", body).into_response())
}
