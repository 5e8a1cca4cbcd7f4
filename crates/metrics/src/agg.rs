//! Aggregation per flush interval, as Etsy's StatsD does: counters sum (sample rates applied), timers keep
//! their values for exact percentiles, gauges hold their value (deltas move it), sets count distinct members.
//! A flush turns every series that received something (and every live gauge) into one `Point` and starts the
//! next interval. A series-cardinality limit refuses new series past it, counted.

use crate::statsd::Value;
use crate::{Kind, Point};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::hash::Hasher;
use std::sync::Arc;

/// Intervals a series may sit idle before it is forgotten (a gauge stops being re-sent): 360 = an hour at 10 s.
pub const IDLE_FLUSHES: u32 = 360;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    /// Samples taken in (a multi-value line counts each value).
    pub samples: u64,
    /// Samples refused because the series is new and the limit is reached.
    pub series_limited: u64,
    /// Samples whose type differs from the type their key was first seen with.
    pub type_conflicts: u64,
}

struct Entry {
    kind: Kind,
    touched: bool,
    idle: u32,
    sum: f64,
    count: f64,
    values: Vec<f64>,
    members: FxHashSet<u64>,
    gauge: f64,
    gmin: f64,
    gmax: f64,
    gsum: f64,
    gcount: f64,
}

impl Entry {
    fn new(kind: Kind) -> Entry {
        Entry {
            kind,
            touched: false,
            idle: 0,
            sum: 0.0,
            count: 0.0,
            values: Vec::new(),
            members: FxHashSet::default(),
            gauge: 0.0,
            gmin: f64::INFINITY,
            gmax: f64::NEG_INFINITY,
            gsum: 0.0,
            gcount: 0.0,
        }
    }
}

pub struct Aggregator {
    series: FxHashMap<Arc<str>, Entry>,
    pub max_series: usize,
    pub counts: Counts,
}

impl Aggregator {
    pub fn new(max_series: usize) -> Aggregator {
        Aggregator { series: FxHashMap::default(), max_series, counts: Counts::default() }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Takes one sample. Allocates only for a new series (its key) and a timer's growing value list.
    pub fn add(&mut self, key: &str, kind: Kind, value: Value, rate: f64) {
        self.add_inner(key, kind, value, rate, true)
    }

    /// crew's own figures, which the cardinality limit never refuses.
    pub fn add_internal(&mut self, key: &str, kind: Kind, value: f64) {
        self.add_inner(key, kind, Value::Num(value), 1.0, false)
    }

    fn add_inner(&mut self, key: &str, kind: Kind, value: Value, rate: f64, limited: bool) {
        let e = match self.series.get_mut(key) {
            Some(e) => e,
            None => {
                if limited && self.series.len() >= self.max_series {
                    self.counts.series_limited += 1;
                    return;
                }
                self.series.entry(Arc::from(key)).or_insert_with(|| Entry::new(kind))
            }
        };
        if e.kind != kind {
            self.counts.type_conflicts += 1;
            return;
        }
        self.counts.samples += 1;
        e.touched = true;
        e.idle = 0;
        match (kind, value) {
            (Kind::Counter, Value::Num(v)) => {
                e.sum += v / rate;
                e.count += 1.0;
            }
            (Kind::Timer, Value::Num(v)) => {
                e.values.push(v);
                e.count += 1.0 / rate;
                e.sum += v / rate;
            }
            (Kind::Gauge, v) => {
                e.gauge = match v {
                    Value::Delta(d) => e.gauge + d,
                    Value::Num(n) => n,
                    Value::Member(_) => e.gauge,
                };
                e.gmin = e.gmin.min(e.gauge);
                e.gmax = e.gmax.max(e.gauge);
                e.gsum += e.gauge;
                e.gcount += 1.0;
            }
            (Kind::Set, Value::Member(m)) => {
                let mut h = FxHasher::default();
                h.write(m);
                e.members.insert(h.finish());
            }
            (Kind::Set, Value::Num(n)) => {
                e.members.insert(n.to_bits());
            }
            _ => {}
        }
    }

    /// Ends the interval: one point per series that received something, and per gauge still live.
    pub fn flush(&mut self, out: &mut Vec<(Arc<str>, Kind, Point)>) {
        self.series.retain(|key, e| {
            if !e.touched {
                e.idle += 1;
                if e.kind == Kind::Gauge && e.idle <= IDLE_FLUSHES {
                    let g = e.gauge;
                    out.push((
                        key.clone(),
                        e.kind,
                        Point { last: g, min: g, max: g, sum: g, count: 1.0, ..Point::default() },
                    ));
                }
                return e.idle <= IDLE_FLUSHES;
            }
            let p = match e.kind {
                Kind::Counter => Point { sum: e.sum, count: e.count, ..Point::default() },
                Kind::Timer => {
                    let v = &mut e.values;
                    v.sort_unstable_by(f64::total_cmp);
                    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
                    Point {
                        count: e.count,
                        sum: e.sum,
                        min: v[0],
                        max: v[v.len() - 1],
                        p50: rank(0.50),
                        p90: rank(0.90),
                        p99: rank(0.99),
                        last: 0.0,
                    }
                }
                Kind::Gauge => {
                    Point { last: e.gauge, min: e.gmin, max: e.gmax, sum: e.gsum, count: e.gcount, ..Point::default() }
                }
                Kind::Set => Point { last: e.members.len() as f64, ..Point::default() },
            };
            out.push((key.clone(), e.kind, p));
            e.touched = false;
            e.sum = 0.0;
            e.count = 0.0;
            e.values.clear();
            e.members.clear();
            e.gmin = f64::INFINITY;
            e.gmax = f64::NEG_INFINITY;
            e.gsum = 0.0;
            e.gcount = 0.0;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statsd::Parser;

    fn feed(a: &mut Aggregator, lines: &str) {
        let mut p = Parser::new();
        for l in lines.lines() {
            let _ = p.parse(l.as_bytes(), |k, kind, v, r| a.add(k, kind, v, r));
        }
    }

    fn flush(a: &mut Aggregator) -> std::collections::BTreeMap<String, (Kind, Point)> {
        let mut out = vec![];
        a.flush(&mut out);
        out.into_iter().map(|(k, kind, p)| (k.to_string(), (kind, p))).collect()
    }

    #[test]
    fn one_interval_of_every_type() {
        let mut a = Aggregator::new(100);
        feed(&mut a, "hits:1|c\nhits:2|c|@0.5\nq:5|g\nq:+2|g\nq:-4|g\nu:a|s\nu:b|s\nu:a|s");
        let mut lat = String::new();
        for i in 1..=100 {
            lat.push_str(&format!("lat:{i}|ms\n"));
        }
        feed(&mut a, &lat);
        let f = flush(&mut a);
        assert_eq!(f["hits"].1.sum, 5.0, "1 + 2 at a rate of 0.5");
        assert_eq!(f["hits"].1.count, 2.0);
        let q = f["q"].1;
        assert_eq!((q.last, q.min, q.max, q.count), (3.0, 3.0, 7.0, 3.0));
        assert_eq!(f["u"].1.last, 2.0);
        let t = f["lat"].1;
        assert_eq!((t.count, t.sum, t.min, t.max, t.p50, t.p90, t.p99), (100.0, 5050.0, 1.0, 100.0, 50.0, 90.0, 99.0));

        // The next interval: counters, timers and sets that got nothing are not sent; a gauge holds its value.
        let f = flush(&mut a);
        assert_eq!(f.keys().collect::<Vec<_>>(), ["q"]);
        assert_eq!(f["q"].1.last, 3.0);
    }

    #[test]
    fn the_series_limit_refuses_new_series_and_counts() {
        let mut a = Aggregator::new(2);
        feed(&mut a, "a:1|c\nb:1|c\nc:1|c\na:1|c");
        assert_eq!(a.counts.series_limited, 1);
        a.add_internal("crew.statsd.lines", Kind::Counter, 4.0);
        assert_eq!(flush(&mut a).len(), 3, "crew's own series pass the limit");
        feed(&mut a, "a:1|g");
        assert_eq!(a.counts.type_conflicts, 1);
    }
}
