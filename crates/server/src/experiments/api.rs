//! Experiments over HTTP: the SDK's exposure batches, OpenFeature tracking events, and a flag's results.

use super::{Experiments, Reported, Track};
use crate::auth::{Evaluator, Viewer};
use crate::error::ApiError;
use crate::http::{parse_json, query_pairs, Answer};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

/// The largest exposures body: a full batch of long keys.
pub const EXPOSURES_BODY_MAX: usize = 8 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    exposures: Vec<Reported>,
}

/// `POST /api/v1/exposures` `{"exposures": [{"key", "targetingKey", "variant"}]}`: 202 with what was taken.
pub async fn exposures(_: Evaluator, State(x): State<Experiments>, body: Bytes) -> Result<Response, ApiError> {
    let batch: Batch = parse_json(&body)?;
    let a = x.report(&batch.exposures)?;
    Ok((StatusCode::ACCEPTED, Json(json!(a))).into_response())
}

/// `POST /api/v1/track` `{"key", "context": {"targetingKey"}, "value"?}`: 202.
pub async fn track(_: Evaluator, State(x): State<Experiments>, body: Bytes) -> Result<Response, ApiError> {
    let t: Track = parse_json(&body)?;
    x.track(&t)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": 1}))).into_response())
}

/// `GET /api/v1/flags/{key}/results?metric=NAME&method=sequential|fixed`.
pub async fn results(
    _: Viewer,
    State(x): State<Experiments>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let (mut metric, mut method) = (None, None);
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "metric" => metric = Some(v),
            "method" => method = Some(v),
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: metric or method"))),
        }
    }
    let method = super::method(method.as_deref())?;
    let r = x.results(&key, metric.as_deref(), method).await?;
    let mut out = json!(r);
    out["receiving"] = x.status();
    Ok(Json(out))
}
