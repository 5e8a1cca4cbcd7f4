//! Daylight-saving time: handoffs stay on the zone's wall clock over 2026–2028 in six zones (both hemispheres,
//! a transition at midnight, a 30-minute and a 45-minute-offset zone), a wall time in a spring-forward gap
//! lands on the jump, and an ambiguous one in a fall-back fold takes the earlier instant.
//!
//! The expected instants of the tables come from the system's tz database (Python's zoneinfo), the
//! transitions of the loops from chrono-tz's UTC offsets, not from the crate's own conversion.

mod common;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use common::{layer, schedule, utc, wall, zone};
use crew_oncall::schedule::{final_schedule, local_to_utc, Schedule};

const ZONES: [&str; 6] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
];

fn offset(tz: Tz, t: DateTime<Utc>) -> i64 {
    tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc() as i64
}

/// `(instant, offset before, offset after)` of every change of UTC offset in `[from, until)`, to the second.
fn transitions(tz: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<(DateTime<Utc>, i64, i64)> {
    let mut out = Vec::new();
    let mut t = from;
    while t < until {
        let next = t + Duration::hours(1);
        let (a, b) = (offset(tz, t), offset(tz, next));
        if a != b {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(tz, mid) == a {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push((hi, a, b));
        }
        t = next;
    }
    out
}

fn years() -> (NaiveDateTime, NaiveDateTime) {
    (wall("2026-01-01T00:00"), wall("2029-01-01T00:00"))
}

/// The handoffs (segment starts after the first) of `s` over 2026–2028 in its zone.
fn handoffs(s: &Schedule) -> Vec<DateTime<Utc>> {
    let (from, until) = years();
    let segs = final_schedule(s, &[], local_to_utc(s.zone, from), local_to_utc(s.zone, until));
    segs.iter().skip(1).map(|g| g.from).collect()
}

#[test]
fn daily_0900_handoffs_stay_at_0900_wall_time_for_three_years() {
    let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
    let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    for name in ZONES {
        let tz = zone(name);
        let s = schedule(name, vec![layer("d", &["a", "b", "c"], "daily", "2026-01-01T09:00", &[])]);
        let hs = handoffs(&s);
        assert_eq!(hs.len(), 365 + 365 + 366, "{name}: one handoff a day");
        for (i, h) in hs.iter().enumerate() {
            let local = h.with_timezone(&tz);
            assert_eq!(
                (local.date_naive(), local.time()),
                (first + Duration::days(i as i64), nine),
                "{name}: handoff {i}"
            );
            let expected = tz.from_local_datetime(&local.naive_local()).single().map(|t| t.with_timezone(&Utc));
            assert_eq!(expected, Some(*h), "{name}: 09:00 is one instant");
        }
        // The shifts over a change are a DST step longer or shorter than 24 h, the others 24 h.
        let changes = transitions(tz, hs[0], *hs.last().unwrap());
        assert_eq!(changes.len(), 6, "{name}: two changes a year");
        for w in hs.windows(2) {
            let inside: i64 = changes.iter().filter(|c| w[0] < c.0 && c.0 <= w[1]).map(|c| c.2 - c.1).sum();
            assert_eq!((w[1] - w[0]).num_seconds(), 86_400 - inside, "{name}: the shift from {}", w[0]);
        }
    }
}

#[test]
fn a_12h_rotation_hands_off_at_0900_and_2100_across_dst() {
    for name in ZONES {
        let tz = zone(name);
        let s = schedule(name, vec![layer("h", &["a", "b"], "12h", "2026-01-01T09:00", &[])]);
        let hs = handoffs(&s);
        assert_eq!(hs.len(), 2 * (365 + 365 + 366), "{name}");
        for (i, h) in hs.iter().enumerate() {
            let hour = if i % 2 == 0 { 9 } else { 21 };
            assert_eq!(
                h.with_timezone(&tz).time(),
                NaiveTime::from_hms_opt(hour, 0, 0).unwrap(),
                "{name}: handoff {i}"
            );
        }
        // The users alternate through the changes.
        let segs = final_schedule(&s, &[], hs[0], hs[hs.len() - 1]);
        assert!(segs.windows(2).all(|w| w[0].user != w[1].user), "{name}");
    }
}

/// The handoff on the day of `at` of a daily rotation at `at`'s wall time, started three days before.
fn handoff_that_day(name: &str, at: NaiveDateTime) -> (DateTime<Utc>, Vec<DateTime<Utc>>) {
    let start = (at - Duration::days(3)).format("%Y-%m-%dT%H:%M").to_string();
    let s = schedule(name, vec![layer("d", &["a", "b"], "daily", &start, &[])]);
    let around = local_to_utc(s.zone, at);
    let segs = final_schedule(&s, &[], around - Duration::hours(36), around + Duration::hours(36));
    let bounds: Vec<DateTime<Utc>> = segs.iter().skip(1).map(|g| g.from).collect();
    assert_eq!(bounds.len(), 3, "{name} {at}: three handoffs in three days");
    (bounds[1], bounds)
}

#[test]
fn a_handoff_in_a_spring_forward_gap_lands_on_the_jump() {
    let table = [
        ("Europe/Berlin", "2026-03-29T02:30", "2026-03-29T01:00Z"),
        ("America/New_York", "2026-03-08T02:30", "2026-03-08T07:00Z"),
        ("Australia/Sydney", "2026-10-04T02:30", "2026-10-03T16:00Z"),
        ("America/Santiago", "2026-09-06T00:30", "2026-09-06T04:00Z"),
        ("Australia/Lord_Howe", "2026-10-04T02:15", "2026-10-03T15:30Z"),
        ("Pacific/Chatham", "2026-09-27T03:00", "2026-09-26T14:00Z"),
    ];
    for (name, at, want) in table {
        assert_eq!(handoff_that_day(name, wall(at)).0, utc(want), "{name} {at}");
        assert_eq!(local_to_utc(zone(name), wall(at)), utc(want), "{name} {at}");
    }
    // Every spring-forward change of the three years, at a wall time in the middle of its gap.
    for name in ZONES {
        let tz = zone(name);
        let (from, until) = years();
        let springs: Vec<_> =
            transitions(tz, from.and_utc(), until.and_utc()).into_iter().filter(|c| c.2 > c.1).collect();
        assert_eq!(springs.len(), 3, "{name}");
        for (jump, before, after) in springs {
            let gap_start = jump.naive_utc() + Duration::seconds(before);
            let at = gap_start + Duration::seconds((after - before) / 2);
            assert!(tz.from_local_datetime(&at).single().is_none(), "{name}: {at} is in the gap");
            let (h, bounds) = handoff_that_day(name, at);
            assert_eq!(h, jump, "{name} {at}");
            // The days around it keep the wall time.
            assert_eq!(bounds[0].with_timezone(&tz).naive_local(), at - Duration::days(1), "{name}");
            assert_eq!(bounds[2].with_timezone(&tz).naive_local(), at + Duration::days(1), "{name}");
        }
    }
}

#[test]
fn a_handoff_in_a_fall_back_fold_takes_the_earlier_instant() {
    let table = [
        ("Europe/Berlin", "2026-10-25T02:30", "2026-10-25T00:30Z"),
        ("America/New_York", "2026-11-01T01:30", "2026-11-01T05:30Z"),
        ("Australia/Sydney", "2026-04-05T02:30", "2026-04-04T15:30Z"),
        ("America/Santiago", "2026-04-04T23:30", "2026-04-05T02:30Z"),
        ("Australia/Lord_Howe", "2026-04-05T01:45", "2026-04-04T14:45Z"),
        ("Pacific/Chatham", "2026-04-05T03:00", "2026-04-04T13:15Z"),
    ];
    for (name, at, want) in table {
        assert_eq!(handoff_that_day(name, wall(at)).0, utc(want), "{name} {at}");
    }
    for name in ZONES {
        let tz = zone(name);
        let (from, until) = years();
        let falls: Vec<_> =
            transitions(tz, from.and_utc(), until.and_utc()).into_iter().filter(|c| c.2 < c.1).collect();
        assert_eq!(falls.len(), 3, "{name}");
        for (change, before, after) in falls {
            let fold_start = change.naive_utc() + Duration::seconds(after);
            let at = fold_start + Duration::seconds((before - after) / 2);
            assert!(
                tz.from_local_datetime(&at).earliest() != tz.from_local_datetime(&at).latest(),
                "{name}: {at} is ambiguous"
            );
            let earlier = at.and_utc() - Duration::seconds(before);
            assert!(earlier < change, "{name}");
            assert_eq!(handoff_that_day(name, at).0, earlier, "{name} {at}");
        }
    }
}

#[test]
fn restriction_windows_keep_their_wall_times_across_dst() {
    // Weekdays 09:00–18:00 in Berlin over the spring change: the windows stay 09:00–18:00 local.
    let s = schedule(
        "Europe/Berlin",
        vec![layer("w", &["a"], "weekly", "2026-03-23T00:00", &[("mon-fri", "09:00", "18:00")])],
    );
    let segs = final_schedule(&s, &[], utc("2026-03-23T00:00Z"), utc("2026-04-04T00:00Z"));
    let on: Vec<_> = segs.iter().filter(|g| g.user.is_some()).collect();
    assert_eq!(on.len(), 10);
    for g in on {
        let (a, b) = (g.from.with_timezone(&s.zone), g.until.with_timezone(&s.zone));
        assert_eq!((a.time().to_string(), b.time().to_string()), ("09:00:00".into(), "18:00:00".into()), "{a}");
    }
    // An overnight window 18:00–09:00 over the fall-back night lasts 16 hours, over the spring night 14.
    let n =
        schedule("Europe/Berlin", vec![layer("n", &["a"], "weekly", "2026-03-01T00:00", &[("sat", "18:00", "09:00")])]);
    let len = |from: &str, until: &str| {
        let segs = final_schedule(&n, &[], utc(from), utc(until));
        let on: Vec<_> = segs.iter().filter(|g| g.user.is_some()).collect();
        assert_eq!(on.len(), 1);
        (on[0].until - on[0].from).num_hours()
    };
    assert_eq!(len("2026-03-28T00:00Z", "2026-03-30T00:00Z"), 14);
    assert_eq!(len("2026-10-24T00:00Z", "2026-10-26T00:00Z"), 16);
}
