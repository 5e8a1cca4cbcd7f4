//! Flags over HTTP: list, show, set a definition, turn a knob (Flickr's words), and OFREP evaluation.

use crate::api::parse_json;
use crate::auth::{Caller, Member, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::flags::{change, check_key};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crew_core::Role;
use crew_flags::knobs::{self, Knob};
use crew_flags::{ErrorCode, Resolution};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn flag_json(f: &crew_store::StoredFlag) -> Value {
    json!({
        "key": f.key,
        "definition": f.definition,
        "description": knobs::describe(&f.definition),
        "updated_at": crew_core::time::rfc3339(f.updated_at),
        "updated_by": f.updated_by,
    })
}

pub async fn list(_: Viewer, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let c = st.flags.current();
    Ok(Json(json!({"flags": c.stored.iter().map(flag_json).collect::<Vec<_>>()})))
}

pub async fn one(_: Viewer, State(st): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    check_key(&key)?;
    let c = st.flags.current();
    let f = c.stored.iter().find(|f| f.key == key).ok_or_else(|| ApiError::NotFound(format!("no flag `{key}`")))?;
    let mut filter = crew_core::EventFilter::new().limit(1);
    filter.subject = Some(format!("flag:{key}"));
    let last = st.store.query(&filter).await?.events.into_iter().next();
    let mut out = flag_json(f);
    out["last_change"] = json!(last);
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFlag {
    definition: Value,
    reason: String,
}

pub async fn put(
    Member(caller): Member,
    State(st): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: PutFlag = parse_json(&body)?;
    let (before, after) = change(&st, &key, Some(req.definition), &req.reason, caller.actor()).await?;
    Ok(Json(json!({"key": key, "before": before, "after": after})))
}

pub async fn delete(
    Member(caller): Member,
    State(st): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Why {
        reason: String,
    }
    let req: Why = parse_json(&body)?;
    let (before, _) = change(&st, &key, None, &req.reason, caller.actor()).await?;
    Ok(Json(json!({"key": key, "before": before, "after": null})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnKnob {
    /// `on`, `off`, `rollout`, `beta`, `dark`, `split`.
    knob: String,
    percent: Option<u8>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    split: Option<String>,
    reason: String,
}

pub async fn knob(
    Member(caller): Member,
    State(st): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: TurnKnob = parse_json(&body)?;
    let percent = || req.percent.ok_or_else(|| ApiError::BadRequest(format!("`{}` needs a percent", req.knob)));
    let knob = match req.knob.as_str() {
        "on" => Knob::On,
        "off" => Knob::Off,
        "rollout" => Knob::Rollout(percent()?),
        "dark" => Knob::Dark(percent()?),
        "beta" => Knob::Beta { users: req.users.clone(), groups: req.groups.clone() },
        "split" => Knob::Split(knobs::parse_split(req.split.as_deref().unwrap_or("")).map_err(ApiError::BadRequest)?),
        other => {
            return Err(ApiError::BadRequest(format!("unknown knob `{other}`: on, off, rollout, beta, dark or split")))
        }
    };
    let (before, after) = crate::flags::turn(&st, &key, &knob, false, &req.reason, caller.actor()).await?;
    Ok(Json(json!({"key": key, "before": before, "after": after, "description": after.as_ref().map(knobs::describe)})))
}

// ---- OFREP (https://openfeature.dev/specification/appendix-c): every OpenFeature SDK can use crew. ----

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The largest OFREP request body: a context is a handful of attributes, so a megabyte is generous; more is
/// refused with 413 before it is read.
pub const OFREP_BODY_MAX: usize = 1 << 20;

/// The `context` of an OFREP request (an empty body means no context); `key` names the flag in errors.
fn context(body: Result<Bytes, BytesRejection>, key: Option<&str>) -> Result<Value, Response> {
    let error = |status: StatusCode, code: &str, d: String| {
        let mut body = json!({"errorCode": code, "errorDetails": d});
        if let Some(k) = key {
            body["key"] = json!(k);
        }
        (status, Json(body)).into_response()
    };
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "GENERAL",
            format!("request body over {} KiB: send only the evaluation context", OFREP_BODY_MAX >> 10),
        ),
        status => error(status, "GENERAL", r.body_text()),
    })?;
    if body.is_empty() {
        return Ok(json!({}));
    }
    let bad = |d: String| error(StatusCode::BAD_REQUEST, "INVALID_CONTEXT", d);
    let mut v: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("malformed JSON body: {e}")))?;
    match v.get_mut("context").map(Value::take) {
        None | Some(Value::Null) => Ok(json!({})),
        Some(c @ Value::Object(_)) => Ok(c),
        Some(_) => Err(bad("`context` must be an object".into())),
    }
}

fn ofrep_json(key: &str, r: &Resolution) -> (StatusCode, Value) {
    match &r.error {
        Some((code, detail)) => {
            // OFREP: 404 for a missing flag; every other evaluation error is a 400 with its errorCode.
            let status = match code {
                ErrorCode::FlagNotFound => StatusCode::NOT_FOUND,
                ErrorCode::ParseError | ErrorCode::TypeMismatch | ErrorCode::General => StatusCode::BAD_REQUEST,
            };
            (status, json!({"key": key, "errorCode": code.as_str(), "errorDetails": detail, "metadata": r.metadata}))
        }
        None => {
            let mut out = json!({"key": key, "reason": r.reason.as_str(), "metadata": r.metadata});
            if let (Some(v), Some(variant)) = (&r.value, &r.variant) {
                out["value"] = v.clone();
                out["variant"] = json!(variant);
            }
            (StatusCode::OK, out)
        }
    }
}

/// `POST /ofrep/v1/evaluate/flags/{key}`: one flag. A switched-off flag answers 200 with reason DISABLED and
/// no value (the caller's code default wins).
pub async fn ofrep_one(
    caller: Caller,
    State(st): State<AppState>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = caller.require(Role::Evaluate) {
        return e.into_response();
    }
    let ctx = match context(body, Some(&key)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = st.flags.current().set.evaluate(&key, &ctx, now());
    let (status, body) = ofrep_json(&key, &r);
    (status, Json(body)).into_response()
}

/// `POST /ofrep/v1/evaluate/flags`: every flag, with an ETag; `If-None-Match` with the same ETag gets 304.
pub async fn ofrep_all(
    caller: Caller,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = caller.require(Role::Evaluate) {
        return e.into_response();
    }
    let ctx = match context(body, None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let c = st.flags.current();
    // The answers depend on the definitions and the context, so the ETag is made from both.
    let etag = format!("\"{}\"", &format!("{:x}", Sha256::digest(format!("{}:{}", c.version, ctx).as_bytes()))[..20]);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut keys: Vec<&String> = c.set.keys().collect();
    keys.sort();
    let flags: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            let r = c.set.evaluate(k, &ctx, now());
            ofrep_json(k, &r).1
        })
        .collect();
    (StatusCode::OK, [(header::ETAG, etag)], Json(json!({"flags": flags}))).into_response()
}

/// `GET /api/v1/flags/stream`: the definitions as server-sent events, for SDKs that evaluate locally: the whole
/// flagd document at once, then again on every change (from any replica). Evaluation keys may read it.
pub async fn definitions(caller: Caller, State(st): State<AppState>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    if let Err(e) = caller.require(Role::Evaluate) {
        return e.into_response();
    }
    let mut rx = st.flags.subscribe();
    let shutdown = st.shutdown.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        loop {
            let doc = rx.borrow_and_update().document();
            let ev =
                Event::default().event("definitions").id(doc["version"].as_str().unwrap_or("")).data(doc.to_string());
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                r = rx.changed() => if r.is_err() { return },
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out)).keep_alive(KeepAlive::default()).into_response()
}
