//! The robot over HTTP: its commands run as the caller (`POST /api/v1/chat/command`), its status, and the
//! identity links (`crew chat link`).

use super::{Chat, Robot};
use crate::auth::{Admin, Caller, Viewer};
use crate::error::ApiError;
use crate::http::parse_json;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use crew_chat::commands;
use crew_core::Role;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/v1/chat`: the robot's connection (null when crew.toml configures none) and recent lines.
pub async fn status(_: Viewer, State(chat): State<Chat>) -> Json<Value> {
    Json(chat.status.json())
}

/// `POST /api/v1/chat/command` `{"text": "!status"}`: the robot's commands over HTTP, run as the caller with
/// the caller's role (the same registry and code as in a room). A long-running command's outcome is not
/// reported here: follow the deploy it names.
pub async fn command(caller: Caller, State(robot): State<Robot>, body: Bytes) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        text: String,
    }
    caller.require(Role::Viewer)?;
    let req: Req = parse_json(&body)?;
    let inv = match commands::parse(&req.text) {
        None => return Err(ApiError::BadRequest("a command starts with `!`: try `!help`".into())),
        Some(Err(e)) => return Err(ApiError::BadRequest(e)),
        Some(Ok(i)) => i,
    };
    let spec = commands::spec(inv.name).expect("parsed commands are known");
    caller.require(spec.role)?;
    let (out, _) = tokio::sync::mpsc::channel(1);
    let reply = super::run(&robot, &inv, caller.actor(), "the API", &out).await?;
    Ok(Json(json!({"command": inv.name, "reply": reply})))
}

/// `GET /api/v1/chat/links`: the identities linked by `crew chat link` (crew.toml's [[chat.users]] too).
pub async fn links(_: Viewer, State(chat): State<Chat>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"links": chat.links().await?})))
}

/// `POST /api/v1/chat/links` `{identity, user}` links (admin); `{identity, user: null}` removes the link.
pub async fn link(Admin(caller): Admin, State(chat): State<Chat>, body: Bytes) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        identity: String,
        user: Option<String>,
    }
    let req: Req = parse_json(&body)?;
    let e = chat.link(&req.identity, req.user.as_deref(), caller.actor()).await?;
    Ok(Json(json!({"identity": req.identity.trim(), "user": req.user, "event": e.id})))
}
