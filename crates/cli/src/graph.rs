//! `crew graph NAME [--since 6h]`: a series as a sparkline in the terminal (one row per label set, scaled to its
//! own range), with a marker row under it: `D` where a deploy finished, `F` where a flag changed, both listed
//! below with their times.

use crate::client::{path_query, Client};
use anyhow::Result;
use reqwest::Method;

const WIDTH: usize = 60;

fn sparkline(points: &[(i64, f64)], from: i64, to: i64) -> String {
    crew_metrics::query::sparkline(points, from, to, WIDTH)
}

pub async fn run(
    client: &Client,
    name: &str,
    since: &str,
    stat: Option<&str>,
    labels: Option<&str>,
    json: bool,
) -> Result<()> {
    let from = crew_core::time::parse_time(&format!("-{}", since.trim_start_matches('-')), chrono::Utc::now())
        .map_err(|e| crate::Exit::new(2, format!("--since: {e}")))?
        .timestamp();
    let to = chrono::Utc::now().timestamp();
    let from_s = from.to_string();
    let mut pairs = vec![("name", name), ("from", from_s.as_str())];
    if let Some(s) = stat {
        pairs.push(("stat", s));
    }
    if let Some(l) = labels {
        pairs.push(("labels", l));
    }
    let v = client.json(Method::GET, &path_query(&["api", "v1", "metrics", "query"], &pairs), None).await?;
    let ann = client.json(Method::GET, &path_query(&["api", "v1", "annotations"], &[("from", &from_s)]), None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"query": v, "markers": ann}))?);
        return Ok(());
    }
    let series = v["series"].as_array().cloned().unwrap_or_default();
    if series.is_empty() {
        return Err(crate::Exit::new(
            1,
            format!("no series `{name}` with data (crew's `GET /api/v1/metrics` lists them)"),
        )
        .into());
    }
    let markers: Vec<(i64, String, String)> = ann
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| {
                    use crew_core::kind::*;
                    [DEPLOY_FINISHED, DEPLOY_ROLLED_BACK, DEPLOY_FAILED, FLAG_CHANGED]
                        .contains(&m["title"].as_str().unwrap_or(""))
                })
                .map(|m| {
                    (
                        m["time"].as_i64().unwrap_or(0) / 1000,
                        m["title"].as_str().unwrap_or("").to_string(),
                        m["text"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for s in &series {
        let pts: Vec<(i64, f64)> = s["points"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| Some((p[0].as_i64()?, p[1].as_f64()?))).collect())
            .unwrap_or_default();
        let labels = s["labels"]
            .as_object()
            .map(|l| l.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let title = if labels.is_empty() { name.to_string() } else { format!("{name}{{{labels}}}") };
        let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.1), h.max(p.1)));
        let last = pts.last().map(|p| p.1);
        println!("{title} {} over {since}", s["stat"].as_str().unwrap_or(""));
        println!("  {}", sparkline(&pts, from, to));
        if lo.is_finite() {
            println!("  min {} · max {} · last {}", short(lo), short(hi), last.map(short).unwrap_or_default());
        }
    }
    if !markers.is_empty() {
        let mut row = vec![' '; WIDTH];
        let span = (to - from).max(1) as f64;
        for (t, kind, _) in &markers {
            let i = (((t - from) as f64 / span) * (WIDTH - 1) as f64).round().clamp(0.0, (WIDTH - 1) as f64) as usize;
            row[i] = if crew_core::kind::is_under(kind, crew_core::kind::DEPLOY) { 'D' } else { 'F' };
        }
        println!("  {}", row.iter().collect::<String>());
        for (t, _, text) in &markers {
            let at = chrono::DateTime::from_timestamp(*t, 0).map(|d| d.format("%H:%M").to_string()).unwrap_or_default();
            println!("  {at} {text}");
        }
    }
    Ok(())
}

fn short(v: f64) -> String {
    crew_metrics::query::short(v)
}
