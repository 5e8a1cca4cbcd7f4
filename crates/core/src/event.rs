//! The event: one change on the timeline. Who, when, what, with links.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The channel an actor came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Cli,
    Web,
    Chat,
    Api,
    Scheduler,
    /// crew itself (start-up, the first admin token).
    System,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Web => "web",
            Via::Chat => "chat",
            Via::Api => "api",
            Via::Scheduler => "scheduler",
            Via::System => "system",
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Via {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cli" => Ok(Via::Cli),
            "web" => Ok(Via::Web),
            "chat" => Ok(Via::Chat),
            "api" => Ok(Via::Api),
            "scheduler" => Ok(Via::Scheduler),
            "system" => Ok(Via::System),
            other => Err(format!("unknown channel `{other}`")),
        }
    }
}

/// Who did it: a person or robot (the token's name) and the channel it came through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub via: Via,
}

impl Actor {
    pub fn new(name: impl Into<String>, via: Via) -> Self {
        Actor { name: name.into(), via }
    }
    pub fn system() -> Self {
        Actor::new("crew", Via::System)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.name, self.via)
    }
}

/// A link from an event into the UI or elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// What the link is to, in a word: `deploy`, `runbook`, `graph`, `commit`.
    pub rel: String,
    /// An absolute http(s) URL or a path into crew's UI (`/deploys/42`).
    pub href: String,
}

/// An event as stored: everything the timeline shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Opaque, unique, stable.
    pub id: String,
    /// The store's order: larger is later. Not part of the JSON; cursors and SSE ids derive from it.
    #[serde(skip)]
    pub seq: i64,
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// A dotted name: `deploy.started`, `flag.changed`, `token.created`.
    pub kind: String,
    /// What it is about: `www/production`, `flag:video`, `token:alice`.
    pub subject: String,
    /// One human line.
    pub summary: String,
    /// Details, e.g. a flag change's before and after. Always a JSON object.
    pub data: serde_json::Value,
    pub links: Vec<Link>,
}

/// An event to append, before the store gives it an id, a time and a place in the order.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub actor: Actor,
    pub kind: String,
    pub subject: String,
    pub summary: String,
    pub data: serde_json::Value,
    pub links: Vec<Link>,
}

/// Why an event is refused. Each names the field and the bad value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error(
        "kind `{0}` is not a dotted lowercase name like `deploy.started` (letters, digits, `_`, at most 64 characters)"
    )]
    BadKind(String),
    #[error("summary is empty: an event needs one human line")]
    EmptySummary,
    #[error("summary is {0} characters long: at most 500, on one line")]
    LongSummary(usize),
    #[error("summary has a line break: an event's summary is one line")]
    MultilineSummary,
    #[error("{0} has a control character (U+{1:04X}): only printable text is stored")]
    ControlCharacter(&'static str, u32),
    #[error("subject is {0} characters long: at most 200")]
    LongSubject(usize),
    #[error("data must be a JSON object, not {0}")]
    DataNotObject(&'static str),
    #[error("link href `{0}` is neither an http(s) URL nor a path starting with `/`")]
    BadLink(String),
    #[error("link rel `{0}` must be a short word (1 to 32 characters)")]
    BadRel(String),
    #[error("at most 20 links, got {0}")]
    TooManyLinks(usize),
    #[error("actor name `{0}` must be 1 to 100 characters without spaces")]
    BadActor(String),
}

impl NewEvent {
    /// A new event with no data and no links.
    pub fn new(actor: Actor, kind: &str, subject: &str, summary: impl Into<String>) -> Self {
        NewEvent {
            actor,
            kind: kind.to_string(),
            subject: subject.to_string(),
            summary: summary.into(),
            data: serde_json::Value::Object(Default::default()),
            links: Vec::new(),
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }

    pub fn with_link(mut self, rel: &str, href: &str) -> Self {
        self.links.push(Link { rel: rel.into(), href: href.into() });
        self
    }

    /// Checks every field; a stored event always passed this.
    pub fn validate(&mut self) -> Result<(), EventError> {
        if !valid_kind(&self.kind) {
            return Err(EventError::BadKind(self.kind.clone()));
        }
        if self.summary.trim().is_empty() {
            return Err(EventError::EmptySummary);
        }
        let n = self.summary.chars().count();
        if n > 500 {
            return Err(EventError::LongSummary(n));
        }
        if self.summary.contains(['\n', '\r']) {
            return Err(EventError::MultilineSummary);
        }
        printable("summary", &self.summary)?;
        printable("subject", &self.subject)?;
        printable("actor", &self.actor.name)?;
        no_nul_in_json(&self.data)?;
        let n = self.subject.chars().count();
        if n > 200 {
            return Err(EventError::LongSubject(n));
        }
        match &self.data {
            serde_json::Value::Null => self.data = serde_json::Value::Object(Default::default()),
            serde_json::Value::Object(_) => {}
            serde_json::Value::Array(_) => return Err(EventError::DataNotObject("an array")),
            serde_json::Value::String(_) => return Err(EventError::DataNotObject("a string")),
            serde_json::Value::Number(_) => return Err(EventError::DataNotObject("a number")),
            serde_json::Value::Bool(_) => return Err(EventError::DataNotObject("a boolean")),
        }
        if self.links.len() > 20 {
            return Err(EventError::TooManyLinks(self.links.len()));
        }
        for link in &self.links {
            printable("link", &link.href)?;
            printable("link", &link.rel)?;
            let href = link.href.as_str();
            // A path on this site; browsers read `//host` and `/\host` (a backslash is a slash to them) as
            // another site, so neither is a path here.
            let ok = (href.starts_with('/') && !href.starts_with("//") && !href.contains('\\'))
                || href.starts_with("http://")
                || href.starts_with("https://");
            if !ok || href.len() > 2000 {
                return Err(EventError::BadLink(link.href.clone()));
            }
            if link.rel.is_empty() || link.rel.chars().count() > 32 {
                return Err(EventError::BadRel(link.rel.clone()));
            }
        }
        let name = &self.actor.name;
        if name.is_empty() || name.chars().count() > 100 || name.contains(char::is_whitespace) {
            return Err(EventError::BadActor(name.clone()));
        }
        Ok(())
    }
}

/// Refuses control characters: they would forge lines in a terminal or chat, and PostgreSQL refuses NUL.
pub fn printable(field: &'static str, s: &str) -> Result<(), EventError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(EventError::ControlCharacter(field, c as u32)),
        None => Ok(()),
    }
}

/// NUL is the one character JSON allows that PostgreSQL's jsonb cannot store.
fn no_nul_in_json(v: &serde_json::Value) -> Result<(), EventError> {
    let nul = |s: &str| if s.contains('\0') { Err(EventError::ControlCharacter("data", 0)) } else { Ok(()) };
    match v {
        serde_json::Value::String(s) => nul(s),
        serde_json::Value::Array(a) => a.iter().try_for_each(no_nul_in_json),
        serde_json::Value::Object(o) => o.iter().try_for_each(|(k, v)| nul(k).and_then(|_| no_nul_in_json(v))),
        _ => Ok(()),
    }
}

/// `deploy`, `deploy.started`, `infra.run.finished`: lowercase segments of `[a-z0-9_]`, the first starting
/// with a letter.
pub fn valid_kind(kind: &str) -> bool {
    if kind.is_empty() || kind.len() > 64 || !kind.starts_with(|c: char| c.is_ascii_lowercase()) {
        return false;
    }
    kind.split('.')
        .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
}

/// Every prefix of a kind at a dot: `deploy.started` → `deploy`, `deploy.started`. The store indexes these so a
/// kind filter is an index lookup whatever its depth.
pub fn kind_prefixes(kind: &str) -> impl Iterator<Item = &str> {
    kind.match_indices('.').map(move |(i, _)| &kind[..i]).chain(std::iter::once(kind))
}

mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let table = [
            ("deploy", true),
            ("deploy.started", true),
            ("infra.run.finished", true),
            ("flag_set.changed2", true),
            ("Deploy", false),
            ("deploy.", false),
            (".deploy", false),
            ("deploy..x", false),
            ("2deploy", false),
            ("deploy started", false),
            ("", false),
        ];
        for (k, ok) in table {
            assert_eq!(valid_kind(k), ok, "{k}");
        }
    }

    #[test]
    fn prefixes() {
        let p: Vec<_> = kind_prefixes("infra.run.finished").collect();
        assert_eq!(p, ["infra", "infra.run", "infra.run.finished"]);
        let p: Vec<_> = kind_prefixes("note").collect();
        assert_eq!(p, ["note"]);
    }

    #[test]
    fn validation_names_the_problem() {
        let base = NewEvent::new(Actor::new("alice", Via::Cli), "note", "www", "hello");
        type Change = Box<dyn Fn(&mut NewEvent)>;
        let cases: Vec<(Change, Option<EventError>)> = vec![
            (Box::new(|_| {}), None),
            (Box::new(|e| e.kind = "Bad Kind".into()), Some(EventError::BadKind("Bad Kind".into()))),
            (Box::new(|e| e.summary = "  ".into()), Some(EventError::EmptySummary)),
            (Box::new(|e| e.summary = "a\nb".into()), Some(EventError::MultilineSummary)),
            (Box::new(|e| e.summary = "x".repeat(501)), Some(EventError::LongSummary(501))),
            (Box::new(|e| e.data = serde_json::json!([1])), Some(EventError::DataNotObject("an array"))),
            (Box::new(|e| e.data = serde_json::Value::Null), None),
            (Box::new(|e| e.summary = "bell\u{7}".into()), Some(EventError::ControlCharacter("summary", 7))),
            (Box::new(|e| e.subject = "a\nb".into()), Some(EventError::ControlCharacter("subject", 10))),
            (Box::new(|e| e.subject = "\u{1b}[2J".into()), Some(EventError::ControlCharacter("subject", 0x1b))),
            (Box::new(|e| e.data = serde_json::json!({"a": ["\u{0}"]})), Some(EventError::ControlCharacter("data", 0))),
            (Box::new(|e| e.summary = "café Ärger ✓".into()), None),
            (
                Box::new(|e| e.links.push(Link { rel: "x".into(), href: "javascript:alert(1)".into() })),
                Some(EventError::BadLink("javascript:alert(1)".into())),
            ),
            (Box::new(|e| e.links.push(Link { rel: "deploy".into(), href: "/deploys/1".into() })), None),
            (
                Box::new(|e| e.links.push(Link { rel: "x".into(), href: "/\\evil.example".into() })),
                Some(EventError::BadLink("/\\evil.example".into())),
            ),
            (
                Box::new(|e| e.links.push(Link { rel: "x".into(), href: "/a\\b".into() })),
                Some(EventError::BadLink("/a\\b".into())),
            ),
        ];
        for (i, (change, want)) in cases.into_iter().enumerate() {
            let mut e = base.clone();
            change(&mut e);
            assert_eq!(e.validate().err(), want, "case {i}");
        }
    }
}
