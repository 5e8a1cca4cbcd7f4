//! Reading series back: which tier answers a range, and points bucketed by step with a stat computed from
//! merged intervals (a mean is a sum over a count, a rate a sum over the step's seconds).

use crate::tsdb::TierSpec;
use crate::{Kind, Point};

/// The tier that answers a range: without a step, the finest that still holds `from` (by retention, counted
/// back from `now`); with one, the coarsest of those holding `from` whose resolution is no coarser than the
/// step (fewer points to read for the same answer). The coarsest tier when none holds `from`.
pub fn choose_tier(tiers: &[TierSpec], now: i64, from: i64, step: Option<i64>) -> usize {
    // A minute's grace: `-24h` is computed a moment before `now` is, and must still read the 24 h tier.
    let covers = |t: &TierSpec| now - from <= t.retention_ms + 60_000;
    let finest = tiers.iter().position(covers).unwrap_or(tiers.len() - 1);
    match step {
        None => finest,
        Some(s) => tiers.iter().enumerate().rev().find(|(_, t)| covers(t) && t.step_ms <= s).map_or(finest, |(i, _)| i),
    }
}

/// Points (in time order) bucketed into windows of `step_ms` ending on multiples of it, merged, and the stat
/// taken per bucket; a bucket where the stat has no value (a mean of nothing) is left out.
pub fn bucket(kind: Kind, points: &[(i64, Point)], step_ms: i64, stat: &str) -> Vec<(i64, f64)> {
    let secs = step_ms as f64 / 1000.0;
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut acc: Option<(i64, Point)> = None;
    let emit = |end: i64, p: &Point, out: &mut Vec<(i64, f64)>| {
        if let Some(v) = p.stat(kind, stat, secs) {
            if v.is_finite() {
                out.push((end, v));
            }
        }
    };
    for (t, p) in points {
        let end = (t - 1).div_euclid(step_ms) * step_ms + step_ms;
        match &mut acc {
            Some((e, a)) if *e == end => a.merge(kind, p),
            _ => {
                if let Some((e, a)) = acc.take() {
                    emit(e, &a, &mut out);
                }
                acc = Some((end, *p));
            }
        }
    }
    if let Some((e, a)) = acc {
        emit(e, &a, &mut out);
    }
    out
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A value as people read it in one line of text (`crew graph`, `!graph`, alert summaries): whole numbers as
/// they are, others to three significant digits without trailing zeros (`0.005`, `12.3`, `1.5`).
pub fn short(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    if v.abs() >= 100.0 {
        return format!("{v:.0}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// Points (Unix seconds) as a sparkline of `width` columns between `from` and `to`, scaled to their own range;
/// a column without data is a space, and a column with several points shows the highest (a spike is never
/// hidden). For `crew graph` and the robot's `!graph`.
pub fn sparkline(points: &[(i64, f64)], from: i64, to: i64, width: usize) -> String {
    let width = width.max(1);
    let mut cols: Vec<Option<f64>> = vec![None; width];
    let span = (to - from).max(1) as f64;
    for &(t, v) in points {
        let i = (((t - from) as f64 / span) * (width - 1) as f64).round().clamp(0.0, (width - 1) as f64) as usize;
        cols[i] = Some(cols[i].map_or(v, |c: f64| c.max(v)));
    }
    let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.1), h.max(p.1)));
    cols.iter()
        .map(|c| match c {
            None => ' ',
            Some(v) if hi > lo => BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize],
            Some(_) => BARS[3],
        })
        .collect()
}

#[cfg(test)]
mod short_tests {
    #[test]
    fn three_significant_digits() {
        let table = [
            (9.0, "9"),
            (5.0, "5"),
            (0.005, "0.005"),
            (12.345, "12.3"),
            (1.5, "1.5"),
            (0.1234567, "0.123"),
            (250.7, "251"),
            (-3.25, "-3.25"),
            (1e16, "10000000000000000"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in table {
            assert_eq!(super::short(v), want, "{v}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sparkline_scales_to_its_range_and_leaves_gaps() {
        let line = super::sparkline(&[(0, 0.0), (50, 7.0), (100, 14.0)], 0, 100, 60);
        assert_eq!(line.chars().count(), 60);
        assert_eq!(line.chars().next(), Some('▁'));
        assert_eq!(line.chars().last(), Some('█'));
        assert_eq!(line.chars().nth(30), Some('▅'));
        assert_eq!(line.chars().nth(10), Some(' '));
    }

    use super::*;

    fn timer(count: f64, sum: f64, min: f64, max: f64) -> Point {
        Point { count, sum, min, max, p50: min, p90: max, p99: max, last: 0.0 }
    }

    /// Rollup correctness as a table: each stat over two 10 s intervals merged into one 20 s step.
    #[test]
    fn stats_of_merged_intervals() {
        let pts = [(10_000, timer(1.0, 100.0, 100.0, 100.0)), (20_000, timer(3.0, 30.0, 5.0, 15.0))];
        for (stat, want) in [
            ("count", 4.0),
            ("rate", 0.2),
            ("sum", 130.0),
            ("mean", 32.5), // (100 + 30) / 4, not the mean of means (55)
            ("min", 5.0),
            ("max", 100.0),
            ("p99", 100.0),
        ] {
            assert_eq!(bucket(Kind::Timer, &pts, 20_000, stat), [(20_000, want)], "{stat}");
        }
        let c = [
            (10_000, Point { sum: 5.0, count: 2.0, ..Point::default() }),
            (20_000, Point { sum: 7.0, count: 1.0, ..Point::default() }),
        ];
        assert_eq!(bucket(Kind::Counter, &c, 20_000, "count"), [(20_000, 12.0)]);
        assert_eq!(bucket(Kind::Counter, &c, 10_000, "rate"), [(10_000, 0.5), (20_000, 0.7)]);
        let g = [
            (10_000, Point { last: 4.0, min: 2.0, max: 4.0, sum: 6.0, count: 2.0, ..Point::default() }),
            (20_000, Point { last: 9.0, min: 9.0, max: 9.0, sum: 9.0, count: 1.0, ..Point::default() }),
        ];
        assert_eq!(bucket(Kind::Gauge, &g, 20_000, "value"), [(20_000, 9.0)], "the last value");
        assert_eq!(bucket(Kind::Gauge, &g, 20_000, "mean"), [(20_000, 5.0)]);
        assert_eq!(bucket(Kind::Gauge, &g, 20_000, "min"), [(20_000, 2.0)]);
        assert!(bucket(Kind::Counter, &c, 10_000, "p99").is_empty(), "not a counter's stat");
    }

    #[test]
    fn the_tier_follows_the_range() {
        let tiers = crate::tsdb::default_tiers(10_000);
        let now = 100 * 86_400_000;
        assert_eq!(choose_tier(&tiers, now, now - 3_600_000, None), 0);
        assert_eq!(choose_tier(&tiers, now, now - 7 * 86_400_000, None), 1);
        assert_eq!(choose_tier(&tiers, now, now - 90 * 86_400_000, None), 2);
        assert_eq!(choose_tier(&tiers, now, now - 3_600_000, Some(600_000)), 2, "a 10 min step reads 10 min rollups");
        assert_eq!(choose_tier(&tiers, now, now - 3_600_000, Some(120_000)), 1);
    }
}
