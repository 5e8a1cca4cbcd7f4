//! The metrics domain: `[metrics]` of crew.toml, this replica's live state (heads, totals, exposition), and
//! the service every reader calls — the series list, queries (`query.rs`), the receive path's status,
//! annotations of deploys and flag changes, graphs as SVG (`graph.rs`). The StatsD receive path (`statsd.rs`), the flush task
//! (`flush.rs`), remote write and the Prometheus exposition live beside it; the Metrics page is `web.rs`.

pub mod api;
pub mod dashboards;
pub mod exposition;
pub mod flush;
pub mod graph;
pub mod query;
pub mod remote_write;
pub mod statsd;
pub mod web;

pub use flush::{recover, store_points, stored};

use crate::error::ApiError;
use crate::state::Platform;
use crate::timeline::Timeline;
use crew_metrics::tsdb::{Db, TierSpec};
use crew_metrics::{Kind, Point};
use crew_store::Store;
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
    pub remote_write: Option<remote_write::RemoteWriteSection>,
    /// At most this many StatsD TCP connections at once (default 256); more are closed at once, and counted.
    pub tcp_connections: Option<usize>,
    /// A StatsD TCP connection that sends nothing for this long is closed (default `"60s"`).
    pub tcp_idle: Option<String>,
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
    /// StatsD over TCP: connections at once, and how long one may stay silent.
    pub tcp_connections: usize,
    pub tcp_idle: Duration,
    pub remote_write: Option<remote_write::RemoteWriteSection>,
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
        let tcp_connections = self.tcp_connections.unwrap_or(256);
        if !(1..=65_536).contains(&tcp_connections) {
            return Err("[metrics] tcp_connections: from 1 to 65536".into());
        }
        let tcp_idle = duration("tcp_idle", self.tcp_idle.as_deref().unwrap_or("60s"))?;
        if tcp_idle < Duration::from_millis(100) {
            return Err("[metrics] tcp_idle: at least 100ms".into());
        }
        Ok(MetricsConfig {
            flush,
            tiers,
            max_series,
            tcp_connections,
            tcp_idle,
            remote_write: self.remote_write.clone(),
        })
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
    /// StatsD TCP connections refused (over `tcp_connections`) and closed for idling.
    pub tcp_refused: AtomicU64,
    pub tcp_idle_closed: AtomicU64,
    /// Accept errors on the StatsD TCP socket (e.g. out of file descriptors), each followed by a pause.
    pub tcp_accept_errors: AtomicU64,
    pub series: AtomicU64,
    pub flushes: AtomicU64,
    pub last_flush_us: AtomicU64,
    /// Flushes the store did not take (their rows and chunks wait in `Live::unstored` for the next).
    pub flush_failures: AtomicU64,
    /// Write-ahead rows and chunks given up because the store refused them for too long.
    pub unstored_dropped_rows: AtomicU64,
    pub unstored_dropped_chunks: AtomicU64,
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
pub(crate) const EXPOSE_IDLE_MS: i64 = 3_600_000;

#[derive(Default)]
pub struct Exposition {
    pub series: FxHashMap<Arc<str>, Exposed>,
}

/// This replica's live metrics: the time-series heads, the receive path's totals, what `/metrics` exposes.
pub struct Live {
    pub config: MetricsConfig,
    pub totals: Totals,
    pub db: Mutex<Db>,
    pub exposition: Mutex<Exposition>,
    /// The parser thread's inbox, once the receive path runs.
    pub(crate) inbox: Mutex<Option<std::sync::mpsc::SyncSender<statsd::Msg>>>,
    /// Where StatsD is received (None: off).
    pub addr: Mutex<Option<std::net::SocketAddr>>,
    pub(crate) stop: Arc<AtomicBool>,
    /// StatsD TCP connections open now.
    pub(crate) tcp_open: Arc<std::sync::atomic::AtomicUsize>,
    pub remote: remote_write::RemoteWrite,
    pub alerts: crate::alerts::Alerts,
    /// What flushes the store refused (a full disk, the database away), written with the next flush.
    pub(crate) unstored: Mutex<flush::Unstored>,
    /// This replica's name for the chunks and write-ahead rows it writes (its data folder's replica.id).
    source: Mutex<String>,
}

impl Live {
    pub fn source(&self) -> String {
        self.source.lock().expect("not poisoned").clone()
    }

    pub fn set_source(&self, source: &str) {
        *self.source.lock().expect("not poisoned") = source.to_string();
    }

    pub fn new(config: MetricsConfig) -> Live {
        Live {
            db: Mutex::new(Db::new(config.tiers.clone())),
            config,
            totals: Totals::default(),
            exposition: Mutex::default(),
            inbox: Mutex::new(None),
            addr: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            tcp_open: Arc::default(),
            remote: Default::default(),
            alerts: Default::default(),
            unstored: Mutex::default(),
            source: Mutex::new("local".into()),
        }
    }

    pub fn status(&self) -> serde_json::Value {
        let t = &self.totals;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let unstored = {
            let u = self.unstored.lock().expect("not poisoned");
            serde_json::json!({
                "wal_rows": u.wal.len(),
                "chunks": u.chunks.len(),
                "dropped_wal_rows": l(&t.unstored_dropped_rows),
                "dropped_chunks": l(&t.unstored_dropped_chunks),
            })
        };
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
            "tcp_connections": self.tcp_open.load(Ordering::Relaxed),
            "tcp_refused": l(&t.tcp_refused),
            "tcp_idle_closed": l(&t.tcp_idle_closed),
            "tcp_accept_errors": l(&t.tcp_accept_errors),
            "series": l(&t.series),
            "flushes": l(&t.flushes),
            "last_flush_ms": l(&t.last_flush_us) as f64 / 1000.0,
            "flush_failures": l(&t.flush_failures),
            "unstored": unstored,
            "remote_write": self.config.remote_write.as_ref().map(|rw| self.remote.status(&rw.url)),
        })
    }
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

/// The metrics service: this replica's live state, the store's chunks, and the timeline (for annotations).
#[derive(Clone)]
pub struct Metrics {
    pub live: Arc<Live>,
    /// `[[dashboards]]` of crew.toml, for the Metrics page.
    pub dashboards: Arc<[dashboards::DashboardSection]>,
    store: Arc<dyn Store>,
    timeline: Timeline,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Metrics {
    pub fn new(p: &Platform, live: Arc<Live>, timeline: Timeline) -> Self {
        let dashboards = p.settings.file.dashboards.clone().into();
        Metrics { live, dashboards, store: p.store.clone(), timeline, shutdown: p.shutdown.clone() }
    }

    /// Every series known, key → kind: those received since start and those stored (loaded at start, see
    /// [`recover`]). From memory, so a query never scans the chunk table to find its series.
    pub fn series(&self) -> std::collections::BTreeMap<String, Kind> {
        let db = self.live.db.lock().expect("not poisoned");
        db.series().map(|(key, kind)| (key.to_string(), kind)).collect()
    }

    /// The distinct series names (labels aside).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.series().keys().map(|k| split_key(k).0.to_string()).collect();
        names.dedup();
        names
    }

    /// The receive path's totals since start.
    pub fn status(&self) -> serde_json::Value {
        self.live.status()
    }

    /// The Prometheus exposition of every series with recent data, in the text format or OpenMetrics.
    pub fn exposition(&self, format: exposition::Format) -> String {
        exposition::exposition(&self.live, format)
    }

    /// The deploy events, flag changes and the judge's verdicts in [from, to] (Unix ms), oldest first: what graphs and annotations
    /// mark (each chooses which deploy events it draws).
    pub async fn markers(
        &self,
        from: i64,
        to: i64,
        deploys: bool,
        flags: bool,
    ) -> Result<Vec<crew_core::Event>, ApiError> {
        use crew_core::kind;
        let mut out = vec![];
        for (wanted, area) in [(deploys, kind::DEPLOY), (flags, kind::FLAG_CHANGED), (flags, kind::FLAG_JUDGED)] {
            if !wanted {
                continue;
            }
            let mut f = crew_core::EventFilter::new();
            f.kind = Some(area.into());
            f.since = chrono::DateTime::from_timestamp_millis(from);
            f.until = chrono::DateTime::from_timestamp_millis(to.saturating_add(1)); // `to` itself is in range
            f.limit = 1000;
            out.extend(self.timeline.query(&f).await?.events);
        }
        out.sort_by_key(|e| e.at);
        Ok(out)
    }
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
}
