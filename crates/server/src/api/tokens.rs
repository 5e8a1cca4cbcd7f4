//! Tokens: create (the secret is shown once), list, revoke. Admin only; each change is an event.

use crate::api::parse_json;
use crate::auth::{hash_secret, new_secret, Admin};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use crew_core::{NewEvent, Role};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: String,
}

/// A token's name: the person or application it names, which becomes the actor of what it does.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "bad token name `{name}`: use 1 to 64 lowercase letters, digits, `.`, `_`, `@` or `-`"
        )))
    }
}

fn token_json(t: &crew_store::TokenInfo) -> Value {
    json!({
        "name": t.name,
        "role": t.role,
        "created_at": crew_core::time::rfc3339(t.created_at),
        "created_by": t.created_by,
    })
}

pub async fn create(
    Admin(caller): Admin,
    State(st): State<AppState>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req: CreateToken = parse_json(&body)?;
    check_name(&req.name)?;
    let role: Role = req.role.parse().map_err(ApiError::BadRequest)?;
    let secret = new_secret();
    let info = crew_store::TokenInfo {
        name: req.name.clone(),
        role,
        created_at: chrono::Utc::now(),
        created_by: caller.name.clone(),
    };
    let event = NewEvent::new(
        caller.actor(),
        "token.created",
        &format!("token:{}", req.name),
        format!("{} created token `{}` with role {}", caller.name, req.name, role),
    )
    .with_data(json!({"name": req.name, "role": role}));
    st.store.create_token(&info, &hash_secret(&secret), event).await?;
    let mut out = token_json(&info);
    out["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn list(Admin(_): Admin, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let tokens = st.store.tokens().await?;
    Ok(Json(json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()})))
}

pub async fn revoke(
    Admin(caller): Admin,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    if check_name(&name).is_err() {
        return Err(ApiError::NotFound(format!("no token named `{}`", name.escape_debug())));
    }
    let event = NewEvent::new(
        caller.actor(),
        "token.revoked",
        &format!("token:{name}"),
        format!("{} revoked token `{name}`", caller.name),
    )
    .with_data(json!({"name": name}));
    let e = st.store.revoke_token(&name, event).await?;
    // This replica forgets it before answering; the others when the event reaches their bus.
    st.tokens.clear();
    Ok(Json(json!({"name": name, "revoked": true, "event": e.id})))
}
