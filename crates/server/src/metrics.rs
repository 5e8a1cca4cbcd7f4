//! Metrics in the server: `[metrics]` of crew.toml, the flush task (every interval: end the aggregator's
//! interval, append the points to the time-series heads, and write the flush's write-ahead rows and any full
//! chunks in one transaction), the replay of the write-ahead rows at start, retention, and the Prometheus
//! exposition. A crash loses at most the flush being made.

use crew_metrics::tsdb::{decode_entries, encode_entries, Db, TierSpec};
use crew_metrics::{Kind, Point};
use crew_store::{MetricChunk, MetricWal, Store};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[metrics]` of crew.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// The flush interval (`"10s"`, the default); whole seconds, at least 1 s.
    pub flush: Option<String>,
    /// How long the flush-interval points are kept (default `"24h"`).
    pub keep: Option<String>,
    /// The rollups (default 1 min for 30 days, 10 min for 2 years).
    pub rollups: Option<Vec<RollupSection>>,
    /// At most this many series (default 100,000); samples of new series past it are counted and dropped.
    pub max_series: Option<usize>,
    /// Prometheus remote write of every flush.
    pub remote_write: Option<crate::remote_write::RemoteWriteSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupSection {
    pub step: String,
    pub keep: String,
}

/// The metrics settings, checked.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub flush: Duration,
    pub tiers: Vec<TierSpec>,
    pub max_series: usize,
    pub remote_write: Option<crate::remote_write::RemoteWriteSection>,
}

fn duration(key: &str, v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v)
        .map_err(|e| format!("[metrics] {key} = \"{v}\": {e}; write e.g. \"10s\", \"1m\", \"30d\""))
}

impl MetricsSection {
    pub fn check(&self) -> Result<MetricsConfig, String> {
        let flush = duration("flush", self.flush.as_deref().unwrap_or("10s"))?;
        if flush < Duration::from_secs(1) || flush.subsec_nanos() != 0 {
            return Err(format!(
                "[metrics] flush = \"{}\": whole seconds, at least 1s",
                self.flush.as_deref().unwrap_or("")
            ));
        }
        let flush_ms = flush.as_millis() as i64;
        let mut tiers = crew_metrics::tsdb::default_tiers(flush_ms);
        if let Some(k) = &self.keep {
            tiers[0].retention_ms = duration("keep", k)?.as_millis() as i64;
        }
        if let Some(rollups) = &self.rollups {
            tiers.truncate(1);
            for (i, r) in rollups.iter().enumerate() {
                let step = duration(&format!("rollups[{i}].step"), &r.step)?.as_millis() as i64;
                let keep = duration(&format!("rollups[{i}].keep"), &r.keep)?.as_millis() as i64;
                let prev = tiers.last().expect("the flush tier").step_ms;
                if step <= prev || step % prev != 0 {
                    return Err(format!(
                        "[metrics] rollups[{i}].step = \"{}\": a multiple of the step before it ({} s), and larger",
                        r.step,
                        prev / 1000
                    ));
                }
                tiers.push(TierSpec { step_ms: step, retention_ms: keep, chunk_points: 120 });
            }
        } else if tiers.iter().skip(1).any(|t| t.step_ms % flush_ms != 0 || t.step_ms <= flush_ms) {
            return Err(format!(
                "[metrics] flush = \"{}\" does not divide the default rollups (1 min, 10 min): set rollups too",
                self.flush.as_deref().unwrap_or("")
            ));
        }
        let max_series = self.max_series.unwrap_or(100_000);
        if max_series == 0 {
            return Err("[metrics] max_series: at least 1".into());
        }
        if let Some(rw) = &self.remote_write {
            rw.check()?;
        }
        Ok(MetricsConfig { flush, tiers, max_series, remote_write: self.remote_write.clone() })
    }
}

/// Running totals since start (the receive path's and the flushes'); `GET /api/v1/metrics/status` shows them.
#[derive(Debug, Default)]
pub struct Totals {
    pub packets: AtomicU64,
    pub lines: AtomicU64,
    pub bad_lines: AtomicU64,
    pub kernel_drops: AtomicU64,
    /// The host's UDP RcvbufErrors (every socket's), read at each flush.
    pub rcvbuf_errors: AtomicU64,
    /// The UDP socket buffer the kernel granted.
    pub recv_buffer: AtomicU64,
    pub series_limited: AtomicU64,
    pub series: AtomicU64,
    pub flushes: AtomicU64,
    pub last_flush_us: AtomicU64,
}

/// What `/metrics` exposes of a series: its latest interval with data, running totals (a counter's total; a
/// timer's count and sum), and when it last had data.
pub struct Exposed {
    pub kind: Kind,
    pub last: Point,
    pub totals: (f64, f64),
    pub seen_ms: i64,
}

/// Series leave `/metrics` after an hour without data.
const EXPOSE_IDLE_MS: i64 = 3_600_000;

#[derive(Default)]
pub struct Exposition {
    pub series: FxHashMap<Arc<str>, Exposed>,
}

pub struct Metrics {
    pub config: MetricsConfig,
    pub totals: Totals,
    pub db: Mutex<Db>,
    pub exposition: Mutex<Exposition>,
    /// The parser thread's inbox, once the receive path runs.
    inbox: Mutex<Option<std::sync::mpsc::SyncSender<crate::statsd::Msg>>>,
    /// Where StatsD is received (None: off).
    pub addr: Mutex<Option<std::net::SocketAddr>>,
    stop: Arc<AtomicBool>,
    pub remote: crate::remote_write::RemoteWrite,
    pub alerts: crate::alerts::Alerts,
    /// This replica's name for the chunks and write-ahead rows it writes (its data folder's replica.id).
    source: Mutex<String>,
}

impl Metrics {
    pub fn source(&self) -> String {
        self.source.lock().expect("not poisoned").clone()
    }

    pub fn set_source(&self, source: &str) {
        *self.source.lock().expect("not poisoned") = source.to_string();
    }

    pub fn new(config: MetricsConfig) -> Metrics {
        Metrics {
            db: Mutex::new(Db::new(config.tiers.clone())),
            config,
            totals: Totals::default(),
            exposition: Mutex::default(),
            inbox: Mutex::new(None),
            addr: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            remote: Default::default(),
            alerts: Default::default(),
            source: Mutex::new("local".into()),
        }
    }

    pub fn status(&self) -> serde_json::Value {
        let t = &self.totals;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "statsd": self.addr.lock().expect("not poisoned").map(|a| a.to_string()),
            "flush_seconds": self.config.flush.as_secs(),
            "packets": l(&t.packets),
            "lines": l(&t.lines),
            "bad_lines": l(&t.bad_lines),
            "kernel_drops": l(&t.kernel_drops),
            "host_rcvbuf_errors": l(&t.rcvbuf_errors),
            "recv_buffer_bytes": l(&t.recv_buffer),
            "series_limited": l(&t.series_limited),
            "series": l(&t.series),
            "flushes": l(&t.flushes),
            "last_flush_ms": l(&t.last_flush_us) as f64 / 1000.0,
            "remote_write": self.config.remote_write.as_ref().map(|rw| self.remote.status(&rw.url)),
        })
    }
}

fn kind_of(s: &str) -> Option<Kind> {
    Kind::parse(s)
}

/// Loads what is stored: every series' chunk ends, then the write-ahead rows replayed in order; chunks that
/// filled up during the replay are written.
pub async fn recover(store: &dyn Store, m: &Metrics) -> anyhow::Result<usize> {
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
pub async fn learn_series(store: &dyn Store, m: &Metrics) -> anyhow::Result<()> {
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
/// once the server shuts down.
pub fn start(st: &crate::AppState, sockets: Option<crate::statsd::Sockets>) -> tokio::task::JoinHandle<()> {
    let m = st.metrics.clone();
    if let Some(s) = sockets {
        *m.addr.lock().expect("not poisoned") = Some(s.addr);
        m.totals.recv_buffer.store(s.recv_buffer as u64, Ordering::Relaxed);
        let inbox = crate::statsd::start(s, m.clone(), m.stop.clone());
        *m.inbox.lock().expect("not poisoned") = Some(inbox);
    }
    if let Some(rw) = m.config.remote_write.clone() {
        let (m, shutdown) = (m.clone(), st.shutdown.clone());
        tokio::spawn(async move { m.remote.run(rw, shutdown).await });
    }
    let st = st.clone();
    tokio::spawn(async move {
        let flush_ms = m.config.flush.as_millis() as i64;
        let mut last_expiry = 0i64;
        let rules = st.settings.file.alerts.clone();
        if !rules.is_empty() {
            if let Err(e) = m.alerts.load(&st).await {
                tracing::warn!(error = %e, "could not read which alerts are firing");
            }
        }
        loop {
            // Flushes fall on multiples of the interval, so every replica's points line up.
            let now = chrono::Utc::now().timestamp_millis();
            let t = (now / flush_ms + 1) * flush_ms;
            tokio::select! {
                _ = st.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis((t - now) as u64)) => {}
            }
            if let Err(e) = flush(&st.store, &m, t).await {
                tracing::warn!(error = %e, "a metrics flush was not stored; its points stay in memory");
            }
            if !rules.is_empty() {
                let snapshot = crate::alerts::snapshot(&m.exposition.lock().expect("not poisoned").series, t);
                let events = m.alerts.evaluate(&rules, &snapshot, t, flush_ms as f64 / 1000.0);
                if !events.is_empty() {
                    if let Err(e) = st.store.append(events).await {
                        tracing::warn!(error = %e, "alert events were not recorded");
                    }
                }
            }
            if (t / flush_ms) % (300_000 / flush_ms).max(1) == 0 {
                if let Err(e) = learn_series(&*st.store, &m).await {
                    tracing::warn!(error = %e, "could not list the stored series");
                }
            }
            if t - last_expiry > 3_600_000 {
                last_expiry = t;
                for (i, tier) in m.config.tiers.iter().enumerate() {
                    match st.store.expire_metric_chunks(i as i32, t - tier.retention_ms).await {
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
        if let Err(e) = st.store.write_metrics(&source, vec![], chunks, floors).await {
            tracing::warn!(error = %e, "the open metric chunks were not stored at shutdown");
        }
    })
}

/// One flush at time `t` (Unix ms).
pub async fn flush(store: &Arc<dyn Store>, m: &Arc<Metrics>, t: i64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let inbox = m.inbox.lock().expect("not poisoned").clone();
    let points = match inbox {
        Some(inbox) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::task::spawn_blocking(move || inbox.send(crate::statsd::Msg::Flush(tx))).await??;
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
    m: &Arc<Metrics>,
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
            let samples: Vec<Sample> =
                ex.series.iter().filter(|(_, e)| e.seen_ms == t).flat_map(|(k, e)| prom_samples(k, e).2).collect();
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

/// A series key split into its name and labels: `lat{route=/,env=prod}` → ("lat", [("env","prod"), ...]).
pub fn split_key(key: &str) -> (&str, Vec<(&str, &str)>) {
    match key.split_once('{') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').unwrap_or(rest);
            let labels = inner.split(',').filter_map(|kv| kv.split_once('=')).collect();
            (name, labels)
        }
        None => (key, vec![]),
    }
}

/// A Prometheus metric or label name: `.` and `-` become `_`, a leading digit gets a `_` before it.
pub fn prom_name(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// One Prometheus sample: metric name, labels (sorted, without `__name__`), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A series as Prometheus samples, and its family's name and type: counters as `_total` running totals,
/// gauges and set sizes as gauges, timers as summaries (the latest quantiles, running `_sum` and `_count`).
pub fn prom_samples(key: &str, e: &Exposed) -> (String, &'static str, Vec<Sample>) {
    let (name, labels) = split_key(key);
    let base = prom_name(name);
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (prom_name(k), v.to_string())).collect();
    labels.sort();
    let with = |extra: (&str, &str)| {
        let mut l = labels.clone();
        l.push((extra.0.to_string(), extra.1.to_string()));
        l.sort();
        l
    };
    let p = &e.last;
    match e.kind {
        Kind::Counter => {
            let f = format!("{base}_total");
            (f.clone(), "counter", vec![(f, labels.clone(), e.totals.0)])
        }
        Kind::Gauge | Kind::Set => (base.clone(), "gauge", vec![(base, labels.clone(), p.last)]),
        Kind::Timer => (
            base.clone(),
            "summary",
            vec![
                (base.clone(), with(("quantile", "0.5")), p.p50),
                (base.clone(), with(("quantile", "0.9")), p.p90),
                (base.clone(), with(("quantile", "0.99")), p.p99),
                (format!("{base}_sum"), labels.clone(), e.totals.1),
                (format!("{base}_count"), labels.clone(), e.totals.0),
            ],
        ),
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The Prometheus text format (0.0.4), one TYPE line per family.
pub fn exposition(m: &Metrics) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let ex = m.exposition.lock().expect("not poisoned");
    let mut families: BTreeMap<String, (&'static str, Vec<Sample>)> = BTreeMap::new();
    for (key, e) in &ex.series {
        let (family, typ, samples) = prom_samples(key, e);
        families.entry(family).or_insert((typ, vec![])).1.extend(samples);
    }
    let mut out = String::new();
    for (family, (typ, samples)) in families {
        let _ = writeln!(out, "# TYPE {family} {typ}");
        for (name, labels, v) in samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
                .collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(out, "{name}{labels} {}", num(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_mistakes_name_the_key() {
        let ok = MetricsSection::default().check().unwrap();
        assert_eq!(ok.tiers.iter().map(|t| t.step_ms).collect::<Vec<_>>(), [10_000, 60_000, 600_000]);
        for (s, says) in [
            (MetricsSection { flush: Some("soon".into()), ..Default::default() }, "[metrics] flush = \"soon\""),
            (MetricsSection { flush: Some("500ms".into()), ..Default::default() }, "whole seconds"),
            (MetricsSection { flush: Some("7s".into()), ..Default::default() }, "does not divide"),
            (
                MetricsSection {
                    rollups: Some(vec![RollupSection { step: "15s".into(), keep: "1d".into() }]),
                    ..Default::default()
                },
                "rollups[0].step = \"15s\": a multiple",
            ),
            (MetricsSection { max_series: Some(0), ..Default::default() }, "max_series"),
        ] {
            let e = s.check().unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn keys_and_names_for_prometheus() {
        assert_eq!(split_key("lat{env=prod,route=/a}"), ("lat", vec![("env", "prod"), ("route", "/a")]));
        assert_eq!(split_key("hits"), ("hits", vec![]));
        assert_eq!(prom_name("api.req-time"), "api_req_time");
        assert_eq!(prom_name("5xx"), "_5xx");
    }
}
