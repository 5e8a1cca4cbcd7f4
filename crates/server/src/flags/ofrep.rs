//! OFREP (https://openfeature.dev/specification/appendix-c): every OpenFeature SDK can evaluate crew's flags,
//! one or all at once (with an ETag), hear of changes on the event stream the bulk answer names (OFREP's ADR
//! 0008), and SDKs that evaluate locally follow the definitions stream. A single-flag evaluation of a split for
//! a user is handed to the experiments service as an exposure.

use super::Flags;
use crate::auth::Evaluator;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crew_flags::{ErrorCode, Resolution};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The largest OFREP request body: a context is a handful of attributes, so a megabyte is generous; more is
/// refused with 413 before it is read.
pub const OFREP_BODY_MAX: usize = 1 << 20;

/// The `context` of an OFREP request (an empty body means no context); `key` names the flag in errors.
// The error is the OFREP answer itself, built once for a bad request: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
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
    // OFREP's request is an object with an object `context`; a `targetingKey`, when given, is a string. A
    // missing one still evaluates (rules that need it answer their default), as flagd does.
    if !v.is_object() {
        return Err(bad("the body must be a JSON object: {\"context\": {...}}".into()));
    }
    let ctx = match v.get_mut("context").map(Value::take) {
        None | Some(Value::Null) => json!({}),
        Some(c @ Value::Object(_)) => c,
        Some(_) => return Err(bad("`context` must be an object".into())),
    };
    match ctx.get("targetingKey") {
        None | Some(Value::String(_)) => Ok(ctx),
        Some(_) => Err(bad("`context.targetingKey` must be a string".into())),
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
pub async fn one(
    _: Evaluator,
    State(flags): State<Flags>,
    State(experiments): State<crate::experiments::Experiments>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let ctx = match context(body, Some(&key)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let c = flags.current();
    let r = c.set.evaluate(&key, &ctx, now());
    // An evaluation of a split for a user is an exposure of the bucket test (the bulk call is a prefetch, not a
    // look: SDKs that use it report what they show with `POST /api/v1/exposures`).
    if c.splits.contains_key(&key) && r.error.is_none() {
        experiments.evaluated(&c, &key, &ctx, r.variant.as_deref());
    }
    let (status, body) = ofrep_json(&key, &r);
    (status, Json(body)).into_response()
}

/// `POST /ofrep/v1/evaluate/flags`: every flag, with an ETag; `If-None-Match` with the same ETag gets 304.
pub async fn all(
    _: Evaluator,
    State(flags): State<Flags>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let ctx = match context(body, None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let c = flags.current();
    // The answers depend on the definitions and the context, so the ETag is made from both.
    let etag = format!("\"{}\"", &format!("{:x}", Sha256::digest(format!("{}:{}", c.version, ctx).as_bytes()))[..20]);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    // Most sets are a few cheap flags (a static flag or a beta list is well under a microsecond): evaluated here,
    // as before, since handing them to another thread would cost more than the work. Every evaluation is bounded
    // by the engine's step budget, but a costly rule, or many flags over a large context, add up: once the steps
    // taken in place pass INLINE_STEPS (about a millisecond), the rest goes to the blocking pool, so one bulk
    // request holds a runtime worker at most that long plus one evaluation's budget, and health checks and the
    // other requests keep being served. Counting steps rather than flags keeps a set of many static flags fast.
    const INLINE_STEPS: u64 = 50_000;
    fn sorted(set: &crew_flags::FlagSet) -> Vec<&String> {
        let mut keys: Vec<&String> = set.keys().collect();
        keys.sort();
        keys
    }
    let keys = sorted(&c.set);
    let mut flags = Vec::with_capacity(keys.len());
    let mut spent = 0u64;
    for k in &keys {
        if spent > INLINE_STEPS {
            break;
        }
        let e = c.set.evaluate_ref(k, &ctx, now());
        spent += e.steps;
        flags.push(ofrep_json(k, &e.to_resolution()).1);
    }
    let done = flags.len();
    if done < keys.len() {
        drop(keys);
        let more = tokio::task::spawn_blocking(move || {
            let keys = sorted(&c.set);
            keys[done..].iter().map(|k| ofrep_json(k, &c.set.evaluate(k, &ctx, now())).1).collect::<Vec<_>>()
        })
        .await;
        match more {
            Ok(more) => flags.extend(more),
            Err(e) => {
                tracing::error!(error = %e, "bulk flag evaluation failed");
                let body = json!({"errorCode": "GENERAL", "errorDetails": "evaluation failed"});
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        }
    }
    (StatusCode::OK, [(header::ETAG, etag)], Json(json!({"flags": flags, "eventStreams": event_streams()})))
        .into_response()
}

/// Where OFREP's ADR 0008 has providers of the bulk evaluation hear that it changed: crew's own event stream,
/// as a path on the origin the provider already talks to (`endpoint.requestUri`), so it works behind any proxy
/// and carries no secret; the provider sends the credentials it evaluates with. `inactivityDelaySec` is the
/// protocol's default, said explicitly.
fn event_streams() -> Value {
    json!([{"type": "sse", "endpoint": {"requestUri": EVENTS_PATH}, "inactivityDelaySec": 120}])
}

/// The route of [`events`].
pub const EVENTS_PATH: &str = "/ofrep/v1/events";

/// `GET /ofrep/v1/events`: OFREP's change notifications (ADR 0008, `service/event-streams.yaml`). Each change of
/// the definitions, from any replica, is one SSE `message` whose data is
/// `{"type": "refetchEvaluation", "etag": VERSION}`, its id that version; changes faster than a provider reads
/// are one notification. A provider that reconnects with `Last-Event-ID` hears at once when the definitions
/// changed since (a replay of what it missed, in one). A live stream like crew's others: bounded per token and
/// in all, and it ends when its token is revoked or the server stops.
pub async fn events(
    Evaluator(caller): Evaluator,
    State(flags): State<Flags>,
    State(platform): State<crate::state::Platform>,
    State(auth): State<crate::auth::Auth>,
    headers: HeaderMap,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let mut held = match auth.open_stream(&caller).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let mut rx = flags.subscribe();
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let missed = last.is_some_and(|id| id != rx.borrow().version);
    let shutdown = platform.shutdown.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        let notice = |version: &str| {
            let data = json!({"type": "refetchEvaluation", "etag": version});
            Event::default().event("message").id(version).data(data.to_string())
        };
        if missed {
            let version = rx.borrow_and_update().version.clone();
            if tx.send(Ok(notice(&version))).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // A revoked key stops hearing of changes at once.
                _ = held.ended() => return,
                _ = tx.closed() => return,
                r = rx.changed() => if r.is_err() { return },
            }
            let version = rx.borrow_and_update().version.clone();
            if tx.send(Ok(notice(&version))).await.is_err() {
                return;
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out)).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /api/v1/flags/stream`: the definitions as server-sent events, for SDKs that evaluate locally: the whole
/// flagd document at once, then again on every change (from any replica). Evaluation keys may read it.
pub async fn definitions(
    Evaluator(caller): Evaluator,
    State(flags): State<Flags>,
    State(platform): State<crate::state::Platform>,
    State(auth): State<crate::auth::Auth>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let mut held = match auth.open_stream(&caller).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let mut rx = flags.subscribe();
    let shutdown = platform.shutdown.clone();
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
                // An application's key that is revoked stops hearing the definitions at once.
                _ = held.ended() => return,
                _ = tx.closed() => return,
                r = rx.changed() => if r.is_err() { return },
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out)).keep_alive(KeepAlive::default()).into_response()
}
