//! On-call: overrides of schedules (checked against the schedule's others in the same transaction) and the
//! secrets of the iCal feeds.

use crate::db::{query, Backend, Row};
use crate::{from_millis, to_millis, OncallStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, NewEvent};
use serde::Serialize;

/// An override as stored: `user` is on call for `schedule` in [from, until).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredOverride {
    pub id: i64,
    pub schedule: String,
    pub user: String,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub until: DateTime<Utc>,
    pub created_by: String,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub created_at: DateTime<Utc>,
}

fn stored(r: &Row) -> Result<StoredOverride> {
    Ok(StoredOverride {
        id: r.try_get(0)?,
        schedule: r.try_get(1)?,
        user: r.try_get(2)?,
        from: from_millis(r.try_get(3)?)?,
        until: from_millis(r.try_get(4)?)?,
        created_by: r.try_get(5)?,
        created_at: from_millis(r.try_get(6)?)?,
    })
}

const COLUMNS: &str = "id, schedule, user_name, from_ms, until_ms, created_by, created_ms";

#[async_trait]
impl<B: Backend> OncallStore for B {
    async fn add_override(
        &self,
        schedule: &str,
        user: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        actor: &str,
        check: Box<dyn for<'o> FnOnce(&'o [StoredOverride]) -> std::result::Result<NewEvent, String> + Send>,
    ) -> Result<(StoredOverride, Event)> {
        let mut tx = self.begin_write().await?;
        // Two overrides made at once are checked one after the other, so they cannot overlap.
        tx.serialize_on(&format!("oncall:{schedule}")).await?;
        let rows = query(format!("SELECT {COLUMNS} FROM oncall_overrides WHERE schedule = $1 AND until_ms > $2"))
            .bind(schedule)
            .bind(to_millis(from))
            .fetch_all(&mut tx)
            .await?;
        let existing: Vec<StoredOverride> = rows.iter().map(stored).collect::<Result<_>>()?;
        let event = check(&existing).map_err(StoreError::Conflict)?;
        let now = to_millis(Utc::now());
        let id: i64 = query(
            "INSERT INTO oncall_overrides (schedule, user_name, from_ms, until_ms, created_by, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(schedule)
        .bind(user)
        .bind(to_millis(from))
        .bind(to_millis(until))
        .bind(actor)
        .bind(now)
        .fetch_scalar(&mut tx)
        .await?;
        let o = StoredOverride {
            id,
            schedule: schedule.into(),
            user: user.into(),
            from: from_millis(to_millis(from))?,
            until: from_millis(to_millis(until))?,
            created_by: actor.into(),
            created_at: from_millis(now)?,
        };
        let events = tx.insert_events(crate::stamp(vec![event])?).await?;
        tx.commit(&events).await?;
        Ok((o, events.into_iter().next().expect("one event")))
    }

    async fn overrides(&self, schedule: Option<&str>, ending_after: DateTime<Utc>) -> Result<Vec<StoredOverride>> {
        let rows = query(format!(
            "SELECT {COLUMNS} FROM oncall_overrides WHERE ($1 = '' OR schedule = $1) AND until_ms > $2 \
             ORDER BY schedule, from_ms"
        ))
        .bind(schedule.unwrap_or(""))
        .bind(to_millis(ending_after))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(stored).collect()
    }

    async fn remove_override(&self, id: i64, event: NewEvent) -> Result<(StoredOverride, Event)> {
        let mut tx = self.begin_write().await?;
        let o = query(format!("SELECT {COLUMNS} FROM oncall_overrides WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut tx)
            .await?
            .as_ref()
            .map(stored)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("no override #{id}")))?;
        query("DELETE FROM oncall_overrides WHERE id = $1").bind(id).execute(&mut tx).await?;
        let events = tx.insert_events(crate::stamp(vec![event])?).await?;
        tx.commit(&events).await?;
        Ok((o, events.into_iter().next().expect("one event")))
    }

    async fn put_feed_key(&self, name: &str, key_hash: &str, event: NewEvent) -> Result<Event> {
        let mut tx = self.begin_write().await?;
        query(
            "INSERT INTO oncall_feeds (name, key_hash) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET key_hash = excluded.key_hash",
        )
        .bind(name)
        .bind(key_hash)
        .execute(&mut tx)
        .await?;
        let events = tx.insert_events(crate::stamp(vec![event])?).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn feed_key(&self, name: &str) -> Result<Option<String>> {
        Ok(query("SELECT key_hash FROM oncall_feeds WHERE name = $1")
            .bind(name)
            .fetch_optional_scalar(self.reader())
            .await?)
    }
}
