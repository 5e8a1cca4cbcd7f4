//! Health (no auth) and the server's status over HTTP.

use super::{System, VERSION};
use crate::auth::Viewer;
use crate::http::Answer;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": VERSION}))
}

pub async fn status(_: Viewer, State(sys): State<System>) -> Answer {
    Ok(Json(sys.status().await?))
}
