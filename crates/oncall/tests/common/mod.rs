//! Helpers shared by the integration tests: times, layers and schedules written short, segments drawn as text.
#![allow(dead_code)]

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use crew_oncall::schedule::{Layer, Override, Restriction, Rotation, Schedule, Segment, Source};

/// `"2026-03-02T09:00Z"` or `"2026-03-02T09:00:30Z"`.
pub fn utc(s: &str) -> DateTime<Utc> {
    let s = s.trim_end_matches('Z');
    let fmt = if s.len() > 16 { "%Y-%m-%dT%H:%M:%S" } else { "%Y-%m-%dT%H:%M" };
    NaiveDateTime::parse_from_str(s, fmt).unwrap_or_else(|e| panic!("{s}: {e}")).and_utc()
}

/// `"2026-03-02T09:00"`, a wall time.
pub fn wall(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn zone(s: &str) -> Tz {
    crew_oncall::parse_zone(s).unwrap()
}

/// A layer: `restrict` as `(days, from, to)`.
pub fn layer(name: &str, users: &[&str], rotation: &str, start: &str, restrict: &[(&str, &str, &str)]) -> Layer {
    Layer {
        name: name.into(),
        users: users.iter().map(|u| u.to_string()).collect(),
        rotation: Rotation::parse(rotation).unwrap(),
        start: wall(start),
        restrict: restrict.iter().map(|(d, f, t)| Restriction::parse(d, f, t).unwrap()).collect(),
    }
}

pub fn schedule(tz: &str, layers: Vec<Layer>) -> Schedule {
    let s = Schedule { name: "ops".into(), zone: zone(tz), layers };
    s.check().unwrap();
    s
}

pub fn over(user: &str, from: &str, until: &str) -> Override {
    Override { user: user.into(), from: utc(from), until: utc(until) }
}

/// A segment as `"FROM..UNTIL WHO"` in the zone's wall time (`%m-%d %H:%M`), WHO being `user@layer`,
/// `user!` for an override or `-` for a gap.
pub fn draw(tz: Tz, segs: &[Segment]) -> Vec<String> {
    segs.iter()
        .map(|g| {
            let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%m-%d %H:%M").to_string();
            let who = match (&g.user, &g.source) {
                (None, Source::Gap) => "-".to_string(),
                (Some(u), Source::Override) => format!("{u}!"),
                (Some(u), Source::Layer(l)) => format!("{u}@{l}"),
                (u, s) => panic!("user {u:?} with source {s:?}"),
            };
            format!("{}..{} {who}", t(g.from), t(g.until))
        })
        .collect()
}
