//! Table tests of the schedule math: rotations, restrictions, layer precedence, overrides, gaps, merging, the
//! look-ups around one instant, and the parsers and checks of a configuration.

mod common;

use chrono::{Duration, NaiveTime};
use common::{draw, layer, over, schedule, utc};
use crew_oncall::schedule::{
    check_override, final_schedule, gaps, next_change, on_call_at, parse_span, parse_zone, Layer, Override,
    Restriction, Rotation, Schedule, Segment, Source, REACH_DAYS,
};

fn check(name: &str, s: &Schedule, overrides: &[Override], from: &str, until: &str, want: &[&str]) {
    let got = draw(s.zone, &final_schedule(s, overrides, utc(from), utc(until)));
    assert_eq!(got, want, "case {name}");
}

#[test]
fn rotations() {
    let abc = ["alice", "bob", "carol"];
    let cases: Vec<(&str, Layer, &str, &str, Vec<&str>)> = vec![
        (
            "daily",
            layer("a", &abc, "daily", "2026-03-02T09:00", &[]),
            "2026-03-02T00:00Z",
            "2026-03-06T00:00Z",
            vec![
                "03-02 00:00..03-02 09:00 -",
                "03-02 09:00..03-03 09:00 alice@a",
                "03-03 09:00..03-04 09:00 bob@a",
                "03-04 09:00..03-05 09:00 carol@a",
                "03-05 09:00..03-06 00:00 alice@a",
            ],
        ),
        (
            "weekly",
            layer("w", &["alice", "bob"], "weekly", "2026-03-02T09:00", &[]),
            "2026-03-01T00:00Z",
            "2026-03-20T00:00Z",
            vec![
                "03-01 00:00..03-02 09:00 -",
                "03-02 09:00..03-09 09:00 alice@w",
                "03-09 09:00..03-16 09:00 bob@w",
                "03-16 09:00..03-20 00:00 alice@w",
            ],
        ),
        (
            "12h",
            layer("h", &["alice", "bob"], "12h", "2026-03-02T09:00", &[]),
            "2026-03-02T09:00Z",
            "2026-03-04T09:00Z",
            vec![
                "03-02 09:00..03-02 21:00 alice@h",
                "03-02 21:00..03-03 09:00 bob@h",
                "03-03 09:00..03-03 21:00 alice@h",
                "03-03 21:00..03-04 09:00 bob@h",
            ],
        ),
        (
            "3d",
            layer("d", &abc, "3d", "2026-03-02T09:00", &[]),
            "2026-03-02T09:00Z",
            "2026-03-14T09:00Z",
            vec![
                "03-02 09:00..03-05 09:00 alice@d",
                "03-05 09:00..03-08 09:00 bob@d",
                "03-08 09:00..03-11 09:00 carol@d",
                "03-11 09:00..03-14 09:00 alice@d",
            ],
        ),
        (
            "90m, the window starting inside a shift",
            layer("m", &["alice", "bob"], "90m", "2026-03-02T00:00", &[]),
            "2026-03-02T01:00Z",
            "2026-03-02T04:30Z",
            vec![
                "03-02 01:00..03-02 01:30 alice@m",
                "03-02 01:30..03-02 03:00 bob@m",
                "03-02 03:00..03-02 04:30 alice@m",
            ],
        ),
        (
            "far from the start (the shift is found, not walked to)",
            layer("a", &abc, "daily", "2020-01-01T09:00", &[]),
            "2026-03-02T00:00Z",
            "2026-03-03T00:00Z",
            // 2020-01-01 to 2026-03-02 is 2252 days; 2251 % 3 = 1.
            vec!["03-02 00:00..03-02 09:00 bob@a", "03-02 09:00..03-03 00:00 carol@a"],
        ),
    ];
    for (name, l, from, until, want) in cases {
        check(name, &schedule("UTC", vec![l]), &[], from, until, &want);
    }
}

#[test]
fn restrictions() {
    let ab = ["alice", "bob"];
    let cases: Vec<(&str, Layer, &str, &str, Vec<&str>)> = vec![
        (
            "mon-fri 09-18, weekly",
            layer("w", &ab, "weekly", "2026-03-02T09:00", &[("mon-fri", "09:00", "18:00")]),
            "2026-03-02T00:00Z",
            "2026-03-10T00:00Z",
            vec![
                "03-02 00:00..03-02 09:00 -",
                "03-02 09:00..03-02 18:00 alice@w",
                "03-02 18:00..03-03 09:00 -",
                "03-03 09:00..03-03 18:00 alice@w",
                "03-03 18:00..03-04 09:00 -",
                "03-04 09:00..03-04 18:00 alice@w",
                "03-04 18:00..03-05 09:00 -",
                "03-05 09:00..03-05 18:00 alice@w",
                "03-05 18:00..03-06 09:00 -",
                "03-06 09:00..03-06 18:00 alice@w",
                "03-06 18:00..03-09 09:00 -",
                "03-09 09:00..03-09 18:00 bob@w",
                "03-09 18:00..03-10 00:00 -",
            ],
        ),
        (
            "overnight mon-fri 18-09, daily at 09:00",
            layer("n", &ab, "daily", "2026-03-02T09:00", &[("mon-fri", "18:00", "09:00")]),
            "2026-03-02T00:00Z",
            "2026-03-09T00:00Z",
            vec![
                "03-02 00:00..03-02 18:00 -",
                "03-02 18:00..03-03 09:00 alice@n",
                "03-03 09:00..03-03 18:00 -",
                "03-03 18:00..03-04 09:00 bob@n",
                "03-04 09:00..03-04 18:00 -",
                "03-04 18:00..03-05 09:00 alice@n",
                "03-05 09:00..03-05 18:00 -",
                "03-05 18:00..03-06 09:00 bob@n",
                "03-06 09:00..03-06 18:00 -",
                "03-06 18:00..03-07 09:00 alice@n",
                "03-07 09:00..03-09 00:00 -",
            ],
        ),
        (
            "overnight window crossing a handoff at midnight",
            layer("n", &ab, "daily", "2026-03-02T00:00", &[("mon", "18:00", "09:00")]),
            "2026-03-02T00:00Z",
            "2026-03-04T00:00Z",
            vec![
                "03-02 00:00..03-02 18:00 -",
                "03-02 18:00..03-03 00:00 alice@n",
                "03-03 00:00..03-03 09:00 bob@n",
                "03-03 09:00..03-04 00:00 -",
            ],
        ),
        (
            "sat,sun 00:00-24:00 merges into one weekend",
            layer("e", &["alice"], "daily", "2026-03-02T00:00", &[("sat,sun", "00:00", "24:00")]),
            "2026-03-02T00:00Z",
            "2026-03-09T00:00Z",
            vec!["03-02 00:00..03-07 00:00 -", "03-07 00:00..03-09 00:00 alice@e"],
        ),
        (
            "fri-mon wraps over the week's end; two restrictions add up",
            layer(
                "f",
                &["alice"],
                "weekly",
                "2026-03-02T00:00",
                &[("fri-mon", "10:00", "12:00"), ("wed", "20:00", "22:00")],
            ),
            "2026-03-02T00:00Z",
            "2026-03-09T00:00Z",
            vec![
                "03-02 00:00..03-02 10:00 -",
                "03-02 10:00..03-02 12:00 alice@f",
                "03-02 12:00..03-04 20:00 -",
                "03-04 20:00..03-04 22:00 alice@f",
                "03-04 22:00..03-06 10:00 -",
                "03-06 10:00..03-06 12:00 alice@f",
                "03-06 12:00..03-07 10:00 -",
                "03-07 10:00..03-07 12:00 alice@f",
                "03-07 12:00..03-08 10:00 -",
                "03-08 10:00..03-08 12:00 alice@f",
                "03-08 12:00..03-09 00:00 -",
            ],
        ),
        (
            "restriction windows on the zone's wall clock (Berlin, UTC+1 in March)",
            layer("b", &["alice"], "weekly", "2026-03-02T00:00", &[("mon", "09:00", "18:00")]),
            "2026-03-02T00:00Z",
            "2026-03-03T00:00Z",
            vec!["03-02 01:00..03-02 09:00 -", "03-02 09:00..03-02 18:00 alice@b", "03-02 18:00..03-03 01:00 -"],
        ),
    ];
    for (name, l, from, until, want) in cases {
        let tz = if name.contains("Berlin") { "Europe/Berlin" } else { "UTC" };
        check(name, &schedule(tz, vec![l]), &[], from, until, &want);
    }
}

fn base_and_day() -> Schedule {
    schedule(
        "UTC",
        vec![
            layer("base", &["alice", "bob"], "weekly", "2026-03-02T09:00", &[]),
            layer("day", &["dave"], "daily", "2026-03-02T09:00", &[("mon-fri", "09:00", "18:00")]),
        ],
    )
}

#[test]
fn later_layers_win_where_they_cover_someone() {
    let want = [
        "03-02 09:00..03-02 18:00 dave@day",
        "03-02 18:00..03-03 09:00 alice@base",
        "03-03 09:00..03-03 18:00 dave@day",
        "03-03 18:00..03-04 09:00 alice@base",
    ];
    check("day over base", &base_and_day(), &[], "2026-03-02T09:00Z", "2026-03-04T09:00Z", &want);

    let mut reversed = base_and_day();
    reversed.layers.reverse();
    check(
        "base over day",
        &reversed,
        &[],
        "2026-03-02T09:00Z",
        "2026-03-04T09:00Z",
        &["03-02 09:00..03-04 09:00 alice@base"],
    );

    // The upper layer starts later: the lower one shows until then.
    let s = schedule(
        "UTC",
        vec![
            layer("base", &["alice", "bob"], "daily", "2026-03-01T00:00", &[]),
            layer("new", &["carol", "dave"], "daily", "2026-03-02T12:00", &[]),
        ],
    );
    check(
        "upper layer not started",
        &s,
        &[],
        "2026-03-02T00:00Z",
        "2026-03-03T18:00Z",
        &[
            "03-02 00:00..03-02 12:00 bob@base",
            "03-02 12:00..03-03 12:00 carol@new",
            "03-03 12:00..03-03 18:00 dave@new",
        ],
    );
}

#[test]
fn overrides_win_over_layers() {
    let s = base_and_day();
    let cases: Vec<(&str, Vec<Override>, Vec<&str>)> = vec![
        (
            "across the edge of two layers",
            vec![over("carol", "2026-03-02T17:00Z", "2026-03-02T19:00Z")],
            vec![
                "03-02 09:00..03-02 17:00 dave@day",
                "03-02 17:00..03-02 19:00 carol!",
                "03-02 19:00..03-03 09:00 alice@base",
            ],
        ),
        (
            "reaching over the window",
            vec![over("carol", "2026-03-01T00:00Z", "2026-03-02T12:00Z")],
            vec![
                "03-02 09:00..03-02 12:00 carol!",
                "03-02 12:00..03-02 18:00 dave@day",
                "03-02 18:00..03-03 09:00 alice@base",
            ],
        ),
        (
            "over a gap",
            vec![over("erin", "2026-03-02T06:00Z", "2026-03-02T10:00Z")],
            vec![
                "03-02 06:00..03-02 10:00 erin!",
                "03-02 10:00..03-02 18:00 dave@day",
                "03-02 18:00..03-03 09:00 alice@base",
            ],
        ),
        (
            "overlapping overrides: the later in the slice wins",
            vec![
                over("carol", "2026-03-02T10:00Z", "2026-03-02T14:00Z"),
                over("erin", "2026-03-02T12:00Z", "2026-03-02T13:00Z"),
            ],
            vec![
                "03-02 09:00..03-02 10:00 dave@day",
                "03-02 10:00..03-02 12:00 carol!",
                "03-02 12:00..03-02 13:00 erin!",
                "03-02 13:00..03-02 14:00 carol!",
                "03-02 14:00..03-02 18:00 dave@day",
                "03-02 18:00..03-03 09:00 alice@base",
            ],
        ),
        (
            "an empty override covers nothing",
            vec![over("carol", "2026-03-02T12:00Z", "2026-03-02T12:00Z")],
            vec!["03-02 09:00..03-02 18:00 dave@day", "03-02 18:00..03-03 09:00 alice@base"],
        ),
    ];
    for (name, overrides, want) in cases {
        let from = if name == "over a gap" { "2026-03-02T06:00Z" } else { "2026-03-02T09:00Z" };
        check(name, &s, &overrides, from, "2026-03-03T09:00Z", &want);
    }
}

#[test]
fn gaps_are_segments_and_listed() {
    let s = schedule(
        "UTC",
        vec![layer("w", &["alice", "bob"], "weekly", "2026-03-02T09:00", &[("mon-fri", "09:00", "18:00")])],
    );
    let (from, until) = (utc("2026-03-06T12:00Z"), utc("2026-03-09T12:00Z"));
    assert_eq!(gaps(&s, &[], from, until), vec![(utc("2026-03-06T18:00Z"), utc("2026-03-09T09:00Z"))]);
    let gap = &final_schedule(&s, &[], from, until)[1];
    assert_eq!((gap.user.as_deref(), &gap.source), (None, &Source::Gap));
    // An override fills part of it.
    let o = [over("carol", "2026-03-07T00:00Z", "2026-03-08T00:00Z")];
    assert_eq!(
        gaps(&s, &o, from, until),
        vec![
            (utc("2026-03-06T18:00Z"), utc("2026-03-07T00:00Z")),
            (utc("2026-03-08T00:00Z"), utc("2026-03-09T09:00Z"))
        ]
    );
    // Before a layer's first handoff it covers nobody.
    assert_eq!(gaps(&s, &[], utc("2026-02-01T00:00Z"), utc("2026-03-02T09:00Z")).len(), 1);
}

#[test]
fn merging() {
    let cases: Vec<(&str, Schedule, Vec<Override>, Vec<&str>)> = vec![
        (
            "one person: one segment over every handoff",
            schedule("UTC", vec![layer("a", &["alice"], "daily", "2026-03-02T09:00", &[])]),
            vec![],
            vec!["03-02 09:00..03-09 09:00 alice@a"],
        ),
        (
            "the same person twice in a row",
            schedule("UTC", vec![layer("a", &["alice", "alice", "bob"], "daily", "2026-03-02T09:00", &[])]),
            vec![],
            vec![
                "03-02 09:00..03-04 09:00 alice@a",
                "03-04 09:00..03-05 09:00 bob@a",
                "03-05 09:00..03-07 09:00 alice@a",
                "03-07 09:00..03-08 09:00 bob@a",
                "03-08 09:00..03-09 09:00 alice@a",
            ],
        ),
        (
            "an override of the same person is another source",
            schedule("UTC", vec![layer("a", &["alice"], "daily", "2026-03-02T09:00", &[])]),
            vec![over("alice", "2026-03-03T00:00Z", "2026-03-04T00:00Z")],
            vec![
                "03-02 09:00..03-03 00:00 alice@a",
                "03-03 00:00..03-04 00:00 alice!",
                "03-04 00:00..03-09 09:00 alice@a",
            ],
        ),
        (
            "adjacent overrides of one person merge",
            schedule("UTC", vec![layer("a", &["bob"], "daily", "2026-03-02T09:00", &[])]),
            vec![
                over("alice", "2026-03-03T00:00Z", "2026-03-03T12:00Z"),
                over("alice", "2026-03-03T12:00Z", "2026-03-04T00:00Z"),
            ],
            vec!["03-02 09:00..03-03 00:00 bob@a", "03-03 00:00..03-04 00:00 alice!", "03-04 00:00..03-09 09:00 bob@a"],
        ),
        (
            "one person on two layers stays two segments",
            schedule(
                "UTC",
                vec![
                    layer("x", &["alice"], "daily", "2026-03-02T00:00", &[("daily", "00:00", "12:00")]),
                    layer("y", &["alice"], "daily", "2026-03-02T00:00", &[("daily", "12:00", "24:00")]),
                ],
            ),
            vec![],
            vec![
                "03-02 09:00..03-02 12:00 alice@x",
                "03-02 12:00..03-03 00:00 alice@y",
                "03-03 00:00..03-03 12:00 alice@x",
                "03-03 12:00..03-04 00:00 alice@y",
                "03-04 00:00..03-04 12:00 alice@x",
                "03-04 12:00..03-05 00:00 alice@y",
                "03-05 00:00..03-05 12:00 alice@x",
                "03-05 12:00..03-06 00:00 alice@y",
                "03-06 00:00..03-06 12:00 alice@x",
                "03-06 12:00..03-07 00:00 alice@y",
                "03-07 00:00..03-07 12:00 alice@x",
                "03-07 12:00..03-08 00:00 alice@y",
                "03-08 00:00..03-08 12:00 alice@x",
                "03-08 12:00..03-09 00:00 alice@y",
                "03-09 00:00..03-09 09:00 alice@x",
            ],
        ),
    ];
    for (name, s, overrides, want) in cases {
        check(name, &s, &overrides, "2026-03-02T09:00Z", "2026-03-09T09:00Z", &want);
    }
}

#[test]
fn an_empty_window_is_empty() {
    let s = base_and_day();
    assert!(final_schedule(&s, &[], utc("2026-03-02T09:00Z"), utc("2026-03-02T09:00Z")).is_empty());
    assert!(final_schedule(&s, &[], utc("2026-03-03T09:00Z"), utc("2026-03-02T09:00Z")).is_empty());
    assert!(gaps(&s, &[], utc("2026-03-03T09:00Z"), utc("2026-03-02T09:00Z")).is_empty());
}

fn seg(from: &str, until: &str, user: Option<&str>, source: Source) -> Segment {
    Segment { from: utc(from), until: utc(until), user: user.map(str::to_string), source }
}

#[test]
fn on_call_at_has_the_real_bounds() {
    let s = base_and_day();
    let from_layer = |n: &str| Source::Layer(n.into());
    // The night part of alice's week, between two of dave's days.
    assert_eq!(
        on_call_at(&s, &[], utc("2026-03-03T02:00Z")),
        seg("2026-03-02T18:00Z", "2026-03-03T09:00Z", Some("alice"), from_layer("base"))
    );
    // The weekend: the base layer's whole weekend, beyond the first day's look.
    assert_eq!(
        on_call_at(&s, &[], utc("2026-03-07T12:00Z")),
        seg("2026-03-06T18:00Z", "2026-03-09T09:00Z", Some("alice"), from_layer("base"))
    );
    // A weekly shift, found from its middle.
    let w = schedule("UTC", vec![layer_of(&["alice", "bob"], "weekly")]);
    assert_eq!(
        on_call_at(&w, &[], utc("2026-03-12T12:00Z")),
        seg("2026-03-09T09:00Z", "2026-03-16T09:00Z", Some("bob"), from_layer("w"))
    );
    // Inside an override: the override's bounds.
    let o = [over("carol", "2026-03-10T00:00Z", "2026-03-11T00:00Z")];
    assert_eq!(
        on_call_at(&w, &o, utc("2026-03-10T05:00Z")),
        seg("2026-03-10T00:00Z", "2026-03-11T00:00Z", Some("carol"), Source::Override)
    );
    // Before the first handoff: a gap until it, looked for at most REACH_DAYS back.
    let at = utc("2026-02-20T00:00Z");
    let g = on_call_at(&w, &[], at);
    assert_eq!(
        (g.from, g.until, g.user, g.source),
        (at - Duration::days(REACH_DAYS), utc("2026-03-02T09:00Z"), None, Source::Gap)
    );
    // One person for ever: from the first handoff, cut REACH_DAYS ahead.
    let one = schedule("UTC", vec![layer_of(&["alice"], "daily")]);
    let at = utc("2026-06-01T00:00Z");
    let a = on_call_at(&one, &[], at);
    assert_eq!((a.from, a.until), (utc("2026-03-02T09:00Z"), at + Duration::days(REACH_DAYS)));
    // A long upper-layer segment while the lower layer changes every day under it.
    let two = schedule(
        "UTC",
        vec![
            layer("base", &["alice", "bob"], "daily", "2026-01-01T00:00", &[]),
            layer("top", &["carol", "dave"], "4w", "2026-03-02T09:00", &[]),
        ],
    );
    assert_eq!(
        on_call_at(&two, &[], utc("2026-03-20T00:00Z")),
        seg("2026-03-02T09:00Z", "2026-03-30T09:00Z", Some("carol"), from_layer("top"))
    );
}

fn layer_of(users: &[&str], rotation: &str) -> Layer {
    layer("w", users, rotation, "2026-03-02T09:00", &[])
}

#[test]
fn next_change_skips_the_same_person() {
    let w = schedule("UTC", vec![layer_of(&["alice", "bob"], "weekly")]);
    let at = utc("2026-03-05T00:00Z");
    let week = Duration::days(7);
    assert_eq!(
        next_change(&w, &[], at, week),
        Some(seg("2026-03-09T09:00Z", "2026-03-16T09:00Z", Some("bob"), Source::Layer("w".into())))
    );
    assert_eq!(next_change(&w, &[], at, Duration::days(4)), None, "the change is 4 days 9 hours ahead");
    // An override of alice right after her shift: still alice, so the change is when bob takes over.
    let o = [over("alice", "2026-03-09T09:00Z", "2026-03-10T09:00Z")];
    assert_eq!(
        next_change(&w, &o, at, week),
        Some(seg("2026-03-10T09:00Z", "2026-03-16T09:00Z", Some("bob"), Source::Layer("w".into())))
    );
    // An override of someone else is a change.
    let o = [over("carol", "2026-03-06T00:00Z", "2026-03-06T06:00Z")];
    assert_eq!(
        next_change(&w, &o, at, week),
        Some(seg("2026-03-06T00:00Z", "2026-03-06T06:00Z", Some("carol"), Source::Override))
    );
    // From a gap to the first person.
    let next = next_change(&w, &[], utc("2026-03-01T00:00Z"), week).unwrap();
    assert_eq!((next.from, next.user.as_deref()), (utc("2026-03-02T09:00Z"), Some("alice")));
}

#[test]
fn overrides_are_checked() {
    let existing = [
        over("alice", "2026-03-02T09:00Z", "2026-03-02T18:00Z"),
        over("bob", "2026-03-03T09:00Z", "2026-03-03T18:00Z"),
    ];
    let cases = [
        ("2026-03-02T18:00Z", "2026-03-03T09:00Z", Ok(())),
        ("2026-03-02T00:00Z", "2026-03-02T09:00Z", Ok(())),
        (
            "2026-03-03T17:00Z",
            "2026-03-04T00:00Z",
            Err("overlaps the override for bob from 2026-03-03T09:00:00Z until 2026-03-03T18:00:00Z"),
        ),
        (
            "2026-03-01T00:00Z",
            "2026-03-05T00:00Z",
            Err("overlaps the override for alice from 2026-03-02T09:00:00Z until 2026-03-02T18:00:00Z"),
        ),
        (
            "2026-03-04T00:00Z",
            "2026-03-04T00:00Z",
            Err("an override must end after it starts: from 2026-03-04T00:00:00Z until 2026-03-04T00:00:00Z"),
        ),
    ];
    for (from, until, want) in cases {
        let new = over("carol", from, until);
        assert_eq!(check_override(&existing, &new), want.map_err(str::to_string), "{from}..{until}");
    }
}

#[test]
fn rotations_parse() {
    let ok = [
        ("daily", Rotation::Daily),
        ("Weekly", Rotation::Weekly),
        ("12h", Rotation::Every(Duration::hours(12))),
        ("3d", Rotation::Every(Duration::days(3))),
        ("2w", Rotation::Every(Duration::weeks(2))),
        ("90m", Rotation::Every(Duration::minutes(90))),
        ("1d12h", Rotation::Every(Duration::hours(36))),
    ];
    for (text, want) in ok {
        assert_eq!(Rotation::parse(text), Ok(want), "{text}");
        assert_eq!(Rotation::parse(&want.as_text()), Ok(want), "{text} as text");
    }
    let bad = [
        ("0h", "a rotation must be longer than zero, not \"0h\""),
        ("-3d", "a rotation must be longer than zero, not \"-3d\""),
        ("30s", "a rotation must be at least 1m, not \"30s\""),
        (
            "fortnightly",
            "expected \"daily\", \"weekly\" or a span such as \"12h\", \"3d\", \"2w\", \"90m\", not \"fortnightly\"",
        ),
        ("12", "expected \"daily\", \"weekly\" or a span such as \"12h\", \"3d\", \"2w\", \"90m\", not \"12\""),
        ("", "expected \"daily\", \"weekly\" or a span such as \"12h\", \"3d\", \"2w\", \"90m\", not \"\""),
    ];
    for (text, want) in bad {
        assert_eq!(Rotation::parse(text), Err(want.to_string()), "{text}");
    }
    assert_eq!(parse_span("5m"), Ok(Duration::minutes(5)));
    assert_eq!(parse_span("1h 30m"), Ok(Duration::minutes(90)));
    assert!(parse_span("99999999999999w").unwrap_err().contains("too long"));
}

#[test]
fn restrictions_parse() {
    let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
    let days = |on: &[usize]| {
        let mut d = [false; 7];
        on.iter().for_each(|&i| d[i] = true);
        d
    };
    let ok = [
        (("mon-fri", "09:00", "18:00"), Restriction { days: days(&[0, 1, 2, 3, 4]), from: t("09:00"), to: t("18:00") }),
        (("sat,sun", "00:00", "24:00"), Restriction { days: days(&[5, 6]), from: t("00:00"), to: t("00:00") }),
        (("mon", "18:00", "09:00"), Restriction { days: days(&[0]), from: t("18:00"), to: t("09:00") }),
        (("fri-mon", "9:30", "17:00"), Restriction { days: days(&[4, 5, 6, 0]), from: t("09:30"), to: t("17:00") }),
        (("daily", "00:00", "12:00"), Restriction { days: [true; 7], from: t("00:00"), to: t("12:00") }),
        (("all", "00:00", "12:00"), Restriction { days: [true; 7], from: t("00:00"), to: t("12:00") }),
        (
            ("Mon-Wed, Friday", "08:00", "09:00"),
            Restriction { days: days(&[0, 1, 2, 4]), from: t("08:00"), to: t("09:00") },
        ),
    ];
    for ((d, f, to), want) in ok {
        assert_eq!(Restriction::parse(d, f, to), Ok(want), "{d} {f} {to}");
    }
    assert_eq!(Restriction::parse("fri-mon", "09:00", "17:00").unwrap().days_text(), "mon,fri-sun");
    assert_eq!(Restriction::parse("mon-fri", "09:00", "17:00").unwrap().days_text(), "mon-fri");
    let bad = [
        (
            ("funday", "09:00", "18:00"),
            "days: expected days such as \"mon-fri\", \"sat,sun\", \"fri-mon\", \"mon\" or \"daily\", not \"funday\"",
        ),
        (
            ("mon,", "09:00", "18:00"),
            "days: expected days such as \"mon-fri\", \"sat,sun\", \"fri-mon\", \"mon\" or \"daily\", not \"mon,\"",
        ),
        (("mon", "24:00", "18:00"), "from: expected a time of day \"HH:MM\" (00:00 to 23:59), not \"24:00\""),
        (("mon", "09:00", "25:00"), "to: expected a time of day \"HH:MM\" (00:00 to 24:00), not \"25:00\""),
        (("mon", "9", "18:00"), "from: expected a time of day \"HH:MM\" (00:00 to 23:59), not \"9\""),
    ];
    for ((d, f, to), want) in bad {
        assert_eq!(Restriction::parse(d, f, to), Err(want.to_string()), "{d} {f} {to}");
    }
}

#[test]
fn zones_parse() {
    assert_eq!(parse_zone("Europe/Berlin"), Ok(chrono_tz::Europe::Berlin));
    assert_eq!(
        parse_zone("Mars/Olympus"),
        Err("unknown time zone \"Mars/Olympus\": expected an IANA name such as \"Europe/Berlin\" or \"UTC\"".into())
    );
}

#[test]
fn schedules_are_checked() {
    let good = || base_and_day();
    type Spoil = Box<dyn Fn(&mut Schedule)>;
    let cases: Vec<(Spoil, &str)> = vec![
        (Box::new(|s| s.layers.clear()), "layers: a schedule needs at least one layer"),
        (Box::new(|s| s.name.clear()), "name: a schedule needs a name"),
        (Box::new(|s| s.layers[1].users.clear()), "layers[1].users: a layer needs at least one user"),
        (Box::new(|s| s.layers[1].users.push(" ".into())), "layers[1].users[1]: a user needs a name"),
        (Box::new(|s| s.layers[1].name = "base".into()), "layers[1].name: \"base\" is already the name of layers[0]"),
        (Box::new(|s| s.layers[0].name.clear()), "layers[0].name: a layer needs a name"),
        (
            Box::new(|s| s.layers[0].rotation = Rotation::Every(Duration::zero())),
            "layers[0].rotation: a rotation must be longer than zero",
        ),
        (
            Box::new(|s| s.layers[0].rotation = Rotation::Every(Duration::hours(-2))),
            "layers[0].rotation: a rotation must be longer than zero",
        ),
        (
            Box::new(|s| s.layers[1].restrict[0].days = [false; 7]),
            "layers[1].restrict[0].days: a restriction needs at least one day",
        ),
    ];
    assert_eq!(good().check(), Ok(()));
    for (spoil, want) in cases {
        let mut s = good();
        spoil(&mut s);
        assert_eq!(s.check(), Err(want.to_string()));
    }
}

#[test]
fn unchecked_schedules_do_not_panic() {
    let mut s = base_and_day();
    s.layers[0].users.clear();
    s.layers[1].rotation = Rotation::Every(Duration::zero());
    let segs = final_schedule(&s, &[], utc("2026-03-02T00:00Z"), utc("2026-03-03T00:00Z"));
    assert_eq!(draw(s.zone, &segs), ["03-02 00:00..03-03 00:00 -"]);
    assert_eq!(on_call_at(&s, &[], utc("2026-03-02T12:00Z")).source, Source::Gap);
}

#[test]
fn segments_serialise_with_their_source() {
    let segs = final_schedule(
        &base_and_day(),
        &[over("carol", "2026-03-02T17:00Z", "2026-03-02T18:00Z")],
        utc("2026-03-02T08:00Z"),
        utc("2026-03-02T19:00Z"),
    );
    let json = serde_json::to_value(&segs).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"from": "2026-03-02T08:00:00Z", "until": "2026-03-02T09:00:00Z", "user": null, "source": {"type": "gap"}},
            {"from": "2026-03-02T09:00:00Z", "until": "2026-03-02T17:00:00Z", "user": "dave", "source": {"type": "layer", "layer": "day"}},
            {"from": "2026-03-02T17:00:00Z", "until": "2026-03-02T18:00:00Z", "user": "carol", "source": {"type": "override"}},
            {"from": "2026-03-02T18:00:00Z", "until": "2026-03-02T19:00:00Z", "user": "alice", "source": {"type": "layer", "layer": "base"}},
        ])
    );
    let o: Override =
        serde_json::from_str(r#"{"user":"carol","from":"2026-03-02T17:00:00Z","until":"2026-03-02T18:00:00Z"}"#)
            .unwrap();
    assert_eq!(o, over("carol", "2026-03-02T17:00Z", "2026-03-02T18:00Z"));
}
