//! Schedules: layers of rotations on a zone's wall clock, restricted to windows, under overrides.
//!
//! Everything here is a pure function of its arguments: time is always passed in, nothing reads a clock.
//!
//! # Semantics
//!
//! - **Handoffs.** Handoff `n` (n ≥ 0) of a layer is at the wall time `start + n × period` in the schedule's
//!   zone, computed on the naive local clock: `Daily` is one calendar day (the same wall time every day),
//!   `Weekly` seven, `Every(d)` is `d`. On the naive local clock a whole number of days is a whole number of
//!   calendar days, so `Every(3d)` keeps its wall time like `Daily`; any other span steps the wall clock, so
//!   `12h` from 09:00 hands off at 09:00 and 21:00 every day, across daylight-saving changes too. Shift `n`
//!   runs from handoff `n` to handoff `n + 1` and belongs to `users[n % users.len()]`. Before the first
//!   handoff the layer covers nobody. Spans are kept to the millisecond.
//! - **Wall time to UTC** ([`local_to_utc`]): a wall time that does not exist (the clock springs forward over
//!   it) maps to the first instant after the gap, the moment the clock jumps; an ambiguous one (the clock falls
//!   back over it) maps to the earlier of its two instants. This keeps handoffs in order: a shift squeezed to
//!   nothing by a gap is dropped, one stretched by a fold lasts longer.
//! - **Restrictions.** A layer with restrictions covers only instants inside one of their windows. A window
//!   belongs to a local calendar day `D` whose weekday is in `days` and runs `[D from, D to)`, or
//!   `[D from, D+1 to)` when `to <= from` (overnight; `to = "24:00"` is midnight at the end of `D`, and
//!   `from == to` is a whole 24 h). Window bounds go through the same wall-time rule. Inside a window the person
//!   on call is whoever's shift contains the instant: restrictions cut shifts, they don't move them.
//! - **Layers.** A later layer (higher index) wins wherever it covers someone; where it covers nobody, the
//!   earlier layers show through.
//! - **Overrides** win over every layer. Overrides should not overlap ([`check_override`]); where they do
//!   anyway, the one later in the slice wins. An override with `until <= from` covers nothing.
//! - **Gaps.** Where nobody is on call the final schedule has a segment with `user: None` and
//!   `source: Source::Gap`.
//! - **Segments** are half-open `[from, until)`; adjacent segments with the same user and the same source are
//!   merged (the same person on two different layers stays two segments).
//! - [`on_call_at`] computes only near the instant and widens its look in doubling steps while the segment
//!   goes on, at most [`REACH_DAYS`] days each way: a segment longer than that (a one-person layer) is cut
//!   there.

use std::cmp::{max, min};

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How far [`on_call_at`] looks each way for the ends of the segment containing its instant.
pub const REACH_DAYS: i64 = 366;

/// The shortest rotation [`Schedule::check`] accepts.
pub const MIN_ROTATION: Duration = Duration::minutes(1);

/// How often a layer hands off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    Daily,
    Weekly,
    Every(Duration),
}

impl Rotation {
    /// `"daily"`, `"weekly"` or a span: `"12h"`, `"3d"`, `"2w"`, `"90m"`, or several such as `"1d12h"`.
    pub fn parse(s: &str) -> Result<Rotation, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "daily" => return Ok(Rotation::Daily),
            "weekly" => return Ok(Rotation::Weekly),
            _ => {}
        }
        let expected = || {
            format!("expected \"daily\", \"weekly\" or a span such as \"12h\", \"3d\", \"2w\", \"90m\", not \"{s}\"")
        };
        if let Some(rest) = t.strip_prefix('-') {
            return match parse_span(rest) {
                Ok(_) => Err(format!("a rotation must be longer than zero, not \"{s}\"")),
                Err(_) => Err(expected()),
            };
        }
        let d = parse_span(&t).map_err(|_| expected())?;
        if d <= Duration::zero() {
            return Err(format!("a rotation must be longer than zero, not \"{s}\""));
        }
        if d < MIN_ROTATION {
            return Err(format!("a rotation must be at least 1m, not \"{s}\""));
        }
        Ok(Rotation::Every(d))
    }

    /// The step between two handoffs on the naive local clock.
    pub fn period(&self) -> Duration {
        match self {
            Rotation::Daily => Duration::days(1),
            Rotation::Weekly => Duration::days(7),
            Rotation::Every(d) => *d,
        }
    }

    /// The text [`Rotation::parse`] reads back.
    pub fn as_text(&self) -> String {
        match self {
            Rotation::Daily => "daily".into(),
            Rotation::Weekly => "weekly".into(),
            Rotation::Every(d) => span_text(*d),
        }
    }
}

/// A span as people write it: a number and a unit (`s`, `m`, `h`, `d`, `w`), several of them added up
/// (`"1h30m"`). Zero (`"0m"`) is a span; a sign is not.
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let expected = || format!("expected a span such as \"90m\", \"12h\", \"3d\" or \"2w\", not \"{s}\"");
    let t = s.trim();
    if t.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::zero();
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(expected());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| format!("the span \"{s}\" is too long"))?;
        let unit = rest[digits..].chars().next().ok_or_else(expected)?;
        let part = match unit.to_ascii_lowercase() {
            's' => Duration::try_seconds(n),
            'm' => n.checked_mul(60).and_then(Duration::try_seconds),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            _ => return Err(expected()),
        };
        total = part.and_then(|p| total.checked_add(&p)).ok_or_else(|| format!("the span \"{s}\" is too long"))?;
        rest = rest[digits + unit.len_utf8()..].trim_start();
    }
    Ok(total)
}

/// The shortest text for a span, in the units [`parse_span`] reads.
pub fn span_text(d: Duration) -> String {
    let secs = d.num_seconds();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// A window of the week a layer is limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restriction {
    /// Monday first.
    pub days: [bool; 7],
    pub from: NaiveTime,
    /// `to <= from`: the window ends on the next day; `"24:00"` is read as midnight, the end of the day.
    pub to: NaiveTime,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Restriction {
    /// `days`: `"mon-fri"`, `"sat,sun"`, `"mon"`, `"fri-mon"` (a range wraps over the week's end), a list of
    /// days and ranges, or `"daily"`/`"all"`; `from`, `to`: `"HH:MM"`, `to` also `"24:00"`. A message starts
    /// with the field it is about (`days: `, `from: `, `to: `), so a caller can put the key's path before it.
    pub fn parse(days: &str, from: &str, to: &str) -> Result<Restriction, String> {
        Ok(Restriction {
            days: parse_days(days).map_err(|e| format!("days: {e}"))?,
            from: parse_clock(from, false).map_err(|e| format!("from: {e}"))?,
            to: parse_clock(to, true).map_err(|e| format!("to: {e}"))?,
        })
    }

    /// The days as [`Restriction::parse`] reads them back, a list of days and ranges.
    pub fn days_text(&self) -> String {
        if self.days.iter().all(|d| *d) {
            return "daily".into();
        }
        let mut parts = Vec::new();
        let mut i = 0;
        while i < 7 {
            if !self.days[i] {
                i += 1;
                continue;
            }
            let j = (i..7).take_while(|&k| self.days[k]).last().unwrap_or(i);
            parts.push(if j > i { format!("{}-{}", DAY_NAMES[i], DAY_NAMES[j]) } else { DAY_NAMES[i].to_string() });
            i = j + 1;
        }
        parts.join(",")
    }
}

fn day_index(s: &str) -> Option<usize> {
    let names: [&[&str]; 7] = [
        &["mon", "monday"],
        &["tue", "tues", "tuesday"],
        &["wed", "wednesday"],
        &["thu", "thur", "thurs", "thursday"],
        &["fri", "friday"],
        &["sat", "saturday"],
        &["sun", "sunday"],
    ];
    names.iter().position(|n| n.contains(&s))
}

fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let expected =
        || format!("expected days such as \"mon-fri\", \"sat,sun\", \"fri-mon\", \"mon\" or \"daily\", not \"{s}\"");
    let t = s.trim().to_ascii_lowercase();
    if t == "daily" || t == "all" {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for item in t.split(',') {
        let item = item.trim();
        match item.split_once('-') {
            Some((a, b)) => {
                let a = day_index(a.trim()).ok_or_else(expected)?;
                let b = day_index(b.trim()).ok_or_else(expected)?;
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[day_index(item).ok_or_else(expected)?] = true,
        }
    }
    Ok(days)
}

fn parse_clock(s: &str, end: bool) -> Result<NaiveTime, String> {
    let t = s.trim();
    let expected = || {
        let range = if end { "00:00 to 24:00" } else { "00:00 to 23:59" };
        format!("expected a time of day \"HH:MM\" ({range}), not \"{s}\"")
    };
    if end && (t == "24:00" || t == "24:00:00") {
        return Ok(NaiveTime::MIN);
    }
    let well_formed = t.len() >= 4 && t.bytes().all(|b| b.is_ascii_digit() || b == b':');
    if !well_formed {
        return Err(expected());
    }
    NaiveTime::parse_from_str(t, "%H:%M:%S").or_else(|_| NaiveTime::parse_from_str(t, "%H:%M")).map_err(|_| expected())
}

/// One rotation of people.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub name: String,
    pub users: Vec<String>,
    pub rotation: Rotation,
    /// The first handoff, wall clock in the schedule's zone.
    pub start: NaiveDateTime,
    pub restrict: Vec<Restriction>,
}

impl Layer {
    /// When handoff `n` happens (see the module's semantics), `None` past the calendar's end.
    pub fn handoff(&self, zone: Tz, n: u64) -> Option<DateTime<Utc>> {
        handoff(self, zone, period_ms(self.rotation)?, i64::try_from(n).ok()?)
    }
}

/// A named set of layers on one zone's wall clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub zone: Tz,
    pub layers: Vec<Layer>,
}

impl Schedule {
    /// What a configuration must get right; each message starts with the key it is about
    /// (`layers[1].users: a layer needs at least one user`).
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name: a schedule needs a name".into());
        }
        if self.layers.is_empty() {
            return Err("layers: a schedule needs at least one layer".into());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.name.trim().is_empty() {
                return Err(format!("layers[{i}].name: a layer needs a name"));
            }
            if let Some(j) = self.layers[..i].iter().position(|l| l.name == layer.name) {
                return Err(format!("layers[{i}].name: \"{}\" is already the name of layers[{j}]", layer.name));
            }
            if layer.users.is_empty() {
                return Err(format!("layers[{i}].users: a layer needs at least one user"));
            }
            if let Some(j) = layer.users.iter().position(|u| u.trim().is_empty()) {
                return Err(format!("layers[{i}].users[{j}]: a user needs a name"));
            }
            let period = layer.rotation.period();
            if period <= Duration::zero() {
                return Err(format!("layers[{i}].rotation: a rotation must be longer than zero"));
            }
            if period < MIN_ROTATION {
                return Err(format!("layers[{i}].rotation: a rotation must be at least 1m"));
            }
            for (k, r) in layer.restrict.iter().enumerate() {
                if !r.days.iter().any(|d| *d) {
                    return Err(format!("layers[{i}].restrict[{k}].days: a restriction needs at least one day"));
                }
            }
        }
        Ok(())
    }
}

/// An IANA zone name (`"Europe/Berlin"`, `"UTC"`).
pub fn parse_zone(s: &str) -> Result<Tz, String> {
    s.trim()
        .parse::<Tz>()
        .map_err(|_| format!("unknown time zone \"{s}\": expected an IANA name such as \"Europe/Berlin\" or \"UTC\""))
}

/// A wall time in `zone` as an instant: a time in a spring-forward gap maps to the moment the clock jumps, an
/// ambiguous time in a fall-back fold to the earlier instant.
pub fn local_to_utc(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => min(a.with_timezone(&Utc), b.with_timezone(&Utc)),
        LocalResult::None => chrono_tz::GapInfo::new(&local, &zone)
            .and_then(|g| g.end)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| jump_instant(zone, local)),
    }
}

/// The first instant whose wall time is at or after `local`, found by bisection: used only when the zone data
/// can't say where a gap ends. Any instant where the wall clock passes `local` is a jump over it.
fn jump_instant(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let wall = |u: i64| {
        let t = DateTime::<Utc>::from_timestamp(u, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        t.with_timezone(&zone).naive_local()
    };
    let target = local.and_utc().timestamp();
    let (mut lo, mut hi) = (target - 27 * 3600, target + 27 * 3600);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if wall(mid) >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::<Utc>::from_timestamp(hi, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// One person taking the pager for a while, above every layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub user: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Where a segment's person comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "layer", rename_all = "lowercase")]
pub enum Source {
    Layer(String),
    Override,
    Gap,
}

/// A stretch of the final schedule, `[from, until)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `None`: a gap, nobody on call.
    pub user: Option<String>,
    pub source: Source,
}

impl Segment {
    /// Whether `at` is inside `[from, until)`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.until
    }
}

/// The final schedule: contiguous segments covering exactly [from, until), adjacent segments with the same user and source merged. Empty if until <= from.
pub fn final_schedule(s: &Schedule, overrides: &[Override], from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Segment> {
    compute(s, overrides, from, until, 0)
}

/// The segment containing `at` (a gap segment if nobody), cut to the shift's real bounds (not to a window), at
/// most [`REACH_DAYS`] days each way. Computes only near `at`.
pub fn on_call_at(s: &Schedule, overrides: &[Override], at: DateTime<Utc>) -> Segment {
    let first = Duration::days(1);
    let (wf, wu) = (sub(at, first), add(at, first));
    let mut seg = compute(s, overrides, wf, wu, 0).into_iter().find(|g| g.contains(at)).unwrap_or(Segment {
        from: at,
        until: add(at, Duration::milliseconds(1)),
        user: None,
        source: Source::Gap,
    });
    // Widening the look only needs what can end this segment: a layer's segment ends where its own layer
    // stops covering the person, or a later layer or an override starts; earlier layers can't change it.
    let min_layer = match &seg.source {
        Source::Gap => 0,
        Source::Override => s.layers.len(),
        Source::Layer(name) => s.layers.iter().rposition(|l| &l.name == name).unwrap_or(0),
    };
    let same = |a: &Segment, b: &Segment| a.user == b.user && a.source == b.source;
    let reach = Duration::days(REACH_DAYS);

    let limit = sub(at, reach);
    let (mut edge, mut span) = (wf, first);
    while seg.from == edge && edge > limit {
        let next = max(sub(edge, span), limit);
        match compute(s, overrides, next, edge, min_layer).last() {
            Some(l) if same(l, &seg) => seg.from = l.from,
            _ => break,
        }
        (edge, span) = (next, span * 2);
    }
    let limit = add(at, reach);
    let (mut edge, mut span) = (wu, first);
    while seg.until == edge && edge < limit {
        let next = min(add(edge, span), limit);
        match compute(s, overrides, edge, next, min_layer).first() {
            Some(f) if same(f, &seg) => seg.until = f.until,
            _ => break,
        }
        (edge, span) = (next, span * 2);
    }
    seg
}

/// The first segment after the one containing `at` whose user differs, looking at most `horizon` ahead.
pub fn next_change(s: &Schedule, overrides: &[Override], at: DateTime<Utc>, horizon: Duration) -> Option<Segment> {
    let now = on_call_at(s, overrides, at);
    let end = add(at, horizon);
    let mut t = now.until;
    while t < end {
        let seg = on_call_at(s, overrides, t);
        if seg.user != now.user {
            return Some(seg);
        }
        if seg.until <= t {
            return None;
        }
        t = seg.until;
    }
    None
}

/// Gaps (nobody on call) in [from, until).
pub fn gaps(
    s: &Schedule,
    overrides: &[Override],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    final_schedule(s, overrides, from, until)
        .into_iter()
        .filter(|g| g.user.is_none())
        .map(|g| (g.from, g.until))
        .collect()
}

/// Whether `new` may be added to `existing`: it must end after it starts and overlap no existing override
/// (half-open intervals; touching is fine). The message names the overlapping one's user and times.
pub fn check_override(existing: &[Override], new: &Override) -> Result<(), String> {
    if new.until <= new.from {
        return Err(format!(
            "an override must end after it starts: from {} until {}",
            time_text(new.from),
            time_text(new.until)
        ));
    }
    match overlapping(existing, new) {
        Some(o) => {
            Err(format!("overlaps the override for {} from {} until {}", o.user, time_text(o.from), time_text(o.until)))
        }
        None => Ok(()),
    }
}

/// The first existing override that `new` overlaps (half-open intervals; touching is fine).
pub fn overlapping<'a>(existing: &'a [Override], new: &Override) -> Option<&'a Override> {
    existing.iter().find(|o| o.from < new.until && new.from < o.until && o.from < o.until)
}

fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn sub(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A stretch of one layer (or of the overrides) inside the computed window; `who` indexes its users (or the
/// overrides).
#[derive(Clone, Copy, Debug)]
struct Piece {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    who: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Who<'a> {
    Gap,
    Override(&'a str),
    Layer(&'a str, &'a str),
}

/// The final schedule over `[from, until)` of the overrides and the layers from `min_layer` on (earlier
/// layers are left out: where the rest cover nobody, it says Gap).
fn compute(
    s: &Schedule,
    overrides: &[Override],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    min_layer: usize,
) -> Vec<Segment> {
    if until <= from {
        return Vec::new();
    }
    let layers = s.layers.get(min_layer..).unwrap_or(&[]);
    let pieces: Vec<Vec<Piece>> = layers.iter().map(|l| layer_pieces(l, s.zone, from, until)).collect();
    let over = override_pieces(overrides, from, until);

    let mut cuts = Vec::with_capacity(2 + 2 * (over.len() + pieces.iter().map(Vec::len).sum::<usize>()));
    cuts.extend([from, until]);
    for p in pieces.iter().flatten().chain(&over) {
        cuts.extend([p.from, p.until]);
    }
    cuts.sort_unstable();
    cuts.dedup();

    let mut at = vec![0usize; pieces.len()];
    let mut at_over = 0;
    let covering = |list: &[Piece], i: &mut usize, t: DateTime<Utc>| {
        while *i < list.len() && list[*i].until <= t {
            *i += 1;
        }
        list.get(*i).filter(|p| p.from <= t).map(|p| p.who)
    };
    let mut out: Vec<Segment> = Vec::new();
    let mut open: Option<(DateTime<Utc>, Who)> = None;
    for w in cuts.windows(2) {
        let t = w[0];
        let who = match covering(&over, &mut at_over, t) {
            Some(o) => Who::Override(&overrides[o].user),
            None => (0..pieces.len())
                .rev()
                .find_map(|i| {
                    covering(&pieces[i], &mut at[i], t).map(|u| Who::Layer(&layers[i].name, &layers[i].users[u]))
                })
                .unwrap_or(Who::Gap),
        };
        // Every layer's cursor must move past `t`, also those under the winner.
        for i in 0..pieces.len() {
            covering(&pieces[i], &mut at[i], t);
        }
        match open {
            Some((_, w)) if w == who => {}
            Some((start, w)) => {
                out.push(segment(start, t, w));
                open = Some((t, who));
            }
            None => open = Some((t, who)),
        }
    }
    if let Some((start, w)) = open {
        out.push(segment(start, until, w));
    }
    out
}

fn segment(from: DateTime<Utc>, until: DateTime<Utc>, who: Who) -> Segment {
    let (user, source) = match who {
        Who::Gap => (None, Source::Gap),
        Who::Override(u) => (Some(u.to_string()), Source::Override),
        Who::Layer(l, u) => (Some(u.to_string()), Source::Layer(l.to_string())),
    };
    Segment { from, until, user, source }
}

/// The overrides inside the window as disjoint pieces, the later one in the slice winning where they overlap.
fn override_pieces(overrides: &[Override], from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Piece> {
    let near: Vec<(usize, DateTime<Utc>, DateTime<Utc>)> = overrides
        .iter()
        .enumerate()
        .filter(|(_, o)| o.from < o.until && o.from < until && from < o.until)
        .map(|(i, o)| (i, max(o.from, from), min(o.until, until)))
        .collect();
    let mut cuts: Vec<DateTime<Utc>> = near.iter().flat_map(|&(_, a, b)| [a, b]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<Piece> = Vec::new();
    for w in cuts.windows(2) {
        let Some(&(i, _, _)) = near.iter().rev().find(|&&(_, a, b)| a <= w[0] && w[0] < b) else { continue };
        match out.last_mut() {
            Some(p) if p.who == i && p.until == w[0] => p.until = w[1],
            _ => out.push(Piece { from: w[0], until: w[1], who: i }),
        }
    }
    out
}

fn period_ms(r: Rotation) -> Option<i64> {
    Some(r.period().num_milliseconds()).filter(|ms| *ms > 0)
}

fn handoff(layer: &Layer, zone: Tz, step_ms: i64, n: i64) -> Option<DateTime<Utc>> {
    let offset = Duration::try_milliseconds(step_ms.checked_mul(n)?)?;
    Some(local_to_utc(zone, layer.start.checked_add_signed(offset)?))
}

/// One layer inside `[from, until)`: its shifts, cut to its restrictions' windows.
fn layer_pieces(layer: &Layer, zone: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Piece> {
    let (Some(step), false) = (period_ms(layer.rotation), layer.users.is_empty()) else { return Vec::new() };
    let h = |n: i64| handoff(layer, zone, step, n);
    let Some(first) = h(0) else { return Vec::new() };
    if first >= until {
        return Vec::new();
    }
    let mut shifts = Vec::new();
    if layer.users.iter().all(|u| *u == layer.users[0]) {
        // One person (however often listed): one shift from the first handoff on.
        shifts.push(Piece { from: max(first, from), until, who: 0 });
    } else {
        let mut n = if from <= first { 0 } else { shift_index(layer, zone, step, from) };
        let mut a = h(n);
        while let Some(start) = a.filter(|t| *t < until) {
            let next = h(n + 1);
            let (pa, pb) = (max(start, from), min(next.unwrap_or(until), until));
            if pa < pb {
                shifts.push(Piece { from: pa, until: pb, who: n.rem_euclid(layer.users.len() as i64) as usize });
            }
            (n, a) = (n + 1, next);
        }
    }
    if layer.restrict.is_empty() || shifts.is_empty() {
        return shifts;
    }
    let windows = restriction_windows(&layer.restrict, zone, from, until);
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < shifts.len() && j < windows.len() {
        let (s, (wa, wb)) = (shifts[i], windows[j]);
        let (a, b) = (max(s.from, wa), min(s.until, wb));
        if a < b {
            out.push(Piece { from: a, until: b, who: s.who });
        }
        if s.until < wb {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The index of the shift containing `t`, for `t` after the first handoff: estimated from the wall clock, then
/// put right (handoffs are in order, so the steps are few).
fn shift_index(layer: &Layer, zone: Tz, step: i64, t: DateTime<Utc>) -> i64 {
    let wall = t.with_timezone(&zone).naive_local();
    let mut n = (wall - layer.start).num_milliseconds().div_euclid(step).max(0);
    while n > 0 && handoff(layer, zone, step, n).is_none_or(|h| h > t) {
        n -= 1;
    }
    while handoff(layer, zone, step, n + 1).is_some_and(|h| h <= t) {
        n += 1;
    }
    n
}

/// The union of the restrictions' windows that meet `[from, until)`, sorted and disjoint, cut to it.
fn restriction_windows(
    rs: &[Restriction],
    zone: Tz,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let first = from.with_timezone(&zone).date_naive();
    let last = until.with_timezone(&zone).date_naive();
    let mut day = first.checked_sub_signed(Duration::days(2)).unwrap_or(first);
    let last = last.succ_opt().unwrap_or(last);
    let mut windows = Vec::new();
    loop {
        let wd = day.weekday().num_days_from_monday() as usize;
        for r in rs.iter().filter(|r| r.days[wd]) {
            let end_day = if r.to <= r.from { day.succ_opt() } else { Some(day) };
            let Some(end_day) = end_day else { continue };
            let a = max(local_to_utc(zone, day.and_time(r.from)), from);
            let b = min(local_to_utc(zone, end_day.and_time(r.to)), until);
            if a < b {
                windows.push((a, b));
            }
        }
        match day.succ_opt() {
            Some(next) if day < last => day = next,
            _ => break,
        }
    }
    windows.sort_unstable();
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(windows.len());
    for (a, b) in windows {
        match merged.last_mut() {
            Some(m) if a <= m.1 => m.1 = max(m.1, b),
            _ => merged.push((a, b)),
        }
    }
    merged
}
