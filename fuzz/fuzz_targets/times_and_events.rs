//! Times and spans as users write them, timeline filters from query pairs, and `NewEvent::validate`.
//! Oracle: no panic; a parsed time is within the years 0 to 9999; a filter that parses validates, with a limit
//! in 1..=1000; an event that validates has a one-line printable summary of 1 to 500 characters, a subject of
//! at most 200, an object for data, and validates again unchanged.
#![no_main]

use chrono::{DateTime, Utc};
use crew_core::filter::{parse_pairs, MAX_LIMIT};
use crew_core::time::{parse_span, parse_time};
use crew_core::{Actor, Link, NewEvent, Via};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    now: i64,
    time: String,
    pairs: Vec<(String, String)>,
    paged: bool,
    kind: String,
    subject: String,
    summary: String,
    actor: String,
    data: String,
    links: Vec<(String, String)>,
}

const EARLIEST: i64 = -62_167_219_200;
const LATEST: i64 = 253_402_300_799;

fuzz_target!(|i: Input| {
    // The server's clock: any time in the years 0 to 9999.
    let secs = EARLIEST + i.now.rem_euclid(LATEST - EARLIEST + 1);
    let now: DateTime<Utc> = DateTime::from_timestamp(secs, 0).unwrap();
    if let Ok(t) = parse_time(&i.time, now) {
        assert!((EARLIEST..=LATEST).contains(&t.timestamp()), "{:?} → {t}", i.time);
    }
    let _ = parse_span(&i.time);
    if let Ok(f) = parse_pairs(&i.pairs, i.paged, now) {
        assert!(f.validate().is_ok());
        assert!((1..=MAX_LIMIT).contains(&f.limit));
    }
    let data = serde_json::from_str(&i.data).unwrap_or(serde_json::Value::String(i.data.clone()));
    let mut e = NewEvent::new(Actor::new(i.actor, Via::Api), &i.kind, &i.subject, i.summary).with_data(data);
    e.links = i.links.into_iter().map(|(rel, href)| Link { rel, href }).collect();
    if e.validate().is_ok() {
        let n = e.summary.chars().count();
        assert!((1..=500).contains(&n));
        assert!(!e.summary.contains(['\n', '\r']) && !e.summary.chars().any(char::is_control));
        assert!(e.subject.chars().count() <= 200);
        assert!(e.data.is_object());
        let before = e.clone();
        assert!(e.validate().is_ok());
        assert_eq!(e, before);
    }
});
