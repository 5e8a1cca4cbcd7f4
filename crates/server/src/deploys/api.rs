//! Deploys over HTTP: start one, list and read them, follow a deploy's log, roll back, lock and unlock an
//! environment, and what is pending.

use super::Deploys;
use crate::auth::{Member, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::http::{bounded, parse_json, query_pairs, Answer, Created};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use crew_core::{DeployStatus, Role};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartDeploy {
    environment: String,
    rev: Option<String>,
    #[serde(default)]
    message: String,
}

pub async fn create(Member(caller): Member, State(deploys): State<Deploys>, body: Bytes) -> Created {
    let req: StartDeploy = parse_json(&body)?;
    let d = deploys.start(&req.environment, req.rev.as_deref(), &req.message, caller.actor()).await?;
    let mut v = json!(d);
    v["warnings"] = json!(deploys.oncall_warnings(&req.environment).await);
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn list(_: Viewer, State(deploys): State<Deploys>, RawQuery(q): RawQuery) -> Answer {
    let (mut env, mut limit) = (None, 50u32);
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "environment" => env = Some(v),
            "limit" => limit = bounded("limit", &v, 1..=1000)?,
            other => {
                return Err(ApiError::BadRequest(format!("unknown filter `{other}`: expected environment, limit")))
            }
        }
    }
    let list = deploys.list(env.as_deref(), limit).await?;
    Ok(Json(json!({"deploys": list})))
}

/// The `offset` query parameter of a deploy's log (0 when absent); any other parameter is refused.
pub(super) fn log_offset(q: Option<&str>) -> Result<i64, ApiError> {
    let mut offset = 0;
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "offset" => offset = bounded("offset", &v, 0..=i64::MAX)?,
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected offset"))),
        }
    }
    Ok(offset)
}

fn deploy_id(id: &str) -> Result<i64, ApiError> {
    id.trim_start_matches('#').parse().map_err(|_| ApiError::NotFound(format!("no deploy `{id}`")))
}

pub async fn one(_: Viewer, State(deploys): State<Deploys>, Path(id): Path<String>) -> Answer {
    Ok(Json(json!(deploys.get(deploy_id(&id)?).await?)))
}

/// `{"lines": [...], "next_offset": N, "status": "running"}`: poll with `offset=next_offset` until the status
/// is no longer `running` and no lines come.
pub async fn log(_: Viewer, State(deploys): State<Deploys>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let id = deploy_id(&id)?;
    let offset = log_offset(q.as_deref())?;
    // Read the status first: if it says finished, every line was already written.
    let d = deploys.get(id).await?;
    let numbered = deploys.output(id, offset, 1000).await?;
    // The next line's number, not offset + count: a long log's cut leaves a gap in the numbers.
    let next = numbered.last().map_or(offset, |(n, _)| n + 1);
    let lines: Vec<String> = numbered.into_iter().map(|(_, l)| l).collect();
    Ok(Json(json!({"lines": lines, "next_offset": next, "status": d.status, "deploy": d})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    to: Option<i64>,
}

pub async fn rollback(Member(by): Member, State(s): State<Deploys>, Path(env): Path<String>, body: Bytes) -> Created {
    let req: Rollback = if body.is_empty() { Rollback { to: None } } else { parse_json(&body)? };
    let d = s.rollback(&env, req.to, by.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(d))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeLock {
    reason: String,
}

pub async fn lock(Member(by): Member, State(s): State<Deploys>, Path(env): Path<String>, body: Bytes) -> Answer {
    let req: TakeLock = parse_json(&body)?;
    s.lock(&env, &req.reason, by.actor(), None).await?;
    Ok(Json(json!({"environment": env, "holder": by.name, "reason": req.reason})))
}

pub async fn unlock(Member(caller): Member, State(deploys): State<Deploys>, Path(env): Path<String>) -> Answer {
    deploys.unlock(&env, caller.actor(), caller.role.allows(Role::Admin), None).await?;
    Ok(Json(json!({"environment": env, "unlocked": true})))
}

/// Per environment: the live deploy, the locks, how many commits are pending.
pub async fn environments(_: Viewer, State(deploys): State<Deploys>) -> Answer {
    let Some(cfg) = deploys.configured() else { return Ok(Json(json!({"environments": []}))) };
    let out: Vec<Value> = deploys
        .environments()
        .await?
        .into_iter()
        .map(|e| json!({"name": e.name, "live": e.live, "locks": e.locks, "pending": e.pending.len()}))
        .collect();
    Ok(Json(json!({"app": cfg.app.name, "environments": out})))
}

/// The commits on trunk not yet live on the environment, and (with `requires`) what the required environment
/// has that this one lacks.
pub async fn pending(_: Viewer, State(deploys): State<Deploys>, Path(env): Path<String>) -> Answer {
    Ok(Json(json!(deploys.pending(&env).await?)))
}

/// The log as server-sent events: each line a message (its id the line number), then an `end` event with the
/// deploy's final status. Resumes at `offset` or `Last-Event-ID` + 1.
pub async fn log_stream(
    Viewer(caller): Viewer,
    State(deploys): State<Deploys>,
    State(auth): State<crate::auth::Auth>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> ApiResult<impl axum::response::IntoResponse> {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let id = deploy_id(&id)?;
    deploys.get(id).await?;
    let mut offset = log_offset(q.as_deref())?;
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        offset = bounded("Last-Event-ID", last, 0..=i64::MAX - 1)? + 1;
    }
    let mut held = auth.open_stream(&caller).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(64);
    let shutdown = deploys.shutdown();
    tokio::spawn(async move {
        loop {
            // Status first: once it says finished, every line is already stored.
            let Ok(d) = deploys.get(id).await else { return };
            let Ok(lines) = deploys.output(id, offset, 1000).await else { return };
            for (n, line) in &lines {
                if tx.send(Ok(SseEvent::default().id(n.to_string()).data(line.as_str()))).await.is_err() {
                    return;
                }
                offset = n + 1;
            }
            if d.status != DeployStatus::Running && lines.is_empty() {
                let _ = tx.send(Ok(SseEvent::default().event("end").data(d.status.as_str()))).await;
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = held.ended() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            }
        }
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decide {
    decision: super::Decision,
    #[serde(default)]
    reason: String,
}

/// A person's decision on a deploy the judge holds: `{"decision": "proceed" | "switch_back", "reason": ...}`.
pub async fn decide(Member(by): Member, State(s): State<Deploys>, Path(id): Path<String>, body: Bytes) -> Created {
    let req: Decide = parse_json(&body)?;
    let e = s.decide(deploy_id(&id)?, req.decision, &req.reason, by.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(e))))
}
