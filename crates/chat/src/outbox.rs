//! What the robot has to say, held to the server's flood rules: a token bucket (burst 4, then one line a
//! second by default) with PONG always first, replies next, announcements last. The announcement queue is
//! bounded: a burst beyond it is counted and summed up in one line ("12 more: alert ×10, deploy ×2 in 30 s")
//! rather than growing without end or being lost silently.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The flood rule: `burst` lines at once, then one per `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

impl Default for Rate {
    fn default() -> Self {
        Rate { burst: 4, every: Duration::from_secs(1) }
    }
}

/// A token bucket; time is given, so it is tested without waiting.
#[derive(Debug)]
pub struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: Rate, now: Instant) -> Self {
        Bucket { rate, tokens: rate.burst as f64, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / self.rate.every.as_secs_f64().max(1e-9);
        self.tokens = (self.tokens + gained).min(self.rate.burst as f64);
        self.at = now;
    }

    /// Takes a token if one is there.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            self.rate.every.mul_f64(1.0 - self.tokens)
        }
    }
}

/// One line to send: a raw protocol line (PONG, JOIN) or a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Raw(String),
    Notice { target: String, text: String },
    Privmsg { target: String, text: String },
}

/// Replies sent in a row, at most, while an announcement waits.
pub const REPLIES_IN_A_ROW: usize = 3;

/// Announcements held back once this many wait, per room.
pub const ANNOUNCE_QUEUE: usize = 8;

#[derive(Default)]
struct Held {
    count: usize,
    since: Option<Instant>,
    kinds: BTreeMap<String, usize>,
}

/// The robot's outgoing lines in order of urgency.
pub struct Outbox {
    bucket: Bucket,
    urgent: VecDeque<String>,
    replies: VecDeque<Line>,
    /// Replies beyond this are dropped (a person flooding commands; they are rate limited anyway).
    max_replies: usize,
    /// Replies sent in a row while announcements waited: past [`REPLIES_IN_A_ROW`] an announcement goes next,
    /// so a busy room's answers never starve the timeline.
    replies_in_row: usize,
    announcements: BTreeMap<String, VecDeque<String>>,
    held: BTreeMap<String, Held>,
    /// Where to read what was held back.
    pub timeline_url: String,
}

impl Outbox {
    pub fn new(rate: Rate, now: Instant) -> Self {
        Outbox {
            bucket: Bucket::new(rate, now),
            urgent: VecDeque::new(),
            replies: VecDeque::new(),
            max_replies: 64,
            replies_in_row: 0,
            announcements: BTreeMap::new(),
            held: BTreeMap::new(),
            timeline_url: String::new(),
        }
    }

    /// PONG and registration lines: sent before anything else, never held by the bucket (a server that
    /// waits for a PONG behind a queue of announcements would drop us).
    pub fn urgent(&mut self, raw: String) {
        self.urgent.push_back(raw);
    }

    /// Queues a reply; `false` when the queue is full and it was dropped.
    pub fn reply(&mut self, line: Line) -> bool {
        if self.replies.len() < self.max_replies {
            self.replies.push_back(line);
            true
        } else {
            false
        }
    }

    /// An announcement for `room`, of event kind `kind`, in the pieces that fit a line (kept together).
    pub fn announce(&mut self, room: &str, kind: &str, pieces: Vec<String>, now: Instant) {
        let q = self.announcements.entry(room.to_string()).or_default();
        if q.len() < ANNOUNCE_QUEUE {
            q.extend(pieces);
            return;
        }
        let held = self.held.entry(room.to_string()).or_default();
        held.count += 1;
        held.since.get_or_insert(now);
        *held.kinds.entry(kind.split('.').next().unwrap_or(kind).to_string()).or_default() += 1;
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.replies.is_empty() && self.announcements.values().all(VecDeque::is_empty)
    }

    /// How many announcements wait or were held back (for the status page).
    pub fn backlog(&self) -> usize {
        self.announcements.values().map(VecDeque::len).sum::<usize>()
            + self.held.values().map(|h| h.count).sum::<usize>()
    }

    /// Only the urgent lines (before registration nothing else may be written).
    pub fn next_urgent(&mut self) -> Option<Line> {
        self.urgent.pop_front().map(Line::Raw)
    }

    /// How long until the next line may be written, if any waits.
    pub fn next_wait(&mut self, now: Instant) -> Option<Duration> {
        if !self.urgent.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.is_empty() {
            return None;
        }
        Some(self.bucket.wait(now))
    }

    /// The next line to write now, if the bucket allows one; else how long to wait.
    pub fn next(&mut self, now: Instant) -> Result<Line, Option<Duration>> {
        if let Some(raw) = self.urgent.pop_front() {
            return Ok(Line::Raw(raw));
        }
        if self.is_empty() {
            return Err(None);
        }
        if !self.bucket.take(now) {
            return Err(Some(self.bucket.wait(now)));
        }
        let announcing = self.announcements.values().any(|q| !q.is_empty());
        if !self.replies.is_empty() && (!announcing || self.replies_in_row < REPLIES_IN_A_ROW) {
            self.replies_in_row += 1;
            return Ok(self.replies.pop_front().expect("not empty"));
        }
        self.replies_in_row = 0;
        let room = self.announcements.iter().find(|(_, q)| !q.is_empty()).map(|(r, _)| r.clone()).expect("not empty");
        let q = self.announcements.get_mut(&room).expect("room");
        let text = q.pop_front().expect("not empty");
        // Room again: what was held back is summed up in one line after the queue.
        if q.is_empty() {
            if let Some(h) = self.held.remove(&room) {
                let kinds: Vec<String> = h.kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
                let secs = h.since.map(|s| now.saturating_duration_since(s).as_secs()).unwrap_or(0);
                q.push_back(format!(
                    "… and {} more: {} in {secs} s; see {}",
                    h.count,
                    kinds.join(", "),
                    self.timeline_url
                ));
            }
        }
        Ok(Line::Notice { target: room, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_a_second_with_pong_first() {
        let t = Instant::now();
        let mut o = Outbox::new(Rate::default(), t);
        for i in 0..10 {
            o.announce("#ops", "deploy.started", vec![format!("a{i}")], t);
        }
        let sent: Vec<Line> = (0..4).map(|_| o.next(t).unwrap()).collect();
        assert_eq!(sent.len(), 4);
        assert_eq!(o.next(t), Err(Some(Duration::from_secs(1))));
        o.urgent("PONG :x".into());
        assert_eq!(o.next(t), Ok(Line::Raw("PONG :x".into())), "PONG is not held by the bucket");
        assert!(o.next(t + Duration::from_millis(500)).is_err());
        assert!(o.next(t + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_burst_beyond_the_queue_is_summed_up() {
        let t = Instant::now();
        let mut o = Outbox::new(Rate { burst: 100, every: Duration::from_millis(1) }, t);
        o.timeline_url = "http://crew/".into();
        for i in 0..100 {
            let kind = if i % 10 == 0 { "deploy.finished" } else { "alert.fired" };
            o.announce("#ops", kind, vec![format!("line {i}")], t);
        }
        assert_eq!(o.backlog(), 100, "held, not lost");
        let mut texts = Vec::new();
        while let Ok(Line::Notice { text, .. }) = o.next(t + Duration::from_secs(30)) {
            texts.push(text);
        }
        assert_eq!(texts.len(), ANNOUNCE_QUEUE + 1);
        assert_eq!(texts.last().unwrap(), "… and 92 more: alert ×83, deploy ×9 in 30 s; see http://crew/");
    }

    #[test]
    fn replies_never_starve_announcements() {
        let t = Instant::now();
        let mut o = Outbox::new(Rate { burst: 1000, every: Duration::from_millis(1) }, t);
        o.announce("#ops", "deploy", vec!["deployed".into()], t);
        for i in 0..60 {
            o.reply(Line::Privmsg { target: "#ops".into(), text: format!("r{i}") });
        }
        let first: Vec<Line> = (0..REPLIES_IN_A_ROW + 1).map(|_| o.next(t).unwrap()).collect();
        assert!(first.contains(&Line::Notice { target: "#ops".into(), text: "deployed".into() }), "{first:?}");
    }

    #[test]
    fn replies_go_before_announcements() {
        let t = Instant::now();
        let mut o = Outbox::new(Rate::default(), t);
        o.announce("#ops", "note", vec!["n".into()], t);
        o.reply(Line::Privmsg { target: "#ops".into(), text: "r".into() });
        assert_eq!(o.next(t), Ok(Line::Privmsg { target: "#ops".into(), text: "r".into() }));
    }
}
