//! The iCalendar feed: its shape, local times with TZID and a VTIMEZONE of the zone's real transitions, UTC where
//! a local time is ambiguous, whole seconds, TEXT escaping, folding at 75 octets on UTF-8 boundaries, CRLF.

mod common;

use common::{utc, zone};
use crew_oncall::ical::{escape_text, feed, transitions, Shift, Transition};
use crew_oncall::schedule::{Segment, Source};

fn shift(tz: &str, from: &str, until: &str, user: &str) -> Shift {
    Shift {
        schedule: "ops".into(),
        zone: zone(tz),
        user: user.into(),
        from: utc(from),
        until: utc(until),
        source: Source::Layer("l".into()),
    }
}

/// The logical lines: CRLF split, folded lines joined.
fn unfold(text: &str) -> Vec<String> {
    text.replace("\r\n ", "").split("\r\n").filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// The lines of the first component named `name`.
fn component(lines: &[String], name: &str) -> Vec<String> {
    let a = lines.iter().position(|l| *l == format!("BEGIN:{name}")).unwrap_or_else(|| panic!("no {name}"));
    let b = a + lines[a..].iter().position(|l| *l == format!("END:{name}")).unwrap();
    lines[a..=b].to_vec()
}

#[test]
fn utc_schedules_are_written_in_utc_with_no_vtimezone() {
    let segs = [
        Segment {
            from: utc("2026-11-30T08:00Z"),
            until: utc("2026-12-01T08:00Z"),
            user: Some("alice".into()),
            source: Source::Layer("l".into()),
        },
        Segment { from: utc("2026-12-01T08:00Z"), until: utc("2026-12-01T17:00Z"), user: None, source: Source::Gap },
        Segment {
            from: utc("2026-12-01T17:00Z"),
            until: utc("2026-12-02T08:00Z"),
            user: Some("bob".into()),
            source: Source::Override,
        },
    ];
    let s = common::schedule("UTC", vec![common::layer("l", &["alice"], "daily", "2026-01-01T08:00", &[])]);
    let shifts = Shift::of(&s, &segs);
    assert_eq!(shifts.len(), 2, "the gap is left out");
    let text = feed("On call: ops", &shifts, utc("2026-11-29T00:00Z"));
    assert!(text.ends_with("\r\n"));
    assert!(!text.replace("\r\n", "").contains('\n') && !text.replace("\r\n", "").contains('\r'), "only CRLF");
    assert_eq!(
        unfold(&text),
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//crew//on-call//EN",
            "CALSCALE:GREGORIAN",
            "METHOD:PUBLISH",
            "X-WR-CALNAME:On call: ops",
            "BEGIN:VEVENT",
            "UID:20261130T080000Z-ops-alice@crew",
            "DTSTAMP:20261129T000000Z",
            "DTSTART:20261130T080000Z",
            "DTEND:20261201T080000Z",
            "SUMMARY:On call: alice (ops)",
            "DESCRIPTION:alice is on call for ops (layer l)",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:20261201T170000Z-ops-bob@crew",
            "DTSTAMP:20261129T000000Z",
            "DTSTART:20261201T170000Z",
            "DTEND:20261202T080000Z",
            "SUMMARY:On call: bob (ops)",
            "DESCRIPTION:bob is on call for ops (an override)",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
            "END:VCALENDAR",
        ]
    );
    // The same shift keeps its UID in a later feed; no shifts: a calendar with no events.
    let later = feed("On call: ops", &shifts[1..], utc("2026-11-30T00:00Z"));
    assert!(unfold(&later).contains(&"UID:20261201T170000Z-ops-bob@crew".to_string()));
    assert!(!feed("On call: ops", &[], utc("2026-11-29T00:00Z")).contains("VEVENT"));
}

#[test]
fn zone_transitions_are_found_to_the_second() {
    let berlin = transitions(zone("Europe/Berlin"), utc("2026-01-01T00:00Z"), utc("2027-01-01T00:00Z"));
    assert_eq!(
        berlin,
        [
            Transition {
                at: utc("2026-03-29T01:00Z"),
                before: 3600,
                after: 7200,
                dst: true,
                name: Some("CEST".into())
            },
            Transition {
                at: utc("2026-10-25T01:00Z"),
                before: 7200,
                after: 3600,
                dst: false,
                name: Some("CET".into())
            },
        ]
    );
    let ny = transitions(zone("America/New_York"), utc("2026-01-01T00:00Z"), utc("2027-01-01T00:00Z"));
    let at: Vec<_> = ny.iter().map(|t| (t.at, t.after)).collect();
    assert_eq!(at, [(utc("2026-03-08T07:00Z"), -4 * 3600), (utc("2026-11-01T06:00Z"), -5 * 3600)]);
    // Lord Howe moves its clock by half an hour; Tokyo not at all.
    let lh = transitions(zone("Australia/Lord_Howe"), utc("2026-01-01T00:00Z"), utc("2027-01-01T00:00Z"));
    assert_eq!(lh.iter().map(|t| t.after - t.before).collect::<Vec<_>>(), [-1800, 1800]);
    assert!(transitions(zone("Asia/Tokyo"), utc("2026-01-01T00:00Z"), utc("2027-01-01T00:00Z")).is_empty());
}

#[test]
fn local_times_with_tzid_and_a_vtimezone_of_the_real_transitions() {
    // Two weeks across the spring-forward change, and one shift ending in the fall-back fold.
    let shifts = [
        shift("Europe/Berlin", "2026-03-23T08:00Z", "2026-03-30T07:00Z", "alice"),
        shift("Europe/Berlin", "2026-03-30T07:00Z", "2026-10-25T00:30Z", "bob"),
        shift("Europe/Berlin", "2026-10-25T00:30Z", "2026-10-25T01:30Z", "carol"),
        shift("Europe/Berlin", "2026-10-25T01:30Z", "2026-10-26T08:00Z", "dave"),
    ];
    let lines = unfold(&feed("On call: ops", &shifts, utc("2026-03-01T00:00Z")));
    // The observance in force at the start (the fall-back of 2025), then the two changes of 2026.
    assert_eq!(
        component(&lines, "VTIMEZONE"),
        [
            "BEGIN:VTIMEZONE",
            "TZID:Europe/Berlin",
            "BEGIN:STANDARD",
            "DTSTART:20251026T030000",
            "TZOFFSETFROM:+0200",
            "TZOFFSETTO:+0100",
            "TZNAME:CET",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:20260329T020000",
            "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0200",
            "TZNAME:CEST",
            "END:DAYLIGHT",
            "BEGIN:STANDARD",
            "DTSTART:20261025T030000",
            "TZOFFSETFROM:+0200",
            "TZOFFSETTO:+0100",
            "TZNAME:CET",
            "END:STANDARD",
            "END:VTIMEZONE",
        ]
    );
    let events = lines.iter().position(|l| l == "END:VTIMEZONE").unwrap();
    let times: Vec<&str> = lines[events..]
        .iter()
        .filter(|l| l.starts_with("DTSTART") || l.starts_with("DTEND"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        times,
        [
            // 09:00 CET to 09:00 CEST: a week less an hour, both on the wall clock.
            "DTSTART;TZID=Europe/Berlin:20260323T090000",
            "DTEND;TZID=Europe/Berlin:20260330T090000",
            "DTSTART;TZID=Europe/Berlin:20260330T090000",
            // 02:30 happens twice on 25 October: the instant is written in UTC, the first 02:30 ...
            "DTEND:20261025T003000Z",
            "DTSTART:20261025T003000Z",
            // ... and the second.
            "DTEND:20261025T013000Z",
            "DTSTART:20261025T013000Z",
            "DTEND;TZID=Europe/Berlin:20261026T090000",
        ]
    );
}

#[test]
fn several_zones_each_have_their_vtimezone_and_utc_needs_none() {
    let mut ny = shift("America/New_York", "2026-06-01T13:00Z", "2026-06-02T13:00Z", "alice");
    ny.schedule = "db".into();
    let shifts = [
        shift("Europe/Berlin", "2026-06-01T07:00Z", "2026-06-01T15:00Z", "alice"),
        ny,
        shift("UTC", "2026-06-03T00:00Z", "2026-06-04T00:00Z", "alice"),
        shift("Asia/Tokyo", "2026-06-05T00:00Z", "2026-06-06T00:00Z", "alice"),
    ];
    let lines = unfold(&feed("On call: alice", &shifts, utc("2026-06-01T00:00Z")));
    let zones: Vec<&String> = lines.iter().filter(|l| l.starts_with("TZID:")).collect();
    assert_eq!(zones, ["TZID:Europe/Berlin", "TZID:America/New_York", "TZID:Asia/Tokyo"]);
    assert!(lines.contains(&"DTSTART;TZID=America/New_York:20260601T090000".to_string()));
    assert!(lines.contains(&"DTSTART:20260603T000000Z".to_string()));
    // A zone with no change for years: one observance, its offset since 1970.
    let tokyo = lines.iter().position(|l| l == "TZID:Asia/Tokyo").unwrap();
    assert_eq!(
        lines[tokyo + 1..tokyo + 7],
        [
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            "TZOFFSETFROM:+0900",
            "TZOFFSETTO:+0900",
            "TZNAME:JST",
            "END:STANDARD"
        ]
    );
    assert!(lines.contains(&"DTSTART;TZID=Asia/Tokyo:20260605T090000".to_string()));
}

#[test]
fn times_round_up_to_the_second() {
    let mut s = shift("UTC", "2026-06-01T10:00Z", "2026-06-01T10:05Z", "alice");
    s.from += chrono::Duration::milliseconds(1);
    s.until += chrono::Duration::milliseconds(999);
    let mut tiny = shift("UTC", "2026-06-01T11:00Z", "2026-06-01T11:00Z", "bob");
    tiny.from += chrono::Duration::milliseconds(100);
    tiny.until += chrono::Duration::milliseconds(900);
    let lines = unfold(&feed("x", &[s, tiny], utc("2026-06-01T00:00Z")));
    assert!(lines.contains(&"DTSTART:20260601T100001Z".to_string()), "{lines:?}");
    assert!(lines.contains(&"DTEND:20260601T100501Z".to_string()), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("bob")), "a shift within one second is left out");
}

#[test]
fn text_is_escaped() {
    assert_eq!(escape_text(r"a\b;c,d"), r"a\\b\;c\,d");
    assert_eq!(escape_text("one\ntwo\r\nthree\rfour"), r"one\ntwo\nthree\nfour");
    assert_eq!(escape_text("tab\there"), "tabhere", "other controls are dropped");
    let mut s = shift("UTC", "2026-11-30T08:00Z", "2026-12-01T08:00Z", "a,b");
    s.schedule = "ops; west, \"main\"".into();
    let lines = unfold(&feed("On call: ops; west", &[s], utc("2026-11-29T00:00Z")));
    assert!(lines.contains(&r#"X-WR-CALNAME:On call: ops\; west"#.to_string()), "{lines:?}");
    assert!(lines.contains(&r#"SUMMARY:On call: a\,b (ops\; west\, "main")"#.to_string()), "{lines:?}");
}

#[test]
fn long_lines_fold_at_75_octets_between_characters() {
    // ASCII, two-byte, three-byte and four-byte characters, so cuts fall inside characters unless avoided.
    for filler in ["x", "é", "€", "🦀", "aé€🦀"] {
        let user = filler.repeat(200);
        let text =
            feed("ops", &[shift("UTC", "2026-11-30T08:00Z", "2026-12-01T08:00Z", &user)], utc("2026-11-29T00:00Z"));
        let physical: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(physical.iter().all(|l| l.len() <= 75), "{filler}: {physical:?}");
        let summary = format!("SUMMARY:On call: {user} (ops)");
        assert!(unfold(&text).contains(&summary), "{filler}: unfolds to the line");
        // Folding used the room: each folded line is full but for less than one character.
        let start = physical.iter().position(|l| l.starts_with("SUMMARY")).unwrap();
        let folded: Vec<&&str> =
            physical[start..].iter().take_while(|l| l.starts_with(' ') || l.starts_with("SUMMARY")).collect();
        assert!(folded.len() > 2, "{filler}");
        for l in &folded[..folded.len() - 1] {
            assert!(l.len() > 75 - 4, "{filler}: {l:?} is {} octets", l.len());
        }
    }
    // A line of exactly 75 octets stays whole.
    let user = "u".repeat(75 - "SUMMARY:On call:  (ops)".len());
    let text = feed("x", &[shift("UTC", "2026-11-30T08:00Z", "2026-12-01T08:00Z", &user)], utc("2026-11-29T00:00Z"));
    assert!(text.contains(&format!("SUMMARY:On call: {user} (ops)\r\nDESCRIPTION")));
}
