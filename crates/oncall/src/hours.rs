//! Working hours on a schedule's wall clock, and when an unannounced drill is due: the one rule behind
//! `[drills] schedule`. Pure: the time and the dice roll are arguments.

use crate::schedule::Restriction;
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use chrono_tz::Tz;

/// Whether `at` falls within the window on `zone`'s wall clock (a window past midnight belongs to the day it
/// starts on).
pub fn within(r: &Restriction, zone: Tz, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&zone);
    let day = local.weekday().num_days_from_monday() as usize;
    let t = local.time();
    if r.from < r.to {
        r.days[day] && r.from <= t && t < r.to
    } else {
        (r.days[day] && t >= r.from) || (r.days[(day + 6) % 7] && t < r.to)
    }
}

/// The window's minutes in a week (a week of Mondays to Sundays at one-minute steps, on the wall clock).
pub fn weekly_minutes(r: &Restriction) -> u32 {
    let mut n = 0;
    for minute in 0..7 * 24 * 60u32 {
        let (day, m) = ((minute / 1440) as usize, minute % 1440);
        let t = chrono::NaiveTime::from_hms_opt(m / 60, m % 60, 0).expect("a minute of a day");
        let inside = if r.from < r.to {
            r.days[day] && r.from <= t && t < r.to
        } else {
            (r.days[day] && t >= r.from) || (r.days[(day + 6) % 7] && t < r.to)
        };
        n += u32::from(inside);
    }
    n
}

/// Whether an unannounced drill starts in the minute at `now`: only within working hours, never sooner than half
/// of `every` after the last one, and otherwise with the chance that makes about one per `every` (each working
/// minute equally likely, so nobody can tell when). `weekly` is [`weekly_minutes`] of `r`; `roll` is uniform in
/// [0, 1).
pub fn drill_due(
    r: &Restriction,
    weekly: u32,
    zone: Tz,
    every: Duration,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    roll: f64,
) -> bool {
    if !within(r, zone, now) {
        return false;
    }
    if last.is_some_and(|l| now - l < every / 2) {
        return false;
    }
    let weekly = f64::from(weekly.max(1));
    let working_minutes = weekly * every.num_minutes() as f64 / (7.0 * 24.0 * 60.0);
    // Overdue (a whole period and more without one): the next working minute.
    if last.is_some_and(|l| now - l >= every + every / 2) {
        return true;
    }
    roll < 1.0 / working_minutes.max(1.0)
}

/// The seconds to the next whole minute after `now` (a scheduler ticks once a minute).
pub fn to_next_minute(now: DateTime<Utc>) -> u64 {
    60 - u64::from(now.second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn working_hours_on_the_wall_clock() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let day = Restriction::parse("mon-fri", "10:00", "16:00").unwrap();
        // 2026-12-01 is a Tuesday; Berlin is UTC+1 in December.
        for (t, inside) in [
            ("2026-12-01T09:00:00Z", true),  // 10:00 Berlin
            ("2026-12-01T08:59:59Z", false), // 09:59:59
            ("2026-12-01T14:59:00Z", true),
            ("2026-12-01T15:00:00Z", false), // 16:00: the end is outside
            ("2026-12-05T11:00:00Z", false), // Saturday
        ] {
            assert_eq!(within(&day, zone, at(t)), inside, "{t}");
        }
        let night = Restriction::parse("fri", "22:00", "06:00").unwrap();
        assert!(within(&night, zone, at("2026-12-04T22:00:00Z"))); // Fri 23:00
        assert!(within(&night, zone, at("2026-12-05T04:00:00Z"))); // Sat 05:00: Friday's night
        assert!(!within(&night, zone, at("2026-12-06T04:00:00Z"))); // Sun 05:00
        assert_eq!(weekly_minutes(&day), 5 * 6 * 60);
        assert_eq!(weekly_minutes(&night), 8 * 60);
    }

    #[test]
    fn an_unannounced_drill_is_rare_spread_and_never_outside_hours() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let r = Restriction::parse("mon-fri", "10:00", "16:00").unwrap();
        let every = Duration::days(14);
        let w = weekly_minutes(&r);
        let work = at("2026-12-01T10:00:00Z");
        assert!(!drill_due(&r, w, zone, every, None, at("2026-12-01T20:00:00Z"), 0.0), "outside hours");
        assert!(!drill_due(&r, w, zone, every, Some(work - Duration::days(6)), work, 0.0), "too soon after the last");
        assert!(drill_due(&r, w, zone, every, Some(work - Duration::days(22)), work, 0.999), "overdue");
        // 14 days hold 10 working days of 360 minutes: each working minute has a 1 in 3,600 chance.
        assert!(drill_due(&r, w, zone, every, None, work, 1.0 / 3601.0));
        assert!(!drill_due(&r, w, zone, every, None, work, 1.0 / 3599.0));
        // Simulated over a year of minutes with a fixed sequence of rolls: about one per fortnight, all in hours.
        let (mut last, mut runs) = (None, vec![]);
        let mut t = Utc.with_ymd_and_hms(2027, 1, 4, 0, 0, 0).unwrap();
        let mut x: u64 = 12345;
        while t < Utc.with_ymd_and_hms(2028, 1, 3, 0, 0, 0).unwrap() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let roll = (x >> 11) as f64 / (1u64 << 53) as f64;
            if drill_due(&r, w, zone, every, last, t, roll) {
                assert!(within(&r, zone, t));
                runs.push(t);
                last = Some(t);
            }
            t += Duration::minutes(1);
        }
        assert!((18..=34).contains(&runs.len()), "{} drills in a year", runs.len());
        assert!(runs.windows(2).all(|w| w[1] - w[0] >= Duration::days(7)));
    }
}
