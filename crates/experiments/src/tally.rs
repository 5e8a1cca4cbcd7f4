//! Counting an experiment's units into per-variant results and a cumulative series over time.

use crate::stats::{compare, rate_interval, srm, Comparison, Method, Srm};
use serde::Serialize;

/// A variant of the split and its configured weight. The first variant is the control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub name: String,
    pub weight: f64,
}

/// One exposed user: the index of its variant, when it was first exposed, and when its conversion was
/// attributed (never before the exposure; `None` if it has not converted since).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub variant: u16,
    pub exposed_at: i64,
    pub converted_at: Option<i64>,
}

/// How to analyse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub method: Method,
    /// 0.05 for 95% intervals.
    pub alpha: f64,
    /// The series runs from `start` to `end` (ms since the epoch) in `points` steps (at most 500).
    pub start: i64,
    pub end: i64,
    pub points: usize,
}

/// A variant's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantResult {
    pub name: String,
    pub weight: f64,
    pub users: u64,
    pub conversions: u64,
    pub rate: f64,
    /// The rate's own interval.
    pub rate_low: Option<f64>,
    pub rate_high: Option<f64>,
    /// Against the control (`None` for the control itself, or when it cannot be computed).
    pub comparison: Option<Comparison>,
}

/// One variant at one point of the series (cumulative).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointVariant {
    pub users: u64,
    pub conversions: u64,
    pub rate: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// The cumulative figures at the end of a step of the series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub at: i64,
    pub variants: Vec<PointVariant>,
}

/// What an experiment's units say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub variants: Vec<VariantResult>,
    pub srm: Srm,
    pub series: Vec<Point>,
    /// Units whose variant index is not one of `variants` (the definition changed under them): not counted.
    pub unknown: u64,
}

/// So many users of a variant exposed (or converted) at a time: what a store that keeps tallies gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub variant: u16,
    pub at: i64,
    pub users: u64,
}

/// Counts `units` (one pass, memory in `variants × points`) and computes the figures.
pub fn analyse(variants: &[Variant], units: impl IntoIterator<Item = Unit>, o: &Options) -> Analysis {
    let mut conversions = vec![];
    let exposed = units.into_iter().map(|u| {
        if let Some(c) = u.converted_at {
            conversions.push(Bucket { variant: u.variant, at: c.max(u.exposed_at), users: 1 });
        }
        Bucket { variant: u.variant, at: u.exposed_at, users: 1 }
    });
    let exposed: Vec<Bucket> = exposed.collect();
    analyse_tallies(variants, exposed, conversions, o)
}

/// The same figures from tallies: users first exposed, and users converted, per variant and time.
pub fn analyse_tallies(
    variants: &[Variant],
    exposed: impl IntoIterator<Item = Bucket>,
    converted: impl IntoIterator<Item = Bucket>,
    o: &Options,
) -> Analysis {
    let k = variants.len();
    let points = o.points.clamp(1, 500);
    let span = (o.end - o.start).max(1) as u64;
    let step_of = |t: i64| -> usize {
        let d = (t.max(o.start) - o.start) as u64;
        ((d.saturating_mul(points as u64) / span) as usize).min(points - 1)
    };
    // Per variant and step: users first exposed in that step, conversions attributed in it.
    let mut users = vec![0u64; k * points];
    let mut conversions = vec![0u64; k * points];
    let mut unknown = 0;
    for b in exposed {
        let v = b.variant as usize;
        if v >= k {
            unknown += b.users;
            continue;
        }
        users[v * points + step_of(b.at)] += b.users;
    }
    for b in converted {
        let v = b.variant as usize;
        if v < k {
            conversions[v * points + step_of(b.at)] += b.users;
        }
    }
    let mut series = Vec::with_capacity(points);
    let mut totals = vec![(0u64, 0u64); k];
    for s in 0..points {
        let mut pv = Vec::with_capacity(k);
        for (v, t) in totals.iter_mut().enumerate() {
            t.0 += users[v * points + s];
            t.1 += conversions[v * points + s];
            let interval = rate_interval(t.0, t.1, o.method, o.alpha);
            pv.push(PointVariant {
                users: t.0,
                conversions: t.1,
                rate: if t.0 == 0 { 0.0 } else { t.1 as f64 / t.0 as f64 },
                low: interval.map(|i| i.0),
                high: interval.map(|i| i.1),
            });
        }
        let at = o.start + ((span as u128 * (s as u128 + 1)) / points as u128) as i64;
        series.push(Point { at, variants: pv });
    }
    let control = totals.first().copied().unwrap_or((0, 0));
    let results = variants
        .iter()
        .zip(&totals)
        .enumerate()
        .map(|(i, (var, &(n, c)))| {
            let interval = rate_interval(n, c, o.method, o.alpha);
            VariantResult {
                name: var.name.clone(),
                weight: var.weight,
                users: n,
                conversions: c,
                rate: if n == 0 { 0.0 } else { c as f64 / n as f64 },
                rate_low: interval.map(|i| i.0),
                rate_high: interval.map(|i| i.1),
                comparison: if i == 0 { None } else { compare(control, (n, c), o.method, o.alpha) },
            }
        })
        .collect();
    let counts: Vec<u64> = totals.iter().map(|t| t.0).collect();
    let weights: Vec<f64> = variants.iter().map(|v| v.weight).collect();
    Analysis { variants: results, srm: srm(&counts, &weights), series, unknown }
}
