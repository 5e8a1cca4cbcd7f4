//! Deploys over HTTP: start one, list and read them, follow a deploy's log, roll back, lock and unlock an
//! environment, and what is pending.

use crate::api::{parse_json, query_pairs};
use crate::auth::{Member, Viewer};
use crate::deploys;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use crew_core::Role;
use crew_deploy::git;
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

pub async fn create(
    Member(caller): Member,
    State(st): State<AppState>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req: StartDeploy = parse_json(&body)?;
    deploys::check_message(&req.message)?;
    let d = deploys::start(&st, &req.environment, req.rev.as_deref(), &req.message, caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(d))))
}

pub async fn list(_: Viewer, State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    let (mut env, mut limit) = (None, 50u32);
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "environment" => env = Some(v),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| ApiError::BadRequest(format!("filter `limit`: `{v}` is not 1 to 1000")))?
            }
            other => {
                return Err(ApiError::BadRequest(format!("unknown filter `{other}`: expected environment, limit")))
            }
        }
    }
    let list = st.store.deploys(env.as_deref(), limit).await?;
    Ok(Json(json!({"deploys": list})))
}

/// The `offset` query parameter of a deploy's log (0 when absent); any other parameter is refused.
fn log_offset(q: Option<&str>) -> Result<i64, ApiError> {
    let mut offset = 0;
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "offset" => {
                offset = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| ApiError::BadRequest(format!("`offset`: `{v}` is not a line number")))?
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected offset"))),
        }
    }
    Ok(offset)
}

fn deploy_id(id: &str) -> Result<i64, ApiError> {
    id.trim_start_matches('#').parse().map_err(|_| ApiError::NotFound(format!("no deploy `{id}`")))
}

pub async fn one(_: Viewer, State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = deploy_id(&id)?;
    let d = st.store.deploy(id).await?.ok_or_else(|| ApiError::NotFound(format!("no deploy #{id}")))?;
    Ok(Json(json!(d)))
}

/// `{"lines": [...], "next_offset": N, "status": "running"}`: poll with `offset=next_offset` until the status
/// is no longer `running` and no lines come.
pub async fn log(
    _: Viewer,
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let id = deploy_id(&id)?;
    let offset = log_offset(q.as_deref())?;
    // Read the status first: if it says finished, every line was already written.
    let d = st.store.deploy(id).await?.ok_or_else(|| ApiError::NotFound(format!("no deploy #{id}")))?;
    let lines = st.store.deploy_log(id, offset, 1000).await?;
    let next = offset + lines.len() as i64;
    Ok(Json(json!({"lines": lines, "next_offset": next, "status": d.status, "deploy": d})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    to: Option<i64>,
}

pub async fn rollback(
    Member(caller): Member,
    State(st): State<AppState>,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req: Rollback = if body.is_empty() { Rollback { to: None } } else { parse_json(&body)? };
    let d = deploys::rollback(&st, &env, req.to, caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(d))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeLock {
    reason: String,
}

pub async fn lock(
    Member(caller): Member,
    State(st): State<AppState>,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: TakeLock = parse_json(&body)?;
    deploys::lock(&st, &env, &req.reason, caller.actor(), None).await?;
    Ok(Json(json!({"environment": env, "holder": caller.name, "reason": req.reason})))
}

pub async fn unlock(
    Member(caller): Member,
    State(st): State<AppState>,
    Path(env): Path<String>,
) -> ApiResult<Json<Value>> {
    deploys::unlock(&st, &env, caller.actor(), caller.role.allows(Role::Admin), None).await?;
    Ok(Json(json!({"environment": env, "unlocked": true})))
}

/// Per environment: the live deploy, the locks, how many commits are pending.
pub async fn environments(_: Viewer, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let Some(cfg) = st.deploy.clone() else { return Ok(Json(json!({"environments": []}))) };
    let locks = st.store.locks().await?;
    let mut out = Vec::new();
    for name in cfg.environments.keys() {
        let live = deploys::live(&*st.store, name).await?;
        let head = git::resolve(&cfg.repo, &cfg.app.branch, None).await.ok();
        let pending = match (&head, &live) {
            (Some(h), l) => {
                git::commits(&cfg.repo, l.as_ref().map(|d| d.revision.as_str()), h).await.map(|c| c.len()).unwrap_or(0)
            }
            _ => 0,
        };
        let env_locks: Vec<_> = locks.iter().filter(|l| &l.environment == name).collect();
        out.push(json!({"name": name, "live": live, "locks": env_locks, "pending": pending}));
    }
    Ok(Json(json!({"app": cfg.app.name, "environments": out})))
}

/// The commits on trunk not yet live on the environment, and (with `requires`) what the required environment
/// has that this one lacks.
pub async fn pending(_: Viewer, State(st): State<AppState>, Path(env): Path<String>) -> ApiResult<Json<Value>> {
    let cfg = st
        .deploy
        .clone()
        .ok_or_else(|| ApiError::BadRequest("this server's crew.toml has no [app] and [build]".into()))?;
    let e = cfg.environment(&env).map_err(ApiError::NotFound)?;
    let head = git::resolve(&cfg.repo, &cfg.app.branch, None).await.map_err(|e| ApiError::BadRequest(e.0))?;
    let live = deploys::live(&*st.store, &env).await?;
    let from = live.as_ref().map(|d| d.revision.as_str());
    let commits = git::commits(&cfg.repo, from, &head).await.map_err(|e| ApiError::BadRequest(e.0))?;
    let mut out = json!({"environment": env, "branch": cfg.app.branch, "head": head, "hosts": e.hosts.len(), "live": live.as_ref().map(|d| &d.revision), "commits": commits});
    if let Some(req) = &e.requires {
        if let Some(there) = deploys::live(&*st.store, req).await? {
            let ahead = git::commits(&cfg.repo, from, &there.revision).await.map_err(|e| ApiError::BadRequest(e.0))?;
            out["requires"] = json!({"environment": req, "live": there.revision, "commits": ahead});
        }
    }
    Ok(Json(out))
}

/// The log as server-sent events: each line a message (its id the line number), then an `end` event with the
/// deploy's final status. Resumes at `offset` or `Last-Event-ID` + 1.
pub async fn log_stream(
    _: Viewer,
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> ApiResult<impl axum::response::IntoResponse> {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let id = deploy_id(&id)?;
    st.store.deploy(id).await?.ok_or_else(|| ApiError::NotFound(format!("no deploy #{id}")))?;
    let mut offset = log_offset(q.as_deref())?;
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok()) {
        offset = last + 1;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(64);
    let shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        loop {
            // Status first: once it says finished, every line is already stored.
            let Ok(Some(d)) = st.store.deploy(id).await else { return };
            let Ok(lines) = st.store.deploy_log(id, offset, 1000).await else { return };
            for line in &lines {
                if tx.send(Ok(SseEvent::default().id(offset.to_string()).data(line.as_str()))).await.is_err() {
                    return;
                }
                offset += 1;
            }
            if d.status != "running" && lines.is_empty() {
                let _ = tx.send(Ok(SseEvent::default().event("end").data(d.status))).await;
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            }
        }
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}
