//! Health (no auth) and the server's status over HTTP.

use super::{System, VERSION};
use crate::auth::Viewer;
use crate::error::ApiResult;
use crate::http::{Least, Route};
use axum::extract::State;
use axum::Json;
use crew_core::Role;
use serde_json::{json, Value};

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/health", Least::Anyone, health),
        Route::get("/api/v1/status", Least::Token(Role::Viewer), status),
    ]
}

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": VERSION}))
}

pub async fn status(_: Viewer, State(sys): State<System>) -> ApiResult<Json<Value>> {
    Ok(Json(sys.status().await?))
}
