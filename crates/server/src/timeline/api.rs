//! The timeline over HTTP: query with filters and paging, read one, record one, and stream live (SSE).

use super::{parse_filter, Record, Timeline};
use crate::auth::{Member, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::http::{parse_json, query_pairs, Answer, Created};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use crew_core::{Cursor, Event, EventFilter};
use serde_json::json;
use std::collections::HashSet;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub async fn list(_: Viewer, State(tl): State<Timeline>, RawQuery(q): RawQuery) -> Answer {
    let filter = parse_filter(&query_pairs(q.as_deref()), true)?;
    let page = tl.query(&filter).await?;
    Ok(Json(json!({"events": page.events, "next_cursor": page.next.map(Cursor::encode)})))
}

pub async fn one(_: Viewer, State(tl): State<Timeline>, Path(id): Path<String>) -> ApiResult<Json<Event>> {
    Ok(Json(tl.one(&id).await?))
}

pub async fn create(Member(caller): Member, State(tl): State<Timeline>, body: Bytes) -> Created<Event> {
    let req: Record = parse_json(&body)?;
    Ok((StatusCode::CREATED, Json(tl.record(caller.actor(), req).await?)))
}

fn sse_event(e: &Event) -> SseEvent {
    SseEvent::default().id(e.seq.to_string()).json_data(e).expect("events serialize")
}

/// Events as they are committed, filtered. With `Last-Event-ID` (sent by browsers when they reconnect) the
/// stream first replays what was missed. Ends when the server shuts down.
pub async fn stream(
    Viewer(caller): Viewer,
    State(tl): State<Timeline>,
    State(auth): State<crate::auth::Auth>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult<impl axum::response::IntoResponse> {
    let mut pairs = query_pairs(q.as_deref());
    // `after` (the newest event a page already shows) resumes like Last-Event-ID, which wins when both are sent.
    let after = match pairs.iter().position(|(k, _)| k == "after") {
        Some(i) => {
            let v = pairs.remove(i).1;
            Some(v.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("filter `after`: `{v}` is not an event id from this stream"))
            })?)
        }
        None => None,
    };
    let filter = parse_filter(&pairs, false)?;
    let resume: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(after)
        .filter(|s| *s > 0);
    let mut held = auth.open_stream(&caller).await?;
    // Subscribe before replaying, so nothing committed in between is missed.
    let mut live = tl.subscribe();
    let (tx, rx) = mpsc::channel(256);
    let shutdown = tl.shutdown();
    tokio::spawn(async move {
        let _ = tx.send(Ok(SseEvent::default().comment("crew timeline"))).await;
        let mut last = resume.unwrap_or(0);
        let mut replayed = HashSet::new();
        if resume.is_some() {
            match replay(&tl, &filter, &mut last, &tx).await {
                Ok(seqs) => replayed = seqs,
                Err(()) => return,
            }
        }
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = held.ended() => return,
                _ = tx.closed() => return,
                next = live.recv() => next,
            };
            match next {
                Ok(e) => {
                    if replayed.remove(&e.seq) || !filter.matches(&e) {
                        continue;
                    }
                    last = last.max(e.seq);
                    if tx.send(Ok(sse_event(&e))).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "a live stream fell behind; replaying from the store");
                    match replay(&tl, &filter, &mut last, &tx).await {
                        Ok(seqs) => replayed.extend(seqs),
                        Err(()) => return,
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

/// At most this many events are replayed to a resuming client; one further behind should reload.
const MAX_REPLAY: usize = 10_000;

/// Sends the stored events after `last`, oldest first (at most [`MAX_REPLAY`]); returns their sequence numbers
/// so the live copies of the same events are skipped. `Err` when the client has gone.
async fn replay(
    tl: &Timeline,
    filter: &EventFilter,
    last: &mut i64,
    tx: &mpsc::Sender<Result<SseEvent, Infallible>>,
) -> Result<HashSet<i64>, ()> {
    let mut seqs = HashSet::new();
    loop {
        let batch = match tl.after(*last, filter, 500).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "replaying the timeline failed");
                return Err(());
            }
        };
        let done = batch.len() < 500 || seqs.len() + batch.len() >= MAX_REPLAY;
        for e in &batch {
            *last = (*last).max(e.seq);
            seqs.insert(e.seq);
            tx.send(Ok(sse_event(e))).await.map_err(|_| ())?;
        }
        if done {
            return Ok(seqs);
        }
    }
}
