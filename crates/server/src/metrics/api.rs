//! Metrics over HTTP: the series list, queries by stat and step (the tier chosen by range), the receive path's
//! status, `/metrics` for Prometheus, and Grafana-style annotations of deploys and flag changes.

use super::query::{parse_query, QueryOut};
use super::{split_key, Metrics};
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::http::{query_pairs, Answer};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crew_core::kind;
use crew_metrics::Kind;
use serde_json::{json, Value};

type ApiResult<T> = Result<T, ApiError>;

fn series_json(key: &str, kind: Kind) -> Value {
    let (name, labels) = split_key(key);
    let labels: serde_json::Map<String, Value> = labels.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"key": key, "name": name, "labels": labels, "kind": kind.as_str(), "stats": kind.stats()})
}

/// `GET /api/v1/metrics?name=`: the series whose name contains `name` (all without it).
pub async fn list(_: Viewer, State(metrics): State<Metrics>, RawQuery(q): RawQuery) -> Answer {
    let mut filter = String::new();
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "name" => filter = v,
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected name"))),
        }
    }
    let series: Vec<Value> = metrics
        .series()
        .into_iter()
        .filter(|(key, _)| split_key(key).0.contains(&filter))
        .map(|(key, kind)| series_json(&key, kind))
        .collect();
    Ok(Json(json!({"series": series})))
}

/// `GET /api/v1/metrics/status`: the receive path's totals since start.
pub async fn status(_: Viewer, State(metrics): State<Metrics>) -> Json<Value> {
    Json(metrics.status())
}

/// `GET /api/v1/metrics/query?name=&labels=&from=&to=&step=&stat=`.
pub async fn query(_: Viewer, State(metrics): State<Metrics>, RawQuery(raw): RawQuery) -> ApiResult<Json<QueryOut>> {
    let q = parse_query(&query_pairs(raw.as_deref()))?;
    Ok(Json(metrics.query(&q).await?))
}

/// `GET /metrics`: the Prometheus text format.
pub async fn prometheus(_: Viewer, State(metrics): State<Metrics>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.exposition()).into_response()
}

/// `GET /api/v1/annotations?from=&to=&tags=`: deploys and flag changes in range, as Grafana's JSON and
/// Infinity data sources read annotations (`time`/`timeEnd` in ms, `title`, `text`, `tags`).
pub async fn annotations(_: Viewer, State(metrics): State<Metrics>, RawQuery(raw): RawQuery) -> Answer {
    let now = chrono::Utc::now();
    let mut since = now - chrono::Duration::hours(6);
    let mut until = now;
    let mut tags: Vec<String> = vec!["deploy".into(), "flag".into()];
    for (k, v) in query_pairs(raw.as_deref()) {
        let time = |v: &str| {
            // Grafana sends milliseconds; people send what the rest of the API takes.
            if v.len() >= 13 && v.bytes().all(|b| b.is_ascii_digit()) {
                // Milliseconds up to the end of the year 9999, as every other time crew reads.
                v.parse::<i64>()
                    .ok()
                    .filter(|ms| *ms <= 253_402_300_799_999)
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
                if let Some(bad) = tags.iter().find(|t| !matches!(t.as_str(), kind::DEPLOY | kind::FLAG)) {
                    return Err(ApiError::BadRequest(format!("`tags`: `{bad}` is not deploy or flag")));
                }
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected from, to, tags"))),
        }
    }
    if since > until {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    let wants = |tag: &str| tags.iter().any(|t| t == tag);
    let events = metrics
        .markers(since.timestamp_millis(), until.timestamp_millis(), wants(kind::DEPLOY), wants(kind::FLAG))
        .await?;
    let mut out = vec![];
    for e in events {
        let tag = if e.kind == kind::FLAG_CHANGED || e.kind == kind::FLAG_JUDGED {
            kind::FLAG
        } else if [
            kind::DEPLOY_STARTED,
            kind::DEPLOY_FINISHED,
            kind::DEPLOY_FAILED,
            kind::DEPLOY_ROLLED_BACK,
            kind::DEPLOY_JUDGED,
        ]
        .contains(&e.kind.as_str())
        {
            kind::DEPLOY
        } else {
            continue;
        };
        out.push(json!({
            "time": e.at.timestamp_millis(),
            "title": e.kind,
            "text": e.summary,
            "tags": [tag, e.subject],
            "id": e.id,
            "url": format!("/timeline?subject={}", e.subject),
        }));
    }
    out.sort_by_key(|a| a["time"].as_i64());
    Ok(Json(Value::Array(out)))
}
