//! crew's Rust SDK: flags evaluated in the application with crew's own engine (no request per evaluation),
//! kept current by `GET /api/v1/flags/stream`. When the server is away the last known definitions stay in
//! force, and a bootstrap file (written on every update, read at a cold start) covers a start without it.
//!
//! Bucket tests: an evaluation of a split flag for a targeting key is an exposure, reported to crew in batches
//! (`POST /api/v1/exposures`, the first per user per definition, at most one batch a second), and
//! [`Client::track`] reports a conversion (`POST /api/v1/track`), so `crew experiment KEY` shows which variant
//! won.
//!
//! ```no_run
//! # async fn f() {
//! let flags = crew_sdk::Client::builder("http://crew:7070", "crew_app_key").bootstrap("/var/lib/www/flags.json").start();
//! flags.ready(std::time::Duration::from_secs(2)).await;
//! let ctx = serde_json::json!({"targetingKey": "alice", "groups": ["staff"]});
//! if flags.bool("video", &ctx, false) { /* ... */ }
//! if flags.is_dark("recommendations", &ctx) { /* do the work, ignore the result */ }
//! # }
//! ```

pub mod openfeature;

use crew_flags::{FlagSet, Resolution};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The definitions in force and which of them are splits (bucket tests).
#[derive(Default)]
struct Flags {
    set: FlagSet,
    splits: HashSet<String>,
}

impl Flags {
    fn parse(doc: &str) -> Result<Flags, String> {
        let v: Value = serde_json::from_str(doc).map_err(|e| e.to_string())?;
        // The server says how its `fractional` rules bucket; a document without it (a file from elsewhere)
        // buckets as today's flagd.
        let fractional = match v.get("fractional") {
            None => crew_flags::Fractional::default(),
            Some(f) => f
                .as_str()
                .and_then(crew_flags::Fractional::parse)
                .ok_or_else(|| format!("`fractional` {f}: this SDK knows \"v2\" and \"v3\""))?,
        };
        let set = FlagSet::from_value(&v).map_err(|e| e.to_string())?.with_fractional(fractional);
        let splits = v["flags"]
            .as_object()
            .map(|m| {
                m.iter().filter(|(_, d)| crew_flags::knobs::split_of(d).is_some()).map(|(k, _)| k.clone()).collect()
            })
            .unwrap_or_default();
        Ok(Flags { set, splits })
    }
}

/// At most this many exposures in one batch (the server's limit), and waiting at most (then the oldest are
/// dropped, counted: an application never grows memory because crew is away).
const BATCH: usize = 5_000;
const WAITING_MAX: usize = 200_000;
/// (flag, user) pairs remembered as reported; cleared past this size and at every change of definitions.
const SEEN_MAX: usize = 1_000_000;

#[derive(Default)]
struct Exposures {
    seen: HashSet<(String, String)>,
    waiting: Vec<Value>,
}

/// What the SDK shares with its background tasks.
struct Shared {
    server: String,
    key: String,
    http: reqwest::Client,
    exposures: Mutex<Exposures>,
    wake: tokio::sync::Notify,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// A running SDK client; cheap to clone.
#[derive(Clone)]
pub struct Client {
    flags: Arc<RwLock<Arc<Flags>>>,
    /// Counts updates; `ready` waits for the first.
    updates: watch::Receiver<u64>,
    shared: Arc<Shared>,
    task: Arc<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)>,
}

/// Why a tracking event was not taken.
#[derive(Debug)]
pub struct TrackError(pub String);

impl std::fmt::Display for TrackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TrackError {}

pub struct Builder {
    server: String,
    key: String,
    bootstrap: Option<PathBuf>,
}

impl Builder {
    /// A file with the last known definitions: read at start (before the server answers), rewritten on every
    /// update.
    pub fn bootstrap(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap = Some(path.into());
        self
    }

    /// Starts following the server in the background (needs a Tokio runtime).
    pub fn start(self) -> Client {
        let flags = Arc::new(RwLock::new(Arc::new(Flags::default())));
        let (tx, rx) = watch::channel(0u64);
        if let Some(doc) = self.bootstrap.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            if let Ok(set) = Flags::parse(&doc) {
                *flags.write().expect("flags") = Arc::new(set);
                tx.send_modify(|n| *n += 1);
            }
        }
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("http client");
        let shared = Arc::new(Shared {
            server: self.server.trim_end_matches('/').to_string(),
            key: self.key.clone(),
            http,
            exposures: Mutex::new(Exposures::default()),
            wake: tokio::sync::Notify::new(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let follower = tokio::spawn(follow(self, flags.clone(), tx, shared.clone()));
        let reporter = tokio::spawn(report(shared.clone()));
        Client { flags, updates: rx, shared, task: Arc::new((follower, reporter)) }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.0.abort();
            self.task.1.abort();
        }
    }
}

/// Follows the definitions stream for ever, reconnecting with backoff; each document replaces the set.
async fn follow(b: Builder, flags: Arc<RwLock<Arc<Flags>>>, tx: watch::Sender<u64>, shared: Arc<Shared>) {
    let http = shared.http.clone();
    let url = format!("{}/api/v1/flags/stream", b.server.trim_end_matches('/'));
    let mut backoff = Duration::from_millis(200);
    loop {
        match http.get(&url).header("x-api-key", &b.key).send().await {
            Ok(res) if res.status().is_success() => {
                backoff = Duration::from_millis(200);
                let mut events = res.bytes_stream().eventsource();
                // crew sends a keep-alive every 15 s: silence for longer is a dead connection (a replica gone,
                // a load balancer's idle cut), so reconnect rather than wait for ever on stale flags.
                while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(40), events.next()).await {
                    if ev.event != "definitions" {
                        continue;
                    }
                    match Flags::parse(&ev.data) {
                        Ok(set) => {
                            *flags.write().expect("flags") = Arc::new(set);
                            // A new definition is a new phase of each test: its first looks count again.
                            shared.exposures.lock().expect("exposures").seen.clear();
                            tx.send_modify(|n| *n += 1);
                            if let Some(p) = &b.bootstrap {
                                let tmp = p.with_extension("tmp");
                                if std::fs::write(&tmp, &ev.data).and_then(|_| std::fs::rename(&tmp, p)).is_err() {
                                    tracing::warn!(path = %p.display(), "cannot write the flags bootstrap file");
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "crew sent definitions this SDK cannot read; keeping the last ones")
                        }
                    }
                }
            }
            Ok(res) => tracing::warn!(status = %res.status(), "crew refused the flag stream"),
            Err(e) => tracing::debug!(error = %e, "crew is away; keeping the last known flags"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Sends the waiting exposures: at once when a batch is full, else every second. A refused batch (4xx: a flag
/// removed meanwhile, say) is dropped and counted; on a network error it waits for the next round.
async fn report(shared: Arc<Shared>) {
    let url = format!("{}/api/v1/exposures", shared.server);
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), shared.wake.notified()).await;
        loop {
            let batch: Vec<Value> = {
                let mut e = shared.exposures.lock().expect("exposures");
                let n = e.waiting.len().min(BATCH);
                e.waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let body = serde_json::json!({ "exposures": batch });
            match shared.http.post(&url).header("x-api-key", &shared.key).json(&body).send().await {
                Ok(res) if res.status().is_success() => {
                    shared.sent.fetch_add(n, Ordering::Relaxed);
                }
                Ok(res) if res.status().is_client_error() => {
                    shared.dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(status = %res.status(), "crew refused a batch of exposures; dropped");
                }
                _ => {
                    // Back to the front; the oldest go first when too many wait.
                    let Value::Object(mut b) = body else { break };
                    let Some(Value::Array(batch)) = b.remove("exposures") else { break };
                    let mut e = shared.exposures.lock().expect("exposures");
                    let mut all = batch;
                    all.append(&mut e.waiting);
                    let over = all.len().saturating_sub(WAITING_MAX);
                    shared.dropped.fetch_add(over as u64, Ordering::Relaxed);
                    e.waiting = all.split_off(over);
                    break;
                }
            }
        }
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Client {
    pub fn builder(server: &str, key: &str) -> Builder {
        Builder { server: server.to_string(), key: key.to_string(), bootstrap: None }
    }

    /// Waits until definitions are known (from the server or the bootstrap file), at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.updates.clone();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0)).await.is_ok_and(|r| r.is_ok())
    }

    /// How many definition documents this client has taken in (bootstrap and stream).
    pub fn updates(&self) -> u64 {
        *self.updates.borrow()
    }

    /// The full resolution: value, variant, reason, error.
    pub fn evaluate(&self, key: &str, ctx: &Value) -> Resolution {
        let flags = self.flags.read().expect("flags").clone();
        let r = flags.set.evaluate(key, ctx, now());
        if r.error.is_none() && flags.splits.contains(key) {
            self.exposed(key, ctx, r.variant.as_deref());
        }
        r
    }

    /// Runs `f` on the evaluation of `key` under the read lock, borrowing the stored
    /// definitions: a typed accessor clones nothing but the answer it returns.
    fn with<R>(&self, key: &str, ctx: &Value, f: impl FnOnce(Option<&Value>, Option<&str>) -> R) -> R {
        let flags = self.flags.read().expect("flags");
        let e = flags.set.evaluate_ref(key, ctx, now());
        if e.error.is_some() {
            return f(None, None);
        }
        if flags.splits.contains(key) {
            self.exposed(key, ctx, e.variant);
        }
        f(e.value, e.variant)
    }

    /// A look at a split: queued for the next batch unless this user was reported on it already.
    fn exposed(&self, key: &str, ctx: &Value, variant: Option<&str>) {
        let (Some(variant), Some(user)) = (variant, ctx.get("targetingKey").and_then(Value::as_str)) else { return };
        if user.is_empty() {
            return;
        }
        let mut e = self.shared.exposures.lock().expect("exposures");
        // Look before allocating: a repeated look (the usual case) costs one hash lookup.
        if e.seen.contains(&(key.to_string(), user.to_string())) {
            return;
        }
        if e.seen.len() >= SEEN_MAX {
            e.seen.clear();
        }
        if e.waiting.len() >= WAITING_MAX {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        e.seen.insert((key.to_string(), user.to_string()));
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        e.waiting.push(serde_json::json!({"key": key, "targetingKey": user, "variant": variant, "at": at}));
        if e.waiting.len() >= BATCH {
            self.shared.wake.notify_one();
        }
    }

    /// Exposures sent to crew and dropped (refused, or too many waiting while crew was away), since start.
    pub fn exposures_reported(&self) -> (u64, u64) {
        (self.shared.sent.load(Ordering::Relaxed), self.shared.dropped.load(Ordering::Relaxed))
    }

    /// Sends what waits now (before a short-lived program exits).
    pub async fn flush(&self) {
        self.shared.wake.notify_one();
        for _ in 0..100 {
            if self.shared.exposures.lock().expect("exposures").waiting.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// OpenFeature's tracking: a conversion of `key` (a flag's key or an `[experiments] metrics` name) for the
    /// context's targeting key, with an optional value. Answers crew's refusal (an unknown key, no targeting key).
    pub async fn track(&self, key: &str, ctx: &Value, value: Option<f64>) -> Result<(), TrackError> {
        let mut body = serde_json::json!({"key": key, "context": ctx});
        if let Some(v) = value {
            body["value"] = serde_json::json!(v);
        }
        let url = format!("{}/api/v1/track", self.shared.server);
        let res = self
            .shared
            .http
            .post(&url)
            .header("x-api-key", &self.shared.key)
            .json(&body)
            .send()
            .await
            .map_err(|e| TrackError(format!("crew is away: {e}")))?;
        if res.status().is_success() {
            return Ok(());
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["detail"].as_str().map(String::from))
            .unwrap_or(text);
        Err(TrackError(format!("crew refused the tracking event ({status}): {msg}")))
    }

    pub fn bool(&self, key: &str, ctx: &Value, default: bool) -> bool {
        self.with(key, ctx, |v, _| v.and_then(Value::as_bool)).unwrap_or(default)
    }

    pub fn string(&self, key: &str, ctx: &Value, default: &str) -> String {
        self.with(key, ctx, |v, _| v.and_then(Value::as_str).map(String::from)).unwrap_or_else(|| default.to_string())
    }

    pub fn int(&self, key: &str, ctx: &Value, default: i64) -> i64 {
        self.with(key, ctx, |v, _| v.and_then(Value::as_i64)).unwrap_or(default)
    }

    pub fn float(&self, key: &str, ctx: &Value, default: f64) -> f64 {
        self.with(key, ctx, |v, _| v.and_then(Value::as_f64)).unwrap_or(default)
    }

    /// The variant chosen for this context (`None`: the code default applies).
    pub fn variant(&self, key: &str, ctx: &Value) -> Option<String> {
        self.with(key, ctx, |_, variant| variant.map(String::from))
    }

    /// The DogStatsD tags that say which variant of each flag this context gets, for the application to add to
    /// the series it sends (`www.latency:12|ms|#flag_search_v2:on`): `tags(&["search-v2"], &ctx)` →
    /// `["flag_search_v2:on"]`. A flag ramp compares the series tagged `flag_KEY:on` with those tagged
    /// `flag_KEY:off`. A flag answering the code default (switched off, unknown) is tagged `default`. The tag
    /// key is [`crew_flags::tag_key`].
    pub fn tags(&self, keys: &[&str], ctx: &Value) -> Vec<String> {
        keys.iter()
            .map(|key| {
                let variant = self.variant(key, ctx);
                format!("{}:{}", crew_flags::tag_key(key), variant.as_deref().unwrap_or("default"))
            })
            .collect()
    }

    /// Whether this context is in a dark launch: do the work, ignore the result.
    pub fn is_dark(&self, key: &str, ctx: &Value) -> bool {
        self.with(key, ctx, |_, variant| variant == Some("dark"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crew_flags::{ErrorCode, Reason};
    use serde_json::json;

    /// The tags an application adds to its series, one line: the variant each context gets, the key spelled
    /// as a tag key.
    #[tokio::test]
    async fn tags_say_the_variant_of_each_flag() {
        let doc = json!({"flags": {
            "search-v2": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                          "targeting": {"if": [{"==": [{"var": "targetingKey"}, "alice"]}, "on", "off"]}},
            "video": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
        }});
        let path = std::env::temp_dir().join(format!("crew-sdk-tags-{}.json", std::process::id()));
        std::fs::write(&path, doc.to_string()).unwrap();
        let flags = Client::builder("http://127.0.0.1:1", "k").bootstrap(&path).start();
        assert!(flags.ready(Duration::from_secs(1)).await);
        let _ = std::fs::remove_file(&path);
        assert_eq!(flags.tags(&["search-v2"], &json!({"targetingKey": "alice"})), ["flag_search_v2:on"]);
        assert_eq!(
            flags.tags(&["search-v2", "video", "ghost"], &json!({"targetingKey": "bob"})),
            ["flag_search_v2:off", "flag_video:default", "flag_ghost:default"]
        );
    }

    /// Definitions from elsewhere (here a bootstrap file, with no server) may hold a rule that would take
    /// seconds, a `reduce` doubling a list 14 times inside an `all` over the result: the engine's step budget
    /// stops each evaluation, the typed accessors answer the code default, and the other flags work.
    #[tokio::test]
    async fn a_costly_rule_answers_the_default_without_hanging() {
        let r = json!({"reduce": [(1..=14).collect::<Vec<_>>(),
            {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]}, [1]]});
        let doc = json!({"flags": {
            "attack": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                       "targeting": {"if": [{"all": [r, {"none": [r, {"==": [1, 2]}]}]}, "on", "off"]}},
            "video": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
        }});
        let path = std::env::temp_dir().join(format!("crew-sdk-costly-{}.json", std::process::id()));
        std::fs::write(&path, doc.to_string()).unwrap();
        let flags = Client::builder("http://127.0.0.1:1", "k").bootstrap(&path).start();
        assert!(flags.ready(Duration::from_secs(1)).await);
        let ctx = json!({"targetingKey": "alice"});
        let t = std::time::Instant::now();
        assert!(flags.bool("attack", &ctx, true));
        assert!(!flags.bool("attack", &ctx, false));
        let r = flags.evaluate("attack", &ctx);
        assert_eq!((r.reason, r.value, r.error.map(|e| e.0)), (Reason::Error, None, Some(ErrorCode::General)));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(flags.bool("video", &ctx, false));
        let _ = std::fs::remove_file(&path);
    }
}
