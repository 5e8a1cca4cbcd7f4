//! Access: API tokens (only the hash of a secret is stored) and browser sessions, with their events.

use crate::db::{query, Backend, Row};
use crate::{AccessStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, NewEvent, Role};

/// A token as the store knows it: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    /// The person or application the token names; the actor of what it does.
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A signed-in browser session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub token: TokenInfo,
    /// The secret that every form of this session must send back.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Columns `row_to_token` reads.
const TOKEN_COLUMNS: &str = "name, role, created_at, created_by";

/// Reads a token from columns `name, role, created_at, created_by`.
fn row_to_token(row: &Row) -> Result<TokenInfo> {
    let role: String = row.try_get(1)?;
    Ok(TokenInfo {
        name: row.try_get(0)?,
        role: role.parse().map_err(StoreError::Corrupt)?,
        created_at: crate::from_millis(row.try_get(2)?)?,
        created_by: row.try_get(3)?,
    })
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict(format!("a token named `{name}` exists: revoke it first or choose another name"))
}

#[async_trait]
impl<B: Backend> AccessStore for B {
    async fn create_token(&self, token: &TokenInfo, hash: &str, event: NewEvent) -> Result<Event> {
        let stamped = crate::stamp(vec![event])?;
        let mut tx = self.begin_write().await?;
        if query("SELECT 1 FROM tokens WHERE name = $1").bind(&token.name).fetch_optional(&mut tx).await?.is_some() {
            return Err(name_taken(&token.name));
        }
        query("INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(&token.name)
            .bind(token.role.as_str())
            .bind(hash)
            .bind(crate::to_millis(token.created_at))
            .bind(&token.created_by)
            .execute(&mut tx)
            .await
            .map_err(|e| match e {
                // Another replica created it between our check and our insert.
                sqlx::Error::Database(d) if d.is_unique_violation() => name_taken(&token.name),
                other => other.into(),
            })?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn revoke_token(&self, name: &str, event: NewEvent) -> Result<Event> {
        let stamped = crate::stamp(vec![event])?;
        let mut tx = self.begin_write().await?;
        query("DELETE FROM sessions WHERE token_name = $1").bind(name).execute(&mut tx).await?;
        let gone = query("DELETE FROM tokens WHERE name = $1").bind(name).execute(&mut tx).await?;
        if gone == 0 {
            return Err(StoreError::NotFound(format!("no token named `{name}`")));
        }
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let row = query(format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(row_to_token).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = query(format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name")).fetch_all(self.reader()).await?;
        rows.iter().map(row_to_token).collect()
    }

    async fn create_session(
        &self,
        hash: &str,
        token_name: &str,
        csrf: &str,
        expires_at: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<Event> {
        let stamped = crate::stamp(vec![event])?;
        let now = crate::to_millis(Utc::now());
        let mut tx = self.begin_write().await?;
        query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(&mut tx).await?;
        query("INSERT INTO sessions (hash, token_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(token_name)
            .bind(csrf)
            .bind(now)
            .bind(crate::to_millis(expires_at))
            .execute(&mut tx)
            .await?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn session(&self, hash: &str) -> Result<Option<Session>> {
        let now = crate::to_millis(Utc::now());
        let row = query(
            "SELECT t.name, t.role, t.created_at, t.created_by, s.csrf, s.expires_at \
             FROM sessions s JOIN tokens t ON t.name = s.token_name WHERE s.hash = $1 AND s.expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Session {
            token: row_to_token(&row)?,
            csrf: row.try_get(4)?,
            expires_at: crate::from_millis(row.try_get(5)?)?,
        }))
    }

    async fn delete_session(&self, hash: &str, event: NewEvent) -> Result<Event> {
        let stamped = crate::stamp(vec![event])?;
        let mut tx = self.begin_write().await?;
        query("DELETE FROM sessions WHERE hash = $1").bind(hash).execute(&mut tx).await?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }
}
