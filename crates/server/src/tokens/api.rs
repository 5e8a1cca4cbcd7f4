//! Tokens over HTTP: create (the secret is shown once), list, revoke. Admin only.

use super::Tokens;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::http::{parse_json, Answer, Created};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use crew_core::Role;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: String,
}

fn token_json(t: &crew_store::TokenInfo) -> Value {
    json!({
        "name": t.name,
        "role": t.role,
        "created_at": crew_core::time::rfc3339(t.created_at),
        "created_by": t.created_by,
    })
}

pub async fn create(Admin(caller): Admin, State(tokens): State<Tokens>, body: Bytes) -> Created {
    let req: CreateToken = parse_json(&body)?;
    super::check_name(&req.name)?;
    let role: Role = req.role.parse().map_err(ApiError::BadRequest)?;
    let (info, secret) = tokens.create(&req.name, role, caller.actor()).await?;
    let mut out = token_json(&info);
    out["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn list(Admin(_): Admin, State(tokens): State<Tokens>) -> Answer {
    let list = tokens.list().await?;
    Ok(Json(json!({"tokens": list.iter().map(token_json).collect::<Vec<_>>()})))
}

pub async fn revoke(Admin(caller): Admin, State(tokens): State<Tokens>, Path(name): Path<String>) -> Answer {
    let e = tokens.revoke(&name, caller.actor()).await?;
    Ok(Json(json!({"name": name, "revoked": true, "event": e.id})))
}
