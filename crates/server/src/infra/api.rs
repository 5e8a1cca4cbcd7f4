//! Infra over HTTP: the runs `crew infra apply` and `crew infra check` report, recorded on the timeline.

use super::{Finding, Infra};
use crate::auth::Member;
use crate::http::{parse_json, Created};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

/// `POST /api/v1/infra/reports` `{"outcome": "applied"|"drift"|"unreachable", "host", "report" | "reason"}`:
/// 201 with the event recorded, or 200 with `event: null` when a check found nothing to record.
pub async fn report(Member(caller): Member, State(infra): State<Infra>, body: Bytes) -> Created {
    let f: Finding = parse_json(&body)?;
    match infra.report(caller.actor(), f).await? {
        Some(e) => Ok((StatusCode::CREATED, Json(json!({"event": e})))),
        None => Ok((StatusCode::OK, Json(json!({"event": null})))),
    }
}
