//! crew's storage: one [`Store`] trait with an SQLite engine (the embedded default) and a PostgreSQL engine
//! (for teams and for several `crew serve` replicas), and the in-process event bus fed by committed events.
//!
//! Architecture invariants:
//! - Every write that changes state appends its event in the same transaction, so the timeline never misses
//!   a change and never shows one that did not happen.
//! - An event reaches the bus only after its transaction committed. With SQLite the appending process
//!   publishes; with PostgreSQL every replica (the writer too) publishes what LISTEN/NOTIFY tells it, so each
//!   event is published exactly once per replica.
//! - Both engines pass the same conformance suite (`tests/conformance.rs`).

#[macro_use]
mod common;
pub mod deploys;
mod postgres;
mod sql;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, EventError, EventFilter, NewEvent, Role};
use std::sync::Arc;
use tokio::sync::broadcast;

pub use deploys::{Deploy, Lock, NewDeploy};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// What went wrong in the store. Messages name the thing and the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database URL `{0}` is not understood: expected sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    BadUrl(String),
    #[error("cannot apply migrations to {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] EventError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One page of the timeline, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Event>,
    /// Pass back as `before` for the next (older) page; `None` when this page is the last.
    pub next: Option<crew_core::Cursor>,
}

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

/// A flag's definition as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlag {
    pub key: String,
    /// The flagd definition of this one flag.
    pub definition: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A stored chunk of a metric series (the bytes are crew-metrics' Gorilla encoding).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricChunk {
    /// The series key: `name` or `name{k=v,...}`.
    pub series: String,
    /// The replica that received its points.
    pub source: String,
    /// counter, gauge, timer or set.
    pub kind: String,
    /// 0 = the flush interval, then each rollup.
    pub tier: i32,
    pub start_ms: i64,
    pub end_ms: i64,
    pub points: i32,
    pub data: Vec<u8>,
}

/// One write-ahead row of metric points: a flush's new points of one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWal {
    /// The replica that wrote it (and alone replays it).
    pub source: String,
    pub tier: i32,
    pub t_ms: i64,
    pub data: Vec<u8>,
}

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

/// Counts for `crew status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub events: i64,
    pub tokens: i64,
}

/// The storage every part of crew uses. Implemented by [`SqliteStore`] and [`PgStore`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn engine(&self) -> Engine;

    /// The URL it was opened with, password redacted.
    fn url(&self) -> &str;

    /// Committed events, as they are committed (from any replica on PostgreSQL).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;

    /// Appends events in one transaction, in order; returns them as stored.
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Event>>;

    /// The timeline, newest first.
    async fn query(&self, filter: &EventFilter) -> Result<Page>;

    /// Events after `seq`, oldest first, for a live stream that resumes (`Last-Event-ID`).
    async fn events_after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>>;

    async fn event(&self, id: &str) -> Result<Option<Event>>;

    async fn counts(&self) -> Result<Counts>;

    /// Stores a token (by the hash of its secret) and its event. `Conflict` if the name is taken.
    async fn create_token(&self, token: &TokenInfo, hash: &str, event: NewEvent) -> Result<Event>;

    /// Removes a token, its sessions, and records the event. `NotFound` if no such token.
    async fn revoke_token(&self, name: &str, event: NewEvent) -> Result<Event>;

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;

    async fn tokens(&self) -> Result<Vec<TokenInfo>>;

    /// Starts a browser session for a token and records the sign-in.
    async fn create_session(
        &self,
        hash: &str,
        token_name: &str,
        csrf: &str,
        expires_at: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<Event>;

    /// A live (unexpired, token not revoked) session.
    async fn session(&self, hash: &str) -> Result<Option<Session>>;

    /// Ends a browser session (sign-out) and records the event.
    async fn delete_session(&self, hash: &str, event: NewEvent) -> Result<Event>;

    /// Starts a deploy: refuses (`Conflict`) if another person holds the environment's manual lock or a deploy
    /// of it is running; else records the deploy as `running`, takes its deploy lock and records the event that
    /// `event` makes from the deploy's number — all in one transaction, so two deploys never both start.
    async fn start_deploy(
        &self,
        d: NewDeploy,
        event: Box<dyn FnOnce(i64) -> NewEvent + Send>,
    ) -> Result<(Deploy, Event)>;

    /// Appends lines to a deploy's log.
    async fn log_deploy(&self, id: i64, lines: Vec<String>) -> Result<()>;

    /// Ends a deploy with its status and per-host results, releases its deploy lock, records the event.
    async fn finish_deploy(
        &self,
        id: i64,
        status: &str,
        hosts: serde_json::Value,
        error: Option<String>,
        event: NewEvent,
    ) -> Result<Event>;

    async fn deploy(&self, id: i64) -> Result<Option<Deploy>>;

    /// Deploys newest first, of one environment or all.
    async fn deploys(&self, environment: Option<&str>, limit: u32) -> Result<Vec<Deploy>>;

    /// Log lines from `offset` (0-based), at most `limit`.
    async fn deploy_log(&self, id: i64, offset: i64, limit: i64) -> Result<Vec<String>>;

    /// Takes an environment's manual lock. `Conflict` if someone else holds it.
    async fn take_lock(&self, environment: &str, holder: &str, reason: &str, event: NewEvent) -> Result<Event>;

    /// Releases a manual lock: its holder or an admin. `NotFound` if not locked, `Conflict` if not allowed.
    async fn release_lock(&self, environment: &str, actor: &str, admin: bool, event: NewEvent) -> Result<Event>;

    async fn locks(&self) -> Result<Vec<Lock>>;

    /// Every flag, by key.
    async fn flags(&self) -> Result<Vec<StoredFlag>>;

    /// Sets (or, with `None`, removes) a flag's definition and records the event `event(before)` makes from
    /// the definition it replaces — in one transaction. Returns the definition before.
    async fn put_flag(
        &self,
        key: &str,
        definition: Option<serde_json::Value>,
        actor: &str,
        event: Box<dyn for<'b> FnOnce(Option<&'b serde_json::Value>) -> NewEvent + Send>,
    ) -> Result<(Option<serde_json::Value>, Event)>;

    async fn chat_links(&self) -> Result<Vec<ChatLink>>;

    /// Links a chat identity to a crew user (replacing its link), or with `None` removes the link (`NotFound`
    /// if there is none), with its event in the same transaction.
    async fn put_chat_link(&self, identity: &str, user: Option<&str>, actor: &str, event: NewEvent) -> Result<Event>;

    /// Records that the server running deploy `id` is alive.
    async fn deploy_heartbeat(&self, id: i64) -> Result<()>;

    /// Takes or renews the lease `name` for `holder` until now + `ttl`, when it is free, expired, or already
    /// `holder`'s; whether `holder` holds it now. Keeps a scheduled job to one replica at a time.
    async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool>;

    /// One flush of metrics by replica `source`, in one transaction: its write-ahead rows, the chunks that
    /// closed, and, per tier, the removal of its write-ahead rows older than `floors[tier]` (their points are all
    /// in chunks).
    async fn write_metrics(
        &self,
        source: &str,
        wal: Vec<MetricWal>,
        chunks: Vec<MetricChunk>,
        floors: Vec<i64>,
    ) -> Result<()>;

    /// The chunks of a series and tier that overlap [from_ms, to_ms], every replica's, oldest first.
    async fn metric_chunks(&self, series: &str, tier: i32, from_ms: i64, to_ms: i64) -> Result<Vec<MetricChunk>>;

    /// Every stored series, tier and source with its kind and its last chunk's end:
    /// (series, kind, tier, source, end_ms).
    async fn metric_series(&self) -> Result<Vec<(String, String, i32, String, i64)>>;

    /// A replica's write-ahead rows in the order written.
    async fn metric_wal(&self, source: &str) -> Result<Vec<MetricWal>>;

    /// Removes a tier's chunks that ended before `before_ms` (retention); how many.
    async fn expire_metric_chunks(&self, tier: i32, before_ms: i64) -> Result<u64>;

    /// Marks every `running` deploy whose heartbeat (by the database's clock; its start if none) is at least
    /// `stale_after` old `interrupted` and releases its lock, recording `event(deploy)` for each: the server
    /// running it stopped. `stale_after` zero takes every running deploy.
    async fn interrupt_running(
        &self,
        stale_after: std::time::Duration,
        event: Box<dyn for<'d> Fn(&'d Deploy) -> NewEvent + Send + Sync>,
    ) -> Result<Vec<Deploy>>;
}

/// Opens the store a URL names (`sqlite://PATH` or `postgres://...`), creating it if needed and applying
/// migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::BadUrl(redact(url)))
    }
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        // Unparseable: hide everything between the scheme and the host, where a password would be.
        return match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            _ => url.to_string(),
        };
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query_pairs().any(|(k, _)| k.contains("password")) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.contains("password") { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Milliseconds since the epoch, the stored form of every time.
pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("time {ms} out of range")))
}

/// Validates and stamps events: an id and the current time, truncated to milliseconds so that what a client
/// reads back filters the same way.
pub(crate) fn stamp(events: Vec<NewEvent>) -> Result<Vec<(String, i64, NewEvent)>> {
    let now = to_millis(Utc::now());
    events
        .into_iter()
        .map(|mut e| {
            e.validate()?;
            Ok((uuid::Uuid::now_v7().to_string(), now, e))
        })
        .collect()
}

/// The event as stored, from what was appended and what the store gave it.
pub(crate) fn stored(id: String, seq: i64, at: i64, e: NewEvent) -> Result<Event> {
    Ok(Event {
        id,
        seq,
        at: from_millis(at)?,
        actor: e.actor,
        kind: e.kind,
        subject: e.subject,
        summary: e.summary,
        data: e.data,
        links: e.links,
    })
}

/// Capacity of the bus: a subscriber slower than this many events is told it lagged and catches up from the
/// store.
pub const BUS_CAPACITY: usize = 4096;

#[cfg(test)]
mod tests {
    #[test]
    fn redaction() {
        let table = [
            ("postgres://crew:s3cret@db:5432/crew", "postgres://crew:***@db:5432/crew"),
            (
                "postgres://crew@db/crew?password=s3cret&sslmode=require",
                "postgres://crew@db/crew?password=***&sslmode=require",
            ),
            ("postgres://crew:a/b@db:5432/crew", "postgres://***@db:5432/crew"),
            ("sqlite://.crew/crew.db", "sqlite://.crew/crew.db"),
        ];
        for (url, want) in table {
            let got = super::redact(url);
            assert_eq!(got, want, "{url}");
            assert!(!got.contains("s3cret"));
        }
    }
}
