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

        async fn start_deploy(
            &self,
            d: crate::NewDeploy,
            event: Box<dyn FnOnce(i64) -> crew_core::NewEvent + Send>,
        ) -> crate::Result<(crate::Deploy, crew_core::Event)> {
            use crate::deploys::*;
            let now = crate::to_millis(chrono::Utc::now());
            let (_write, mut tx) = self.begin_write().await?;
            let held = sqlx::query(&format!("SELECT {LOCK_COLUMNS} FROM locks WHERE environment = $1"))
                .bind(&d.environment)
                .fetch_all(&mut *tx)
                .await?;
            for row in &held {
                let lock = row_to_lock(row)?;
                if lock.kind == "deploy" || lock.holder != d.actor.name {
                    return Err(crate::StoreError::Conflict(describe(&lock)));
                }
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO deploys (app, environment, action, revision, previous, release, commits, message, actor, via, \
                 status, started_at, hosts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, '[]') RETURNING id",
            )
            .bind(&d.app)
            .bind(&d.environment)
            .bind(&d.action)
            .bind(&d.revision)
            .bind(&d.previous)
            .bind(&d.release)
            .bind(d.commits)
            .bind(&d.message)
            .bind(&d.actor.name)
            .bind(d.actor.via.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO locks (environment, kind, holder, reason, since, deploy_id) VALUES ($1, 'deploy', $2, $3, $4, $5)")
                .bind(&d.environment)
                .bind(&d.actor.name)
                .bind(format!("deploy #{id}"))
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        crate::StoreError::Conflict(format!("a deploy of {} has just started", d.environment))
                    }
                    other => other.into(),
                })?;
            let stamped = crate::stamp(vec![event(id)])?;
            let events = self.insert_events(&mut tx, stamped).await?;
            let row = sqlx::query(&format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = $1")).bind(id).fetch_one(&mut *tx).await?;
            let deploy = row_to_deploy(&row)?;
            tx.commit().await?;
            self.committed(&events);
            Ok((deploy, events.into_iter().next().expect("one event")))
        }

        async fn log_deploy(&self, id: i64, lines: Vec<String>) -> crate::Result<()> {
            if lines.is_empty() {
                return Ok(());
            }
            let now = crate::to_millis(chrono::Utc::now());
            let (_write, mut tx) = self.begin_write().await?;
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(n), -1) FROM deploy_log WHERE deploy_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            for (i, line) in lines.into_iter().enumerate() {
                sqlx::query("INSERT INTO deploy_log (deploy_id, n, at, line) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(last + 1 + i as i64)
                    .bind(now)
                    .bind(line)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn finish_deploy(
            &self,
            id: i64,
            status: &str,
            hosts: serde_json::Value,
            error: Option<String>,
            event: crew_core::NewEvent,
        ) -> crate::Result<crew_core::Event> {
            let stamped = crate::stamp(vec![event])?;
            let now = crate::to_millis(chrono::Utc::now());
            let (_write, mut tx) = self.begin_write().await?;
            sqlx::query("UPDATE deploys SET status = $1, hosts = $2, error = $3, finished_at = $4 WHERE id = $5")
                .bind(status)
                .bind(hosts.to_string())
                .bind(error)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM locks WHERE kind = 'deploy' AND deploy_id = $1").bind(id).execute(&mut *tx).await?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }

        async fn deploy(&self, id: i64) -> crate::Result<Option<crate::Deploy>> {
            let sql = format!("SELECT {} FROM deploys WHERE id = $1", crate::deploys::DEPLOY_COLUMNS);
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            row.as_ref().map(crate::deploys::row_to_deploy).transpose()
        }

        async fn deploys(&self, environment: Option<&str>, limit: u32) -> crate::Result<Vec<crate::Deploy>> {
            let cols = crate::deploys::DEPLOY_COLUMNS;
            let rows = match environment {
                Some(env) => {
                    sqlx::query(&format!("SELECT {cols} FROM deploys WHERE environment = $1 ORDER BY id DESC LIMIT $2"))
                        .bind(env)
                        .bind(limit as i64)
                        .fetch_all(&self.pool)
                        .await?
                }
                None => {
                    sqlx::query(&format!("SELECT {cols} FROM deploys ORDER BY id DESC LIMIT $1"))
                        .bind(limit as i64)
                        .fetch_all(&self.pool)
                        .await?
                }
            };
            rows.iter().map(crate::deploys::row_to_deploy).collect()
        }

        async fn deploy_log(&self, id: i64, offset: i64, limit: i64) -> crate::Result<Vec<String>> {
            Ok(sqlx::query_scalar("SELECT line FROM deploy_log WHERE deploy_id = $1 AND n >= $2 ORDER BY n LIMIT $3")
                .bind(id)
                .bind(offset)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
        }

        async fn take_lock(&self, environment: &str, holder: &str, reason: &str, event: crew_core::NewEvent) -> crate::Result<crew_core::Event> {
            use crate::deploys::*;
            let stamped = crate::stamp(vec![event])?;
            let (_write, mut tx) = self.begin_write().await?;
            let held = sqlx::query(&format!("SELECT {LOCK_COLUMNS} FROM locks WHERE environment = $1 AND kind = 'manual'"))
                .bind(environment)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = held {
                let lock = row_to_lock(&row)?;
                if lock.holder != holder {
                    return Err(crate::StoreError::Conflict(describe(&lock)));
                }
                sqlx::query("DELETE FROM locks WHERE environment = $1 AND kind = 'manual'").bind(environment).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO locks (environment, kind, holder, reason, since) VALUES ($1, 'manual', $2, $3, $4)")
                .bind(environment)
                .bind(holder)
                .bind(reason)
                .bind(crate::to_millis(chrono::Utc::now()))
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        crate::StoreError::Conflict(format!("{environment} was locked a moment ago by someone else"))
                    }
                    other => other.into(),
                })?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }

        async fn release_lock(&self, environment: &str, actor: &str, admin: bool, event: crew_core::NewEvent) -> crate::Result<crew_core::Event> {
            use crate::deploys::*;
            let stamped = crate::stamp(vec![event])?;
            let (_write, mut tx) = self.begin_write().await?;
            let held = sqlx::query(&format!("SELECT {LOCK_COLUMNS} FROM locks WHERE environment = $1 AND kind = 'manual'"))
                .bind(environment)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = held else {
                return Err(crate::StoreError::NotFound(format!("{environment} is not locked")));
            };
            let lock = row_to_lock(&row)?;
            if lock.holder != actor && !admin {
                return Err(crate::StoreError::Conflict(format!("{}; only {} or an admin can unlock it", describe(&lock), lock.holder)));
            }
            sqlx::query("DELETE FROM locks WHERE environment = $1 AND kind = 'manual'").bind(environment).execute(&mut *tx).await?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }

        async fn locks(&self) -> crate::Result<Vec<crate::Lock>> {
            let sql = format!("SELECT {} FROM locks ORDER BY environment, kind", crate::deploys::LOCK_COLUMNS);
            let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
            rows.iter().map(crate::deploys::row_to_lock).collect()
        }

        async fn deploy_heartbeat(&self, id: i64) -> crate::Result<()> {
            let (_write, mut tx) = self.begin_write().await?;
            // The database's clock, not this server's: replicas' clocks may disagree.
            sqlx::query(&format!("UPDATE deploys SET heartbeat = {} WHERE id = $1 AND status = 'running'", crate::sql::now_ms(self.dialect())))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn interrupt_running(
            &self,
            stale_after: std::time::Duration,
            event: Box<dyn for<'d> Fn(&'d crate::Deploy) -> crew_core::NewEvent + Send + Sync>,
        ) -> crate::Result<Vec<crate::Deploy>> {
            let cols = crate::deploys::DEPLOY_COLUMNS;
            let (_write, mut tx) = self.begin_write().await?;
            let rows = sqlx::query(&format!(
                "SELECT {cols} FROM deploys WHERE status = 'running' AND COALESCE(heartbeat, started_at) <= {} - $1 ORDER BY id",
                crate::sql::now_ms(self.dialect())
            ))
            .bind(stale_after.as_millis() as i64)
            .fetch_all(&mut *tx)
            .await?;
            let running: Vec<crate::Deploy> = rows.iter().map(crate::deploys::row_to_deploy).collect::<crate::Result<_>>()?;
            let now = crate::to_millis(chrono::Utc::now());
            let mut news = Vec::new();
            for d in &running {
                sqlx::query("UPDATE deploys SET status = 'interrupted', finished_at = $1, error = $2 WHERE id = $3 AND status = 'running'")
                    .bind(now)
                    .bind("the crew server stopped during the deploy")
                    .bind(d.id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM locks WHERE kind = 'deploy' AND deploy_id = $1").bind(d.id).execute(&mut *tx).await?;
                news.push(event(d));
            }
            let stamped = crate::stamp(news)?;
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(running)
        }

        async fn flags(&self) -> crate::Result<Vec<crate::StoredFlag>> {
            use sqlx::Row;
            let rows = sqlx::query("SELECT key, definition, updated_at, updated_by FROM flags ORDER BY key").fetch_all(&self.pool).await?;
            rows.iter()
                .map(|r| {
                    let def: String = r.try_get(1)?;
                    Ok(crate::StoredFlag {
                        key: r.try_get(0)?,
                        definition: serde_json::from_str(&def).map_err(|e| crate::StoreError::Corrupt(format!("flag definition: {e}")))?,
                        updated_at: crate::from_millis(r.try_get(2)?)?,
                        updated_by: r.try_get(3)?,
                    })
                })
                .collect()
        }

        async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> crate::Result<bool> {
            let (_write, mut tx) = self.begin_write().await?;
            let now = crate::to_millis(chrono::Utc::now());
            let until = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
            // One statement: insert, or take over when it is ours or expired; a row changed means we hold it.
            let changed = sqlx::query(
                "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
                 WHERE leases.holder = excluded.holder OR leases.until_ms < $4",
            )
            .bind(name)
            .bind(holder)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(changed == 1)
        }

        async fn write_metrics(
            &self,
            source: &str,
            wal: Vec<crate::MetricWal>,
            chunks: Vec<crate::MetricChunk>,
            floors: Vec<i64>,
        ) -> crate::Result<()> {
            let (_write, mut tx) = self.begin_write().await?;
            for w in &wal {
                sqlx::query("INSERT INTO metric_wal (source, tier, t_ms, data) VALUES ($1, $2, $3, $4)")
                    .bind(&w.source)
                    .bind(w.tier)
                    .bind(w.t_ms)
                    .bind(&w.data)
                    .execute(&mut *tx)
                    .await?;
            }
            for c in &chunks {
                sqlx::query(
                    "INSERT INTO metric_chunks (series, source, kind, tier, start_ms, end_ms, points, data) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (series, tier, source, start_ms) DO UPDATE SET \
                     kind = excluded.kind, end_ms = excluded.end_ms, points = excluded.points, data = excluded.data",
                )
                .bind(&c.series)
                .bind(&c.source)
                .bind(&c.kind)
                .bind(c.tier)
                .bind(c.start_ms)
                .bind(c.end_ms)
                .bind(c.points)
                .bind(&c.data)
                .execute(&mut *tx)
                .await?;
            }
            for (tier, floor) in floors.iter().enumerate() {
                sqlx::query("DELETE FROM metric_wal WHERE source = $1 AND tier = $2 AND t_ms < $3")
                    .bind(source)
                    .bind(tier as i32)
                    .bind(*floor)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn metric_chunks(&self, series: &str, tier: i32, from_ms: i64, to_ms: i64) -> crate::Result<Vec<crate::MetricChunk>> {
            use sqlx::Row;
            let rows = sqlx::query(
                "SELECT series, kind, tier, start_ms, end_ms, points, data, source FROM metric_chunks \
                 WHERE series = $1 AND tier = $2 AND end_ms >= $3 AND start_ms <= $4 ORDER BY start_ms, source",
            )
            .bind(series)
            .bind(tier)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(crate::MetricChunk {
                        series: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        tier: r.try_get::<i32, _>(2)?,
                        start_ms: r.try_get(3)?,
                        end_ms: r.try_get(4)?,
                        points: r.try_get::<i32, _>(5)?,
                        data: r.try_get(6)?,
                        source: r.try_get(7)?,
                    })
                })
                .collect()
        }

        async fn metric_series(&self) -> crate::Result<Vec<(String, String, i32, String, i64)>> {
            use sqlx::Row;
            let rows = sqlx::query(
                "SELECT series, MIN(kind), tier, source, MAX(end_ms) FROM metric_chunks \
                 GROUP BY series, tier, source ORDER BY series, tier, source",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<i32, _>(2)?, r.try_get(3)?, r.try_get(4)?)))
                .collect()
        }

        async fn metric_wal(&self, source: &str) -> crate::Result<Vec<crate::MetricWal>> {
            use sqlx::Row;
            let rows = sqlx::query("SELECT tier, t_ms, data FROM metric_wal WHERE source = $1 ORDER BY id")
                .bind(source)
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(crate::MetricWal {
                        source: source.to_string(),
                        tier: r.try_get::<i32, _>(0)?,
                        t_ms: r.try_get(1)?,
                        data: r.try_get(2)?,
                    })
                })
                .collect()
        }

        async fn expire_metric_chunks(&self, tier: i32, before_ms: i64) -> crate::Result<u64> {
            let (_write, mut tx) = self.begin_write().await?;
            let n = sqlx::query("DELETE FROM metric_chunks WHERE tier = $1 AND end_ms < $2")
                .bind(tier)
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n)
        }

        async fn chat_links(&self) -> crate::Result<Vec<crate::ChatLink>> {
            use sqlx::Row;
            let rows = sqlx::query("SELECT identity, user_name, created_at, created_by FROM chat_links ORDER BY identity")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(crate::ChatLink {
                        identity: r.try_get(0)?,
                        user: r.try_get(1)?,
                        created_at: crate::from_millis(r.try_get(2)?)?,
                        created_by: r.try_get(3)?,
                    })
                })
                .collect()
        }

        async fn put_chat_link(&self, identity: &str, user: Option<&str>, actor: &str, event: crew_core::NewEvent) -> crate::Result<crew_core::Event> {
            let (_write, mut tx) = self.begin_write().await?;
            let stamped = crate::stamp(vec![event])?;
            let removed = sqlx::query("DELETE FROM chat_links WHERE identity = $1").bind(identity).execute(&mut *tx).await?.rows_affected();
            match user {
                Some(user) => {
                    sqlx::query("INSERT INTO chat_links (identity, user_name, created_at, created_by) VALUES ($1, $2, $3, $4)")
                        .bind(identity)
                        .bind(user)
                        .bind(crate::to_millis(chrono::Utc::now()))
                        .bind(actor)
                        .execute(&mut *tx)
                        .await?;
                }
                None if removed == 0 => return Err(crate::StoreError::NotFound(format!("no chat link for `{identity}`"))),
                None => {}
            }
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok(events.into_iter().next().expect("one event"))
        }

        async fn put_flag(
            &self,
            key: &str,
            definition: Option<serde_json::Value>,
            actor: &str,
            event: Box<dyn for<'b> FnOnce(Option<&'b serde_json::Value>) -> crew_core::NewEvent + Send>,
        ) -> crate::Result<(Option<serde_json::Value>, crew_core::Event)> {
            let (_write, mut tx) = self.begin_write().await?;
            let before: Option<String> =
                sqlx::query_scalar("SELECT definition FROM flags WHERE key = $1").bind(key).fetch_optional(&mut *tx).await?;
            let before: Option<serde_json::Value> = before
                .map(|d| serde_json::from_str(&d).map_err(|e| crate::StoreError::Corrupt(format!("flag definition: {e}"))))
                .transpose()?;
            let stamped = crate::stamp(vec![event(before.as_ref())])?;
            sqlx::query("DELETE FROM flags WHERE key = $1").bind(key).execute(&mut *tx).await?;
            if let Some(def) = &definition {
                sqlx::query("INSERT INTO flags (key, definition, updated_at, updated_by) VALUES ($1, $2, $3, $4)")
                    .bind(key)
                    .bind(def.to_string())
                    .bind(crate::to_millis(chrono::Utc::now()))
                    .bind(actor)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => {
                            crate::StoreError::Conflict(format!("flag `{key}` was changed by someone else just now; try again"))
                        }
                        other => other.into(),
                    })?;
            } else if before.is_none() {
                return Err(crate::StoreError::NotFound(format!("no flag `{key}`")));
            }
            let events = self.insert_events(&mut tx, stamped).await?;
            tx.commit().await?;
            self.committed(&events);
            Ok((before, events.into_iter().next().expect("one event")))
        }
        }
    };
}
