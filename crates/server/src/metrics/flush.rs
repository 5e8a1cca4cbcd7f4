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
        store.write_metrics(&source, vec![], chunks.iter().map(|c| stored(c, &source)).collect(), vec![]).await?;
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
            let end = if src == source { end } else { i64::MIN };
            db.persisted(Arc::from(key.as_str()), kind, tier as u8, end);
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
        let chunks = chunks.iter().map(|c| stored(c, &source)).collect();
        if let Err(e) = store.write_metrics(&source, vec![], chunks, floors).await {
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

/// A flush's points at `t` (Unix ms, after every earlier flush) into the heads, the exposition, remote write
/// and the store. Also how `crew demo` lays down an hour of history before it starts.
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
    let chunks = writes.chunks.iter().map(|c| stored(c, &source)).collect();
    store.write_metrics(&source, wal, chunks, floors).await?;
    Ok(())
}
