//! OFREP (https://openfeature.dev/specification/appendix-c): every OpenFeature SDK can evaluate crew's flags,
//! one or all at once (with an ETag), hear of changes on the event stream the bulk answer names (OFREP's ADR
//! 0008), and SDKs that evaluate locally follow the definitions stream. A single-flag evaluation of a split for
//! a user is handed to the experiments service as an exposure.

use super::Flags;
use crate::auth::Evaluator;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crew_flags::{ErrorCode, Evaluation};
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

/// OFREP's status for an evaluation: 404 for a missing flag; every other evaluation error is a 400 with its
/// errorCode; 200 otherwise.
fn status(e: &Evaluation) -> StatusCode {
    match &e.error {
        None => StatusCode::OK,
        Some((ErrorCode::FlagNotFound, _)) => StatusCode::NOT_FOUND,
        Some((ErrorCode::ParseError | ErrorCode::TypeMismatch | ErrorCode::General, _)) => StatusCode::BAD_REQUEST,
    }
}

/// Appends the OFREP answer of flag `key` to a JSON body being written.
fn write_answer(out: &mut Vec<u8>, key: &str, e: &Evaluation) {
    e.ofrep(key).write_json(out);
}

/// A JSON body already written.
fn json_body(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// `POST /ofrep/v1/evaluate/flags/{key}`: one flag. A switched-off flag answers 200 with reason DISABLED and
/// no value (the caller's code default wins). The answer is written straight from the borrowed evaluation.
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
    let e = c.set.evaluate_ref(&key, &ctx, now());
    // An evaluation of a split for a user is an exposure of the bucket test (the bulk call is a prefetch, not a
    // look: SDKs that use it report what they show with `POST /api/v1/exposures`).
    if e.error.is_none() && c.splits.contains_key(&key) {
        experiments.evaluated(&c, &key, &ctx, e.variant);
    }
    let mut out = Vec::with_capacity(ANSWER_BYTES);
    write_answer(&mut out, &key, &e);
    json_body(status(&e), out)
}

/// What one flag's answer usually takes (a key, a reason, a small value and variant, no metadata): the buffer
/// is made this large per flag at once.
const ANSWER_BYTES: usize = 128;

/// `POST /ofrep/v1/evaluate/flags`: every flag, with an ETag; `If-None-Match` with the same ETag gets 304. The
/// body `{"flags": [...], "eventStreams": [...]}` is written in one pass into one buffer, each answer straight
/// from its borrowed evaluation.
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
    let etag = etag(&c.version, &ctx);
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
        keys.sort_unstable();
        keys
    }
    /// Writes the answers of `keys[from..]` (a comma before each but the very first); stops once the steps
    /// pass `limit`, saying how far it got.
    fn write(
        out: &mut Vec<u8>,
        set: &crew_flags::FlagSet,
        keys: &[&String],
        from: usize,
        ctx: &Value,
        limit: u64,
    ) -> usize {
        let (now, mut spent) = (now(), 0u64);
        for (i, k) in keys.iter().enumerate().skip(from) {
            if spent > limit {
                return i;
            }
            let e = set.evaluate_ref(k, ctx, now);
            spent += e.steps;
            if i > 0 {
                out.push(b',');
            }
            write_answer(out, k, &e);
        }
        keys.len()
    }
    let keys = sorted(&c.set);
    let mut out = Vec::with_capacity(64 + EVENT_STREAMS.len() + keys.len() * ANSWER_BYTES);
    out.extend_from_slice(b"{\"flags\":[");
    let done = write(&mut out, &c.set, &keys, 0, &ctx, INLINE_STEPS);
    if done < keys.len() {
        drop(keys);
        let more = tokio::task::spawn_blocking(move || {
            let keys = sorted(&c.set);
            let mut more = Vec::with_capacity((keys.len() - done) * ANSWER_BYTES);
            write(&mut more, &c.set, &keys, done, &ctx, u64::MAX);
            more
        })
        .await;
        match more {
            Ok(more) => out.extend_from_slice(&more),
            Err(e) => {
                tracing::error!(error = %e, "bulk flag evaluation failed");
                let body = json!({"errorCode": "GENERAL", "errorDetails": "evaluation failed"});
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        }
    }
    out.extend_from_slice(b"],\"eventStreams\":");
    out.extend_from_slice(EVENT_STREAMS.as_bytes());
    out.push(b'}');
    let mut r = json_body(StatusCode::OK, out);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// The bulk answer's ETag: the answers depend on the definitions and the context, so it is made from both (the
/// first 80 bits of SHA-256 over `VERSION:CONTEXT`, the context as compact JSON), quoted.
fn etag(version: &str, ctx: &Value) -> String {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut h = Sha256::new();
    let _ = write!(h, "{version}:");
    // Hashing cannot fail, and a context parsed from JSON serialises.
    let _ = serde_json::to_writer(&mut h, ctx);
    let mut tag = String::with_capacity(22);
    tag.push('"');
    for b in &h.finalize()[..10] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

/// Where OFREP's ADR 0008 has providers of the bulk evaluation hear that it changed: crew's own event stream,
/// as a path on the origin the provider already talks to (`endpoint.requestUri`, [`EVENTS_PATH`]), so it works
/// behind any proxy and carries no secret; the provider sends the credentials it evaluates with.
/// `inactivityDelaySec` is the protocol's default, said explicitly. Written as the bulk answer's JSON.
const EVENT_STREAMS: &str = r#"[{"type":"sse","endpoint":{"requestUri":"/ofrep/v1/events"},"inactivityDelaySec":120}]"#;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_name_the_events_route() {
        let v: Value = serde_json::from_str(EVENT_STREAMS).unwrap();
        assert_eq!(v, json!([{"type": "sse", "endpoint": {"requestUri": EVENTS_PATH}, "inactivityDelaySec": 120}]));
    }

    /// The ETag is what it was when the whole `VERSION:CONTEXT` string was formatted first, so ETags that
    /// providers hold stay valid across an upgrade.
    #[test]
    fn etags_are_unchanged() {
        let ctx = json!({"targetingKey": "user-7", "plan": "pro", "n": [1, 2.5, null], "s": "é\"\n"});
        let want = format!("\"{}\"", &format!("{:x}", Sha256::digest(format!("v42:{ctx}").as_bytes()))[..20]);
        assert_eq!(etag("v42", &ctx), want);
    }
}
