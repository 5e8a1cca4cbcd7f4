//! The Metrics page: dashboards declared in crew.toml (`[[dashboards]]` with panels of series) and any series
//! by search, drawn as SVG on the server (no charting library): a line per series, each point with its value
//! on hover, ranges from an hour to 30 days, a refresh every 10 s (`graphs.js` swaps the panels in), and every
//! deploy and flag change in range drawn as a labelled vertical marker that links to it.

use super::query::Query;
use super::Metrics;
use crate::http::query_pairs;
use crate::web::{layout, WebUser};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crew_core::kind;
use maud::{html, Markup, PreEscaped};

const RANGES: [(&str, i64); 5] = [("1h", 3600), ("6h", 21_600), ("24h", 86_400), ("7d", 604_800), ("30d", 2_592_000)];

struct Params {
    range: (&'static str, i64),
    dashboard: Option<String>,
    q: Option<String>,
    /// One panel only (what graphs.js asks for): series, stat, labels.
    panel: Option<(String, Option<String>, Option<String>)>,
}

fn params(raw: Option<&str>) -> Result<Params, String> {
    let mut p = Params { range: RANGES[0], dashboard: None, q: None, panel: None };
    let (mut series, mut stat, mut labels) = (None, None, None);
    for (k, v) in query_pairs(raw) {
        match k.as_str() {
            "range" => {
                p.range = *RANGES
                    .iter()
                    .find(|(n, _)| *n == v)
                    .ok_or_else(|| format!("range `{v}`: 1h, 6h, 24h, 7d or 30d"))?
            }
            "dashboard" if !v.is_empty() => p.dashboard = Some(v),
            "q" if !v.is_empty() => p.q = Some(v),
            "series" => series = Some(v),
            "stat" if !v.is_empty() => stat = Some(v),
            "labels" if !v.is_empty() => labels = Some(v),
            "dashboard" | "q" | "stat" | "labels" => {}
            other => return Err(format!("unknown parameter `{other}`")),
        }
    }
    p.panel = series.map(|s| (s, stat, labels));
    Ok(p)
}

/// A deploy or flag change to draw.
struct Marker {
    t: i64,
    kind: &'static str,
    label: String,
    href: String,
}

async fn markers(metrics: &Metrics, from: i64, to: i64) -> Vec<Marker> {
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

fn fmt_value(v: f64) -> String {
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

/// One graph as SVG: a line per series, hover values, time and value axes, the markers.
fn svg(series: &[serde_json::Value], markers: &[Marker], from: i64, to: i64) -> Markup {
    let pts: Vec<Vec<(i64, f64)>> = series
        .iter()
        .map(|s| {
            s["points"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| Some((p[0].as_i64()?, p[1].as_f64()?))).collect())
                .unwrap_or_default()
        })
        .collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, v) in pts.iter().flatten() {
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

async fn panel(
    metrics: &Metrics,
    title: &str,
    series: &str,
    stat: Option<String>,
    labels: Option<String>,
    range: i64,
) -> Markup {
    let to = chrono::Utc::now().timestamp();
    let from = to - range;
    let labels_v: Vec<(String, String)> = labels
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let q = Query {
        name: series.to_string(),
        labels: labels_v,
        from: from * 1000,
        to: to * 1000,
        step: None,
        stat: stat.clone(),
    };
    let (body, stat_shown, err) = match metrics.query(&q).await.map(|out| serde_json::to_value(out).unwrap_or_default())
    {
        Ok(v) => {
            let list = v["series"].as_array().cloned().unwrap_or_default();
            let shown = list.first().and_then(|s| s["stat"].as_str()).unwrap_or("").to_string();
            (list, shown, None)
        }
        Err(e) => (vec![], String::new(), Some(e.to_string())),
    };
    let marks = markers(metrics, from, to).await;
    let legend: Vec<String> = body
        .iter()
        .map(|s| {
            let labels = s["labels"].as_object().map(|l| {
                l.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
            });
            match labels {
                Some(l) if !l.is_empty() => format!("{{{l}}}"),
                _ => s["name"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect();
    html! {
        figure.panel data-series=(series) data-stat=[stat.as_deref()] data-labels=[labels.as_deref()] {
            figcaption { strong { (title) } " " code { (series) } " " span.stat { (stat_shown) } }
            @if let Some(e) = err {
                p.error { (e) }
            } @else if body.is_empty() {
                p.empty { "No data for " code { (series) } " yet." }
            } @else {
                (svg(&body, &marks, from, to))
                p.legend { @for (i, l) in legend.iter().enumerate() { span class={ "key s" (i % 6) } { "■ " (l) } " " } }
            }
        }
    }
}

pub async fn index(user: WebUser, State(metrics): State<Metrics>, RawQuery(raw): RawQuery) -> Response {
    let st = &metrics;
    let p = match params(raw.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, layout("Metrics", Some(&user), "/graphs", html! { p.error { (e) } }))
                .into_response()
        }
    };
    let range = p.range.1;
    // One panel alone, for the live refresh.
    if let Some((series, stat, labels)) = p.panel {
        return panel(st, &series, &series, stat, labels, range).await.into_response();
    }
    let dashboards = st.dashboards.to_vec();
    let chosen = match &p.dashboard {
        Some(name) => dashboards.iter().find(|d| &d.name == name).cloned(),
        None if p.q.is_none() => dashboards.first().cloned(),
        None => None,
    };
    let mut panels = vec![];
    if let Some(d) = &chosen {
        for pn in &d.panels {
            let title = pn.title.clone().unwrap_or_else(|| pn.series.clone());
            panels.push(panel(st, &title, &pn.series, pn.stat.clone(), pn.labels.clone(), range).await);
        }
    }
    let mut found = vec![];
    if let Some(q) = &p.q {
        let names: std::collections::BTreeSet<String> =
            st.names().into_iter().filter(|n| n.contains(q.as_str())).take(12).collect();
        for n in names {
            found.push(panel(st, &n, &n, None, None, range).await);
        }
    }
    let link = |r: &str| {
        let mut s = format!("/graphs?range={r}");
        if let Some(d) = &chosen {
            s.push_str(&format!(
                "&dashboard={}",
                url::form_urlencoded::byte_serialize(d.name.as_bytes()).collect::<String>()
            ));
        }
        if let Some(q) = &p.q {
            s.push_str(&format!("&q={}", url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()));
        }
        s
    };
    let body = html! {
        h1 { "Metrics" }
        nav.ranges {
            @for (name, _) in RANGES {
                a href=(link(name)) class=[(name == p.range.0).then_some("current")] { (name) }
            }
        }
        nav.dashboards {
            @for d in &dashboards {
                a href={ "/graphs?dashboard=" (url::form_urlencoded::byte_serialize(d.name.as_bytes()).collect::<String>()) "&range=" (p.range.0) }
                    class=[(chosen.as_ref().is_some_and(|c| c.name == d.name)).then_some("current")] { (d.name) }
            }
            form.search method="get" action="/graphs" {
                input type="hidden" name="range" value=(p.range.0);
                input name="q" placeholder="search series" aria-label="search series" value=[p.q.as_deref()];
                button type="submit" { "Search" }
            }
        }
        div.panels data-range=(p.range.0) {
            @if let Some(d) = &chosen { h2 { (d.name) } }
            @for pn in &panels { (pn) }
            @if p.q.is_some() {
                h2 { "Series matching " code { (p.q.as_deref().unwrap_or("")) } }
                @if found.is_empty() { p.empty { "None." } }
                @for f in &found { (f) }
            }
            @if chosen.is_none() && p.q.is_none() {
                p.empty { "No dashboards in crew.toml: declare " code { "[[dashboards]]" } " with panels, or search the series above." }
            }
        }
        script src="/static/graphs.js" {}
        (PreEscaped(""))
    };
    layout("Metrics", Some(&user), "/graphs", body).into_response()
}
