//! Incidents over HTTP: list, open one by hand, read one with its timeline, acknowledge, resolve, note.

use super::{Incidents, Trigger};
use crate::auth::{Member, Viewer};
use crate::error::ApiError;
use crate::http::{bounded, parse_json, query_pairs, Answer, Created};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use crew_core::Severity;
use serde::Deserialize;
use serde_json::{json, Value};

pub use super::incident_id;

pub async fn list(_: Viewer, State(incidents): State<Incidents>, RawQuery(q): RawQuery) -> Answer {
    let (mut open_only, mut limit) = (false, 100u32);
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "status" => {
                open_only = match v.as_str() {
                    "open" => true,
                    "all" => false,
                    other => return Err(ApiError::BadRequest(format!("`status`: `{other}`; open or all"))),
                }
            }
            "limit" => limit = bounded("limit", &v, 1..=1000)?,
            other => return Err(ApiError::BadRequest(format!("unknown filter `{other}`: expected status, limit"))),
        }
    }
    let list = incidents.list(open_only, limit).await?;
    Ok(Json(json!({"incidents": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Open {
    summary: String,
    escalation: Option<String>,
    #[serde(default = "page")]
    severity: Severity,
    /// Deduplication key; a fresh one when absent.
    key: Option<String>,
    runbook: Option<String>,
    #[serde(default)]
    details: Value,
}

fn page() -> Severity {
    Severity::Page
}

pub async fn create(Member(caller): Member, State(incidents): State<Incidents>, body: Bytes) -> Created {
    let o: Open = parse_json(&body)?;
    if o.severity == Severity::Info {
        return Err(ApiError::BadRequest("`severity`: info records only; an incident is page or ticket".into()));
    }
    // People's keys are their own area: a person cannot join (and so silence) an integration's incident.
    let key = format!("person:{}", o.key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()));
    let t = Trigger {
        key,
        summary: o.summary,
        severity: o.severity,
        source: "person",
        escalation: o.escalation,
        runbook: o.runbook,
        details: o.details,
        source_id: None,
        drill: false,
    };
    let (inc, what) = incidents.trigger(t, caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(json!({"incident": inc, "result": what}))))
}

pub async fn one(_: Viewer, State(incidents): State<Incidents>, Path(id): Path<String>) -> Answer {
    let view = incidents.show(incident_id(&id)?).await?;
    Ok(Json(json!(view)))
}

pub async fn ack(Member(caller): Member, State(incidents): State<Incidents>, Path(id): Path<String>) -> Answer {
    let inc = incidents.ack(incident_id(&id)?, caller.actor()).await?;
    Ok(Json(json!(inc)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Resolve {
    note: Option<String>,
}

pub async fn resolve(
    Member(caller): Member,
    State(incidents): State<Incidents>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let r: Resolve = if body.is_empty() { Resolve::default() } else { parse_json(&body)? };
    let inc = incidents.resolve(incident_id(&id)?, r.note.as_deref(), caller.actor()).await?;
    Ok(Json(json!(inc)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    text: String,
}

pub async fn note(
    Member(caller): Member,
    State(incidents): State<Incidents>,
    Path(id): Path<String>,
    body: Bytes,
) -> Created {
    let n: Note = parse_json(&body)?;
    let e = incidents.note(incident_id(&id)?, &n.text, caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(json!(e))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UndoBody {
    /// The change's event id, as the incident's `changes` list it.
    event: String,
}

/// `POST /api/v1/incidents/{id}/undo`: undoes one of the changes listed before the incident.
pub async fn undo(
    Member(caller): Member,
    State(incidents): State<Incidents>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let u: UndoBody = parse_json(&body)?;
    let result = incidents.undo(incident_id(&id)?, &u.event, caller.actor()).await?;
    Ok(Json(result))
}

pub async fn postmortem(_: Viewer, State(incidents): State<Incidents>, Path(id): Path<String>) -> Answer {
    let pm = incidents.postmortem(incident_id(&id)?).await?;
    Ok(Json(json!(pm)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutPostmortem {
    markdown: Option<String>,
    state: Option<crew_core::PostmortemState>,
}

/// `PUT /api/v1/incidents/{id}/postmortem`: `{markdown?, state?: draft|in_review|published}`.
pub async fn put_postmortem(
    Member(caller): Member,
    State(incidents): State<Incidents>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let p: PutPostmortem = parse_json(&body)?;
    if p.markdown.is_none() && p.state.is_none() {
        return Err(ApiError::BadRequest("say what changes: `markdown`, `state` or both".into()));
    }
    let pm = incidents.put_postmortem(incident_id(&id)?, p.markdown.as_deref(), p.state, caller.actor()).await?;
    Ok(Json(json!(pm)))
}
