//! The HTTP API under `/api/v1`: JSON in and out, one error envelope, every route behind its role guard.

pub(crate) mod deploys;
pub(crate) mod events;
mod flags;
pub(crate) mod metrics;
pub(crate) mod system;
mod tokens;

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(system::health))
        .route("/api/v1/status", get(system::status))
        .route("/api/v1/events", get(events::list).post(events::create))
        .route("/api/v1/events/stream", get(events::stream))
        .route("/api/v1/events/{id}", get(events::one))
        .route("/api/v1/deploys", get(deploys::list).post(deploys::create))
        .route("/api/v1/deploys/{id}", get(deploys::one))
        .route("/api/v1/deploys/{id}/log", get(deploys::log))
        .route("/api/v1/deploys/{id}/log/stream", get(deploys::log_stream))
        .route("/api/v1/environments", get(deploys::environments))
        .route("/api/v1/environments/{env}/rollback", post(deploys::rollback))
        .route("/api/v1/environments/{env}/lock", post(deploys::lock).delete(deploys::unlock))
        .route("/api/v1/environments/{env}/pending", get(deploys::pending))
        .route("/api/v1/flags", get(flags::list))
        .route("/api/v1/flags/stream", get(flags::definitions))
        .route("/api/v1/flags/{key}", get(flags::one).put(flags::put).delete(flags::delete))
        .route("/api/v1/flags/{key}/knob", post(flags::knob))
        .route("/ofrep/v1/evaluate/flags", post(flags::ofrep_all).layer(DefaultBodyLimit::max(flags::OFREP_BODY_MAX)))
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(flags::ofrep_one).layer(DefaultBodyLimit::max(flags::OFREP_BODY_MAX)),
        )
        .route("/api/v1/metrics", get(metrics::list))
        .route("/api/v1/metrics/query", get(metrics::query))
        .route("/api/v1/metrics/status", get(metrics::status))
        .route("/api/v1/annotations", get(metrics::annotations))
        .route("/metrics", get(metrics::prometheus))
        .route("/api/v1/chat", get(system::chat))
        .route("/api/v1/chat/command", post(crate::chat::command))
        .route("/api/v1/chat/links", get(crate::chat::links).post(crate::chat::link))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{name}", delete(tokens::revoke))
        .route("/api/{*rest}", axum::routing::any(not_found))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no API route {}", uri.path()))
}

/// Parses a JSON body, naming the field that is wrong: `malformed JSON body at `role`: ...`.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path == "?" || path.is_empty() {
            ApiError::BadRequest(format!("malformed JSON body: {inner}"))
        } else {
            ApiError::BadRequest(format!("malformed JSON body at `{path}`: {inner}"))
        }
    })
}

/// The pairs of a query string, decoded.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect()
}
