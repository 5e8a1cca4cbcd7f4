//! Announcements to IM rooms through incoming webhooks: Slack-compatible (`{"text"}`), Mattermost (the same,
//! with an optional channel and username) and generic JSON (the line and the whole event). Each webhook has its
//! own bounded queue and task; a 429 waits as long as `Retry-After` says, a 5xx or a network error backs off and
//! retries, other answers are given up on. The URL carries the secret, so it is never logged: a webhook is
//! named by its position and kind.

use crew_core::Event;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Slack,
    Mattermost,
    Json,
}

/// One webhook, as configured.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// For logs and status: `webhook 1 (slack)`.
    pub name: String,
    pub kind: Kind,
    pub url: String,
    /// Mattermost's channel override, if any.
    pub channel: Option<String>,
    /// Attempts per message (the first included).
    pub attempts: u32,
    /// The first backoff after a 5xx or a network error (doubles each time).
    pub backoff: Duration,
}

/// Counts the status page shows; never the URL.
#[derive(Debug, Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The body posted for an event.
pub fn body(kind: Kind, line: &str, event: &Event, channel: Option<&str>) -> Value {
    match kind {
        Kind::Slack => json!({"text": escape(line)}),
        Kind::Mattermost => {
            let mut b = json!({"text": escape(line), "username": "crew"});
            if let Some(c) = channel {
                b["channel"] = json!(c);
            }
            b
        }
        Kind::Json => json!({"text": line, "event": event}),
    }
}

/// The body of a page to a person: their `mention` (as the IM service writes one: `<@U024BE7LH>` in Slack,
/// `@alice` in Mattermost) kept as it is, then the line escaped like any announcement's.
pub fn page_body(kind: Kind, mention: &str, line: &str, channel: Option<&str>) -> Value {
    match kind {
        Kind::Slack => json!({"text": format!("{mention} {}", escape(line))}),
        Kind::Mattermost => {
            let mut b = json!({"text": format!("{mention} {}", escape(line)), "username": "crew"});
            if let Some(c) = channel {
                b["channel"] = json!(c);
            }
            b
        }
        Kind::Json => json!({"text": line, "mention": mention}),
    }
}

/// Text as Slack and Mattermost show it literally: `&`, `<` and `>` escaped as their message formats say, so
/// that `<!channel>` or `<@U123>` in someone's summary neither pings a room nor mentions anyone, and `@channel`
/// / `@here` / `@all` (Mattermost's plain-text mentions) are broken with a zero-width joiner.
pub fn escape(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    // Room-wide mentions in any case (Mattermost reads `@Channel` and `@HERE` too).
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let word: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        if ["channel", "here", "all", "everyone"].contains(&word.to_ascii_lowercase().as_str()) {
            out.push('\u{2060}');
        }
    }
    out.push_str(rest);
    out
}

/// A running webhook: queue a body with `send`; full queues drop (and count) rather than grow.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Value>,
    /// `webhook 1 (slack)`: how logs and the status page name it.
    pub name: String,
    pub counts: Arc<Counts>,
}

impl Sender {
    pub fn send(&self, body: Value) {
        if self.tx.try_send(body).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a body; false when the queue is full (it is dropped and counted).
    pub fn offer(&self, body: Value) -> bool {
        let ok = self.tx.try_send(body).is_ok();
        if !ok {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

pub fn spawn(hook: Webhook, shutdown: tokio_util::sync::CancellationToken) -> Sender {
    let (tx, mut rx) = mpsc::channel::<Value>(256);
    let name = hook.name.clone();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
        loop {
            let body = tokio::select! {
                _ = shutdown.cancelled() => return,
                b = rx.recv() => match b { Some(b) => b, None => return },
            };
            if deliver(&http, &hook, &body, &shutdown).await {
                c.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Sender { tx, name, counts }
}

/// Posts one body, retrying as the answer says; whether it was delivered.
async fn deliver(
    http: &reqwest::Client,
    hook: &Webhook,
    body: &Value,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    let mut backoff = hook.backoff;
    for attempt in 1..=hook.attempts.max(1) {
        let wait = match http.post(&hook.url).json(body).send().await {
            Ok(res) if res.status().is_success() => return true,
            Ok(res) if res.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                let after = res
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(backoff)
                    .min(Duration::from_secs(300));
                tracing::warn!(webhook = %hook.name, attempt, wait_s = after.as_secs(), "webhook rate limited (429); waiting as told");
                after
            }
            Ok(res) if res.status().is_server_error() => {
                tracing::warn!(webhook = %hook.name, attempt, status = res.status().as_u16(), "webhook failed; retrying");
                backoff
            }
            Ok(res) => {
                tracing::error!(webhook = %hook.name, status = res.status().as_u16(), "webhook refused the message; not retried");
                return false;
            }
            // The error's text can contain the URL: only its kind is logged.
            Err(e) => {
                let what = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                tracing::warn!(webhook = %hook.name, attempt, error = what, "webhook unreachable; retrying");
                backoff
            }
        };
        if attempt == hook.attempts {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
    tracing::error!(webhook = %hook.name, attempts = hook.attempts, "webhook message given up");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_markup_in_text_do_not_ping() {
        assert_eq!(escape("ship <!channel> & <@U1> now"), "ship &lt;!channel&gt; &amp; &lt;@U1&gt; now");
        assert!(!escape("hey @channel @here").contains("@channel"));
        for loud in ["@Channel", "@HERE", "@All", "@everyone"] {
            assert!(escape(loud).starts_with("@\u{2060}"), "{loud}");
        }
        assert_eq!(escape("ops@example.com"), "ops@example.com");
        assert_eq!(escape("alice deployed www"), "alice deployed www");
    }
}
