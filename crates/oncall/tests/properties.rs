//! Property-style tests over seeded random schedules (a small PRNG, no new dependency): the final schedule of a
//! window is contiguous, ordered, merged and covers exactly the window; every instant's person agrees with a
//! plain per-instant reading of the semantics; `on_call_at` agrees with the final schedule; windows split
//! anywhere put back together give the same segments.

mod common;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use common::zone;
use crew_oncall::schedule::{
    final_schedule, local_to_utc, on_call_at, Layer, Override, Restriction, Rotation, Schedule, Segment, Source,
};

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
];
const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

fn base() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// A random instant in 2026–2027, on a quarter hour half of the time (so it meets handoffs and windows).
fn instant(r: &mut Rng) -> DateTime<Utc> {
    let minutes = r.below(2 * 365 * 24 * 60) as i64;
    let minutes = if r.chance(50) { minutes / 15 * 15 } else { minutes };
    base() + Duration::minutes(minutes) + Duration::seconds(r.below(60) as i64 * (r.below(2) as i64))
}

fn clock(r: &mut Rng) -> NaiveTime {
    NaiveTime::from_hms_opt(r.below(24) as u32, *r.pick(&[0, 0, 15, 30, 45]), 0).unwrap()
}

fn random_schedule(r: &mut Rng) -> Schedule {
    let rotations = [
        Rotation::Daily,
        Rotation::Weekly,
        Rotation::Every(Duration::hours(12)),
        Rotation::Every(Duration::hours(8)),
        Rotation::Every(Duration::minutes(90)),
        Rotation::Every(Duration::days(3)),
        Rotation::Every(Duration::weeks(2)),
    ];
    let layers = (0..1 + r.below(4))
        .map(|i| {
            let users = (0..1 + r.below(4)).map(|_| r.pick(&USERS).to_string()).collect();
            let day = NaiveDate::from_ymd_opt(2025, 10, 1).unwrap() + Duration::days(r.below(500) as i64);
            let restrict = (0..*r.pick(&[0, 0, 1, 1, 2]))
                .map(|_| {
                    let mut days = [false; 7];
                    days.iter_mut().for_each(|d| *d = r.chance(60));
                    days[r.below(7) as usize] = true;
                    Restriction { days, from: clock(r), to: clock(r) }
                })
                .collect();
            Layer {
                name: format!("l{i}"),
                users,
                rotation: *r.pick(&rotations),
                start: day.and_time(clock(r)),
                restrict,
            }
        })
        .collect();
    let name = ZONES[r.below(ZONES.len() as u64) as usize];
    let s = Schedule { name: "ops".into(), zone: zone(name), layers };
    s.check().unwrap();
    s
}

fn random_overrides(r: &mut Rng, near: DateTime<Utc>) -> Vec<Override> {
    (0..r.below(8))
        .map(|_| {
            let from = near + Duration::minutes(r.below(40 * 24 * 60) as i64 - 10 * 24 * 60);
            let until = from + Duration::minutes(r.below(3 * 24 * 60) as i64 - 60);
            Override { user: r.pick(&USERS).to_string(), from, until }
        })
        .collect()
}

/// Who is on call at `t`, read off the semantics one instant at a time, as `(user, source)`.
fn oracle(s: &Schedule, overrides: &[Override], t: DateTime<Utc>) -> (Option<String>, Source) {
    if let Some(o) = overrides.iter().rev().find(|o| o.from <= t && t < o.until) {
        return (Some(o.user.clone()), Source::Override);
    }
    for l in s.layers.iter().rev() {
        // The shift: the last handoff at or before t, by bisection over the handoffs.
        if l.handoff(s.zone, 0).unwrap() > t {
            continue;
        }
        let (mut lo, mut hi) = (0u64, 1u64);
        while l.handoff(s.zone, hi).unwrap() <= t {
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if l.handoff(s.zone, mid).unwrap() <= t {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let inside = l.restrict.is_empty()
            || l.restrict.iter().any(|r| {
                let today = t.with_timezone(&s.zone).date_naive();
                (-2..=1).any(|k| {
                    let day = today + Duration::days(k);
                    let end_day = if r.to <= r.from { day + Duration::days(1) } else { day };
                    r.days[day.weekday().num_days_from_monday() as usize]
                        && local_to_utc(s.zone, day.and_time(r.from)) <= t
                        && t < local_to_utc(s.zone, end_day.and_time(r.to))
                })
            });
        if inside {
            return (Some(l.users[(lo % l.users.len() as u64) as usize].clone()), Source::Layer(l.name.clone()));
        }
    }
    (None, Source::Gap)
}

fn check_shape(segs: &[Segment], from: DateTime<Utc>, until: DateTime<Utc>, what: &str) {
    assert!(!segs.is_empty(), "{what}: no segments");
    assert_eq!(segs[0].from, from, "{what}: starts at the window");
    assert_eq!(segs.last().unwrap().until, until, "{what}: ends at the window");
    for g in segs {
        assert!(g.from < g.until, "{what}: empty segment {g:?}");
        assert_eq!(g.user.is_none(), g.source == Source::Gap, "{what}: {g:?}");
    }
    for w in segs.windows(2) {
        assert_eq!(w[0].until, w[1].from, "{what}: contiguous");
        assert!(w[0].user != w[1].user || w[0].source != w[1].source, "{what}: not merged: {:?} {:?}", w[0], w[1]);
    }
}

#[test]
fn final_schedules_are_contiguous_and_agree_with_the_semantics_and_on_call_at() {
    let mut r = Rng(0x5eed_2026);
    for case in 0..300 {
        let s = random_schedule(&mut r);
        let from = instant(&mut r);
        let longest = *r.pick(&[6 * 60, 3 * 24 * 60, 30 * 24 * 60]);
        let until = from + Duration::minutes(1 + r.below(longest) as i64);
        let overrides = random_overrides(&mut r, from);
        let what = format!("case {case}: {s:?}\noverrides {overrides:?}\nwindow {from}..{until}");
        let segs = final_schedule(&s, &overrides, from, until);
        check_shape(&segs, from, until, &what);

        // Every segment's start, its last millisecond and random instants agree with the oracle.
        let mut probes: Vec<DateTime<Utc>> =
            segs.iter().flat_map(|g| [g.from, g.until - Duration::milliseconds(1)]).collect();
        probes.extend(
            (0..20).map(|_| from + Duration::milliseconds(r.below((until - from).num_milliseconds() as u64) as i64)),
        );
        for t in probes {
            let g = segs.iter().find(|g| g.contains(t)).unwrap();
            assert_eq!((g.user.clone(), g.source.clone()), oracle(&s, &overrides, t), "{what}\nat {t}");
        }

        // on_call_at at random instants: the same person and source, the segment's bounds where they are real.
        for _ in 0..10 {
            let t = from + Duration::milliseconds(r.below((until - from).num_milliseconds() as u64) as i64);
            let g = segs.iter().find(|g| g.contains(t)).unwrap();
            let a = on_call_at(&s, &overrides, t);
            assert_eq!((&a.user, &a.source), (&g.user, &g.source), "{what}\nat {t}");
            assert!(a.contains(t), "{what}\nat {t}: {a:?}");
            if g.from > from {
                assert_eq!(a.from, g.from, "{what}\nat {t}");
            } else {
                assert!(a.from <= g.from, "{what}\nat {t}");
            }
            if g.until < until {
                assert_eq!(a.until, g.until, "{what}\nat {t}");
            } else {
                assert!(a.until >= g.until, "{what}\nat {t}");
            }
        }

        // Split the window anywhere: the two halves, merged at the cut, are the whole.
        let cut = from + Duration::milliseconds(r.below((until - from).num_milliseconds() as u64) as i64);
        if cut > from {
            let mut joined = final_schedule(&s, &overrides, from, cut);
            for g in final_schedule(&s, &overrides, cut, until) {
                match joined.last_mut() {
                    Some(l) if l.until == g.from && l.user == g.user && l.source == g.source => l.until = g.until,
                    _ => joined.push(g),
                }
            }
            assert_eq!(joined, segs, "{what}\ncut at {cut}");
        }
    }
}

#[test]
fn on_call_at_stays_inside_its_reach_and_its_neighbours_differ() {
    let mut r = Rng(7);
    for case in 0..200 {
        let s = random_schedule(&mut r);
        let t = instant(&mut r);
        let overrides = random_overrides(&mut r, t);
        let a = on_call_at(&s, &overrides, t);
        let what = format!("case {case}: {s:?}\noverrides {overrides:?}\nat {t}: {a:?}");
        assert!(a.contains(t), "{what}");
        let reach = Duration::days(crew_oncall::schedule::REACH_DAYS);
        assert!(a.from >= t - reach && a.until <= t + reach, "{what}");
        // Just outside a real bound the person or the source is different.
        if a.from > t - reach {
            let before = on_call_at(&s, &overrides, a.from - Duration::milliseconds(1));
            assert!(before.user != a.user || before.source != a.source, "{what}\nbefore: {before:?}");
            assert_eq!(before.until, a.from, "{what}");
        }
        if a.until < t + reach {
            let after = on_call_at(&s, &overrides, a.until);
            assert!(after.user != a.user || after.source != a.source, "{what}\nafter: {after:?}");
            assert_eq!(after.from, a.until, "{what}");
        }
    }
}

#[test]
fn wall_times_map_in_order() {
    // local_to_utc never goes backwards as the wall time goes forwards: what keeps handoffs in order.
    let mut r = Rng(11);
    for name in ZONES {
        let tz = zone(name);
        let mut wall: NaiveDateTime = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap().and_hms_opt(0, 0, 0).unwrap();
        let mut last = local_to_utc(tz, wall);
        for _ in 0..40_000 {
            wall += Duration::minutes(1 + r.below(60) as i64);
            let t = local_to_utc(tz, wall);
            assert!(t >= last, "{name}: {wall} maps to {t}, before {last}");
            last = t;
        }
    }
}
