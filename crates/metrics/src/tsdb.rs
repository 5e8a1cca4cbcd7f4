//! The time-series store's logic, with no IO: per series and tier an open head chunk (a Gorilla encoder),
//! rollup windows fed by the finest tier, and what must be written after each flush:
//!
//! - **WAL entries**: every new point (the flush's points, and each rollup window that closed), which the
//!   server appends to the store in one row per tier per flush, so a crash loses at most the flush being made;
//! - **chunks** that became full (staggered per series so they do not all close in the same flush);
//! - **floors**: per tier, the time below which no open head or open window needs the WAL any more.
//!
//! A head closes when full or when its span is over (a full head's points times the tier's step since its first
//! point), whichever comes first: a series that stops reporting is stored as a chunk and no longer pins the WAL,
//! so the WAL never reaches further back than one span per tier. A series with nothing open whose last point is
//! past every tier's retention is forgotten (its chunks expire with it).
//!
//! After a crash the server loads the stored chunk ends (`persisted`) and replays the WAL rows in order; points
//! already in chunks are skipped, and the open rollup windows are rebuilt from the finest tier's points.

use crate::gorilla::Encoder;
use crate::{Kind, Point};
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One resolution: points every `step_ms`, kept `retention_ms`, chunks of about `chunk_points`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierSpec {
    pub step_ms: i64,
    pub retention_ms: i64,
    pub chunk_points: u32,
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// The defaults: the flush interval for 24 h, 1 min for 30 days, 10 min for 2 years.
pub fn default_tiers(flush_ms: i64) -> Vec<TierSpec> {
    vec![
        TierSpec { step_ms: flush_ms, retention_ms: DAY, chunk_points: 90 },
        TierSpec { step_ms: 60_000, retention_ms: 30 * DAY, chunk_points: 120 },
        TierSpec { step_ms: 600_000, retention_ms: 730 * DAY, chunk_points: 72 },
    ]
}

/// A point on its way to the WAL.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub series: Arc<str>,
    pub kind: Kind,
    pub tier: u8,
    pub t: i64,
    pub point: Point,
}

/// A closed (or, at shutdown, partial) chunk to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub series: Arc<str>,
    pub kind: Kind,
    pub tier: u8,
    pub start: i64,
    pub end: i64,
    pub points: u32,
    pub data: Vec<u8>,
}

impl Chunk {
    /// Its points, decoded.
    pub fn points(&self) -> Result<Vec<(i64, Point)>, &'static str> {
        points_of(self.kind, &self.data, self.points)
    }
}

/// Decodes chunk bytes into points of a kind.
pub fn points_of(kind: Kind, data: &[u8], n: u32) -> Result<Vec<(i64, Point)>, &'static str> {
    let fields = kind.fields();
    let mut out = Vec::with_capacity(crate::gorilla::capacity(data, n));
    crate::gorilla::decode_each(data, n, fields.len(), |t, vals| {
        let mut p = Point::default();
        for (f, v) in fields.iter().zip(vals) {
            p.set(*f, *v);
        }
        out.push((t, p));
    })?;
    Ok(out)
}

struct Head {
    start: i64,
    end: i64,
    enc: Encoder,
}

struct Series {
    kind: Kind,
    heads: Vec<Option<Head>>,
    /// Per rollup tier (index 1..), the open window's end and what it holds so far.
    windows: Vec<Option<(i64, Point)>>,
    /// Per tier, the last point's time already stored or taken (replay skips what is not newer).
    last: Vec<i64>,
    /// The last point's time anywhere: here, or in any replica's stored chunks.
    seen: i64,
    stagger: u32,
}

/// What a flush must write.
#[derive(Debug, Default)]
pub struct Writes {
    pub entries: Vec<Entry>,
    pub chunks: Vec<Chunk>,
}

pub struct Db {
    pub tiers: Vec<TierSpec>,
    series: FxHashMap<Arc<str>, Series>,
}

impl Db {
    pub fn new(tiers: Vec<TierSpec>) -> Db {
        Db { tiers, series: FxHashMap::default() }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// A chunk end already in the store (loaded at start, before a replay).
    pub fn persisted(&mut self, key: Arc<str>, kind: Kind, tier: u8, end: i64) {
        let n = self.tiers.len();
        let s = series_entry(&mut self.series, &key, kind, n);
        if let Some(l) = s.last.get_mut(tier as usize) {
            *l = (*l).max(end);
        }
        s.seen = s.seen.max(end);
    }

    /// A series another replica stored, with its last chunk's end: known here (for queries) until it is past
    /// retention, without touching what this replica's replay skips.
    pub fn known(&mut self, key: Arc<str>, kind: Kind, end: i64) {
        let n = self.tiers.len();
        let s = series_entry(&mut self.series, &key, kind, n);
        s.seen = s.seen.max(end);
    }

    /// A flush's points at time `t`: appended to the finest tier, rolled up into the others; then every head
    /// whose span is over is closed, and series past retention forgotten.
    pub fn append(&mut self, t: i64, points: &[(Arc<str>, Kind, Point)]) -> Writes {
        let mut w = Writes::default();
        for (key, kind, p) in points {
            self.add(key, *kind, 0, t, *p, &mut w);
        }
        self.close_windows(t, &mut w);
        self.close_spent(t, &mut w);
        w
    }

    /// Closes every head whose span is over by `now` (it would have been full by then, had its series kept
    /// reporting), and forgets the series that hold nothing open and are past every tier's retention.
    fn close_spent(&mut self, now: i64, w: &mut Writes) {
        let Db { tiers, series } = self;
        let keep = tiers.iter().map(|t| t.retention_ms).max().unwrap_or(0);
        series.retain(|key, s| {
            for (i, spec) in tiers.iter().enumerate() {
                let Some(h) = &s.heads[i] else { continue };
                if now - h.start >= head_limit(spec, s.stagger) as i64 * spec.step_ms {
                    let h = s.heads[i].take().expect("checked");
                    w.chunks.push(chunk(key, s.kind, i as u8, &h));
                }
            }
            let open = s.heads.iter().any(Option::is_some) || s.windows.iter().any(Option::is_some);
            open || now.saturating_sub(s.seen) <= keep
        });
    }

    /// The WAL again after a crash, row by row in time order. Returns chunks that filled up meanwhile.
    pub fn replay(&mut self, entries: &[Entry]) -> Writes {
        let mut w = Writes::default();
        for e in entries {
            if self.series.get(&e.series).is_some_and(|s| s.kind != e.kind) {
                continue;
            }
            self.add(&e.series, e.kind, e.tier as usize, e.t, e.point, &mut w);
            if e.tier == 0 {
                self.close_windows(e.t, &mut w);
            }
        }
        w.entries.clear(); // they are in the WAL already
        w
    }

    fn add(&mut self, key: &Arc<str>, kind: Kind, tier: usize, t: i64, p: Point, w: &mut Writes) {
        let Db { tiers, series } = self;
        let tiers: &[TierSpec] = tiers;
        let s = series_entry(series, key, kind, tiers.len());
        if s.kind != kind || tier >= tiers.len() {
            return;
        }
        s.seen = s.seen.max(t);
        if tier == 0 {
            // Rollups are fed by the finest tier even when its point is a replayed duplicate: an open window
            // must be rebuilt whole.
            for (i, spec) in tiers.iter().enumerate().skip(1) {
                let end = (t - 1).div_euclid(spec.step_ms) * spec.step_ms + spec.step_ms;
                match &mut s.windows[i] {
                    Some((wend, acc)) if *wend == end => acc.merge(kind, &p),
                    slot => {
                        if let Some((wend, acc)) = slot.take() {
                            push_parts(&mut s.heads, &mut s.last, s.kind, s.stagger, key, i as u8, wend, acc, tiers, w);
                        }
                        *slot = Some((end, p));
                    }
                }
            }
        }
        push_parts(&mut s.heads, &mut s.last, s.kind, s.stagger, key, tier as u8, t, p, tiers, w);
    }

    /// Emits every rollup window that ended by `now`.
    fn close_windows(&mut self, now: i64, w: &mut Writes) {
        let Db { tiers, series } = self;
        for (key, s) in series.iter_mut() {
            for i in 1..tiers.len() {
                if let Some((end, _)) = s.windows[i] {
                    if end <= now {
                        let (end, acc) = s.windows[i].take().expect("checked");
                        push_parts(&mut s.heads, &mut s.last, s.kind, s.stagger, key, i as u8, end, acc, tiers, w);
                    }
                }
            }
        }
    }

    /// Per tier, the earliest time an open head or window still needs from the WAL (`i64::MAX`: none).
    pub fn floors(&self) -> Vec<i64> {
        let mut f = vec![i64::MAX; self.tiers.len()];
        for s in self.series.values() {
            for (i, h) in s.heads.iter().enumerate() {
                if let Some(h) = h {
                    f[i] = f[i].min(h.start);
                }
            }
            for (i, win) in s.windows.iter().enumerate() {
                if let Some((end, _)) = win {
                    // A window is rebuilt from the finest tier's points after its start.
                    f[0] = f[0].min(end - self.tiers[i].step_ms);
                }
            }
        }
        f
    }

    /// The earliest time an open rollup window still needs the finest tier's write-ahead rows from
    /// (`i64::MAX`: none), for a clean shutdown that stores the heads but must rebuild the windows after.
    pub fn window_floor(&self) -> i64 {
        let mut f = i64::MAX;
        for s in self.series.values() {
            for (i, win) in s.windows.iter().enumerate() {
                if let Some((end, _)) = win {
                    f = f.min(end - self.tiers[i].step_ms);
                }
            }
        }
        f
    }

    /// Every open head as a (partial) chunk, for a clean shutdown.
    pub fn open_chunks(&self) -> Vec<Chunk> {
        let mut out = vec![];
        for (key, s) in &self.series {
            for (i, h) in s.heads.iter().enumerate() {
                if let Some(h) = h {
                    out.push(chunk(key, s.kind, i as u8, h));
                }
            }
        }
        out
    }

    /// The kind of a series this process knows.
    pub fn kind(&self, key: &str) -> Option<Kind> {
        self.series.get(key).map(|s| s.kind)
    }

    /// Every series this process knows, with its kind.
    pub fn series(&self) -> impl Iterator<Item = (&Arc<str>, Kind)> {
        self.series.iter().map(|(k, s)| (k, s.kind))
    }

    /// The open head's points of a series and tier within [from, to].
    pub fn head_points(&self, key: &str, tier: u8, from: i64, to: i64) -> Vec<(i64, Point)> {
        let Some(s) = self.series.get(key) else { return vec![] };
        let Some(Some(h)) = s.heads.get(tier as usize) else { return vec![] };
        if h.end < from || h.start > to {
            return vec![];
        }
        points_of(s.kind, h.enc.bytes(), h.enc.points)
            .unwrap_or_default()
            .into_iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .collect()
    }
}

fn chunk(key: &Arc<str>, kind: Kind, tier: u8, h: &Head) -> Chunk {
    Chunk {
        series: key.clone(),
        kind,
        tier,
        start: h.start,
        end: h.end,
        points: h.enc.points,
        data: h.enc.bytes().to_vec(),
    }
}

fn series_entry<'a>(
    series: &'a mut FxHashMap<Arc<str>, Series>,
    key: &Arc<str>,
    kind: Kind,
    n: usize,
) -> &'a mut Series {
    if !series.contains_key(key) {
        let mut h = FxHasher::default();
        key.hash(&mut h);
        series.insert(
            key.clone(),
            Series {
                kind,
                heads: (0..n).map(|_| None).collect(),
                windows: vec![None; n],
                last: vec![i64::MIN; n],
                seen: i64::MIN,
                stagger: h.finish() as u32,
            },
        );
    }
    series.get_mut(key).expect("inserted")
}

/// Appends a point to a tier's head unless that time is already there; closes a full head.
#[allow(clippy::too_many_arguments)]
fn push_parts(
    heads: &mut [Option<Head>],
    last: &mut [i64],
    kind: Kind,
    stagger: u32,
    key: &Arc<str>,
    tier: u8,
    t: i64,
    p: Point,
    tiers: &[TierSpec],
    w: &mut Writes,
) {
    let i = tier as usize;
    if t <= last[i] {
        return;
    }
    last[i] = t;
    let fields = kind.fields();
    let mut vals = [0f64; 8];
    for (v, f) in vals.iter_mut().zip(fields) {
        *v = p.get(*f);
    }
    let head = heads[i].get_or_insert_with(|| Head { start: t, end: t, enc: Encoder::new(fields.len()) });
    head.enc.push(t, &vals[..fields.len()]);
    head.end = t;
    w.entries.push(Entry { series: key.clone(), kind, tier, t, point: p });
    if head.enc.points >= head_limit(&tiers[i], stagger) {
        let h = heads[i].take().expect("just used");
        w.chunks.push(chunk(key, kind, tier, &h));
    }
}

/// How many points a series' head of a tier holds when full (staggered per series, so heads do not all close
/// in the same flush).
fn head_limit(spec: &TierSpec, stagger: u32) -> u32 {
    spec.chunk_points + stagger % (spec.chunk_points / 2).max(1)
}

/// WAL rows: entries in a compact binary form (tier, kind, key, time, the kind's fields), little-endian.
pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 48);
    for e in entries {
        out.push(e.tier);
        out.push(e.kind.code());
        let key = e.series.as_bytes();
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&e.t.to_le_bytes());
        for f in e.kind.fields() {
            out.extend_from_slice(&e.point.get(*f).to_le_bytes());
        }
    }
    out
}

pub fn decode_entries(mut b: &[u8]) -> Result<Vec<Entry>, &'static str> {
    let bad = "a WAL row is cut short or damaged";
    let mut out = vec![];
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>, &'static str> {
        if b.len() < n {
            return Err(bad);
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head.to_vec())
    };
    while !b.is_empty() {
        let hdr = take(&mut b, 4)?;
        let kind = Kind::from_code(hdr[1]).ok_or(bad)?;
        let len = u16::from_le_bytes([hdr[2], hdr[3]]) as usize;
        let key = String::from_utf8(take(&mut b, len)?).map_err(|_| bad)?;
        let t = i64::from_le_bytes(take(&mut b, 8)?.try_into().map_err(|_| bad)?);
        let mut point = Point::default();
        for f in kind.fields() {
            point.set(*f, f64::from_le_bytes(take(&mut b, 8)?.try_into().map_err(|_| bad)?));
        }
        out.push(Entry { series: Arc::from(key), kind, tier: hdr[0], t, point });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(v: f64) -> Point {
        Point { sum: v, count: 1.0, ..Point::default() }
    }

    fn tiers() -> Vec<TierSpec> {
        vec![
            TierSpec { step_ms: 10_000, retention_ms: DAY, chunk_points: 6 },
            TierSpec { step_ms: 60_000, retention_ms: 30 * DAY, chunk_points: 4 },
        ]
    }

    #[test]
    fn rollups_close_with_their_window_and_keep_sums() {
        let mut db = Db::new(tiers());
        let k: Arc<str> = Arc::from("hits");
        let mut all = Writes::default();
        for i in 1..=12 {
            let w = db.append(i * 10_000, &[(k.clone(), Kind::Counter, counter(i as f64))]);
            all.entries.extend(w.entries);
            all.chunks.extend(w.chunks);
        }
        let minute: Vec<(i64, f64)> = all.entries.iter().filter(|e| e.tier == 1).map(|e| (e.t, e.point.sum)).collect();
        assert_eq!(minute, [(60_000, 21.0), (120_000, 57.0)], "1+…+6 and 7+…+12");
        assert!(!all.chunks.is_empty() && all.chunks.iter().all(|c| c.tier == 0));
        let pts = all.chunks[0].points().unwrap();
        assert_eq!(pts[0], (10_000, counter(1.0)));
    }

    /// Rollup correctness per kind, as a table: six 10 s intervals into one 1 min point.
    #[test]
    fn each_kind_rolls_up_without_averaging_averages() {
        let timer = |count: f64, sum: f64, min: f64, max: f64, p99: f64| Point {
            count,
            sum,
            min,
            max,
            p50: min,
            p90: p99,
            p99,
            last: 0.0,
        };
        let gauge = |v: f64| Point { last: v, min: v, max: v, sum: v, count: 1.0, ..Point::default() };
        let set = |n: f64| Point { last: n, ..Point::default() };
        let table: Vec<(Kind, Vec<Point>, &str, f64)> = vec![
            (Kind::Counter, (1..=6).map(|i| counter(i as f64)).collect(), "count", 21.0),
            (Kind::Counter, (1..=6).map(|i| counter(i as f64)).collect(), "rate", 21.0 / 60.0),
            // One slow request in a quiet interval must not weigh like a busy interval's average.
            (
                Kind::Timer,
                vec![timer(1.0, 900.0, 900.0, 900.0, 900.0), timer(99.0, 990.0, 5.0, 20.0, 19.0)],
                "mean",
                18.9,
            ),
            (
                Kind::Timer,
                vec![timer(1.0, 900.0, 900.0, 900.0, 900.0), timer(99.0, 990.0, 5.0, 20.0, 19.0)],
                "count",
                100.0,
            ),
            (
                Kind::Timer,
                vec![timer(1.0, 900.0, 900.0, 900.0, 900.0), timer(99.0, 990.0, 5.0, 20.0, 19.0)],
                "min",
                5.0,
            ),
            (
                Kind::Timer,
                vec![timer(1.0, 900.0, 900.0, 900.0, 900.0), timer(99.0, 990.0, 5.0, 20.0, 19.0)],
                "max",
                900.0,
            ),
            (
                Kind::Timer,
                vec![timer(1.0, 900.0, 900.0, 900.0, 900.0), timer(99.0, 990.0, 5.0, 20.0, 19.0)],
                "p99",
                900.0,
            ),
            (Kind::Gauge, [3.0, 9.0, 6.0].map(gauge).to_vec(), "value", 6.0),
            (Kind::Gauge, [3.0, 9.0, 6.0].map(gauge).to_vec(), "mean", 6.0),
            (Kind::Gauge, [3.0, 9.0, 6.0].map(gauge).to_vec(), "min", 3.0),
            (Kind::Gauge, [3.0, 9.0, 6.0].map(gauge).to_vec(), "max", 9.0),
            (Kind::Set, [4.0, 7.0, 5.0].map(set).to_vec(), "distinct", 7.0),
        ];
        for (kind, points, stat, want) in table {
            let mut db = Db::new(tiers());
            let k: Arc<str> = Arc::from("s");
            let mut minute = None;
            for (i, p) in points.iter().enumerate() {
                let w = db.append((i as i64 + 1) * 10_000, &[(k.clone(), kind, *p)]);
                minute = minute.or(w.entries.into_iter().find(|e| e.tier == 1));
            }
            // The minute closes at 60 s, with or without more points.
            let w = db.append(60_000, &[]);
            let m = minute.or(w.entries.into_iter().find(|e| e.tier == 1)).expect("the minute's point");
            assert_eq!(m.t, 60_000);
            let got = m.point.stat(kind, stat, 60.0).unwrap();
            assert!((got - want).abs() < 1e-9, "{kind:?} {stat}: {got} != {want}");
        }
    }

    #[test]
    fn a_replay_after_a_crash_rebuilds_heads_and_windows_without_duplicates() {
        let k: Arc<str> = Arc::from("hits");
        let mut db = Db::new(tiers());
        let mut wal = vec![];
        let mut stored: Vec<Chunk> = vec![];
        for i in 1..=9 {
            let w = db.append(i * 10_000, &[(k.clone(), Kind::Counter, counter(1.0))]);
            wal.push(encode_entries(&w.entries));
            stored.extend(w.chunks);
        }
        // The process dies. A new one learns the stored chunk ends, then replays the WAL rows.
        let mut again = Db::new(tiers());
        for c in &stored {
            again.persisted(c.series.clone(), c.kind, c.tier, c.end);
        }
        for row in &wal {
            let w = again.replay(&decode_entries(row).unwrap());
            assert!(w.chunks.is_empty(), "nothing closes twice");
        }
        let head: Vec<i64> = again.head_points("hits", 0, 0, i64::MAX).iter().map(|p| p.0).collect();
        let before: Vec<i64> = db.head_points("hits", 0, 0, i64::MAX).iter().map(|p| p.0).collect();
        assert_eq!(head, before, "the open head is back");
        // The next minute's rollup holds all of its points: those before the crash and after.
        let mut later = Writes::default();
        for i in 10..=12 {
            let w = again.append(i * 10_000, &[(k.clone(), Kind::Counter, counter(1.0))]);
            later.entries.extend(w.entries);
        }
        let minute: Vec<(i64, f64)> =
            later.entries.iter().filter(|e| e.tier == 1).map(|e| (e.t, e.point.sum)).collect();
        assert_eq!(minute, [(120_000, 6.0)]);
    }

    /// A series sent once, then another sent every flush for longer than a head's span: the once-sent series'
    /// head is stored as a chunk at the end of its span, every tier's floor moves past it, and the series is
    /// forgotten once it is past every tier's retention.
    #[test]
    fn an_idle_series_is_stored_and_stops_pinning_the_wal_then_is_forgotten() {
        let tiers = default_tiers(10_000);
        let (once, live): (Arc<str>, Arc<str>) = (Arc::from("once"), Arc::from("live"));
        let mut db = Db::new(tiers.clone());
        let step = tiers[0].step_ms;
        db.append(step, &[(once.clone(), Kind::Counter, counter(1.0)), (live.clone(), Kind::Counter, counter(1.0))]);
        // The longest a tier's head can span: its most points times its step.
        let span = |i: usize| (tiers[i].chunk_points + tiers[i].chunk_points / 2) as i64 * tiers[i].step_ms;
        let mut closed = vec![];
        let mut t = step;
        // Live traffic for longer than the finest tier's span.
        while t < 2 * span(0) + tiers[1].step_ms {
            t += step;
            let w = db.append(t, &[(live.clone(), Kind::Counter, counter(1.0))]);
            closed.extend(w.chunks.into_iter().filter(|c| c.series == once));
        }
        let tier0: Vec<&Chunk> = closed.iter().filter(|c| c.tier == 0).collect();
        assert_eq!(tier0.len(), 1, "the once-sent head is stored as one chunk");
        assert_eq!((tier0[0].start, tier0[0].end, tier0[0].points), (step, step, 1));
        assert!(db.floors()[0] > step, "the finest tier's WAL no longer reaches back to it: {:?}", db.floors());
        assert!(t - db.floors()[0] <= span(0), "nor further back than one span");
        // Every tier, once its span is over.
        while t < span(1).max(span(2)) + tiers[2].step_ms {
            t += tiers[1].step_ms;
            let w = db.append(t, &[(live.clone(), Kind::Counter, counter(1.0))]);
            closed.extend(w.chunks.into_iter().filter(|c| c.series == once));
        }
        for i in 0..tiers.len() {
            assert_eq!(closed.iter().filter(|c| c.tier == i as u8).count(), 1, "tier {i}: {closed:?}");
            assert!(t - db.floors()[i] <= span(i), "tier {i}'s WAL is at most a span: {:?}", db.floors());
        }
        assert!(db.kind("once").is_some(), "kept while within retention");
        // Past every tier's retention, with nothing open: forgotten; the live series is not.
        let keep = tiers.iter().map(|t| t.retention_ms).max().unwrap();
        db.append(step + keep + 1, &[(live.clone(), Kind::Counter, counter(1.0))]);
        assert!(db.kind("once").is_none(), "forgotten past retention");
        assert!(db.kind("live").is_some());
        // A series another replica stored recently is known here, and not forgotten.
        db.known(Arc::from("theirs"), Kind::Gauge, step + keep);
        db.append(step + keep + 2, &[]);
        assert_eq!(db.kind("theirs"), Some(Kind::Gauge));
    }

    #[test]
    fn wal_rows_read_back() {
        let e = Entry {
            series: Arc::from("lat{route=/}"),
            kind: Kind::Timer,
            tier: 0,
            t: 123,
            point: Point { count: 3.0, sum: 6.0, min: 1.0, max: 3.0, p50: 2.0, p90: 3.0, p99: 3.0, last: 0.0 },
        };
        let bytes = encode_entries(&[e.clone(), e.clone()]);
        assert_eq!(decode_entries(&bytes).unwrap(), vec![e.clone(), e]);
        assert!(decode_entries(&bytes[..bytes.len() - 1]).is_err());
    }
}
