//! The iCalendar feed: its shape, TEXT escaping, folding at 75 octets on UTF-8 boundaries, CRLF line ends.

mod common;

use common::utc;
use crew_oncall::ical::{escape_text, feed};
use crew_oncall::schedule::{Segment, Source};

fn seg(from: &str, until: &str, user: Option<&str>) -> Segment {
    let source = if user.is_some() { Source::Layer("l".into()) } else { Source::Gap };
    Segment { from: utc(from), until: utc(until), user: user.map(str::to_string), source }
}

/// The logical lines: CRLF split, folded lines joined.
fn unfold(text: &str) -> Vec<String> {
    text.replace("\r\n ", "").split("\r\n").filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[test]
fn one_event_per_person_in_utc_with_crlf() {
    let segs = [
        seg("2026-11-30T08:00Z", "2026-12-01T08:00Z", Some("alice")),
        seg("2026-12-01T08:00Z", "2026-12-01T17:00Z", None),
        seg("2026-12-01T17:00Z", "2026-12-02T08:00Z", Some("bob")),
    ];
    let text = feed("ops", &segs, "ops-", utc("2026-11-29T00:00Z"));
    assert!(text.ends_with("\r\n"));
    assert!(!text.replace("\r\n", "").contains('\n') && !text.replace("\r\n", "").contains('\r'), "only CRLF");
    let lines = unfold(&text);
    assert_eq!(
        lines,
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//crew//on-call//EN",
            "CALSCALE:GREGORIAN",
            "METHOD:PUBLISH",
            "X-WR-CALNAME:ops",
            "BEGIN:VEVENT",
            "UID:ops-20261130T080000Z",
            "DTSTAMP:20261129T000000Z",
            "DTSTART:20261130T080000Z",
            "DTEND:20261201T080000Z",
            "SUMMARY:On call: alice (ops)",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:ops-20261201T170000Z",
            "DTSTAMP:20261129T000000Z",
            "DTSTART:20261201T170000Z",
            "DTEND:20261202T080000Z",
            "SUMMARY:On call: bob (ops)",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
            "END:VCALENDAR",
        ]
    );
    // The same segment keeps its UID in a later feed.
    let later = feed("ops", &segs[2..], "ops-", utc("2026-11-30T00:00Z"));
    assert!(unfold(&later).contains(&"UID:ops-20261201T170000Z".to_string()));
    // No segments, or only gaps: a calendar with no events.
    assert!(!feed("ops", &segs[1..2], "ops-", utc("2026-11-29T00:00Z")).contains("VEVENT"));
}

#[test]
fn text_is_escaped() {
    assert_eq!(escape_text(r"a\b;c,d"), r"a\\b\;c\,d");
    assert_eq!(escape_text("one\ntwo\r\nthree\rfour"), r"one\ntwo\nthree\nfour");
    assert_eq!(escape_text("tab\there"), "tabhere", "other controls are dropped");
    let text = feed(
        "ops; west, \"main\"",
        &[seg("2026-11-30T08:00Z", "2026-12-01T08:00Z", Some("a,b"))],
        "x",
        utc("2026-11-29T00:00Z"),
    );
    let lines = unfold(&text);
    assert!(lines.contains(&r#"X-WR-CALNAME:ops\; west\, "main""#.to_string()), "{lines:?}");
    assert!(lines.contains(&r#"SUMMARY:On call: a\,b (ops\; west\, "main")"#.to_string()), "{lines:?}");
}

#[test]
fn long_lines_fold_at_75_octets_between_characters() {
    // ASCII, two-byte, three-byte and four-byte characters, so cuts fall inside characters unless avoided.
    for filler in ["x", "é", "€", "🦀", "aé€🦀"] {
        let user = filler.repeat(200);
        let segs = [seg("2026-11-30T08:00Z", "2026-12-01T08:00Z", Some(&user))];
        let text = feed("ops", &segs, "ops-", utc("2026-11-29T00:00Z"));
        let physical: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(physical.iter().all(|l| l.len() <= 75), "{filler}: {physical:?}");
        let summary = format!("SUMMARY:On call: {user} (ops)");
        assert!(unfold(&text).contains(&summary), "{filler}: unfolds to the line");
        // Folding used the room: each folded line is full but for less than one character.
        let folded: Vec<&&str> = physical.iter().filter(|l| l.starts_with(' ') || l.starts_with("SUMMARY")).collect();
        assert!(folded.len() > 2, "{filler}");
        for l in &folded[..folded.len() - 1] {
            assert!(l.len() > 75 - 4, "{filler}: {l:?} is {} octets", l.len());
        }
    }
    // A line of exactly 75 octets stays whole.
    let user = "u".repeat(75 - "SUMMARY:On call:  (ops)".len());
    let text =
        feed("ops", &[seg("2026-11-30T08:00Z", "2026-12-01T08:00Z", Some(&user))], "x", utc("2026-11-29T00:00Z"));
    assert!(text.contains(&format!("SUMMARY:On call: {user} (ops)\r\nTRANSP")));
}
