//! The Store methods whose SQL and logic are the same on both engines, written once as a macro that each
//! engine expands inside its `impl Store`. (A generic function over `sqlx::Database` would need a long list of
//! trait bounds per query; the macro keeps the code readable and identical.)

/// Expands to `impl Store for $engine`: every method, written once. The engine provides `self.pool`, `self.url`, `self.bus`,
/// `self.dialect()`, `self.fetch(select)`, `self.begin_write()`, `self.insert_events(&mut tx, stamped)` and
/// `self.committed(events)`.
macro_rules! impl_store {
    ($engine:ty, $kind:expr) => {
        #[async_trait::async_trait]
        impl crate::Store for $engine {
        fn engine(&self) -> crate::Engine {
            $kind
        }

        fn url(&self) -> &str {
            &self.url
        }

        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<crew_core::Event>> {
            self.bus.subscribe()
        }

        async fn append(&self, events: Vec<crew_core::NewEvent>) -> crate::Result<Vec<crew_core::Event>> {
            let stamped = crate::stamp(events)?;
            let (_write, mut tx) = self.begin_write().await?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events)
        }

        async fn query(&self, filter: &crew_core::EventFilter) -> crate::Result<crate::Page> {
            let limit = filter.limit.clamp(1, crew_core::filter::MAX_LIMIT) as i64;
            let order = crate::sql::Order::NewestBefore(filter.before.map(|c| c.0));
            let mut events = Vec::new();
            for step in crate::sql::plan(filter, self.dialect(), order, limit + 1) {
                events.extend(self.fetch(step).await?);
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
            Ok(crate::Page { events, next })
        }

        async fn events_after(
            &self,
            seq: i64,
            filter: &crew_core::EventFilter,
            limit: u32,
        ) -> crate::Result<Vec<crew_core::Event>> {
            let order = crate::sql::Order::OldestAfter(seq);
            let mut events = Vec::new();
            for step in crate::sql::plan(filter, self.dialect(), order, limit as i64) {
                events.extend(self.fetch(step).await?);
                if events.len() as i64 >= limit as i64 {
                    break;
                }
            }
            events.truncate(limit as usize);
            Ok(events)
        }

        async fn event(&self, id: &str) -> crate::Result<Option<crew_core::Event>> {
            let sql = format!(
                "SELECT {} FROM events e {}",
                crate::sql::columns(self.dialect()),
                crate::sql::stmt::EVENT_BY_ID
            );
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            row.as_ref().map(crate::sql::row_to_event).transpose()
        }

        async fn counts(&self) -> crate::Result<crate::Counts> {
            use crate::sql::stmt::*;
            let events: i64 = sqlx::query_scalar(COUNT_EVENTS).fetch_one(&self.pool).await?;
            let tokens: i64 = sqlx::query_scalar(COUNT_TOKENS).fetch_one(&self.pool).await?;
            Ok(crate::Counts { events, tokens })
        }

        async fn create_token(
            &self,
            token: &crate::TokenInfo,
            hash: &str,
            event: crew_core::NewEvent,
        ) -> crate::Result<crew_core::Event> {
            use crate::sql::stmt::*;
            let stamped = crate::stamp(vec![event])?;
            let (_write, mut tx) = self.begin_write().await?;
            if sqlx::query(TOKEN_EXISTS).bind(&token.name).fetch_optional(&mut *tx).await?.is_some() {
                return Err(crate::StoreError::Conflict(format!(
                    "a token named `{}` exists: revoke it first or choose another name",
                    token.name
                )));
            }
            sqlx::query(INSERT_TOKEN)
                .bind(&token.name)
                .bind(token.role.as_str())
                .bind(hash)
                .bind(crate::to_millis(token.created_at))
                .bind(&token.created_by)
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    // Another replica created it between our check and our insert.
                    sqlx::Error::Database(d) if d.is_unique_violation() => crate::StoreError::Conflict(format!(
                        "a token named `{}` exists: revoke it first or choose another name",
                        token.name
                    )),
                    other => other.into(),
                })?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }

        async fn revoke_token(&self, name: &str, event: crew_core::NewEvent) -> crate::Result<crew_core::Event> {
            use crate::sql::stmt::*;
            let stamped = crate::stamp(vec![event])?;
            let (_write, mut tx) = self.begin_write().await?;
            sqlx::query(DELETE_TOKEN_SESSIONS).bind(name).execute(&mut *tx).await?;
            let gone = sqlx::query(DELETE_TOKEN).bind(name).execute(&mut *tx).await?.rows_affected();
            if gone == 0 {
                return Err(crate::StoreError::NotFound(format!("no token named `{name}`")));
            }
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }

        async fn token_by_hash(&self, hash: &str) -> crate::Result<Option<crate::TokenInfo>> {
            let row = sqlx::query(crate::sql::stmt::TOKEN_BY_HASH).bind(hash).fetch_optional(&self.pool).await?;
            row.as_ref().map(crate::sql::row_to_token).transpose()
        }

        async fn tokens(&self) -> crate::Result<Vec<crate::TokenInfo>> {
            let rows = sqlx::query(crate::sql::stmt::TOKENS).fetch_all(&self.pool).await?;
            rows.iter().map(crate::sql::row_to_token).collect()
        }

        async fn create_session(
            &self,
            hash: &str,
            token_name: &str,
            csrf: &str,
            expires_at: chrono::DateTime<chrono::Utc>,
            event: crew_core::NewEvent,
        ) -> crate::Result<crew_core::Event> {
            use crate::sql::stmt::*;
            let stamped = crate::stamp(vec![event])?;
            let now = crate::to_millis(chrono::Utc::now());
            let (_write, mut tx) = self.begin_write().await?;
            sqlx::query(DELETE_EXPIRED_SESSIONS).bind(now).execute(&mut *tx).await?;
            sqlx::query(INSERT_SESSION)
                .bind(hash)
                .bind(token_name)
                .bind(csrf)
                .bind(now)
                .bind(crate::to_millis(expires_at))
                .execute(&mut *tx)
                .await?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }

        async fn session(&self, hash: &str) -> crate::Result<Option<crate::Session>> {
            use sqlx::Row;
            let now = crate::to_millis(chrono::Utc::now());
            let row = sqlx::query(crate::sql::stmt::SESSION).bind(hash).bind(now).fetch_optional(&self.pool).await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(crate::Session {
                token: crate::sql::row_to_token(&row)?,
                csrf: row.try_get(4)?,
                expires_at: crate::from_millis(row.try_get(5)?)?,
            }))
        }

        async fn delete_session(&self, hash: &str, event: crew_core::NewEvent) -> crate::Result<crew_core::Event> {
            let stamped = crate::stamp(vec![event])?;
            let (_write, mut tx) = self.begin_write().await?;
            sqlx::query(crate::sql::stmt::DELETE_SESSION).bind(hash).execute(&mut *tx).await?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }
        }
    };
}

