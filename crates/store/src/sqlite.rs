//! The SQLite engine: the embedded default (`sqlite://<data-dir>/crew.db`), WAL, full sync, FTS5 search.

use crate::db::{Backend, Conn, Tx};
use crate::{Engine, Result, StoreError, BUS_CAPACITY};
use crew_core::{event::kind_prefixes, Event, NewEvent};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub struct SqliteStore {
    pool: SqlitePool,
    url: String,
    /// Committed events; this process is the only writer, so it publishes after each commit.
    bus: broadcast::Sender<Arc<Event>>,
    /// Serialises this process's write transactions. SQLite allows one writer at a time anyway; taking turns
    /// here, rather than in SQLite's busy loop, keeps a read-then-write transaction from failing with
    /// SQLITE_BUSY_SNAPSHOT when another write commits between its read and its write.
    write: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self> {
        let connect_err = |source| StoreError::Connect { url: url.to_string(), source };
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(connect_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged event survives a crash of the machine, not only of the process.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let file = opts.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await.map_err(connect_err)?;
        // The database holds every token's hash and every secret the timeline was told: for the server's user
        // alone, not for builds run as another user (`[build] user`). Its -wal and -shm files follow.
        private(&file);
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { url: url.to_string(), source })?;
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        Ok(SqliteStore { pool, url: url.to_string(), bus, write: tokio::sync::Mutex::new(()) })
    }
}

/// Makes the database file and its companions readable by their owner only.
fn private(db: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = ?path, error = %e, "cannot make the database private to its owner");
            }
        }
    }
}

impl Backend for SqliteStore {
    const ENGINE: Engine = Engine::Sqlite;

    fn shown_url(&self) -> &str {
        &self.url
    }

    fn bus(&self) -> &broadcast::Sender<Arc<Event>> {
        &self.bus
    }

    fn reader(&self) -> Conn<'_> {
        Conn::SqlitePool(&self.pool)
    }

    async fn begin_write(&self) -> Result<Tx<'_>> {
        let turn = self.write.lock().await;
        Ok(Tx::Sqlite(Write { tx: self.pool.begin().await?, bus: &self.bus, _turn: turn }))
    }
}

/// A write transaction, holding this process's turn to write until its events are published.
pub(crate) struct Write<'a> {
    tx: Transaction<'static, Sqlite>,
    bus: &'a broadcast::Sender<Arc<Event>>,
    /// Released after the publication, so that the bus carries events in commit order.
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl Write<'_> {
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Inserts a batch with a few multi-row statements (sqlx hands each statement to the connection's thread,
    /// so a statement per row would cost a round trip per row). The full-text index follows by trigger.
    pub(crate) async fn insert_events(&mut self, stamped: Vec<(String, i64, NewEvent)>) -> Result<Vec<Event>> {
        let tx = &mut self.tx;
        /// Rows per statement: 9 values each, well under SQLite's 32766 bound variables.
        const ROWS: usize = 500;
        let mut out = Vec::with_capacity(stamped.len());
        let mut rest = stamped;
        while !rest.is_empty() {
            let chunk: Vec<_> = rest.drain(..ROWS.min(rest.len())).collect();
            let mut sql =
                String::from("INSERT INTO events (id, at, actor, via, kind, subject, summary, data, links) VALUES ");
            sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "));
            sql.push_str(" RETURNING seq, id");
            let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
            for (id, at, e) in &chunk {
                q = q
                    .bind(id)
                    .bind(at)
                    .bind(&e.actor.name)
                    .bind(e.actor.via.as_str())
                    .bind(&e.kind)
                    .bind(&e.subject)
                    .bind(&e.summary)
                    .bind(e.data.to_string())
                    .bind(serde_json::to_string(&e.links).expect("links serialize"));
            }
            let seq_of: std::collections::HashMap<String, i64> =
                q.fetch_all(&mut **tx).await?.into_iter().map(|(s, id)| (id, s)).collect();
            let mut prefixes: Vec<(&str, i64)> = Vec::new();
            let mut events = Vec::with_capacity(chunk.len());
            for (id, at, e) in chunk {
                let seq = *seq_of.get(&id).ok_or_else(|| StoreError::Corrupt(format!("event {id} not returned")))?;
                events.push(crate::stored(id, seq, at, e)?);
            }
            for e in &events {
                prefixes.extend(kind_prefixes(&e.kind).map(|p| (p, e.seq)));
            }
            for part in prefixes.chunks(ROWS * 2) {
                let sql =
                    format!("INSERT INTO event_kinds (prefix, seq) VALUES {}", vec!["(?, ?)"; part.len()].join(", "));
                let mut q = sqlx::query(&sql);
                for (p, seq) in part {
                    q = q.bind(*p).bind(*seq);
                }
                q.execute(&mut **tx).await?;
            }
            out.extend(events);
        }
        Ok(out)
    }

    /// Commits, then publishes the events: this process is the only writer.
    pub(crate) async fn commit(self, events: &[Event]) -> Result<()> {
        self.tx.commit().await?;
        for e in events {
            // No subscriber is fine: nobody is watching.
            let _ = self.bus.send(Arc::new(e.clone()));
        }
        Ok(())
    }
}
