//! crew's storage: the [`Store`] traits, one per domain, with an SQLite engine (the embedded default) and a
//! PostgreSQL engine (for teams and for several `crew serve` replicas), and the in-process event bus fed by
//! committed events.
//!
//! Architecture invariants:
//! - Every write that changes state appends its event in the same transaction, so the timeline never misses
//!   a change and never shows one that did not happen.
//! - An event reaches the bus only after its transaction committed. With SQLite the appending process
//!   publishes; with PostgreSQL every replica (the writer too) publishes what LISTEN/NOTIFY tells it, so each
//!   event is published exactly once per replica.
//! - Both engines pass the same conformance suite (`tests/conformance/`, a module per domain).
//!
//! Each domain has its trait ([`TimelineStore`], [`AccessStore`], [`DeployStore`], [`FlagStore`], [`ChatStore`],
//! [`MetricStore`], [`LeaseStore`], [`IncidentStore`], [`OncallStore`], [`ExperimentStore`], [`RampStore`]) and its module whose SQL serves both engines (`timeline.rs`, `access.rs`,
//! ...), written against the engine-neutral executor of `db.rs`. [`Store`] is their sum; [`prelude`] has them all.

mod access;
mod chat;
mod db;
pub mod deploys;
mod experiments;
mod flags;
mod incidents;
mod leases;
mod metrics;
mod oncall;
mod postgres;
mod ramps;
mod sql;
mod sqlite;
mod timeline;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, EventError, EventFilter, NewEvent};
use std::sync::Arc;
use tokio::sync::broadcast;

pub use access::{Session, TokenInfo};
pub use chat::{ChatLine, ChatLink};
pub use deploys::{Deploy, Lock, NewDeploy};
pub use experiments::{Conversion, Exposure, Recorded, StoredUnit, Tallies};
pub use flags::StoredFlag;
pub use incidents::{Advance, Incident, NewIncident, Postmortem, Triggered};
pub use metrics::{MetricChunk, MetricWal};
pub use oncall::StoredOverride;
pub use postgres::PgStore;
pub use ramps::{NewRamp, Ramp, RampAdvance, RampStatus, StoredPlan};
pub use sqlite::SqliteStore;
pub use timeline::{Counts, Page};

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

/// The timeline: appending events, reading them back, following them live.
#[async_trait]
pub trait TimelineStore: Send + Sync + 'static {
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
}

/// Access: API tokens (stored by the hash of their secret) and browser sessions.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
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
}

/// Deploys: their records and logs, environment locks, and the liveness of the servers running them.
#[async_trait]
pub trait DeployStore: Send + Sync + 'static {
    /// Starts a deploy: refuses (`Conflict`) if another person holds the environment's manual lock or a deploy
    /// of it is running; else records the deploy as `running`, takes its deploy lock and records the event that
    /// `event` makes from the deploy's number — all in one transaction, so two deploys never both start.
    async fn start_deploy(
        &self,
        d: NewDeploy,
        event: Box<dyn FnOnce(i64) -> NewEvent + Send>,
    ) -> Result<(Deploy, Event)>;

    /// Appends lines to a deploy's log. A deploy keeps its last [`deploys::LOG_LINES_KEPT`] lines: when there are
    /// more, the oldest go and the first kept line says how many were cut. Lines keep their numbers.
    async fn log_deploy(&self, id: i64, lines: Vec<String>) -> Result<()>;

    /// Ends a running deploy with its status and per-host results, releases its deploy lock, records the event.
    /// `Conflict` (and no event) if the deploy is no longer running: it was marked interrupted meanwhile, and
    /// its environment may be another deploy's by now.
    async fn finish_deploy(
        &self,
        id: i64,
        status: crew_core::DeployStatus,
        hosts: serde_json::Value,
        error: Option<String>,
        event: NewEvent,
    ) -> Result<Event>;

    async fn deploy(&self, id: i64) -> Result<Option<Deploy>>;

    /// Deploys newest first, of one environment or all.
    async fn deploys(&self, environment: Option<&str>, limit: u32) -> Result<Vec<Deploy>>;

    /// Log lines numbered `offset` (0-based) and later, at most `limit`, each with its number. Numbers have a gap
    /// where a long log was cut: page on with the last number + 1.
    async fn deploy_log(&self, id: i64, offset: i64, limit: i64) -> Result<Vec<(i64, String)>>;

    /// The number of a deploy's first stored log line and one past its last: `(0, 0)` for no log.
    async fn deploy_log_span(&self, id: i64) -> Result<(i64, i64)>;

    /// Takes an environment's manual lock. `Conflict` if someone else holds it.
    async fn take_lock(&self, environment: &str, holder: &str, reason: &str, event: NewEvent) -> Result<Event>;

    /// Releases a manual lock: its holder or an admin. `NotFound` if not locked, `Conflict` if not allowed.
    async fn release_lock(&self, environment: &str, actor: &str, admin: bool, event: NewEvent) -> Result<Event>;

    async fn locks(&self) -> Result<Vec<Lock>>;

    /// Records that the server running deploy `id` is alive. False if the deploy is no longer running (it was
    /// marked interrupted): its runner must stop.
    async fn deploy_heartbeat(&self, id: i64) -> Result<bool>;

    /// Marks every `running` deploy whose heartbeat (by the database's clock; its start if none) is at least
    /// `stale_after` old `interrupted` and releases its lock, recording `event(deploy)` for each: the server
    /// running it stopped. `stale_after` zero takes every running deploy. Returns the deploys this call marked:
    /// of sweeps at the same moment, each deploy is marked (and its event recorded) by one.
    async fn interrupt_running(
        &self,
        stale_after: std::time::Duration,
        event: Box<dyn for<'d> Fn(&'d Deploy) -> NewEvent + Send + Sync>,
    ) -> Result<Vec<Deploy>>;
}

/// Feature flags: each flag's flagd definition.
#[async_trait]
pub trait FlagStore: Send + Sync + 'static {
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
}

/// Chat: which chat identity speaks for which crew user.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    async fn chat_links(&self) -> Result<Vec<ChatLink>>;

    /// Links a chat identity to a crew user (replacing its link), or with `None` removes the link (`NotFound`
    /// if there is none), with its event in the same transaction.
    async fn put_chat_link(&self, identity: &str, user: Option<&str>, actor: &str, event: NewEvent) -> Result<Event>;

    /// Keeps one line said in a room; in the same transaction drops the lines older than `keep_since` and all
    /// but the newest `keep_max` (so the table stays bounded however much is said). Records no event.
    async fn add_chat_line(&self, line: &ChatLine, keep_since: DateTime<Utc>, keep_max: i64) -> Result<()>;

    /// The lines said in `room` (case-insensitive; every room when `None`) in `[from, to]`, oldest first, at
    /// most `limit`.
    async fn chat_lines(
        &self,
        room: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChatLine>>;
}

/// Metrics: each replica's write-ahead rows and the chunks of every series.
#[async_trait]
pub trait MetricStore: Send + Sync + 'static {
    /// One flush of metrics by replica `source`, in one transaction: its write-ahead rows, the chunks that
    /// closed, and, per tier, the removal of its write-ahead rows older than `floors[tier]` (their points are all
    /// in chunks).
    async fn write_metrics(
        &self,
        source: &str,
        wal: &[MetricWal],
        chunks: &[MetricChunk],
        floors: &[i64],
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
}

/// Leases: which replica runs a scheduled job.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes or renews the lease `name` for `holder` until now + `ttl`, when it is free, expired, or already
    /// `holder`'s; whether `holder` holds it now. Keeps a scheduled job to one replica at a time.
    async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool>;
}

/// Incidents: opened (deduplicated by key), acknowledged, resolved, and their due escalation steps.
#[async_trait]
pub trait IncidentStore: Send + Sync + 'static {
    /// Opens an incident, or adds to the one with the same key: joins it when open, reopens it when it was
    /// resolved within `reopen_within` (escalating from the first step again), and does nothing when
    /// `source_id` was heard already. The events `event` makes are recorded in the same transaction.
    async fn trigger_incident(
        &self,
        n: NewIncident,
        now: DateTime<Utc>,
        reopen_within: std::time::Duration,
        event: Box<dyn for<'i> FnOnce(&'i Incident, Triggered) -> Vec<NewEvent> + Send>,
    ) -> Result<(Incident, Triggered, Vec<Event>)>;

    /// Acknowledges a triggered incident: nothing more is due until `ack_until` (then it escalates again).
    /// `Conflict` if it is acknowledged or resolved already, `NotFound` if there is no such incident.
    async fn ack_incident(
        &self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
        ack_until: Option<DateTime<Utc>>,
        event: Box<dyn for<'i> FnOnce(&'i Incident) -> NewEvent + Send>,
    ) -> Result<(Incident, Event)>;

    /// Resolves an open incident. `Conflict` if resolved already.
    async fn resolve_incident(
        &self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
        event: Box<dyn for<'i> FnOnce(&'i Incident) -> NewEvent + Send>,
    ) -> Result<(Incident, Event)>;

    /// Records an event about an incident that exists (a note, a notification).
    async fn note_incident(&self, id: i64, event: NewEvent) -> Result<Event>;

    async fn incident(&self, id: i64) -> Result<Option<Incident>>;

    /// Open incidents first, then the others, each newest first.
    async fn incidents(&self, open_only: bool, limit: u32) -> Result<Vec<Incident>>;

    /// The newest incident with this key.
    async fn incident_by_key(&self, key: &str) -> Result<Option<Incident>>;

    /// How many incidents `opened_by` opened that are not resolved.
    async fn open_incidents_by(&self, opened_by: &str) -> Result<i64>;

    /// Remembers that `source_id` (a used acknowledgement link) reached `incident`; false if it had already.
    async fn mark_source(&self, source_id: &str, incident: i64) -> Result<bool>;

    /// Sets an incident's postmortem (state and Markdown) with its event, when `allowed(before)` says the change
    /// may happen (its `Err` is a `Conflict`). `NotFound` if there is no such incident.
    async fn put_postmortem(
        &self,
        id: i64,
        state: crew_core::PostmortemState,
        markdown: &str,
        actor: &str,
        allowed: Box<
            dyn for<'p> FnOnce(Option<&'p Postmortem>) -> std::result::Result<Option<NewEvent>, String> + Send,
        >,
    ) -> Result<Option<Event>>;

    async fn postmortem(&self, id: i64) -> Result<Option<Postmortem>>;

    /// The server's secret called `name`, made from `fresh` the first time (the first replica's wins).
    async fn server_secret(&self, name: &str, fresh: &str) -> Result<String>;

    /// Claims the incidents whose due time has come (at most `limit`) and applies what `decide` says of each
    /// — its new status, step and due time, and its events — in one transaction. Across replicas on one
    /// PostgreSQL each due step is claimed once (`FOR UPDATE SKIP LOCKED`).
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        decide: Box<dyn for<'i> Fn(&'i Incident) -> Advance + Send + Sync>,
    ) -> Result<Vec<(Incident, Advance, Vec<Event>)>>;
}

/// On-call: schedule overrides and the iCal feeds' secrets.
#[async_trait]
pub trait OncallStore: Send + Sync + 'static {
    /// Adds an override after `check` accepts it against the schedule's overrides that end after `from`
    /// (its `Err` is a `Conflict`); `check` makes the event. Overrides of one schedule are added one at a time.
    async fn add_override(
        &self,
        schedule: &str,
        user: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        actor: &str,
        check: Box<dyn for<'o> FnOnce(&'o [StoredOverride]) -> std::result::Result<NewEvent, String> + Send>,
    ) -> Result<(StoredOverride, Event)>;

    /// Overrides (of one schedule, or all) that end after `ending_after`, by schedule and start.
    async fn overrides(&self, schedule: Option<&str>, ending_after: DateTime<Utc>) -> Result<Vec<StoredOverride>>;

    async fn remove_override(&self, id: i64, event: NewEvent) -> Result<(StoredOverride, Event)>;

    /// Sets (replaces) the hash of a feed's key.
    async fn put_feed_key(&self, name: &str, key_hash: &str, event: NewEvent) -> Result<Event>;

    async fn feed_key(&self, name: &str) -> Result<Option<String>>;
}

/// Experiments: exposures of split flags and conversions. No events: the results are read, not changes.
#[async_trait]
pub trait ExperimentStore: Send + Sync + 'static {
    /// Stores first exposures in one transaction: a user already exposed in the experiment (flag, phase) is a
    /// duplicate; past `max_users` users an experiment takes no new ones (dropped).
    async fn record_exposures(&self, exposures: &[Exposure], max_users: u64) -> Result<Recorded>;

    /// Users per variant of an experiment, by variant name.
    async fn experiment_counts(&self, flag: &str, phase: i64) -> Result<Vec<(String, u64)>>;

    /// Records a conversion of `user` on `metric` at `at_ms` with its value (1 when none was given).
    async fn record_conversion(&self, metric: &str, user: &str, at_ms: i64, value: f64) -> Result<()>;

    /// Records a batch of conversions in one transaction.
    async fn record_conversions(&self, conversions: &[Conversion]) -> Result<()>;

    /// An experiment's users and conversions on `metric` by variant and minute (what results read).
    async fn experiment_tallies(&self, flag: &str, phase: i64, metric: &str) -> Result<Tallies>;

    /// How many users an experiment has.
    async fn experiment_users(&self, flag: &str, phase: i64) -> Result<u64>;

    /// Every exposed user of an experiment with its conversion on `metric`, if it converted after exposure.
    async fn experiment_units(&self, flag: &str, phase: i64, metric: &str) -> Result<Vec<StoredUnit>>;
}

/// Flags' launch plans and ramps.
#[async_trait]
pub trait RampStore: Send + Sync + 'static {
    async fn flag_plan(&self, flag: &str) -> Result<Option<StoredPlan>>;

    /// Sets (or, with `None`, removes: `NotFound` if there is none) a flag's launch plan and records the event
    /// `event(before)` makes, in one transaction. Returns the plan before.
    async fn put_flag_plan(
        &self,
        flag: &str,
        plan: Option<serde_json::Value>,
        actor: &str,
        event: Box<dyn for<'b> FnOnce(Option<&'b serde_json::Value>) -> NewEvent + Send>,
    ) -> Result<(Option<serde_json::Value>, Event)>;

    /// Starts a ramp on its first step, due for judgement `every_ms` later, with its event. `Conflict` if the
    /// flag has a running ramp (one per flag, across replicas).
    async fn start_ramp(
        &self,
        n: NewRamp,
        event: Box<dyn for<'r> FnOnce(&'r Ramp) -> NewEvent + Send>,
    ) -> Result<(Ramp, Event)>;

    async fn ramp(&self, id: i64) -> Result<Option<Ramp>>;

    /// A flag's ramps, newest first.
    async fn ramps(&self, flag: &str, limit: u32) -> Result<Vec<Ramp>>;

    /// Claims the running ramps whose judgement is due (at most `limit`): each one's due time moves `lease` on
    /// and its claim count up, so that no other claim takes it while it is judged. Across replicas on one
    /// PostgreSQL each due ramp is claimed once (`FOR UPDATE SKIP LOCKED`). Returns them as claimed.
    async fn claim_due_ramps(&self, now: DateTime<Utc>, lease: std::time::Duration, limit: u32) -> Result<Vec<Ramp>>;

    /// Records what a claimed ramp became — step, status, next due time, last verdict — with its events, in one
    /// transaction; `Conflict` (and nothing recorded) if the ramp was claimed again, cancelled or ended since
    /// claim `claim`.
    async fn advance_ramp(&self, id: i64, claim: i64, a: RampAdvance) -> Result<(Ramp, Vec<Event>)>;

    /// Cancels a flag's running ramp with its event. `NotFound` if there is none.
    async fn cancel_ramp(
        &self,
        flag: &str,
        event: Box<dyn for<'r> FnOnce(&'r Ramp) -> NewEvent + Send>,
    ) -> Result<(Ramp, Event)>;
}

/// The storage every part of crew uses: every domain's trait. Implemented by [`SqliteStore`] and [`PgStore`].
/// An `Arc<dyn Store>` converts to the `Arc<dyn …Store>` of any one domain.
pub trait Store:
    TimelineStore
    + AccessStore
    + DeployStore
    + FlagStore
    + ChatStore
    + MetricStore
    + LeaseStore
    + IncidentStore
    + OncallStore
    + ExperimentStore
    + RampStore
{
}

impl<S> Store for S where
    S: TimelineStore
        + AccessStore
        + DeployStore
        + FlagStore
        + ChatStore
        + MetricStore
        + LeaseStore
        + IncidentStore
        + OncallStore
        + ExperimentStore
        + RampStore
{
}

/// The store traits, for `use crew_store::prelude::*;`. A method called on a `dyn Store` needs no import; on a
/// concrete store or a generic `S: Store`, its domain's trait must be in scope.
pub mod prelude {
    pub use crate::{
        AccessStore, ChatStore, DeployStore, ExperimentStore, FlagStore, IncidentStore, LeaseStore, MetricStore,
        OncallStore, RampStore, Store, TimelineStore,
    };
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
