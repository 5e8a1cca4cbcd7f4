//! The timeline domain: query it, read one event, record people's own events (crew's areas are refused), and
//! what live streams need (the bus and the replay after a given event). Every other domain appends its own
//! events with its changes, in the store's transactions; this service is how they read the timeline.

pub mod api;
pub mod web;

use crate::error::ApiError;
use crew_core::{Actor, Event, EventFilter, Link, NewEvent};
use crew_store::{Page, Store};
use serde::Deserialize;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Timeline {
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
}

/// An event a person records (`POST /api/v1/events`): the caller is the actor, the server sets id and time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub kind: String,
    #[serde(default)]
    pub subject: String,
    pub summary: String,
    #[serde(default)]
    pub data: serde_json::Value,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl Timeline {
    pub fn new(store: Arc<dyn Store>, shutdown: CancellationToken) -> Self {
        Timeline { store, shutdown }
    }

    /// A page of the timeline, newest first.
    pub async fn query(&self, filter: &EventFilter) -> Result<Page, ApiError> {
        Ok(self.store.query(filter).await?)
    }

    /// One event by id.
    /// Every event the filter matches, newest first, page after page, at most `max`.
    pub async fn query_all(&self, filter: &EventFilter, max: usize) -> Result<Vec<Event>, ApiError> {
        let mut f = filter.clone();
        f.limit = 1000;
        let mut out = Vec::new();
        loop {
            let page = self.query(&f).await?;
            out.extend(page.events);
            match page.next {
                Some(c) if out.len() < max => f.before = Some(c),
                _ => break,
            }
        }
        out.truncate(max);
        Ok(out)
    }

    pub async fn one(&self, id: &str) -> Result<Event, ApiError> {
        let found = if id.chars().any(char::is_control) { None } else { self.store.event(id).await? };
        found.ok_or_else(|| ApiError::NotFound(format!("no event with id `{}`", id.escape_debug())))
    }

    /// The newest event's sequence number (0 on an empty timeline).
    pub async fn newest_seq(&self) -> Result<i64, ApiError> {
        Ok(self.store.query(&EventFilter::new().limit(1)).await?.events.first().map_or(0, |e| e.seq))
    }

    /// Records a person's event. The kinds of crew's own areas (`deploy.*`, `token.*`, `alert.*`, ...) are
    /// refused with 422: crew reads those back as state, so only crew writes them.
    pub async fn record(&self, actor: Actor, r: Record) -> Result<Event, ApiError> {
        if let Some(area) = crew_core::kind::reserved_area(&r.kind) {
            return Err(ApiError::Unprocessable(format!(
                "kind `{}`: `{area}.*` is reserved for crew's own events; record your own kind (note, release.note, custom.*)",
                r.kind
            )));
        }
        let event =
            NewEvent { actor, kind: r.kind, subject: r.subject, summary: r.summary, data: r.data, links: r.links };
        Ok(self.store.append(vec![event]).await?.remove(0))
    }

    /// Appends crew's own events (an alert rule's, a scheduler's) that change no other state.
    pub async fn append_system(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, ApiError> {
        Ok(self.store.append(events).await?)
    }

    /// Committed events as they are committed (from any replica).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.store.subscribe()
    }

    /// Events after `seq`, oldest first, for a stream that resumes.
    pub async fn after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>, ApiError> {
        Ok(self.store.events_after(seq, filter, limit).await?)
    }

    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Reads a filter from query pairs. `paged` allows `limit` and `cursor` (queries, not streams).
pub fn parse_filter(pairs: &[(String, String)], paged: bool) -> Result<EventFilter, ApiError> {
    Ok(crew_core::filter::parse_pairs(pairs, paged, chrono::Utc::now())?)
}
