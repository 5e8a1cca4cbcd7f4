//! The flush task: every interval the aggregator's interval ends, its points go to the time-series heads, the
//! exposition and remote write, and the flush's write-ahead rows and any full chunks are stored in one
//! transaction; alert rules are evaluated after each flush. Also the replay of the write-ahead rows at start
//! and retention. A crash loses at most the flush being made.

use super::exposition::{fresh_samples, Sample};
use super::{Exposed, Live, EXPOSE_IDLE_MS};
use crate::alerts::Alerts;
use crate::timeline::Timeline;
use crew_metrics::tsdb::{decode_entries, encode_entries};
use crew_metrics::{Kind, Point};
use crew_store::{MetricChunk, MetricWal, Store};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn kind_of(s: &str) -> Option<Kind> {
    Kind::parse(s)
}

/// Loads what is stored: every series' chunk ends, then the write-ahead rows replayed in order; chunks that
/// filled up during the replay are written.
pub async fn recover(store: &dyn Store, m: &Live) -> anyhow::Result<usize> {
    let source = m.source();
    let wal = store.metric_wal(&source).await?;
    learn_series(store, m).await?;
    let chunks = {
        let mut db = m.db.lock().expect("not poisoned");
        let mut chunks = vec![];
        for row in &wal {
            match decode_entries(&row.data) {
                Ok(entries) => chunks.extend(db.replay(&entries).chunks),
                Err(e) => tracing::warn!(error = e, t = row.t_ms, "a metrics write-ahead row is damaged; skipped"),
            }
        }
        chunks
    };
    if !chunks.is_empty() {
        let chunks: Vec<MetricChunk> = chunks.iter().map(|c| stored(c, &source)).collect();
        store.write_metrics(&source, &[], &chunks, &[]).await?;
    }
    Ok(wal.len())
}

/// The stored series: this replica's chunk ends (a replay skips what they hold), and every other replica's
/// series, so queries here find them too. Run at start and every few minutes.
pub async fn learn_series(store: &dyn Store, m: &Live) -> anyhow::Result<()> {
    let source = m.source();
    let series = store.metric_series().await?;
    let mut db = m.db.lock().expect("not poisoned");
    for (key, kind, tier, src, end) in series {
        if let Some(kind) = kind_of(&kind) {
            if src == source {
                db.persisted(Arc::from(key.as_str()), kind, tier as u8, end);
            } else {
                db.known(Arc::from(key.as_str()), kind, end);
            }
        }
    }
    Ok(())
}

pub fn stored(c: &crew_metrics::tsdb::Chunk, source: &str) -> MetricChunk {
    MetricChunk {
        series: c.series.to_string(),
        source: source.to_string(),
        kind: c.kind.as_str().into(),
        tier: c.tier as i32,
        start_ms: c.start,
        end_ms: c.end,
        points: c.points as i32,
        data: c.data.clone(),
    }
}

/// Starts the receive path (when StatsD is on) and the flush task, which ends after storing the open chunks
/// once the server shuts down. Alert rules are evaluated after every flush and their events recorded.
pub fn start(
    metrics: &super::Metrics,
    timeline: Timeline,
    rules: Vec<crate::alerts::Rule>,
    sockets: Option<super::statsd::Sockets>,
) -> tokio::task::JoinHandle<()> {
    let m = metrics.live.clone();
    let store = metrics.store.clone();
    let shutdown = metrics.shutdown.clone();
    if let Some(s) = sockets {
        *m.addr.lock().expect("not poisoned") = Some(s.addr);
        m.totals.recv_buffer.store(s.recv_buffer as u64, Ordering::Relaxed);
        let inbox = super::statsd::start(s, m.clone(), m.stop.clone());
        *m.inbox.lock().expect("not poisoned") = Some(inbox);
    }
    if let Some(rw) = m.config.remote_write.clone() {
        let (m, shutdown) = (m.clone(), shutdown.clone());
        tokio::spawn(async move { m.remote.run(rw, shutdown).await });
    }
    tokio::spawn(async move {
        let flush_ms = m.config.flush.as_millis() as i64;
        let mut last_expiry = 0i64;
        let alerts: &Alerts = &m.alerts;
        if !rules.is_empty() {
            if let Err(e) = alerts.load(&timeline).await {
                tracing::warn!(error = %e, "could not read which alerts are firing");
            }
        }
        loop {
            // Flushes fall on multiples of the interval, so every replica's points line up.
            let now = chrono::Utc::now().timestamp_millis();
            let t = (now / flush_ms + 1) * flush_ms;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis((t - now) as u64)) => {}
            }
            if let Err(e) = flush(&store, &m, t).await {
                tracing::warn!(error = %e, "a metrics flush was not stored; its points stay in memory");
            }
            if !rules.is_empty() {
                let snapshot = crate::alerts::snapshot(&m.exposition.lock().expect("not poisoned").series, t);
                let events = alerts.evaluate(&rules, &snapshot, t, flush_ms as f64 / 1000.0);
                if !events.is_empty() {
                    if let Err(e) = timeline.append_system(events).await {
                        tracing::warn!(error = %e, "alert events were not recorded");
                    }
                }
            }
            if (t / flush_ms) % (300_000 / flush_ms).max(1) == 0 {
                if let Err(e) = learn_series(&*store, &m).await {
                    tracing::warn!(error = %e, "could not list the stored series");
                }
            }
            if t - last_expiry > 3_600_000 {
                last_expiry = t;
                for (i, tier) in m.config.tiers.iter().enumerate() {
                    match store.expire_metric_chunks(i as i32, t - tier.retention_ms).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(tier = i, chunks = n, "old metric chunks removed"),
                        Err(e) => tracing::warn!(error = %e, "metric retention failed"),
                    }
                }
            }
        }
        // A clean stop: every open head stored as a chunk; the write-ahead rows kept only for open rollups.
        m.stop.store(true, Ordering::Relaxed);
        let (chunks, floor) = {
            let db = m.db.lock().expect("not poisoned");
            (db.open_chunks(), db.window_floor())
        };
        let mut floors = vec![i64::MAX; m.config.tiers.len()];
        floors[0] = floor;
        let source = m.source();
        let (wal, mut unstored) = m.unstored.lock().expect("not poisoned").take();
        unstored.extend(chunks.iter().map(|c| stored(c, &source)));
        if let Err(e) = store.write_metrics(&source, &wal, &unstored, &floors).await {
            tracing::warn!(error = %e, "the open metric chunks were not stored at shutdown");
        }
    })
}

/// One flush at time `t` (Unix ms).
pub async fn flush(store: &Arc<dyn Store>, m: &Arc<Live>, t: i64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let inbox = m.inbox.lock().expect("not poisoned").clone();
    let points = match inbox {
        Some(inbox) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::task::spawn_blocking(move || inbox.send(super::statsd::Msg::Flush(tx))).await??;
            rx.await?
        }
        None => vec![],
    };
    store_points(store, m, t, points).await?;
    let us = started.elapsed().as_micros() as u64;
    m.totals.last_flush_us.store(us, Ordering::Relaxed);
    m.totals.flushes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// What flushes the store refused: their write-ahead rows and the chunks that closed in them, oldest first,
/// written with the next flush that the store takes. Bounded by bytes: past it the oldest go, and are counted.
#[derive(Default)]
pub struct Unstored {
    pub wal: std::collections::VecDeque<MetricWal>,
    pub chunks: std::collections::VecDeque<MetricChunk>,
    bytes: usize,
}

/// At most this many bytes of refused rows and chunks wait for the store (a flush's row is about 100 bytes a
/// series: at 100,000 series, about 25 minutes of 10 s flushes).
const UNSTORED_BYTES: usize = 256 << 20;

fn wal_bytes(w: &MetricWal) -> usize {
    w.data.len() + w.source.len() + 32
}

fn chunk_bytes(c: &MetricChunk) -> usize {
    c.data.len() + c.series.len() + c.source.len() + 64
}

impl Unstored {
    /// Keeps a refused write (older than anything here), then drops the oldest past the bound, chunks last:
    /// a chunk holds a whole span of a series, a row one flush of points already in a head or a chunk.
    fn keep(&mut self, wal: Vec<MetricWal>, chunks: Vec<MetricChunk>, totals: &super::Totals) {
        self.keep_within(wal, chunks, totals, UNSTORED_BYTES)
    }

    fn keep_within(&mut self, wal: Vec<MetricWal>, chunks: Vec<MetricChunk>, totals: &super::Totals, bound: usize) {
        self.bytes += wal.iter().map(wal_bytes).sum::<usize>() + chunks.iter().map(chunk_bytes).sum::<usize>();
        let (later_wal, later_chunks) = (std::mem::take(&mut self.wal), std::mem::take(&mut self.chunks));
        self.wal = wal.into();
        self.wal.extend(later_wal);
        self.chunks = chunks.into();
        self.chunks.extend(later_chunks);
        while self.bytes > bound {
            if let Some(w) = self.wal.pop_front() {
                self.bytes -= wal_bytes(&w);
                totals.unstored_dropped_rows.fetch_add(1, Ordering::Relaxed);
            } else if let Some(c) = self.chunks.pop_front() {
                self.bytes -= chunk_bytes(&c);
                totals.unstored_dropped_chunks.fetch_add(1, Ordering::Relaxed);
            } else {
                self.bytes = 0;
            }
        }
    }

    /// Everything waiting, oldest first; empties it.
    fn take(&mut self) -> (Vec<MetricWal>, Vec<MetricChunk>) {
        self.bytes = 0;
        (std::mem::take(&mut self.wal).into(), std::mem::take(&mut self.chunks).into())
    }
}

/// A flush's points at `t` (Unix ms, after every earlier flush) into the heads, the exposition, remote write
/// and the store. Also how `crew demo` lays down an hour of history before it starts. When the store refuses
/// the write, its rows and chunks are kept and go with the next flush: a chunk that closed during a failed flush
/// is never lost.
pub async fn store_points(
    store: &Arc<dyn Store>,
    m: &Arc<Live>,
    t: i64,
    points: Vec<(Arc<str>, Kind, Point)>,
) -> anyhow::Result<()> {
    let (writes, floors) = {
        let mut db = m.db.lock().expect("not poisoned");
        let w = db.append(t, &points);
        (w, db.floors())
    };
    {
        let mut ex = m.exposition.lock().expect("not poisoned");
        for (key, kind, p) in &points {
            let e = ex.series.entry(key.clone()).or_insert(Exposed {
                kind: *kind,
                last: *p,
                totals: (0.0, 0.0),
                seen_ms: t,
            });
            match kind {
                Kind::Counter => e.totals.0 += p.sum,
                Kind::Timer => {
                    e.totals.0 += p.count;
                    e.totals.1 += p.sum;
                }
                _ => {}
            }
            e.last = *p;
            e.seen_ms = t;
        }
        ex.series.retain(|_, e| t - e.seen_ms <= EXPOSE_IDLE_MS);
        if m.config.remote_write.is_some() {
            let samples: Vec<Sample> = fresh_samples(ex.series.iter().map(|(k, e)| (&**k, e)), t);
            m.remote.push(&samples, t);
        }
    }
    let mut by_tier: Vec<Vec<crew_metrics::tsdb::Entry>> = vec![vec![]; m.config.tiers.len()];
    for e in writes.entries {
        by_tier[e.tier as usize].push(e);
    }
    let source = m.source();
    let wal: Vec<MetricWal> = by_tier
        .iter()
        .enumerate()
        .filter(|(_, es)| !es.is_empty())
        .map(|(tier, es)| MetricWal { source: source.clone(), tier: tier as i32, t_ms: t, data: encode_entries(es) })
        .collect();
    let chunks: Vec<MetricChunk> = writes.chunks.iter().map(|c| stored(c, &source)).collect();
    let (mut all_wal, mut all_chunks) = m.unstored.lock().expect("not poisoned").take();
    all_wal.extend(wal);
    all_chunks.extend(chunks);
    if let Err(e) = store.write_metrics(&source, &all_wal, &all_chunks, &floors).await {
        m.totals.flush_failures.fetch_add(1, Ordering::Relaxed);
        m.unstored.lock().expect("not poisoned").keep(all_wal, all_chunks, &m.totals);
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The flush against a real SQLite store, on synthetic time (the flush takes its time as an argument).
    use super::*;
    use crate::metrics::MetricsSection;
    use sqlx::Connection;

    fn counter() -> Point {
        Point { sum: 1.0, count: 1.0, ..Point::default() }
    }

    async fn sqlite() -> (tempfile::TempDir, String, Arc<dyn Store>, Arc<Live>) {
        let d = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", d.path().join("crew.db").display());
        let store = crew_store::open(&url).await.unwrap();
        // The default: 10 s flushes, heads of 90 to 134 points.
        let live = Arc::new(Live::new(MetricsSection::default().check().unwrap()));
        (d, url, store, live)
    }

    const STEP: i64 = 10_000;

    fn points(keys: &[&str]) -> Vec<(Arc<str>, Kind, Point)> {
        keys.iter().map(|k| (Arc::from(*k), Kind::Counter, counter())).collect()
    }

    /// What waits for the store is bounded by bytes: the oldest rows go first, then the oldest chunks, each
    /// counted; what is newer stays, in order.
    #[test]
    fn what_waits_for_the_store_is_bounded_and_the_oldest_go_first() {
        let totals = crate::metrics::Totals::default();
        let row = |t: i64| MetricWal { source: "r".into(), tier: 0, t_ms: t, data: vec![0; 1000] };
        let chunk = |t: i64| MetricChunk {
            series: "s".into(),
            source: "r".into(),
            kind: "counter".into(),
            tier: 0,
            start_ms: t,
            end_ms: t,
            points: 1,
            data: vec![0; 1000],
        };
        let mut u = Unstored::default();
        u.keep_within(vec![row(3), row(4)], vec![chunk(3)], &totals, 10_000);
        // An older refused write goes before what is there.
        u.keep_within(vec![row(1), row(2)], vec![chunk(1)], &totals, 10_000);
        assert_eq!(u.wal.iter().map(|w| w.t_ms).collect::<Vec<_>>(), [1, 2, 3, 4]);
        u.keep_within(vec![], vec![chunk(0)], &totals, 4_500);
        assert_eq!(u.wal.iter().map(|w| w.t_ms).collect::<Vec<_>>(), [4], "the oldest rows went first");
        assert_eq!(u.chunks.iter().map(|c| c.start_ms).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(totals.unstored_dropped_rows.load(Ordering::Relaxed), 3);
        u.keep_within(vec![], vec![], &totals, 2_500);
        assert_eq!(u.chunks.iter().map(|c| c.start_ms).collect::<Vec<_>>(), [1, 3], "then the oldest chunks");
        assert!(u.wal.is_empty());
        assert_eq!(totals.unstored_dropped_chunks.load(Ordering::Relaxed), 1);
        let (w, c) = u.take();
        assert_eq!((w.len(), c.len(), u.bytes), (0, 2, 0));
    }

    /// One series sent once, then live traffic for longer than a head's span: the write-ahead log shrinks (it
    /// no longer reaches back to the once-sent point, which is stored as a chunk).
    #[tokio::test]
    async fn a_series_sent_once_stops_pinning_the_write_ahead_log() {
        let (_d, _url, store, m) = sqlite().await;
        let source = m.source();
        store_points(&store, &m, STEP, points(&["once", "live"])).await.unwrap();
        let span = 135 * STEP; // a head's longest span at the finest tier
        let mut t = STEP;
        let mut most = 0;
        while t < STEP + 2 * span {
            t += STEP;
            store_points(&store, &m, t, points(&["live"])).await.unwrap();
            let rows = store.metric_wal(&source).await.unwrap().iter().filter(|w| w.tier == 0).count();
            most = most.max(rows);
        }
        let wal = store.metric_wal(&source).await.unwrap();
        let finest: Vec<i64> = wal.iter().filter(|w| w.tier == 0).map(|w| w.t_ms).collect();
        assert!(finest.iter().all(|t| *t > STEP), "no row reaches back to the once-sent point");
        assert!(finest.len() < most, "the WAL shrank: {} rows, {most} at most", finest.len());
        assert!(finest.len() as i64 <= span / STEP, "at most a span of rows: {}", finest.len());
        let once = store.metric_chunks("once", 0, 0, i64::MAX).await.unwrap();
        assert_eq!(once.len(), 1, "the once-sent head is stored");
        assert_eq!((once[0].start_ms, once[0].points), (STEP, 1));
    }

    /// A flush the store refuses (here a trigger makes SQLite answer as a full disk does) keeps its rows and
    /// the chunks that closed in it, and the next flush the store takes writes them: no point is lost.
    #[tokio::test]
    async fn a_flush_the_store_refuses_keeps_its_chunks_for_the_next() {
        let (_d, url, store, m) = sqlite().await;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for table in ["metric_chunks", "metric_wal"] {
            sqlx::query(&format!(
                "CREATE TRIGGER full_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            ))
            .execute(&mut c)
            .await
            .unwrap();
        }
        // 150 refused flushes: the live series' head fills (at most 134 points) and closes during them.
        let mut t = 0;
        for _ in 0..150 {
            t += STEP;
            let r = store_points(&store, &m, t, points(&["live"])).await;
            assert!(r.unwrap_err().to_string().contains("full"), "the store refuses");
        }
        assert!(!m.unstored.lock().unwrap().chunks.is_empty(), "the chunk that closed is kept");
        assert_eq!(m.status()["flush_failures"], 150);
        for table in ["metric_chunks", "metric_wal"] {
            sqlx::query(&format!("DROP TRIGGER full_{table}")).execute(&mut c).await.unwrap();
        }
        t += STEP;
        store_points(&store, &m, t, points(&["live"])).await.unwrap();
        assert!(m.unstored.lock().unwrap().chunks.is_empty() && m.unstored.lock().unwrap().wal.is_empty());
        let stored = store.metric_chunks("live", 0, 0, i64::MAX).await.unwrap();
        assert!(!stored.is_empty(), "the refused chunk is stored now");
        let mut times: Vec<i64> = vec![];
        for c in &stored {
            times.extend(
                crew_metrics::tsdb::points_of(Kind::Counter, &c.data, c.points as u32).unwrap().iter().map(|p| p.0),
            );
        }
        let head = m.db.lock().unwrap().head_points("live", 0, 0, i64::MAX);
        times.extend(head.iter().map(|p| p.0));
        let want: Vec<i64> = (1..=151).map(|i| i * STEP).collect();
        assert_eq!(times, want, "every point, once, in order");
        // And a crash now replays the WAL into the same head.
        let again = Arc::new(Live::new(MetricsSection::default().check().unwrap()));
        recover(&*store, &again).await.unwrap();
        assert_eq!(again.db.lock().unwrap().head_points("live", 0, 0, i64::MAX), head);
    }
}
