//! Deploys: their records and logs, environment locks (a person's or a running deploy's), and the heartbeat
//! that tells a running deploy's server is alive.

use crate::db::{query, Backend, Row};
use crate::sql::now_ms;
use crate::{from_millis, to_millis, DeployStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{DeployAction, DeployStatus, Event, LockKind, NewEvent};
use serde::{Deserialize, Serialize};

/// A deploy or rollback of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    /// The deploy's number: `#42`.
    pub id: i64,
    pub app: String,
    pub environment: String,
    pub action: DeployAction,
    /// The commit shipped.
    pub revision: String,
    /// The commit live before, if any.
    pub previous: Option<String>,
    /// The release folder name on the hosts.
    pub release: String,
    /// How many commits this deploy brought (previous..revision).
    pub commits: i64,
    pub message: String,
    pub actor: String,
    pub via: String,
    pub status: DeployStatus,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::deploys::rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Per-host results, as the deploy engine reports them.
    pub hosts: serde_json::Value,
    pub error: Option<String>,
}

/// A deploy about to start.
#[derive(Debug, Clone)]
pub struct NewDeploy {
    pub app: String,
    pub environment: String,
    pub action: DeployAction,
    pub revision: String,
    pub previous: Option<String>,
    pub release: String,
    pub commits: i64,
    pub message: String,
    pub actor: crew_core::Actor,
}

/// A held lock: a person's manual lock (`manual`) or a running deploy's (`deploy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lock {
    pub environment: String,
    pub kind: LockKind,
    pub holder: String,
    pub reason: String,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub since: DateTime<Utc>,
    pub deploy_id: Option<i64>,
}

pub(crate) fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crew_core::time::rfc3339(*t))
}

pub(crate) fn rfc3339_opt<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crew_core::time::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

const DEPLOY_COLUMNS: &str =
    "id, app, environment, action, revision, previous, release, commits, message, actor, via, \
     status, started_at, finished_at, hosts, error";

fn row_to_deploy(row: &Row) -> Result<Deploy> {
    let hosts: String = row.try_get(14)?;
    Ok(Deploy {
        id: row.try_get(0)?,
        app: row.try_get(1)?,
        environment: row.try_get(2)?,
        action: word(row.try_get(3)?)?,
        revision: row.try_get(4)?,
        previous: row.try_get(5)?,
        release: row.try_get(6)?,
        commits: row.try_get(7)?,
        message: row.try_get(8)?,
        actor: row.try_get(9)?,
        via: row.try_get(10)?,
        status: word(row.try_get(11)?)?,
        started_at: from_millis(row.try_get(12)?)?,
        finished_at: row.try_get::<Option<i64>>(13)?.map(from_millis).transpose()?,
        hosts: serde_json::from_str(&hosts).map_err(|e| StoreError::Corrupt(format!("deploy hosts: {e}")))?,
        error: row.try_get(15)?,
    })
}

/// A stored word (status, action, lock kind) as its enum; anything else is corrupt data.
fn word<T: std::str::FromStr<Err = String>>(s: String) -> Result<T> {
    s.parse().map_err(StoreError::Corrupt)
}

fn row_to_lock(row: &Row) -> Result<Lock> {
    Ok(Lock {
        environment: row.try_get(0)?,
        kind: word(row.try_get(1)?)?,
        holder: row.try_get(2)?,
        reason: row.try_get(3)?,
        since: from_millis(row.try_get(4)?)?,
        deploy_id: row.try_get(5)?,
    })
}

const LOCK_COLUMNS: &str = "environment, kind, holder, reason, since, deploy_id";

/// A lock's description for refusals: "production is locked by alice since 2026-11-26 16:03:57: db migration".
pub fn describe(l: &Lock) -> String {
    match l.kind {
        LockKind::Deploy => format!(
            "a deploy of {} is running: #{} by {} since {}",
            l.environment,
            l.deploy_id.unwrap_or(0),
            l.holder,
            crew_core::time::human(l.since)
        ),
        LockKind::Manual => format!(
            "{} is locked by {} since {}: {}",
            l.environment,
            l.holder,
            crew_core::time::human(l.since),
            l.reason
        ),
    }
}

/// How many lines of its log a deploy keeps: its last ones (a build printing without end must not fill the
/// database).
pub const LOG_LINES_KEPT: i64 = 10_000;

/// The key that serialises the lock checks of one environment ([`crate::db::Tx::serialize_on`]).
fn environment_key(environment: &str) -> String {
    format!("environment:{environment}")
}

/// The deploy lock of deploy `id`.
const DELETE_DEPLOY_LOCK: &str = "DELETE FROM locks WHERE kind = 'deploy' AND deploy_id = $1";

#[async_trait]
impl<B: Backend> DeployStore for B {
    async fn start_deploy(
        &self,
        d: NewDeploy,
        event: Box<dyn FnOnce(i64) -> NewEvent + Send>,
    ) -> Result<(Deploy, Event)> {
        let now = to_millis(Utc::now());
        let mut tx = self.begin_write().await?;
        // A person's lock and another's deploy of one environment exclude each other: the check below and the
        // insert after it must not interleave with `take_lock`'s (two replicas on PostgreSQL).
        tx.serialize_on(&environment_key(&d.environment)).await?;
        let held = query(format!("SELECT {LOCK_COLUMNS} FROM locks WHERE environment = $1"))
            .bind(&d.environment)
            .fetch_all(&mut tx)
            .await?;
        for row in &held {
            let lock = row_to_lock(row)?;
            if lock.kind == LockKind::Deploy || lock.holder != d.actor.name {
                return Err(StoreError::Conflict(describe(&lock)));
            }
        }
        let id: i64 = query(
            "INSERT INTO deploys (app, environment, action, revision, previous, release, commits, message, actor, \
             via, status, started_at, hosts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, '[]') RETURNING id",
        )
        .bind(&d.app)
        .bind(&d.environment)
        .bind(d.action.as_str())
        .bind(&d.revision)
        .bind(&d.previous)
        .bind(&d.release)
        .bind(d.commits)
        .bind(&d.message)
        .bind(&d.actor.name)
        .bind(d.actor.via.as_str())
        .bind(now)
        .fetch_scalar(&mut tx)
        .await?;
        query(
            "INSERT INTO locks (environment, kind, holder, reason, since, deploy_id) \
             VALUES ($1, 'deploy', $2, $3, $4, $5)",
        )
        .bind(&d.environment)
        .bind(&d.actor.name)
        .bind(format!("deploy #{id}"))
        .bind(now)
        .bind(id)
        .execute(&mut tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("a deploy of {} has just started", d.environment))
            }
            other => other.into(),
        })?;
        let stamped = crate::stamp(vec![event(id)])?;
        let events = tx.insert_events(stamped).await?;
        let row =
            query(format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = $1")).bind(id).fetch_one(&mut tx).await?;
        let deploy = row_to_deploy(&row)?;
        tx.commit(&events).await?;
        Ok((deploy, events.into_iter().next().expect("one event")))
    }

    async fn log_deploy(&self, id: i64, lines: Vec<String>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let now = to_millis(Utc::now());
        let count = lines.len() as i64;
        let mut tx = self.begin_write().await?;
        let last: i64 = query("SELECT COALESCE(MAX(n), -1) FROM deploy_log WHERE deploy_id = $1")
            .bind(id)
            .fetch_scalar(&mut tx)
            .await?;
        for (i, line) in lines.into_iter().enumerate() {
            query("INSERT INTO deploy_log (deploy_id, n, at, line) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(last + 1 + i as i64)
                .bind(now)
                .bind(line)
                .execute(&mut tx)
                .await?;
        }
        // Keep the tail: the oldest lines go, and the first kept line says how many did. The numbers stay, so
        // a reader paging by number never reads a line twice.
        let next = last + 1 + count;
        if next > LOG_LINES_KEPT {
            let first = next - LOG_LINES_KEPT;
            query("DELETE FROM deploy_log WHERE deploy_id = $1 AND n < $2")
                .bind(id)
                .bind(first)
                .execute(&mut tx)
                .await?;
            query("UPDATE deploy_log SET line = $1 WHERE deploy_id = $2 AND n = $3")
                .bind(format!(
                    "[{} earlier lines were cut: a deploy keeps the last {LOG_LINES_KEPT} lines of its log]",
                    first + 1
                ))
                .bind(id)
                .bind(first)
                .execute(&mut tx)
                .await?;
        }
        tx.commit(&[]).await?;
        Ok(())
    }

    async fn finish_deploy(
        &self,
        id: i64,
        status: DeployStatus,
        hosts: serde_json::Value,
        error: Option<String>,
        event: NewEvent,
    ) -> Result<Event> {
        let stamped = crate::stamp(vec![event])?;
        let now = to_millis(Utc::now());
        let mut tx = self.begin_write().await?;
        // Only a running deploy ends here: one marked interrupted keeps that status (its environment may be
        // another deploy's by now), and its runner is told so.
        let finished = query(
            "UPDATE deploys SET status = $1, hosts = $2, error = $3, finished_at = $4 \
             WHERE id = $5 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(hosts.to_string())
        .bind(&error)
        .bind(now)
        .bind(id)
        .execute(&mut tx)
        .await?;
        if finished == 0 {
            let status: Option<String> =
                query("SELECT status FROM deploys WHERE id = $1").bind(id).fetch_optional_scalar(&mut tx).await?;
            return Err(match status {
                None => StoreError::NotFound(format!("no deploy #{id}")),
                Some(s) => StoreError::Conflict(format!(
                    "deploy #{id} is {s}, no longer running: it was marked interrupted while it ran"
                )),
            });
        }
        query(DELETE_DEPLOY_LOCK).bind(id).execute(&mut tx).await?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn deploy(&self, id: i64) -> Result<Option<Deploy>> {
        let sql = format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = $1");
        let row = query(sql).bind(id).fetch_optional(self.reader()).await?;
        row.as_ref().map(row_to_deploy).transpose()
    }

    async fn deploys(&self, environment: Option<&str>, limit: u32) -> Result<Vec<Deploy>> {
        let rows = match environment {
            Some(env) => {
                query(format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE environment = $1 ORDER BY id DESC LIMIT $2"))
                    .bind(env)
                    .bind(limit as i64)
                    .fetch_all(self.reader())
                    .await?
            }
            None => {
                query(format!("SELECT {DEPLOY_COLUMNS} FROM deploys ORDER BY id DESC LIMIT $1"))
                    .bind(limit as i64)
                    .fetch_all(self.reader())
                    .await?
            }
        };
        rows.iter().map(row_to_deploy).collect()
    }

    async fn deploy_log(&self, id: i64, offset: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        let rows = query("SELECT n, line FROM deploy_log WHERE deploy_id = $1 AND n >= $2 ORDER BY n LIMIT $3")
            .bind(id)
            .bind(offset)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        Ok(rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, sqlx::Error>>()?)
    }

    async fn deploy_log_span(&self, id: i64) -> Result<(i64, i64)> {
        let row = query("SELECT COALESCE(MIN(n), 0), COALESCE(MAX(n) + 1, 0) FROM deploy_log WHERE deploy_id = $1")
            .bind(id)
            .fetch_one(self.reader())
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn take_lock(&self, environment: &str, holder: &str, reason: &str, event: NewEvent) -> Result<Event> {
        let stamped = crate::stamp(vec![event])?;
        let mut tx = self.begin_write().await?;
        tx.serialize_on(&environment_key(environment)).await?;
        let held = query(format!("SELECT {LOCK_COLUMNS} FROM locks WHERE environment = $1 ORDER BY kind"))
            .bind(environment)
            .fetch_all(&mut tx)
            .await?;
        let held: Vec<Lock> = held.iter().map(row_to_lock).collect::<Result<_>>()?;
        // Someone else's lock, or someone else's running deploy (which the lock would not stop): refused, as
        // `start_deploy` refuses a deploy under someone else's lock.
        if let Some(lock) = held.iter().find(|l| l.holder != holder) {
            return Err(StoreError::Conflict(describe(lock)));
        }
        if held.iter().any(|l| l.kind == LockKind::Manual) {
            query("DELETE FROM locks WHERE environment = $1 AND kind = 'manual'")
                .bind(environment)
                .execute(&mut tx)
                .await?;
        }
        query("INSERT INTO locks (environment, kind, holder, reason, since) VALUES ($1, 'manual', $2, $3, $4)")
            .bind(environment)
            .bind(holder)
            .bind(reason)
            .bind(to_millis(Utc::now()))
            .execute(&mut tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict(format!("{environment} was locked a moment ago by someone else"))
                }
                other => other.into(),
            })?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn release_lock(&self, environment: &str, actor: &str, admin: bool, event: NewEvent) -> Result<Event> {
        let stamped = crate::stamp(vec![event])?;
        let mut tx = self.begin_write().await?;
        let held = query(format!("SELECT {LOCK_COLUMNS} FROM locks WHERE environment = $1 AND kind = 'manual'"))
            .bind(environment)
            .fetch_optional(&mut tx)
            .await?;
        let Some(row) = held else {
            return Err(StoreError::NotFound(format!("{environment} is not locked")));
        };
        let lock = row_to_lock(&row)?;
        if lock.holder != actor && !admin {
            return Err(StoreError::Conflict(format!(
                "{}; only {} or an admin can unlock it",
                describe(&lock),
                lock.holder
            )));
        }
        query("DELETE FROM locks WHERE environment = $1 AND kind = 'manual'")
            .bind(environment)
            .execute(&mut tx)
            .await?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn locks(&self) -> Result<Vec<Lock>> {
        let sql = format!("SELECT {LOCK_COLUMNS} FROM locks ORDER BY environment, kind");
        let rows = query(sql).fetch_all(self.reader()).await?;
        rows.iter().map(row_to_lock).collect()
    }

    async fn deploy_heartbeat(&self, id: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // The database's clock, not this server's: replicas' clocks may disagree.
        let beat = query(format!(
            "UPDATE deploys SET heartbeat = {} WHERE id = $1 AND status = 'running'",
            now_ms(self.dialect())
        ))
        .bind(id)
        .execute(&mut tx)
        .await?;
        tx.commit(&[]).await?;
        Ok(beat == 1)
    }

    async fn interrupt_running(
        &self,
        stale_after: std::time::Duration,
        event: Box<dyn for<'d> Fn(&'d Deploy) -> NewEvent + Send + Sync>,
    ) -> Result<Vec<Deploy>> {
        let mut tx = self.begin_write().await?;
        let rows = query(format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys \
             WHERE status = 'running' AND COALESCE(heartbeat, started_at) <= {} - $1 ORDER BY id",
            now_ms(self.dialect())
        ))
        .bind(stale_after.as_millis() as i64)
        .fetch_all(&mut tx)
        .await?;
        let running: Vec<Deploy> = rows.iter().map(row_to_deploy).collect::<Result<_>>()?;
        let now = to_millis(Utc::now());
        let mut news = Vec::new();
        let mut marked = Vec::new();
        for d in running {
            // Another replica's sweep may have marked it since the select (on PostgreSQL this update then waits
            // for that sweep's commit and finds the deploy no longer running): then it is that sweep's to record.
            let changed = query(
                "UPDATE deploys SET status = 'interrupted', finished_at = $1, error = $2 \
                 WHERE id = $3 AND status = 'running'",
            )
            .bind(now)
            .bind("the crew server stopped during the deploy")
            .bind(d.id)
            .execute(&mut tx)
            .await?;
            if changed == 0 {
                continue;
            }
            query(DELETE_DEPLOY_LOCK).bind(d.id).execute(&mut tx).await?;
            news.push(event(&d));
            marked.push(d);
        }
        let stamped = crate::stamp(news)?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok(marked)
    }
}
