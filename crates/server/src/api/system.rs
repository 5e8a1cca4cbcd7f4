//! Health (no auth) and the server's status.

use crate::auth::Viewer;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": VERSION}))
}

pub async fn status(_: Viewer, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let counts = st.store.counts().await?;
    Ok(Json(json!({
        "version": VERSION,
        "store": st.store.engine().as_str(),
        "database": st.store.url(),
        "listen": st.addr.to_string(),
        "started_at": crew_core::time::rfc3339(st.started_at),
        "uptime_seconds": st.started.elapsed().as_secs(),
        "counts": {"events": counts.events, "tokens": counts.tokens},
    })))
}

/// `GET /api/v1/chat`: the robot's connection (null when crew.toml configures none) and recent lines.
pub async fn chat(
    _: crate::auth::Viewer,
    axum::extract::State(st): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(st.chat.json())
}
