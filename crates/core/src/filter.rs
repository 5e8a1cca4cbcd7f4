//! Timeline filters: the one definition of which events a query or a live stream shows.
//!
//! The store turns a filter into SQL; a live stream applies [`EventFilter::matches`] in memory. Both follow the
//! same rules, which the store conformance suite checks against each other.

use crate::event::Event;
use chrono::{DateTime, Utc};

/// The default and largest page sizes.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// The longest word a search may hold.
pub const MAX_WORD: usize = 100;

/// A position in the timeline: the events strictly older than it come next. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub i64);

impl Cursor {
    pub fn encode(self) -> String {
        self.0.to_string()
    }
    pub fn decode(s: &str) -> Result<Cursor, FilterError> {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Cursor)
            .ok_or_else(|| FilterError(format!("bad cursor `{s}`: pass back a `next_cursor` crew gave you")))
    }
}

/// A bad filter value, with a message naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// Which events to show. Every field narrows; an empty filter shows everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// A kind or a dotted prefix of kinds: `deploy` matches `deploy.started`, not `deployment`.
    pub kind: Option<String>,
    /// Exactly this subject.
    pub subject: Option<String>,
    /// Exactly this actor name.
    pub actor: Option<String>,
    /// Words that must all appear (as words or word beginnings) in the summary or subject, any case.
    pub words: Vec<String>,
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (1..=1000); queries only.
    pub limit: u32,
    /// Only events older than this cursor; queries only.
    pub before: Option<Cursor>,
}

impl EventFilter {
    pub fn new() -> Self {
        EventFilter { limit: DEFAULT_LIMIT, ..Default::default() }
    }

    /// Sets the search words from what a person typed.
    pub fn search(mut self, q: &str) -> Self {
        self.words = search_words(q);
        self
    }

    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = Some(kind.to_string());
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Checks the values a client sent.
    pub fn validate(&self) -> Result<(), FilterError> {
        for (name, v) in [("subject", &self.subject), ("actor", &self.actor)] {
            if let Some(v) = v {
                crate::event::printable("filter", v)
                    .map_err(|_| FilterError(format!("bad {name} filter: it has a control character")))?;
            }
        }
        if let Some(k) = &self.kind {
            if !crate::event::valid_kind(k) {
                return Err(FilterError(format!(
                    "bad kind filter `{k}`: expected a kind or dotted prefix like `deploy` or `deploy.started`"
                )));
            }
        }
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(FilterError(format!("bad limit {}: expected 1 to {MAX_LIMIT}", self.limit)));
        }
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if s > u {
                return Err(FilterError("since is after until: nothing can match".into()));
            }
        }
        if self.words.len() > 16 {
            return Err(FilterError(format!("search has {} words: at most 16", self.words.len())));
        }
        // PostgreSQL refuses tsquery words over 2,046 bytes; no real word is near 100 characters.
        if let Some(w) = self.words.iter().find(|w| w.chars().count() > MAX_WORD) {
            let start: String = w.chars().take(20).collect();
            return Err(FilterError(format!(
                "search word `{start}…` is {} characters long: at most {MAX_WORD}",
                w.chars().count()
            )));
        }
        Ok(())
    }

    /// Whether a live event passes this filter (limit and cursor do not apply to a stream).
    pub fn matches(&self, e: &Event) -> bool {
        if let Some(k) = &self.kind {
            let ok = e.kind == *k || (e.kind.starts_with(k.as_str()) && e.kind.as_bytes().get(k.len()) == Some(&b'.'));
            if !ok {
                return false;
            }
        }
        if self.subject.as_ref().is_some_and(|s| *s != e.subject) {
            return false;
        }
        if self.actor.as_ref().is_some_and(|a| *a != e.actor.name) {
            return false;
        }
        if self.since.is_some_and(|s| e.at < s) || self.until.is_some_and(|u| e.at >= u) {
            return false;
        }
        if !self.words.is_empty() {
            let tokens: Vec<String> = search_words(&e.summary).into_iter().chain(search_words(&e.subject)).collect();
            return self.words.iter().all(|w| tokens.iter().any(|t| t.starts_with(w.as_str())));
        }
        true
    }
}

/// Splits text into lowercase words at anything that is not a letter or digit, the way both engines' full-text
/// indexes do: `www/production` → `www`, `production`.
pub fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect()
}

/// Reads a filter from query pairs (`kind`, `subject`, `actor`, `q`, `since`, `until`; with `paged`, also
/// `limit` and `cursor`), as the API, the Timeline page and live streams take them; `now` anchors relative
/// times. An empty value means "no filter", as an empty form field does.
pub fn parse_pairs(
    pairs: &[(String, String)],
    paged: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<EventFilter, FilterError> {
    let mut f = EventFilter::new();
    let time =
        |k: &str, v: &str| crate::time::parse_time(v, now).map_err(|e| FilterError(format!("filter `{k}`: {e}")));
    for (k, v) in pairs {
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "kind" => f.kind = Some(v.clone()),
            "subject" => f.subject = Some(v.clone()),
            "actor" => f.actor = Some(v.clone()),
            "q" => f.words = search_words(v),
            "since" => f.since = Some(time(k, v)?),
            "until" => f.until = Some(time(k, v)?),
            "limit" if paged => {
                f.limit = v.parse().map_err(|_| FilterError(format!("filter `limit`: `{v}` is not a number")))?
            }
            "cursor" if paged => f.before = Some(Cursor::decode(v)?),
            other => {
                let known = if paged {
                    "kind, subject, actor, q, since, until, limit, cursor"
                } else {
                    "kind, subject, actor, q, since, until"
                };
                return Err(FilterError(format!("unknown filter `{other}`: expected one of {known}")));
            }
        }
    }
    f.validate()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Via};

    fn ev(kind: &str, subject: &str, summary: &str, actor: &str) -> Event {
        Event {
            id: "x".into(),
            seq: 1,
            at: DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap().into(),
            actor: Actor::new(actor, Via::Cli),
            kind: kind.into(),
            subject: subject.into(),
            summary: summary.into(),
            data: serde_json::json!({}),
            links: vec![],
        }
    }

    #[test]
    fn matching() {
        let e = ev("deploy.started", "www/production", "alice deploying www to Production", "alice");
        let table = [
            (EventFilter::new(), true),
            (EventFilter::new().kind("deploy"), true),
            (EventFilter::new().kind("deploy.started"), true),
            (EventFilter::new().kind("deploy.start"), false),
            (EventFilter::new().kind("dep"), false),
            (EventFilter::new().kind("flag"), false),
            (EventFilter::new().search("production"), true),
            (EventFilter::new().search("PROD"), true),
            (EventFilter::new().search("www production"), true),
            (EventFilter::new().search("www staging"), false),
            (EventFilter::new().search("duction"), false),
            (EventFilter { subject: Some("www/production".into()), ..EventFilter::new() }, true),
            (EventFilter { subject: Some("www".into()), ..EventFilter::new() }, false),
            (EventFilter { actor: Some("alice".into()), ..EventFilter::new() }, true),
            (EventFilter { actor: Some("bob".into()), ..EventFilter::new() }, false),
            (EventFilter { since: Some(e.at), ..EventFilter::new() }, true),
            (EventFilter { until: Some(e.at), ..EventFilter::new() }, false),
        ];
        for (i, (f, want)) in table.into_iter().enumerate() {
            assert_eq!(f.matches(&e), want, "case {i}: {f:?}");
        }
    }

    #[test]
    fn words() {
        assert_eq!(search_words("Fix login: www/production!"), ["fix", "login", "www", "production"]);
        assert_eq!(search_words("  "), Vec::<String>::new());
    }

    #[test]
    fn validation() {
        assert!(EventFilter::new().validate().is_ok());
        assert!(EventFilter::new().kind("Deploy").validate().is_err());
        assert!(EventFilter::new().limit(0).validate().is_err());
        assert!(EventFilter::new().limit(1001).validate().is_err());
        assert!(Cursor::decode("abc").is_err());
        assert_eq!(Cursor::decode("42").unwrap(), Cursor(42));
    }
}
