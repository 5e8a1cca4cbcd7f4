//! Prometheus remote write (protocol 1.0: a snappy-compressed protobuf `WriteRequest`): after each flush the
//! series that had data are queued as samples and a sender posts them to `[metrics.remote_write] url`, so a
//! team past one machine keeps its series in VictoriaMetrics, Mimir or Prometheus. A 429 or 5xx (or no answer)
//! is retried with capped exponential backoff (honouring `Retry-After`) for at most `retry_for` (5 min by
//! default), then dropped, so a batch a receiver keeps failing on never holds back newer data; another 4xx drops
//! the batch at once (the receiver will never take it). The queue is bounded: when the store is away for long,
//! the oldest batches are dropped. Every drop is counted by its cause on `/api/v1/metrics/status`. The samples
//! are the exposition's (`exposition::fresh_samples`): labels by Prometheus' rules, no duplicate series.

use super::exposition::Sample;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// `[metrics.remote_write]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteSection {
    pub url: String,
    /// The environment variable holding a bearer token, if the receiver needs one.
    pub bearer_token_env: Option<String>,
    /// How long a batch refused with 429 or 5xx (or unanswered) is retried before it is dropped (`"5m"`).
    pub retry_for: Option<String>,
}

/// How long a failing batch is retried when `retry_for` is not set.
const RETRY_FOR: Duration = Duration::from_secs(300);

impl RemoteWriteSection {
    pub fn check(&self) -> Result<(), String> {
        let u = url::Url::parse(&self.url).map_err(|e| format!("[metrics.remote_write] url: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err("[metrics.remote_write] url: an http:// or https:// URL".into());
        }
        self.retry_for().map(|_| ())
    }

    /// `retry_for`, checked: from 1 s to 24 h.
    pub fn retry_for(&self) -> Result<Duration, String> {
        let Some(v) = &self.retry_for else { return Ok(RETRY_FOR) };
        let d = humantime::parse_duration(v)
            .map_err(|e| format!("[metrics.remote_write] retry_for = \"{v}\": {e}; write e.g. \"30s\", \"5m\""))?;
        if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
            return Err(format!("[metrics.remote_write] retry_for = \"{v}\": from 1s to 24h"));
        }
        Ok(d)
    }
}

// The remote write protocol's messages (prometheus/prompb types.proto), declared for prost by hand: four small
// messages do not need a protoc build step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PromSample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PromSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Samples at `t` (Unix ms) as a request body: protobuf, then snappy (block format).
pub fn encode(samples: &[Sample], t: i64) -> Vec<u8> {
    use prost::Message;
    let timeseries = samples
        .iter()
        .map(|(name, labels, v)| {
            let mut l: Vec<Label> = labels.iter().map(|(k, v)| Label { name: k.clone(), value: v.clone() }).collect();
            l.push(Label { name: "__name__".into(), value: name.clone() });
            l.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries { labels: l, samples: vec![PromSample { value: *v, timestamp: t }] }
        })
        .collect();
    let raw = WriteRequest { timeseries }.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

/// Batches waiting, at most this many.
const QUEUE: usize = 360;

/// A queued batch: its number (to know it again after others were dropped for room), its samples, its body.
struct Batch {
    seq: u64,
    samples: usize,
    body: Vec<u8>,
}

/// Why a batch was given up.
enum GaveUp {
    /// A 4xx other than 429: the receiver will never take it.
    Refused(String),
    /// 429, 5xx or no answer for longer than `retry_for`; the receiver asked for this pause before the next try.
    Failing(String, Duration),
}

#[derive(Default)]
pub struct RemoteWrite {
    queue: Mutex<(u64, std::collections::VecDeque<Batch>)>,
    wake: tokio::sync::Notify,
    pub sent_samples: AtomicU64,
    pub sent_batches: AtomicU64,
    pub retries: AtomicU64,
    /// Batches dropped, by cause: refused (4xx), failing past `retry_for`, and the oldest when the queue was full.
    pub dropped_refused: AtomicU64,
    pub dropped_failing: AtomicU64,
    pub dropped_full: AtomicU64,
    /// Samples in every dropped batch.
    pub dropped_samples: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl RemoteWrite {
    /// Queues a flush's samples (dropping the oldest batch when full).
    pub fn push(&self, samples: &[Sample], t: i64) {
        if samples.is_empty() {
            return;
        }
        let body = encode(samples, t);
        let mut q = self.queue.lock().expect("not poisoned");
        if q.1.len() >= QUEUE {
            if let Some(old) = q.1.pop_front() {
                self.dropped_full.fetch_add(1, Ordering::Relaxed);
                self.dropped_samples.fetch_add(old.samples as u64, Ordering::Relaxed);
            }
        }
        q.0 += 1;
        let seq = q.0;
        q.1.push_back(Batch { seq, samples: samples.len(), body });
        drop(q);
        self.wake.notify_one();
    }

    pub fn status(&self, url: &str) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // The URL may carry credentials: only its host is shown.
        let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(String::from)).unwrap_or_default();
        let (refused, failing, full) = (l(&self.dropped_refused), l(&self.dropped_failing), l(&self.dropped_full));
        serde_json::json!({
            "host": host,
            "queued": self.queue.lock().expect("not poisoned").1.len(),
            "sent_samples": l(&self.sent_samples),
            "sent_batches": l(&self.sent_batches),
            "retries": l(&self.retries),
            "dropped_batches": refused + failing + full,
            "dropped": {"refused": refused, "failing": failing, "queue_full": full},
            "dropped_samples": l(&self.dropped_samples),
            "last_error": self.last_error.lock().expect("not poisoned").clone(),
        })
    }

    /// Sends queued batches in order until shutdown.
    pub async fn run(&self, cfg: RemoteWriteSection, shutdown: tokio_util::sync::CancellationToken) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
        let token = cfg.bearer_token_env.as_ref().and_then(|v| std::env::var(v).ok());
        let retry_for = cfg.retry_for().unwrap_or(RETRY_FOR);
        loop {
            let next = self.queue.lock().expect("not poisoned").1.front().map(|b| (b.seq, b.samples, b.body.clone()));
            let Some((seq, n, body)) = next else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            };
            let started = tokio::time::Instant::now();
            let mut backoff = Duration::from_millis(250);
            let outcome = loop {
                let mut req = http
                    .post(&cfg.url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .header("User-Agent", concat!("crew/", env!("CARGO_PKG_VERSION")))
                    .body(body.clone());
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let (wait, error) = match req.send().await {
                    Ok(r) if r.status().is_success() => break Ok(()),
                    Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                        let after = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        let status = r.status();
                        let text: String = r.text().await.unwrap_or_default().chars().take(200).collect();
                        (after.unwrap_or(backoff), format!("HTTP {status}: {}", text.trim()))
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text: String = r.text().await.unwrap_or_default().chars().take(200).collect();
                        break Err(GaveUp::Refused(format!("HTTP {status}: {}", text.trim())));
                    }
                    Err(e) => (backoff, e.without_url().to_string()),
                };
                // The next try would come after the bound: give the batch up now, so newer data goes out.
                let wait = wait.min(Duration::from_secs(60));
                if started.elapsed() + wait > retry_for {
                    let e = format!("{error} (retried for {}s)", started.elapsed().as_secs());
                    break Err(GaveUp::Failing(e, wait));
                }
                *self.last_error.lock().expect("not poisoned") = Some(error);
                self.retries.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            };
            // Only the batch just tried leaves the queue. One dropped for room meanwhile was counted dropped
            // then: delivered after all, it is counted sent instead.
            let was_dropped = {
                let mut q = self.queue.lock().expect("not poisoned");
                let front = q.1.front().is_some_and(|f| f.seq == seq);
                if front {
                    q.1.pop_front();
                }
                !front
            };
            match outcome {
                Ok(()) => {
                    if was_dropped {
                        self.dropped_full.fetch_sub(1, Ordering::Relaxed);
                        self.dropped_samples.fetch_sub(n as u64, Ordering::Relaxed);
                    }
                    self.sent_samples.fetch_add(n as u64, Ordering::Relaxed);
                    self.sent_batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(gave_up) => {
                    let (counter, e, pause) = match gave_up {
                        GaveUp::Refused(e) => (&self.dropped_refused, e, Duration::ZERO),
                        GaveUp::Failing(e, pause) => (&self.dropped_failing, e, pause),
                    };
                    if !was_dropped {
                        tracing::warn!(error = %e, samples = n, "remote write dropped a batch");
                        counter.fetch_add(1, Ordering::Relaxed);
                        self.dropped_samples.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    *self.last_error.lock().expect("not poisoned") = Some(e);
                    // The receiver is still failing: the next batch waits the pause it asked for.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}
