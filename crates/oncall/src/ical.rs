//! The final schedule as an iCalendar feed (RFC 5545), for people's calendar apps.
//!
//! Written by hand rather than with a crate: the part of the format a feed of timed events needs is small and
//! fully specified (a few properties, local times with their VTIMEZONE, TEXT escaping, CRLF line ends, folding
//! at 75 octets), and no iCalendar crate is in the workspace.
//!
//! # What a feed holds
//!
//! - One VEVENT per [`Shift`]: a stretch of the final schedule that has a person (gaps are left out). SUMMARY
//!   `On call: USER (SCHEDULE)`, DESCRIPTION where it comes from (a layer or an override), and a UID made of the
//!   start, the schedule and the person, so a shift keeps its UID from one fetch of the feed to the next.
//! - **Times on the schedule's wall clock.** DTSTART and DTEND are local times with `TZID=` the schedule's zone
//!   (`DTSTART;TZID=Europe/Berlin:20261130T090000`), so a calendar shows the 09:00 handoff as 09:00 whatever
//!   zone it is in, and the feed has one VTIMEZONE per zone, built from chrono-tz's transitions: the last one
//!   before the first shift and every one up to the last shift's end, each as an observance with its own
//!   DTSTART (no RRULE: the data says when the clocks change, a rule would only guess on). A zone whose offset
//!   is zero and never changes in that span (UTC itself) is written in UTC, with no VTIMEZONE.
//! - **Where a local time cannot say the instant, UTC.** A wall time inside a fall-back fold names two
//!   instants; RFC 5545 reads it as the first, some readers (pytz's `localize`, the default of Python's
//!   `icalendar` 4) as the second. Every instant whose wall time is ambiguous is therefore written in UTC
//!   (`DTSTART:20261025T003000Z`), which every reader takes the same way; a wall time in a spring-forward gap
//!   never comes up, since times are instants shown on the zone's clock.
//! - **Whole seconds.** DATE-TIME has no fraction, and times are rounded up to the second: for every whole
//!   second `t`, `from <= t < until` holds exactly when it holds for the rounded times, so the feed and crew
//!   agree on who is on call at any whole second. A shift that rounds to nothing is left out.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use crate::schedule::{Schedule, Segment, Source};

/// One event of a feed: `user` on call for `schedule` in `[from, until)`, shown on `zone`'s wall clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Shift {
    pub schedule: String,
    pub zone: Tz,
    pub user: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub source: Source,
}

impl Shift {
    /// The shifts of a schedule's final segments, in order: every segment with a person (gaps left out).
    pub fn of(schedule: &Schedule, segments: &[Segment]) -> Vec<Shift> {
        segments
            .iter()
            .filter_map(|g| {
                Some(Shift {
                    schedule: schedule.name.clone(),
                    zone: schedule.zone,
                    user: g.user.clone()?,
                    from: g.from,
                    until: g.until,
                    source: g.source.clone(),
                })
            })
            .collect()
    }
}

/// How far before a zone's first shift the feed looks for the transition whose offset is in force then.
const LOOK_BACK_DAYS: i64 = 800;
/// The step of the scan for transitions: no zone changes its clocks twice within it.
const SCAN_STEP_HOURS: i64 = 6;

/// The feed named `calendar_name` of `shifts`; `stamp` is the DTSTAMP of every event (when the feed was made).
pub fn feed(calendar_name: &str, shifts: &[Shift], stamp: DateTime<Utc>) -> String {
    let shifts: Vec<(DateTime<Utc>, DateTime<Utc>, &Shift)> =
        shifts.iter().map(|s| (ceil_second(s.from), ceil_second(s.until), s)).filter(|(a, b, _)| a < b).collect();
    // The span each zone's times fall in, zones in the order they first appear.
    let mut spans: Vec<(Tz, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for &(a, b, s) in &shifts {
        match spans.iter_mut().find(|(z, _, _)| *z == s.zone) {
            Some(span) => (span.1, span.2) = (span.1.min(a), span.2.max(b)),
            None => spans.push((s.zone, a, b)),
        }
    }
    let zones: BTreeMap<&str, Clock> =
        spans.iter().map(|&(z, a, b)| (z.name(), Clock::new(z, a - Duration::days(LOOK_BACK_DAYS), b))).collect();

    let mut out = String::new();
    let mut line = |s: &str| push_line(&mut out, s);
    line("BEGIN:VCALENDAR");
    line("VERSION:2.0");
    line("PRODID:-//crew//on-call//EN");
    line("CALSCALE:GREGORIAN");
    line("METHOD:PUBLISH");
    line(&format!("X-WR-CALNAME:{}", escape_text(calendar_name)));
    for &(z, _, _) in &spans {
        for l in zones[z.name()].vtimezone() {
            line(&l);
        }
    }
    for &(from, until, s) in &shifts {
        let clock = &zones[s.zone.name()];
        line("BEGIN:VEVENT");
        line(&format!("UID:{}", escape_text(&format!("{}-{}-{}@crew", utc(from), s.schedule, s.user))));
        line(&format!("DTSTAMP:{}", utc(stamp)));
        line(&format!("DTSTART{}", clock.date_time(from)));
        line(&format!("DTEND{}", clock.date_time(until)));
        line(&format!("SUMMARY:{}", escape_text(&format!("On call: {} ({})", s.user, s.schedule))));
        let why = match &s.source {
            Source::Layer(l) => format!("{} is on call for {} (layer {l})", s.user, s.schedule),
            Source::Override => format!("{} is on call for {} (an override)", s.user, s.schedule),
            Source::Gap => format!("nobody is on call for {}", s.schedule),
        };
        line(&format!("DESCRIPTION:{}", escape_text(&why)));
        line("TRANSP:TRANSPARENT");
        line("END:VEVENT");
    }
    line("END:VCALENDAR");
    out
}

/// A change of a zone's clock: at `at` the offset goes from `before` to `after` (seconds east of UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub before: i32,
    pub after: i32,
    /// Whether the new offset is daylight-saving time.
    pub dst: bool,
    /// Its abbreviation (`CET`, `-03`), if the zone data has one.
    pub name: Option<String>,
}

/// What a zone's clock shows at an instant: the offset, whether it is DST, the abbreviation.
type Reading = (i32, bool, Option<String>);

fn reading(zone: Tz, t: DateTime<Utc>) -> Reading {
    let o = zone.offset_from_utc_datetime(&t.naive_utc());
    (o.fix().local_minus_utc(), !o.dst_offset().is_zero(), o.abbreviation().map(str::to_string))
}

/// Every change of `zone`'s clock (offset, DST or abbreviation) in `(from, until]`, in order, each to the
/// second. Found by stepping [`SCAN_STEP_HOURS`] at a time and bisecting where the reading differs.
pub fn transitions(zone: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Transition> {
    let step = Duration::hours(SCAN_STEP_HOURS);
    let mut out = Vec::new();
    let mut t = from;
    let mut r = reading(zone, t);
    while t < until {
        let next = (t + step).min(until);
        let rn = reading(zone, next);
        if rn != r {
            // The reading changes in (t, next]: the first second showing something other than `r`.
            let (mut lo, mut hi) = (t.timestamp(), next.timestamp());
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                let m = DateTime::<Utc>::from_timestamp(mid, 0).unwrap_or(next);
                if reading(zone, m) == r {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let at = DateTime::<Utc>::from_timestamp(hi, 0).unwrap_or(next);
            let ra = reading(zone, at);
            out.push(Transition { at, before: r.0, after: ra.0, dst: ra.1, name: ra.2.clone() });
            // Go on from the change, in case another one follows within the step.
            (t, r) = (at, ra);
            continue;
        }
        (t, r) = (next, rn);
    }
    out
}

/// One zone's clock over a span: how its times are written and its VTIMEZONE.
struct Clock {
    zone: Tz,
    /// The transition in force at the span's start (the last one the look back found, or the clock as it is
    /// then, "since 1970"), then those inside the span.
    changes: Vec<Transition>,
    /// Written in UTC: the offset is zero all along.
    utc: bool,
}

impl Clock {
    fn new(zone: Tz, look_from: DateTime<Utc>, until: DateTime<Utc>) -> Clock {
        let start = look_from + Duration::days(LOOK_BACK_DAYS);
        let all = transitions(zone, look_from, until);
        let (off, dst, name) = reading(zone, start);
        let utc = all.is_empty() && off == 0;
        let mut changes = match all.iter().rposition(|t| t.at <= start) {
            Some(i) => all[i..].to_vec(),
            None => {
                // No change in the look back: the clock as it is at the start, in force "since 1970".
                let epoch = NaiveDateTime::parse_from_str("19700101T000000", "%Y%m%dT%H%M%S").expect("a fixed time");
                let at = epoch.and_utc() - Duration::seconds(i64::from(off));
                let mut v = vec![Transition { at, before: off, after: off, dst, name }];
                v.extend(all);
                v
            }
        };
        changes.dedup();
        Clock { zone, changes, utc }
    }

    /// `:VALUE` or `;TZID=ZONE:VALUE`, for after DTSTART or DTEND.
    fn date_time(&self, t: DateTime<Utc>) -> String {
        if self.utc {
            return format!(":{}", utc(t));
        }
        let local = t.with_timezone(&self.zone).naive_local();
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(_) => format!(";TZID={}:{}", self.zone.name(), wall(local)),
            // Ambiguous (in a fold) or, were it ever so, in a gap: only UTC says the instant to every reader.
            _ => format!(":{}", utc(t)),
        }
    }

    /// The VTIMEZONE's lines; none for a zone written in UTC.
    fn vtimezone(&self) -> Vec<String> {
        if self.utc {
            return Vec::new();
        }
        let mut out = vec!["BEGIN:VTIMEZONE".to_string(), format!("TZID:{}", self.zone.name())];
        let mut observance = |kind: &str, onset: NaiveDateTime, from: i32, to: i32, name: Option<&str>| {
            out.push(format!("BEGIN:{kind}"));
            out.push(format!("DTSTART:{}", wall(onset)));
            out.push(format!("TZOFFSETFROM:{}", offset_text(from)));
            out.push(format!("TZOFFSETTO:{}", offset_text(to)));
            if let Some(n) = name {
                out.push(format!("TZNAME:{}", escape_text(n)));
            }
            out.push(format!("END:{kind}"));
        };
        for c in &self.changes {
            // An observance's DTSTART is its onset on the clock as it was before (RFC 5545 §3.6.5).
            let onset = c.at.naive_utc() + Duration::seconds(i64::from(c.before));
            observance(if c.dst { "DAYLIGHT" } else { "STANDARD" }, onset, c.before, c.after, c.name.as_deref());
        }
        out.push("END:VTIMEZONE".into());
        out
    }
}

/// `t` rounded up to the whole second.
fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    if whole < t {
        whole + Duration::seconds(1)
    } else {
        whole
    }
}

/// A DATE-TIME in UTC, `20261130T080000Z`.
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A DATE-TIME as a local time, `20261130T090000`.
fn wall(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S").to_string()
}

/// A UTC-OFFSET (RFC 5545 §3.3.14): `+0100`, `-0330`, or with seconds `+005328`; never `-0000`.
fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    if s == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{s:02}")
    }
}

/// RFC 5545 §3.3.11 TEXT: backslash, semicolon and comma escaped, a line break as `\n`.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("\\n");
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A content line, folded (RFC 5545 §3.1) so no line is longer than 75 octets without its CRLF: a longer line
/// goes on after CRLF and a space, cut only between characters.
fn push_line(out: &mut String, line: &str) {
    let mut rest = line;
    let mut limit = 75;
    loop {
        if rest.len() <= limit {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = write!(out, "{}\r\n ", &rest[..cut]);
        rest = &rest[cut..];
        limit = 74;
    }
}
