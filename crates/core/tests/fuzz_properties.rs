//! The times_and_events fuzz target's properties (fuzz/fuzz_targets/times_and_events.rs) as proptest tests, a
//! few seconds each, so CI catches a regression without nightly tools.

use chrono::{DateTime, Utc};
use crew_core::filter::{parse_pairs, MAX_LIMIT};
use crew_core::time::{parse_span, parse_time};
use crew_core::{Actor, Link, NewEvent, Via};
use proptest::prelude::*;

const EARLIEST: i64 = -62_167_219_200;
const LATEST: i64 = 253_402_300_799;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// The server's clock: any second of the years 0 to 9999.
fn now() -> impl Strategy<Value = DateTime<Utc>> {
    (EARLIEST..=LATEST).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

/// Times as people write them, and near misses: spans, Unix seconds, RFC 3339, with signs and big numbers.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{0,20}[smhdwx]?([0-9]{0,20}[smhdw])?",
        "[0-9]{1,25}",
        "[+-]?[0-9]{4,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        " *\\PC{0,30} *",
    ]
}

fn time_holds(text: &str, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    if let Ok(t) = parse_time(text, now) {
        prop_assert!((EARLIEST..=LATEST).contains(&t.timestamp()), "{:?} → {}", text, t);
    }
    let _ = parse_span(text);
    Ok(())
}

fn pairs_hold(pairs: &[(String, String)], paged: bool, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    if let Ok(f) = parse_pairs(pairs, paged, now) {
        prop_assert!(f.validate().is_ok());
        prop_assert!((1..=MAX_LIMIT).contains(&f.limit));
    }
    Ok(())
}

fn event_holds(mut e: NewEvent) -> Result<(), TestCaseError> {
    if e.validate().is_ok() {
        let n = e.summary.chars().count();
        prop_assert!((1..=500).contains(&n));
        prop_assert!(!e.summary.contains(['\n', '\r']) && !e.summary.chars().any(char::is_control));
        prop_assert!(e.subject.chars().count() <= 200);
        prop_assert!(e.data.is_object());
        let before = e.clone();
        prop_assert!(e.validate().is_ok());
        prop_assert_eq!(e, before);
    }
    Ok(())
}

fn pair() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        Just("kind"),
        Just("subject"),
        Just("actor"),
        Just("q"),
        Just("since"),
        Just("until"),
        Just("limit"),
        Just("cursor"),
        Just("other"),
    ];
    let value = prop_oneof![time_text(), "[a-z.]{0,10}", "-?[0-9]{0,12}", Just(String::new())];
    (key, value).prop_map(|(k, v)| (k.to_string(), v))
}

fn event() -> impl Strategy<Value = NewEvent> {
    let kind = prop_oneof!["[a-z_]{1,10}(\\.[a-z0-9_]{1,10}){0,3}", "\\PC{0,70}"];
    let text = prop_oneof!["[a-z ]{0,40}", "\\PC{0,40}", "\\PC{490,510}", Just(" \n ".to_string())];
    let data = prop_oneof![
        Just("{}"),
        Just("null"),
        Just("[1]"),
        Just("\"s\""),
        Just("{\"a\":\"\\u0000\"}"),
        Just("{\"a\":{\"b\":[1,\"x\"]}}")
    ];
    let link = (
        prop_oneof![Just("deploy".to_string()), "\\PC{0,40}"],
        prop_oneof![Just("/deploys/1"), Just("//evil"), Just("https://x"), Just("ftp://x")],
    );
    (kind, text.clone(), text, "\\PC{0,110}", data, proptest::collection::vec(link, 0..22)).prop_map(
        |(kind, subject, summary, actor, data, links)| {
            let mut e = NewEvent::new(Actor::new(actor, Via::Api), &kind, &subject, summary)
                .with_data(serde_json::from_str(data).unwrap());
            e.links = links.into_iter().map(|(rel, href)| Link { rel, href: href.to_string() }).collect();
            e
        },
    )
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn times_and_spans(text in time_text(), now in now()) {
        time_holds(&text, now)?;
    }

    #[test]
    fn times_at_the_ends_of_the_clock(text in time_text(), end in prop_oneof![Just(EARLIEST), Just(LATEST)]) {
        time_holds(&text, DateTime::from_timestamp(end, 0).unwrap())?;
    }

    #[test]
    fn filters_from_query_pairs(pairs in proptest::collection::vec(pair(), 0..6), paged in any::<bool>(), now in now()) {
        pairs_hold(&pairs, paged, now)?;
    }

    #[test]
    fn events_validate(e in event()) {
        event_holds(e)?;
    }
}
