//! Prometheus remote write (protocol 1.0: a snappy-compressed protobuf `WriteRequest`): after each flush the
//! series that had data are queued as samples and a sender posts them to `[metrics.remote_write] url`, so a
//! team past one machine keeps its series in VictoriaMetrics, Mimir or Prometheus. A 429 or 5xx (or no answer)
//! is retried with capped exponential backoff (honouring `Retry-After`); another 4xx drops the batch. The queue
//! is bounded: when the store is away for long, the oldest batches are dropped, and counted.

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
}

impl RemoteWriteSection {
    pub fn check(&self) -> Result<(), String> {
        let u = url::Url::parse(&self.url).map_err(|e| format!("[metrics.remote_write] url: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err("[metrics.remote_write] url: an http:// or https:// URL".into());
        }
        Ok(())
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

#[derive(Default)]
pub struct RemoteWrite {
    queue: Mutex<std::collections::VecDeque<(usize, Vec<u8>)>>,
    wake: tokio::sync::Notify,
    pub sent_samples: AtomicU64,
    pub sent_batches: AtomicU64,
    pub retries: AtomicU64,
    pub dropped_batches: AtomicU64,
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
        if q.len() >= QUEUE {
            q.pop_front();
            self.dropped_batches.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back((samples.len(), body));
        drop(q);
        self.wake.notify_one();
    }

    pub fn status(&self, url: &str) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // The URL may carry credentials: only its host is shown.
        let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(String::from)).unwrap_or_default();
        serde_json::json!({
            "host": host,
            "queued": self.queue.lock().expect("not poisoned").len(),
            "sent_samples": l(&self.sent_samples),
            "sent_batches": l(&self.sent_batches),
            "retries": l(&self.retries),
            "dropped_batches": l(&self.dropped_batches),
            "last_error": self.last_error.lock().expect("not poisoned").clone(),
        })
    }

    /// Sends queued batches in order until shutdown.
    pub async fn run(&self, cfg: RemoteWriteSection, shutdown: tokio_util::sync::CancellationToken) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
        let token = cfg.bearer_token_env.as_ref().and_then(|v| std::env::var(v).ok());
        loop {
            let next = self.queue.lock().expect("not poisoned").front().cloned();
            let Some((n, body)) = next else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            };
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
                let wait = match req.send().await {
                    Ok(r) if r.status().is_success() => break Ok(()),
                    Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                        let after = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        *self.last_error.lock().expect("not poisoned") = Some(format!("HTTP {}", r.status()));
                        after.unwrap_or(backoff)
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text: String = r.text().await.unwrap_or_default().chars().take(200).collect();
                        break Err(format!("HTTP {status}: {text}"));
                    }
                    Err(e) => {
                        *self.last_error.lock().expect("not poisoned") = Some(e.without_url().to_string());
                        backoff
                    }
                };
                self.retries.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
                }
            };
            // Only the batch just tried leaves the queue (new ones may have been added meanwhile; an old one
            // dropped for room would have been this one only if the queue filled while it was retried).
            {
                let mut q = self.queue.lock().expect("not poisoned");
                if q.front().map(|f| f.1 == body).unwrap_or(false) {
                    q.pop_front();
                }
            }
            match outcome {
                Ok(()) => {
                    self.sent_samples.fetch_add(n as u64, Ordering::Relaxed);
                    self.sent_batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "remote write refused a batch; dropped");
                    self.dropped_batches.fetch_add(1, Ordering::Relaxed);
                    *self.last_error.lock().expect("not poisoned") = Some(e);
                }
            }
        }
    }
}
