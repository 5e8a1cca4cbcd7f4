//! Runbooks over HTTP: the branch head's runbooks listed, and one runbook with its Markdown and its HTML.

use super::Runbooks;
use crate::auth::Viewer;
use crate::http::Answer;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::json;

/// `GET /api/v1/runbooks`: every runbook (path, title, missing sections, page).
pub async fn list(_: Viewer, State(runbooks): State<Runbooks>) -> Answer {
    let list = runbooks.list().await?;
    Ok(Json(json!({"runbooks": list})))
}

/// `GET /api/v1/runbooks/{*path}`: one runbook by path or short name; 404 naming it when the branch has none.
pub async fn one(_: Viewer, State(runbooks): State<Runbooks>, Path(path): Path<String>) -> Answer {
    let rb = runbooks.get(&path).await?;
    Ok(Json(json!(rb)))
}
