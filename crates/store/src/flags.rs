//! Feature flags: each flag's flagd definition, changed together with its event.

use crate::db::{query, Backend};
use crate::{FlagStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, NewEvent};

/// A flag's definition as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlag {
    pub key: String,
    /// The flagd definition of this one flag.
    pub definition: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

fn definition(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("flag definition: {e}")))
}

#[async_trait]
impl<B: Backend> FlagStore for B {
    async fn flags(&self) -> Result<Vec<StoredFlag>> {
        let rows = query("SELECT key, definition, updated_at, updated_by FROM flags ORDER BY key")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                let def: String = r.try_get(1)?;
                Ok(StoredFlag {
                    key: r.try_get(0)?,
                    definition: definition(&def)?,
                    updated_at: crate::from_millis(r.try_get(2)?)?,
                    updated_by: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn put_flag(
        &self,
        key: &str,
        definition: Option<serde_json::Value>,
        actor: &str,
        event: Box<dyn for<'b> FnOnce(Option<&'b serde_json::Value>) -> NewEvent + Send>,
    ) -> Result<(Option<serde_json::Value>, Event)> {
        let mut tx = self.begin_write().await?;
        let before: Option<String> =
            query("SELECT definition FROM flags WHERE key = $1").bind(key).fetch_optional_scalar(&mut tx).await?;
        let before: Option<serde_json::Value> = before.as_deref().map(self::definition).transpose()?;
        let stamped = crate::stamp(vec![event(before.as_ref())])?;
        // The definition's time is its flag.changed event's, to the millisecond: an experiment's phase is named
        // by it, and the timeline finds the change that made the phase by it.
        let at = stamped[0].1;
        query("DELETE FROM flags WHERE key = $1").bind(key).execute(&mut tx).await?;
        if let Some(def) = &definition {
            query("INSERT INTO flags (key, definition, updated_at, updated_by) VALUES ($1, $2, $3, $4)")
                .bind(key)
                .bind(def.to_string())
                .bind(at)
                .bind(actor)
                .execute(&mut tx)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => {
                        StoreError::Conflict(format!("flag `{key}` was changed by someone else just now; try again"))
                    }
                    other => other.into(),
                })?;
        } else if before.is_none() {
            return Err(StoreError::NotFound(format!("no flag `{key}`")));
        }
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok((before, events.into_iter().next().expect("one event")))
    }
}
