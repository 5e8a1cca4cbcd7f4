//! On-call over HTTP: who is on call, a schedule's final segments, overrides and taking the shift, and the
//! iCal feeds (authenticated by their own secret key, so calendar apps can subscribe).

use super::Oncall;
use crate::auth::{Member, Viewer};
use crate::error::ApiError;
use crate::http::{parse_json, query_pairs, Answer, Created};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

/// A time as people write it, and also a span ahead of now (`+8h`): overrides are mostly in the future.
pub fn time(field: &str, v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("`{field}`: {e}"));
    match v.trim().strip_prefix('+') {
        Some(span) => {
            let d = crew_core::time::parse_span(span).map_err(bad)?;
            let t = now.checked_add_signed(d).filter(|t| t.timestamp() <= 253_402_300_799);
            t.ok_or_else(|| bad(format!("`{v}` is too far ahead (years 0 to 9999)")))
        }
        None => crew_core::time::parse_time(v, now).map_err(bad),
    }
}

pub async fn now(_: Viewer, State(oncall): State<Oncall>, RawQuery(q): RawQuery) -> Answer {
    let mut at = Utc::now();
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "at" => at = time("at", &v, Utc::now())?,
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected at"))),
        }
    }
    let who = oncall.now(None, at).await?;
    Ok(Json(json!({"at": crew_core::time::rfc3339(at), "schedules": who})))
}

pub async fn schedule(
    _: Viewer,
    State(oncall): State<Oncall>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let now = Utc::now();
    let (mut from, mut to, mut at) = (now, now + chrono::Duration::days(14), now);
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "from" => from = time("from", &v, now)?,
            "to" => to = time("to", &v, now)?,
            "at" => at = time("at", &v, now)?,
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected from, to, at"))),
        }
    }
    let (segments, overrides) = oncall.segments(&name, from, to).await?;
    let who = oncall.now(Some(&name), at).await?.pop();
    Ok(Json(json!({
        "schedule": name, "from": crew_core::time::rfc3339(from), "to": crew_core::time::rfc3339(to),
        "segments": segments, "overrides": overrides, "now": who.as_ref().map(|w| &w.now),
        "next": who.as_ref().and_then(|w| w.next.as_ref()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOverride {
    /// Who; the caller when absent ("take the shift").
    user: Option<String>,
    /// When; now when absent.
    from: Option<String>,
    until: String,
}

pub async fn add_override(
    Member(caller): Member,
    State(oncall): State<Oncall>,
    Path(name): Path<String>,
    body: Bytes,
) -> Created {
    let o: NewOverride = parse_json(&body)?;
    let now = Utc::now();
    let from = match &o.from {
        Some(f) => time("from", f, now)?,
        None => now,
    };
    let until = time("until", &o.until, now)?;
    let user = o.user.unwrap_or_else(|| caller.name.clone());
    let stored = oncall.add_override(&name, &user, from, until, caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(json!(stored))))
}

/// `DELETE /api/v1/oncall/{schedule}/overrides/{id}`.
pub async fn remove_override(
    Member(caller): Member,
    State(oncall): State<Oncall>,
    Path((name, id)): Path<(String, String)>,
) -> Answer {
    let id: i64 = id.trim_start_matches('#').parse().map_err(|_| ApiError::NotFound(format!("no override `{id}`")))?;
    let o = oncall.remove_override(&name, id, caller.actor()).await?;
    Ok(Json(json!(o)))
}

/// A schedule's feed key is shared by everyone subscribed: only an admin makes a new one.
pub async fn rotate_schedule_feed(
    crate::auth::Admin(caller): crate::auth::Admin,
    State(oncall): State<Oncall>,
    Path(name): Path<String>,
) -> Answer {
    let path = oncall.rotate_feed(&format!("schedule:{name}"), caller.actor()).await?;
    Ok(Json(json!({"feed": path})))
}

pub async fn rotate_person_feed(
    Member(caller): Member,
    State(oncall): State<Oncall>,
    Path(name): Path<String>,
) -> Answer {
    if oncall.person(&name).is_none() {
        return Err(ApiError::NotFound(format!("no person `{name}` in crew.toml's [people]")));
    }
    // People rotate their own feed; admins anyone's.
    if caller.name != name && !caller.role.allows(crew_core::Role::Admin) {
        return Err(ApiError::Forbidden(format!("only {name} or an admin may make a new key for {name}'s feed")));
    }
    let path = oncall.rotate_feed(&format!("person:{name}"), caller.actor()).await?;
    Ok(Json(json!({"feed": path})))
}

/// A feed's query: its `key`, and the window's `from` and `to` (each optional).
type FeedQuery = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn feed_query(q: Option<&str>) -> Result<FeedQuery, ApiError> {
    let now = Utc::now();
    let (mut key, mut from, mut to) = (String::new(), None, None);
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "key" => key = v,
            "from" => from = Some(time("from", &v, now)?),
            "to" => to = Some(time("to", &v, now)?),
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected key, from, to"))),
        }
    }
    Ok((key, from, to))
}

fn calendar(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/calendar; charset=utf-8")], text).into_response()
}

async fn serve_feed(oncall: &Oncall, feed: &str, q: Option<&str>) -> Response {
    let answer = match feed_query(q) {
        Ok((key, from, to)) => oncall.feed(feed, &key, from, to).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(t) => calendar(t),
        Err(e) => e.into_response(),
    }
}

pub async fn schedule_feed(State(oncall): State<Oncall>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Response {
    serve_feed(&oncall, &format!("schedule:{name}"), q.as_deref()).await
}

pub async fn person_feed(State(oncall): State<Oncall>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Response {
    serve_feed(&oncall, &format!("person:{name}"), q.as_deref()).await
}
