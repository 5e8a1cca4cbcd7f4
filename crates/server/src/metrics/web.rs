//! The Metrics page: dashboards declared in crew.toml (`[[dashboards]]` with panels of series) and any series
//! by search, drawn as SVG on the server by `graph.rs` (a line per series, each point with its value on hover,
//! every deploy and flag change in range as a labelled vertical marker that links to it), ranges from an hour
//! to 30 days, a refresh every 10 s (`graphs.js` swaps the panels in).

use super::graph::{markers, svg};
use super::query::Query;
use super::Metrics;
use crate::http::query_pairs;
use crate::web::{layout, WebUser};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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

/// The points of each series of a query's answer, as (Unix seconds, value).
fn points(series: &[serde_json::Value]) -> Vec<Vec<(i64, f64)>> {
    series
        .iter()
        .map(|s| {
            s["points"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| Some((p[0].as_i64()?, p[1].as_f64()?))).collect())
                .unwrap_or_default()
        })
        .collect()
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
                (svg(&points(&body), &marks, from, to, None))
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
