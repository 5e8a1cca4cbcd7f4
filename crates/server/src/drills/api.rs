//! Drills over HTTP: list the drills and their runs, start one, read a run's journal.

use super::Drills;
use crate::auth::{Member, Viewer};
use crate::http::{Answer, Created};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

pub async fn list(_: Viewer, State(drills): State<Drills>) -> Answer {
    let files = drills.list().await?;
    let runs = drills.runs(100).await?;
    Ok(Json(json!({"drills": files, "runs": runs})))
}

pub async fn run(Member(caller): Member, State(drills): State<Drills>, Path(name): Path<String>) -> Created {
    let v = drills.run(&name, caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub async fn one(_: Viewer, State(drills): State<Drills>, Path(id): Path<String>) -> Answer {
    Ok(Json(drills.show(&id).await?))
}
