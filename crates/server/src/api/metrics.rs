//! Metrics over HTTP: the series list, queries by stat and step (the tier chosen by range), the receive path's
//! status, `/metrics` for Prometheus, and Grafana-style annotations of deploys and flag changes.

use super::query_pairs;
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::metrics::split_key;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crew_metrics::query::{bucket, choose_tier};
use crew_metrics::tsdb::points_of;
use crew_metrics::{Kind, Point};
use serde_json::{json, Value};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

/// Every series known: those received since start and those stored (loaded at start, see
/// `metrics::recover`), key → kind. From memory, so a query never scans the chunk table to find its series.
async fn all_series(st: &AppState) -> ApiResult<BTreeMap<String, Kind>> {
    let db = st.metrics.db.lock().expect("not poisoned");
    Ok(db.series().map(|(key, kind)| (key.to_string(), kind)).collect())
}

/// The distinct series names (labels aside).
pub async fn series_names(st: &AppState) -> ApiResult<Vec<String>> {
    let mut names: Vec<String> = all_series(st).await?.keys().map(|k| split_key(k).0.to_string()).collect();
    names.dedup();
    Ok(names)
}

fn series_json(key: &str, kind: Kind) -> Value {
    let (name, labels) = split_key(key);
    let labels: serde_json::Map<String, Value> = labels.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"key": key, "name": name, "labels": labels, "kind": kind.as_str(), "stats": kind.stats()})
}

/// `GET /api/v1/metrics?name=`: the series whose name contains `name` (all without it).
pub async fn list(_: Viewer, State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    let mut filter = String::new();
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "name" => filter = v,
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected name"))),
        }
    }
    let series: Vec<Value> = all_series(&st)
        .await?
        .into_iter()
        .filter(|(key, _)| split_key(key).0.contains(&filter))
        .map(|(key, kind)| series_json(&key, kind))
        .collect();
    Ok(Json(json!({"series": series})))
}

/// `GET /api/v1/metrics/status`: the receive path's totals since start.
pub async fn status(_: Viewer, State(st): State<AppState>) -> Json<Value> {
    Json(st.metrics.status())
}

/// A parsed query.
pub struct Query {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub from: i64,
    pub to: i64,
    pub step: Option<i64>,
    pub stat: Option<String>,
}

pub fn parse_query(pairs: &[(String, String)]) -> ApiResult<Query> {
    let now = chrono::Utc::now();
    let time = |k: &str, v: &str| {
        crew_core::time::parse_time(v, now)
            .map(|t| t.timestamp_millis())
            .map_err(|e| ApiError::BadRequest(format!("`{k}`: {e}")))
    };
    let mut q = Query {
        name: String::new(),
        labels: vec![],
        from: now.timestamp_millis() - 3_600_000,
        to: now.timestamp_millis(),
        step: None,
        stat: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "name" => q.name = v.clone(),
            "labels" => {
                for kv in v.split(',').filter(|s| !s.is_empty()) {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        ApiError::BadRequest(format!("`labels`: `{kv}` is not key=value (labels=env=prod,route=/)"))
                    })?;
                    q.labels.push((k.to_string(), v.to_string()));
                }
            }
            "from" => q.from = time(k, v)?,
            "to" => q.to = time(k, v)?,
            "step" => {
                let ms = if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
                    v.parse::<i64>().map(|s| s * 1000).ok()
                } else {
                    crew_core::time::parse_span(v).ok().map(|d| d.num_milliseconds())
                };
                match ms {
                    Some(ms) if ms >= 1000 => q.step = Some(ms),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "`step`: `{v}` is not a span of at least 1s (10s, 5m, 1h, or seconds)"
                        )))
                    }
                }
            }
            "stat" => q.stat = Some(v.clone()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}`: expected name, labels, from, to, step, stat"
                )))
            }
        }
    }
    if q.name.is_empty() {
        return Err(ApiError::BadRequest("`name` is required: GET /api/v1/metrics lists the series".into()));
    }
    if q.from > q.to {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    Ok(q)
}

/// A series' points of one tier within [from, to]: every replica's stored chunks and this replica's open head,
/// merged where replicas received the same series at the same time (their figures add up as intervals do).
pub async fn points(
    st: &AppState,
    key: &str,
    kind: Kind,
    tier: u8,
    from: i64,
    to: i64,
) -> ApiResult<Vec<(i64, Point)>> {
    let head = st.metrics.db.lock().expect("not poisoned").head_points(key, tier, from, to);
    let mut all = Vec::new();
    for c in st.store.metric_chunks(key, tier as i32, from, to).await? {
        let pts = points_of(kind, &c.data, c.points as u32)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("chunk {key}@{}: {e}", c.start_ms)))?;
        all.extend(pts.into_iter().filter(|(t, _)| *t >= from && *t <= to));
    }
    all.extend(head);
    all.sort_by_key(|p| p.0);
    let mut out: Vec<(i64, Point)> = Vec::with_capacity(all.len());
    for (t, p) in all {
        match out.last_mut() {
            Some((lt, lp)) if *lt == t => lp.merge(kind, &p),
            _ => out.push((t, p)),
        }
    }
    Ok(out)
}

/// One series of a query's answer; points serialise as `[[t, v], ...]` (Unix seconds).
#[derive(serde::Serialize)]
pub struct SeriesOut {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub kind: &'static str,
    pub stat: String,
    pub points: Vec<(i64, f64)>,
}

/// A query's answer: typed, so 8,640 points serialise straight to JSON without a tree of values.
#[derive(serde::Serialize)]
pub struct QueryOut {
    pub series: Vec<SeriesOut>,
    pub step: i64,
    pub tier_step: i64,
    pub from: i64,
    pub to: i64,
}

/// The answer to a query: every matching series' points of the stat.
pub async fn run_query(st: &AppState, q: &Query) -> ApiResult<QueryOut> {
    let series = all_series(st).await?;
    let matching: Vec<(String, Kind)> = series
        .into_iter()
        .filter(|(key, _)| {
            let (name, labels) = split_key(key);
            name == q.name && q.labels.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .collect();
    let tiers = &st.metrics.config.tiers;
    let now = chrono::Utc::now().timestamp_millis();
    let tier = choose_tier(tiers, now, q.from, q.step);
    let res = tiers[tier].step_ms;
    // A step is a whole number of the tier's resolution; without one, at most about 1,000 points.
    let step = match q.step {
        Some(s) => (s.max(res) / res) * res,
        None => {
            let span = q.to - q.from;
            ((span / 1000).max(res) + res - 1) / res * res
        }
    };
    let mut out = vec![];
    for (key, kind) in matching {
        let stat =
            q.stat.clone().unwrap_or_else(|| kind.stats()[if kind == Kind::Counter { 1 } else { 0 }].to_string());
        let stat = if kind == Kind::Timer && q.stat.is_none() { "mean".to_string() } else { stat };
        if !kind.stats().contains(&stat.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "`stat`: `{stat}` does not apply to {key}, a {}: use {}",
                kind.as_str(),
                kind.stats().join(", ")
            )));
        }
        let pts = points(st, &key, kind, tier as u8, q.from, q.to).await?;
        let values: Vec<(i64, f64)> = bucket(kind, &pts, step, &stat).into_iter().map(|(t, v)| (t / 1000, v)).collect();
        let (name, labels) = split_key(&key);
        out.push(SeriesOut {
            name: name.to_string(),
            labels: labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            kind: kind.as_str(),
            stat,
            points: values,
        });
    }
    Ok(QueryOut { series: out, step: step / 1000, tier_step: res / 1000, from: q.from / 1000, to: q.to / 1000 })
}

/// `GET /api/v1/metrics/query?name=&labels=&from=&to=&step=&stat=`.
pub async fn query(_: Viewer, State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<QueryOut>> {
    let q = parse_query(&query_pairs(raw.as_deref()))?;
    Ok(Json(run_query(&st, &q).await?))
}

/// `GET /metrics`: the Prometheus text format.
pub async fn prometheus(_: Viewer, State(st): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::exposition(&st.metrics))
        .into_response()
}

/// `GET /api/v1/annotations?from=&to=&tags=`: deploys and flag changes in range, as Grafana's JSON and
/// Infinity data sources read annotations (`time`/`timeEnd` in ms, `title`, `text`, `tags`).
pub async fn annotations(_: Viewer, State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let now = chrono::Utc::now();
    let mut since = now - chrono::Duration::hours(6);
    let mut until = now;
    let mut tags: Vec<String> = vec!["deploy".into(), "flag".into()];
    for (k, v) in query_pairs(raw.as_deref()) {
        let time = |v: &str| {
            // Grafana sends milliseconds; people send what the rest of the API takes.
            if v.len() >= 13 && v.bytes().all(|b| b.is_ascii_digit()) {
                v.parse::<i64>()
                    .ok()
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .ok_or_else(|| ApiError::BadRequest(format!("`{k}`: `{v}` is out of range")))
            } else {
                crew_core::time::parse_time(v, now).map_err(|e| ApiError::BadRequest(format!("`{k}`: {e}")))
            }
        };
        match k.as_str() {
            "from" => since = time(&v)?,
            "to" => until = time(&v)?,
            "tags" => {
                tags = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                if let Some(bad) = tags.iter().find(|t| !matches!(t.as_str(), "deploy" | "flag")) {
                    return Err(ApiError::BadRequest(format!("`tags`: `{bad}` is not deploy or flag")));
                }
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected from, to, tags"))),
        }
    }
    if since > until {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    let mut out = vec![];
    for (tag, kind) in [("deploy", "deploy"), ("flag", "flag.changed")] {
        if !tags.iter().any(|t| t == tag) {
            continue;
        }
        let mut f = crew_core::EventFilter::new();
        f.kind = Some(kind.into());
        f.since = Some(since);
        f.until = Some(until + chrono::Duration::milliseconds(1)); // `to` itself is in range
        f.limit = 1000;
        for e in st.store.query(&f).await?.events {
            if tag == "deploy"
                && !matches!(
                    e.kind.as_str(),
                    "deploy.started" | "deploy.finished" | "deploy.failed" | "deploy.rolled_back"
                )
            {
                continue;
            }
            out.push(json!({
                "time": e.at.timestamp_millis(),
                "title": e.kind,
                "text": e.summary,
                "tags": [tag, e.subject],
                "id": e.id,
                "url": format!("/timeline?subject={}", e.subject),
            }));
        }
    }
    out.sort_by_key(|a| a["time"].as_i64());
    Ok(Json(Value::Array(out)))
}
