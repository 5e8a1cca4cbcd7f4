//! The timeline's store: appending events, reading pages of them, counting; the SQL of the timeline query
//! itself is built in `sql.rs`.

use crate::db::{query, Backend};
use crate::{sql, Engine, Result, TimelineStore};
use async_trait::async_trait;
use crew_core::{Event, EventFilter, NewEvent};
use std::sync::Arc;
use tokio::sync::broadcast;

/// One page of the timeline, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Event>,
    /// Pass back as `before` for the next (older) page; `None` when this page is the last.
    pub next: Option<crew_core::Cursor>,
}

/// Counts for `crew status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub events: i64,
    pub tokens: i64,
}

#[async_trait]
impl<B: Backend> TimelineStore for B {
    fn engine(&self) -> Engine {
        B::ENGINE
    }

    fn url(&self) -> &str {
        self.shown_url()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.bus().subscribe()
    }

    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        let stamped = crate::stamp(events)?;
        let mut tx = self.begin_write().await?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events)
    }

    async fn query(&self, filter: &EventFilter) -> Result<Page> {
        let limit = filter.limit.clamp(1, crew_core::filter::MAX_LIMIT) as i64;
        let order = sql::Order::NewestBefore(filter.before.map(|c| c.0));
        let mut events = Vec::new();
        for step in sql::plan(filter, self.dialect(), order, limit + 1) {
            events.extend(sql::fetch(self.reader(), step).await?);
            if events.len() as i64 > limit {
                break;
            }
        }
        let next = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events.last().map(|e| crew_core::Cursor(e.seq))
        } else {
            None
        };
        Ok(Page { events, next })
    }

    async fn events_after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>> {
        let order = sql::Order::OldestAfter(seq);
        let mut events = Vec::new();
        for step in sql::plan(filter, self.dialect(), order, limit as i64) {
            events.extend(sql::fetch(self.reader(), step).await?);
            if events.len() as i64 >= limit as i64 {
                break;
            }
        }
        events.truncate(limit as usize);
        Ok(events)
    }

    async fn event(&self, id: &str) -> Result<Option<Event>> {
        let sql = format!("SELECT {} FROM events e WHERE e.id = $1", sql::columns(self.dialect()));
        let row = query(sql).bind(id).fetch_optional(self.reader()).await?;
        row.as_ref().map(sql::row_to_event).transpose()
    }

    async fn counts(&self) -> Result<Counts> {
        let events: i64 = query("SELECT COUNT(*) FROM events").fetch_scalar(self.reader()).await?;
        let tokens: i64 = query("SELECT COUNT(*) FROM tokens").fetch_scalar(self.reader()).await?;
        Ok(Counts { events, tokens })
    }
}
