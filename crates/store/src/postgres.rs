//! The PostgreSQL engine: for teams and for several `crew serve` replicas sharing one database. Full-text
//! search with a GIN index; committed events reach every replica's bus through LISTEN/NOTIFY.

use crate::db::{Backend, Conn, Row, Tx};
use crate::sql::{self, Dialect};
use crate::{Engine, Result, StoreError, BUS_CAPACITY};
use crew_core::{event::kind_prefixes, Event, NewEvent};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The NOTIFY channel; its payload is a comma-separated list of committed sequence numbers.
const CHANNEL: &str = "crew_events";
/// Sequence numbers per NOTIFY, well under PostgreSQL's 8000-byte payload limit.
const SEQS_PER_NOTIFY: usize = 400;

pub struct PgStore {
    pool: PgPool,
    url: String,
    bus: broadcast::Sender<Arc<Event>>,
    /// The task that turns notifications into bus messages; stopped when the store is dropped.
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgStore {
    pub async fn open(url: &str) -> Result<Self> {
        let shown = crate::redact(url);
        let connect_err = |source| StoreError::Connect { url: shown.clone(), source };
        // One plain connection first: a pool only reports "timed out" when the server is down or refuses us,
        // while a direct attempt names the cause (connection refused, authentication failed, no such database).
        let probe = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url))
            .await
            .map_err(|_| connect_err(sqlx::Error::PoolTimedOut))?
            .map_err(connect_err)?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(connect_err)?;
        // Replicas starting together take turns: sqlx's migrator holds an advisory lock while it runs.
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { url: shown.clone(), source })?;
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        let mut listener = PgListener::connect_with(&pool).await.map_err(connect_err)?;
        listener.listen(CHANNEL).await.map_err(connect_err)?;
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events").fetch_one(&pool).await?;
        let task = tokio::spawn(listen(listener, pool.clone(), bus.clone(), last));
        Ok(PgStore { pool, url: shown, bus, listener: task })
    }
}

impl Backend for PgStore {
    const ENGINE: Engine = Engine::Postgres;

    fn shown_url(&self) -> &str {
        &self.url
    }

    fn bus(&self) -> &broadcast::Sender<Arc<Event>> {
        &self.bus
    }

    fn reader(&self) -> Conn<'_> {
        Conn::PgPool(&self.pool)
    }

    async fn begin_write(&self) -> Result<Tx<'_>> {
        Ok(Tx::Postgres(Write { tx: self.pool.begin().await? }))
    }
}

/// A write transaction. Replicas write concurrently; PostgreSQL orders them.
pub(crate) struct Write {
    tx: Transaction<'static, Postgres>,
}

impl Write {
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// A transaction-scoped advisory lock on `key` (its hash, in crew's own class of advisory locks so no other
    /// user of the database collides with it), released at commit or rollback.
    pub(crate) async fn advisory_lock(&mut self, key: &str) -> Result<()> {
        /// crew's class of advisory locks (the first of the two keys): "crew" in ASCII.
        const CREW: i32 = 0x63726577;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(CREW)
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Inserts a batch in three round trips (events, kind prefixes, notify), whatever its size.
    pub(crate) async fn insert_events(&mut self, stamped: Vec<(String, i64, NewEvent)>) -> Result<Vec<Event>> {
        let tx = &mut self.tx;
        let n = stamped.len();
        let mut cols: [Vec<String>; 9] = Default::default();
        let mut ats = Vec::with_capacity(n);
        for (id, at, e) in &stamped {
            cols[0].push(id.clone());
            ats.push(*at);
            cols[1].push(e.actor.name.clone());
            cols[2].push(e.actor.via.as_str().to_string());
            cols[3].push(e.kind.clone());
            cols[4].push(e.subject.clone());
            cols[5].push(e.summary.clone());
            cols[6].push(e.data.to_string());
            cols[7].push(serde_json::to_string(&e.links).expect("links serialize"));
            let words = crew_core::search_words(&e.summary);
            cols[8].push(words.into_iter().chain(crew_core::search_words(&e.subject)).collect::<Vec<_>>().join(" "));
        }
        let [ids, actors, vias, kinds, subjects, summaries, datas, links, words] = cols;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "INSERT INTO events (id, at, actor, via, kind, subject, summary, data, links, words) \
             SELECT id, at, actor, via, kind, subject, summary, data::jsonb, links::jsonb, words \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                         $8::text[], $9::text[], $10::text[]) \
                  WITH ORDINALITY AS t(id, at, actor, via, kind, subject, summary, data, links, words, n) \
             ORDER BY t.n RETURNING seq, id",
        )
        .bind(&ids)
        .bind(&ats)
        .bind(&actors)
        .bind(&vias)
        .bind(&kinds)
        .bind(&subjects)
        .bind(&summaries)
        .bind(&datas)
        .bind(&links)
        .bind(&words)
        .fetch_all(&mut **tx)
        .await?;
        let seq_of: std::collections::HashMap<String, i64> = rows.into_iter().map(|(s, id)| (id, s)).collect();
        let mut out = Vec::with_capacity(n);
        let (mut prefixes, mut prefix_seqs) = (Vec::new(), Vec::new());
        for (id, at, e) in stamped {
            let seq = *seq_of.get(&id).ok_or_else(|| StoreError::Corrupt(format!("event {id} not returned")))?;
            for p in kind_prefixes(&e.kind) {
                prefixes.push(p.to_string());
                prefix_seqs.push(seq);
            }
            out.push(crate::stored(id, seq, at, e)?);
        }
        sqlx::query("INSERT INTO event_kinds (prefix, seq) SELECT * FROM UNNEST($1::text[], $2::bigint[])")
            .bind(&prefixes)
            .bind(&prefix_seqs)
            .execute(&mut **tx)
            .await?;
        // Delivered to every listener (this replica too) when the transaction commits, never before.
        for chunk in out.chunks(SEQS_PER_NOTIFY) {
            let payload = chunk.iter().map(|e| e.seq.to_string()).collect::<Vec<_>>().join(",");
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&mut **tx).await?;
        }
        Ok(out)
    }

    /// Commits. Publishing is the listener's: it publishes what NOTIFY announces, this replica's writes too.
    pub(crate) async fn commit(self, _events: &[Event]) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Publishes the events each notification names, oldest first. When the listening connection drops, sqlx
/// reconnects it on the next receive; notifications sent meanwhile are lost, so after a reconnect the listener
/// catches up from the last sequence number it published, once it is listening again. A window of recently
/// published sequence numbers keeps every event to one publication.
async fn listen(mut listener: PgListener, pool: PgPool, bus: broadcast::Sender<Arc<Event>>, mut last: i64) {
    let all = crew_core::EventFilter::new();
    let mut recent = Recent::default();
    let mut catch_up = false;
    loop {
        let seqs: Vec<i64> = match listener.try_recv().await {
            Ok(Some(n)) => n.payload().split(',').filter_map(|s| s.parse().ok()).collect(),
            Ok(None) => {
                tracing::warn!("event listener lost PostgreSQL; reconnecting, then catching up");
                catch_up = true;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "event listener cannot reach PostgreSQL; retrying in 1 s");
                catch_up = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut events = Vec::new();
        if catch_up {
            // Listening again (a notification arrived): whatever committed while away is in the table.
            loop {
                let sel = sql::plan(&all, Dialect::Postgres, sql::Order::OldestAfter(last), 1000).remove(0);
                match sql::fetch(Conn::PgPool(&pool), sel).await {
                    Ok(batch) => {
                        let done = batch.len() < 1000;
                        last = batch.last().map_or(last, |e| e.seq.max(last));
                        events.extend(batch);
                        if done {
                            catch_up = false;
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "catching up the event stream failed; will retry");
                        break;
                    }
                }
            }
        }
        let sql =
            format!("SELECT {} FROM events e WHERE e.seq = ANY($1) ORDER BY e.seq", sql::columns(Dialect::Postgres));
        match sqlx::query(&sql).bind(&seqs).fetch_all(&pool).await {
            Ok(rows) => {
                for row in rows {
                    match sql::row_to_event(&Row::Postgres(row)) {
                        Ok(e) => events.push(e),
                        Err(e) => tracing::error!(error = %e, "unreadable event"),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading notified events failed"),
        }
        for e in events {
            if recent.insert(e.seq) {
                last = last.max(e.seq);
                let _ = bus.send(Arc::new(e));
            }
        }
    }
}

/// The sequence numbers published lately (a bounded window), to publish each event once.
#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<i64>,
    set: std::collections::HashSet<i64>,
}

impl Recent {
    const SIZE: usize = 50_000;

    /// False if `seq` was published lately.
    fn insert(&mut self, seq: i64) -> bool {
        if !self.set.insert(seq) {
            return false;
        }
        self.order.push_back(seq);
        if self.order.len() > Self::SIZE {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}
