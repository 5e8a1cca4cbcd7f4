//! The engine-neutral executor the domain modules write their SQL against, once for both engines.
//!
//! A domain module implements its store trait for every [`Backend`] (an engine: [`crate::SqliteStore`],
//! [`crate::PgStore`]). It runs statements with [`query`], binding [`Arg`]s and reading [`Row`]s, on
//! [`Backend::reader`] (the pool) or on a [`Tx`] from [`Backend::begin_write`]. The statements use `$n`
//! placeholders, which SQLite accepts too. Only this file names both engines' sqlx types; what differs between
//! the engines (the write turn of SQLite, how events are inserted and published) is in `sqlite.rs` and
//! `postgres.rs`.

use crate::sql::Dialect;
use crate::{Engine, Result};
use crew_core::{Event, NewEvent};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Decode, Encode, PgConnection, Postgres, Sqlite, SqliteConnection, Type};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::broadcast;

/// An engine, as the domain modules see it. Each store trait is implemented for every `Backend`.
pub(crate) trait Backend: Send + Sync + 'static {
    const ENGINE: Engine;

    /// The URL the store was opened with, password redacted.
    fn shown_url(&self) -> &str;

    /// Where committed events are published.
    fn bus(&self) -> &broadcast::Sender<Arc<Event>>;

    /// Where reads run: the pool.
    fn reader(&self) -> Conn<'_>;

    /// A write transaction. Every state change and its events go into one, and its events are published only
    /// after it commits ([`Tx::commit`]).
    fn begin_write(&self) -> impl Future<Output = Result<Tx<'_>>> + Send;

    fn dialect(&self) -> Dialect {
        match Self::ENGINE {
            Engine::Sqlite => Dialect::Sqlite,
            Engine::Postgres => Dialect::Postgres,
        }
    }
}

/// A write transaction of either engine.
pub(crate) enum Tx<'a> {
    Sqlite(crate::sqlite::Write<'a>),
    Postgres(crate::postgres::Write),
}

impl Tx<'_> {
    /// Inserts stamped events ([`crate::stamp`]), in order; returns them as stored.
    pub(crate) async fn insert_events(&mut self, stamped: Vec<(String, i64, NewEvent)>) -> Result<Vec<Event>> {
        match self {
            Tx::Sqlite(w) => w.insert_events(stamped).await,
            Tx::Postgres(w) => w.insert_events(stamped).await,
        }
    }

    /// Takes `key` for the rest of the transaction: another transaction taking the same key waits until this one
    /// ends. SQLite's writers already take turns (one write transaction at a time), so only PostgreSQL needs
    /// it: under READ COMMITTED two transactions that each check a table and then insert would both pass.
    pub(crate) async fn serialize_on(&mut self, key: &str) -> Result<()> {
        match self {
            Tx::Sqlite(_) => Ok(()),
            Tx::Postgres(w) => w.advisory_lock(key).await,
        }
    }

    /// Commits, then publishes `events` (the ones this transaction inserted), in commit order.
    pub(crate) async fn commit(self, events: &[Event]) -> Result<()> {
        match self {
            Tx::Sqlite(w) => w.commit(events).await,
            Tx::Postgres(w) => w.commit(events).await,
        }
    }
}

/// Where a statement runs: a pool (a read) or a write transaction's connection.
pub(crate) enum Conn<'c> {
    SqlitePool(&'c SqlitePool),
    SqliteTx(&'c mut SqliteConnection),
    PgPool(&'c PgPool),
    PgTx(&'c mut PgConnection),
}

impl<'c> From<&'c mut Tx<'_>> for Conn<'c> {
    fn from(tx: &'c mut Tx<'_>) -> Self {
        match tx {
            Tx::Sqlite(w) => Conn::SqliteTx(w.conn()),
            Tx::Postgres(w) => Conn::PgTx(w.conn()),
        }
    }
}

/// A bound value. Its type decides the column type PostgreSQL sees, as with sqlx's `bind`.
pub(crate) enum Arg<'q> {
    Text(&'q str),
    OwnedText(String),
    NullableText(Option<&'q str>),
    Int(i64),
    NullableInt(Option<i64>),
    Int4(i32),
    Bytes(&'q [u8]),
    Float(f64),
}

impl<'q> From<&'q str> for Arg<'q> {
    fn from(v: &'q str) -> Self {
        Arg::Text(v)
    }
}

impl<'q> From<&'q String> for Arg<'q> {
    fn from(v: &'q String) -> Self {
        Arg::Text(v)
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::OwnedText(v)
    }
}

impl<'q> From<Option<&'q str>> for Arg<'q> {
    fn from(v: Option<&'q str>) -> Self {
        Arg::NullableText(v)
    }
}

impl<'q> From<&'q Option<String>> for Arg<'q> {
    fn from(v: &'q Option<String>) -> Self {
        Arg::NullableText(v.as_deref())
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::NullableInt(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Float(v)
    }
}

impl From<i32> for Arg<'_> {
    fn from(v: i32) -> Self {
        Arg::Int4(v)
    }
}

impl<'q> From<&'q Vec<u8>> for Arg<'q> {
    fn from(v: &'q Vec<u8>) -> Self {
        Arg::Bytes(v)
    }
}

/// A statement and its bound values, run with one of the `fetch`/`execute` methods.
pub(crate) struct Query<'q> {
    sql: std::borrow::Cow<'q, str>,
    args: Vec<Arg<'q>>,
}

/// A statement (`$n` placeholders), to bind values to in order.
pub(crate) fn query<'q>(sql: impl Into<std::borrow::Cow<'q, str>>) -> Query<'q> {
    Query { sql: sql.into(), args: Vec::new() }
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, value: impl Into<Arg<'q>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Runs the statement; how many rows it changed.
    pub(crate) async fn execute(self, on: impl Into<Conn<'_>>) -> Result<u64, sqlx::Error> {
        let Query { sql, args } = self;
        Ok(match on.into() {
            Conn::SqlitePool(p) => bind(&sql, args).execute(p).await?.rows_affected(),
            Conn::SqliteTx(c) => bind(&sql, args).execute(c).await?.rows_affected(),
            Conn::PgPool(p) => bind(&sql, args).execute(p).await?.rows_affected(),
            Conn::PgTx(c) => bind(&sql, args).execute(c).await?.rows_affected(),
        })
    }

    pub(crate) async fn fetch_all(self, on: impl Into<Conn<'_>>) -> Result<Vec<Row>, sqlx::Error> {
        let Query { sql, args } = self;
        Ok(match on.into() {
            Conn::SqlitePool(p) => bind(&sql, args).fetch_all(p).await?.into_iter().map(Row::Sqlite).collect(),
            Conn::SqliteTx(c) => bind(&sql, args).fetch_all(c).await?.into_iter().map(Row::Sqlite).collect(),
            Conn::PgPool(p) => bind(&sql, args).fetch_all(p).await?.into_iter().map(Row::Postgres).collect(),
            Conn::PgTx(c) => bind(&sql, args).fetch_all(c).await?.into_iter().map(Row::Postgres).collect(),
        })
    }

    pub(crate) async fn fetch_optional(self, on: impl Into<Conn<'_>>) -> Result<Option<Row>, sqlx::Error> {
        let Query { sql, args } = self;
        Ok(match on.into() {
            Conn::SqlitePool(p) => bind(&sql, args).fetch_optional(p).await?.map(Row::Sqlite),
            Conn::SqliteTx(c) => bind(&sql, args).fetch_optional(c).await?.map(Row::Sqlite),
            Conn::PgPool(p) => bind(&sql, args).fetch_optional(p).await?.map(Row::Postgres),
            Conn::PgTx(c) => bind(&sql, args).fetch_optional(c).await?.map(Row::Postgres),
        })
    }

    /// The one row; `RowNotFound` if there is none.
    pub(crate) async fn fetch_one(self, on: impl Into<Conn<'_>>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(on).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// The first column of the one row.
    pub(crate) async fn fetch_scalar<T: Column>(self, on: impl Into<Conn<'_>>) -> Result<T, sqlx::Error> {
        self.fetch_one(on).await?.try_get(0)
    }

    /// The first column of the row, if there is one.
    pub(crate) async fn fetch_optional_scalar<T: Column>(
        self,
        on: impl Into<Conn<'_>>,
    ) -> Result<Option<T>, sqlx::Error> {
        self.fetch_optional(on).await?.map(|r| r.try_get(0)).transpose()
    }
}

/// The sqlx query of either engine with `args` bound, in order.
fn bind<'q, DB: sqlx::Database>(sql: &'q str, args: Vec<Arg<'q>>) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    &'q str: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    i32: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
{
    args.into_iter().fold(sqlx::query(sql), |q, arg| match arg {
        Arg::Text(v) => q.bind(v),
        Arg::OwnedText(v) => q.bind(v),
        Arg::NullableText(v) => q.bind(v),
        Arg::Int(v) => q.bind(v),
        Arg::NullableInt(v) => q.bind(v),
        Arg::Int4(v) => q.bind(v),
        Arg::Float(v) => q.bind(v),
        Arg::Bytes(v) => q.bind(v),
    })
}

/// A result row of either engine.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A type both engines read from a column.
pub(crate) trait Column: Readable<Sqlite> + Readable<Postgres> {}

impl<T: Readable<Sqlite> + Readable<Postgres>> Column for T {}

/// A type one engine reads from a column.
pub(crate) trait Readable<DB: sqlx::Database>: for<'r> Decode<'r, DB> + Type<DB> {}

impl<DB: sqlx::Database, T: for<'r> Decode<'r, DB> + Type<DB>> Readable<DB> for T {}

impl Row {
    /// The value of column `i` (0-based).
    pub(crate) fn try_get<T: Column>(&self, i: usize) -> Result<T, sqlx::Error> {
        use sqlx::Row as _;
        match self {
            Row::Sqlite(r) => r.try_get(i),
            Row::Postgres(r) => r.try_get(i),
        }
    }
}
