//! Chat: the links from chat identities (hostmasks, accounts) to the crew users they speak for, and the lines
//! said in the robot's rooms (bounded by age and count).

use crate::db::{query, Backend};
use crate::{ChatStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, NewEvent};

/// A chat identity linked to a crew user (`crew chat link`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatLink {
    /// A hostmask pattern (`alice!*@*.example.com`) or `account:NAME`.
    pub identity: String,
    /// The crew user (a token's name) who speaks through it.
    pub user: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// One line said in a room: by a person, or by the robot (`who` = `crew`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChatLine {
    pub at: DateTime<Utc>,
    pub room: String,
    pub who: String,
    pub text: String,
}

#[async_trait]
impl<B: Backend> ChatStore for B {
    async fn chat_links(&self) -> Result<Vec<ChatLink>> {
        let rows = query("SELECT identity, user_name, created_at, created_by FROM chat_links ORDER BY identity")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChatLink {
                    identity: r.try_get(0)?,
                    user: r.try_get(1)?,
                    created_at: crate::from_millis(r.try_get(2)?)?,
                    created_by: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn put_chat_link(&self, identity: &str, user: Option<&str>, actor: &str, event: NewEvent) -> Result<Event> {
        let mut tx = self.begin_write().await?;
        let stamped = crate::stamp(vec![event])?;
        let removed = query("DELETE FROM chat_links WHERE identity = $1").bind(identity).execute(&mut tx).await?;
        match user {
            Some(user) => {
                query("INSERT INTO chat_links (identity, user_name, created_at, created_by) VALUES ($1, $2, $3, $4)")
                    .bind(identity)
                    .bind(user)
                    .bind(crate::to_millis(Utc::now()))
                    .bind(actor)
                    .execute(&mut tx)
                    .await?;
            }
            None if removed == 0 => return Err(StoreError::NotFound(format!("no chat link for `{identity}`"))),
            None => {}
        }
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn add_chat_line(&self, line: &ChatLine, keep_since: DateTime<Utc>, keep_max: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        query("INSERT INTO chat_lines (room, room_key, at_ms, who, text) VALUES ($1, $2, $3, $4, $5)")
            .bind(line.room.as_str())
            .bind(line.room.to_ascii_lowercase())
            .bind(crate::to_millis(line.at))
            .bind(line.who.as_str())
            .bind(line.text.as_str())
            .execute(&mut tx)
            .await?;
        query("DELETE FROM chat_lines WHERE at_ms < $1").bind(crate::to_millis(keep_since)).execute(&mut tx).await?;
        let newest: i64 = query("SELECT COALESCE(MAX(id), 0) FROM chat_lines").fetch_scalar(&mut tx).await?;
        query("DELETE FROM chat_lines WHERE id <= $1").bind(newest - keep_max.max(1)).execute(&mut tx).await?;
        tx.commit(&[]).await?;
        Ok(())
    }

    async fn chat_lines(
        &self,
        room: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChatLine>> {
        let (from, to) = (crate::to_millis(from), crate::to_millis(to));
        let rows = match room {
            Some(room) => query(
                "SELECT at_ms, room, who, text FROM chat_lines WHERE room_key = $1 AND at_ms >= $2 AND at_ms <= $3 \
                 ORDER BY at_ms, id LIMIT $4",
            )
            .bind(room.to_ascii_lowercase())
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(self.reader())
            .await?,
            None => query(
                "SELECT at_ms, room, who, text FROM chat_lines WHERE at_ms >= $1 AND at_ms <= $2 ORDER BY at_ms, id LIMIT $3",
            )
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(self.reader())
            .await?,
        };
        rows.iter()
            .map(|r| {
                Ok(ChatLine {
                    at: crate::from_millis(r.try_get(0)?)?,
                    room: r.try_get(1)?,
                    who: r.try_get(2)?,
                    text: r.try_get(3)?,
                })
            })
            .collect()
    }
}
