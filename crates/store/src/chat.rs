//! Chat: the links from chat identities (hostmasks, accounts) to the crew users they speak for.

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
}
