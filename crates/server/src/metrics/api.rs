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

/// `GET /metrics`: the Prometheus text format, or OpenMetrics when the `Accept` header prefers it.
pub async fn prometheus(_: Viewer, State(metrics): State<Metrics>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = super::exposition::Format::from_accept(accept);
    let mut res = ([(header::CONTENT_TYPE, format.content_type())], metrics.exposition(format)).into_response();
    res.headers_mut().insert(header::VARY, axum::http::HeaderValue::from_static("accept"));
    res
}

/// Grafana's time as its data sources send it: Unix milliseconds (13 digits or more), or what the rest of the
/// API takes (RFC 3339, Unix seconds, `now`, `now-6h`, `6h`).
fn grafana_time(k: &str, v: &str, now: chrono::DateTime<chrono::Utc>) -> ApiResult<chrono::DateTime<chrono::Utc>> {
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
}

/// Tags as a list (`deploy,flag`), each deploy or flag; none means both.
fn annotation_tags(field: &str, v: &str) -> ApiResult<Vec<String>> {
    let tags: Vec<String> = v.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if let Some(bad) = tags.iter().find(|t| !matches!(t.as_str(), kind::DEPLOY | kind::FLAG)) {
        return Err(ApiError::BadRequest(format!("`{field}`: `{bad}` is not deploy or flag")));
    }
    Ok(if tags.is_empty() { vec![kind::DEPLOY.into(), kind::FLAG.into()] } else { tags })
}

/// Deploys and flag changes from `since` to `until` as Grafana annotations, oldest first.
async fn annotations_in(
    metrics: &Metrics,
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    tags: &[String],
) -> ApiResult<Vec<Value>> {
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
            "timeEnd": e.at.timestamp_millis(),
            "title": e.kind,
            "text": e.summary,
            "tags": [tag, e.subject],
            "id": e.id,
            "url": format!("/timeline?subject={}", e.subject),
        }));
    }
    out.sort_by_key(|a| a["time"].as_i64());
    Ok(out)
}

/// `GET /api/v1/annotations?from=&to=&tags=`: deploys and flag changes in range, as Grafana's Infinity data
/// source reads annotations (`time`/`timeEnd` in ms, `title`, `text`, `tags`); `from` and `to` as Grafana's
/// `${__from}` (ms) or `now-6h`.
pub async fn annotations(_: Viewer, State(metrics): State<Metrics>, RawQuery(raw): RawQuery) -> Answer {
    let now = chrono::Utc::now();
    let mut since = now - chrono::Duration::hours(6);
    let mut until = now;
    let mut tags: Vec<String> = annotation_tags("tags", "")?;
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "from" => since = grafana_time(&k, &v, now)?,
            "to" => until = grafana_time(&k, &v, now)?,
            "tags" => tags = annotation_tags("tags", &v)?,
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected from, to, tags"))),
        }
    }
    Ok(Json(Value::Array(annotations_in(&metrics, since, until, &tags).await?)))
}

/// The largest annotation query body taken (Grafana's are a few hundred bytes).
pub const ANNOTATIONS_BODY_MAX: usize = 64 * 1024;

/// The largest `annotation` echoed back with every answer (it is copied into each of up to thousands).
const ANNOTATION_ECHO_MAX: usize = 4096;

/// What Grafana's JSON and SimpleJSON data sources post to `<url>/annotations`: the dashboard's range and the
/// annotation query (its `query` text names the tags: `deploy`, `flag` or both; empty is both).
#[derive(serde::Deserialize)]
struct AnnotationRequest {
    range: AnnotationRange,
    annotation: Value,
}

#[derive(serde::Deserialize)]
struct AnnotationRange {
    from: String,
    to: String,
}

/// `POST /api/v1/annotations` (`{range: {from, to}, annotation: {query, ...}}`): the same annotations for the
/// JSON (simpod-json-datasource) and SimpleJSON data sources, each carrying back the annotation it answers.
pub async fn annotations_post(_: Viewer, State(metrics): State<Metrics>, body: axum::body::Bytes) -> Answer {
    let req: AnnotationRequest = crate::http::parse_json(&body)?;
    let now = chrono::Utc::now();
    let since = grafana_time("range.from", &req.range.from, now)?;
    let until = grafana_time("range.to", &req.range.to, now)?;
    let query = match &req.annotation {
        Value::Object(a) => match a.get("query") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(q)) => q.clone(),
            Some(_) => return Err(ApiError::BadRequest("`annotation.query`: a string of tags".into())),
        },
        _ => return Err(ApiError::BadRequest("`annotation`: an object".into())),
    };
    if req.annotation.to_string().len() > ANNOTATION_ECHO_MAX {
        return Err(ApiError::BadRequest(format!("`annotation`: at most {ANNOTATION_ECHO_MAX} bytes")));
    }
    let tags = annotation_tags("annotation.query", &query)?;
    let mut out = annotations_in(&metrics, since, until, &tags).await?;
    for a in &mut out {
        a["annotation"] = req.annotation.clone();
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /api/v1`: what answers here, so a Grafana data source pointed at `<crew>/api/v1` passes its test.
pub async fn index(_: Viewer) -> Json<Value> {
    Json(json!({
        "name": "crew",
        "version": env!("CARGO_PKG_VERSION"),
        "annotations": "/api/v1/annotations",
        "prometheus": "/metrics",
    }))
}
