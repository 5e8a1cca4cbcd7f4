//! A series' figures for one interval, and how intervals merge into rollups: sums and counts add, minimums and
//! maximums take the extreme, so a mean is always a sum over a count and never an average of averages.

/// The StatsD type a series was fed as; a key is one series whatever its type, and keeps its first type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Timer,
    Set,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
            Kind::Set => "set",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "timer" => Kind::Timer,
            "set" => Kind::Set,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<Kind> {
        [Kind::Counter, Kind::Gauge, Kind::Timer, Kind::Set].get(c as usize).copied()
    }

    /// The fields a chunk of this kind stores, in order.
    pub fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Kind::Counter => &[Sum, Count],
            Kind::Timer => &[Count, Sum, Min, Max, P50, P90, P99],
            Kind::Gauge => &[Last, Min, Max, Sum, Count],
            Kind::Set => &[Last],
        }
    }

    /// The stats a query may ask of this kind.
    pub fn stats(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["count", "rate", "sum"],
            Kind::Timer => &["count", "rate", "sum", "mean", "min", "max", "p50", "p90", "p99"],
            Kind::Gauge => &["value", "min", "max", "mean"],
            Kind::Set => &["distinct"],
        }
    }
}

/// One stored figure of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Count,
    Sum,
    Min,
    Max,
    Last,
    P50,
    P90,
    P99,
}

/// One interval of one series. Counters: `sum` is the total added (sample rates applied), `count` the samples.
/// Timers: `count` values (sample rates applied), their `sum`, `min`, `max` and exact percentiles. Gauges:
/// `last` value and the `min`/`max`/`sum`/`count` of the values it held. Sets: `last` is the distinct count.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Point {
    pub fn get(&self, f: Field) -> f64 {
        match f {
            Field::Count => self.count,
            Field::Sum => self.sum,
            Field::Min => self.min,
            Field::Max => self.max,
            Field::Last => self.last,
            Field::P50 => self.p50,
            Field::P90 => self.p90,
            Field::P99 => self.p99,
        }
    }

    pub fn set(&mut self, f: Field, v: f64) {
        match f {
            Field::Count => self.count = v,
            Field::Sum => self.sum = v,
            Field::Min => self.min = v,
            Field::Max => self.max = v,
            Field::Last => self.last = v,
            Field::P50 => self.p50 = v,
            Field::P90 => self.p90 = v,
            Field::P99 => self.p99 = v,
        }
    }

    /// Folds a later interval into this one (a rollup). Percentiles cannot be merged exactly without the
    /// values, so a rollup keeps the highest of its intervals' percentiles: an upper bound, never an average.
    /// A set's distinct count likewise keeps its highest.
    pub fn merge(&mut self, kind: Kind, later: &Point) {
        match kind {
            Kind::Counter => {
                self.sum += later.sum;
                self.count += later.count;
            }
            Kind::Timer => {
                if later.count > 0.0 {
                    self.min = if self.count > 0.0 { self.min.min(later.min) } else { later.min };
                    self.max = if self.count > 0.0 { self.max.max(later.max) } else { later.max };
                }
                self.count += later.count;
                self.sum += later.sum;
                self.p50 = self.p50.max(later.p50);
                self.p90 = self.p90.max(later.p90);
                self.p99 = self.p99.max(later.p99);
            }
            Kind::Gauge => {
                self.min = self.min.min(later.min);
                self.max = self.max.max(later.max);
                self.sum += later.sum;
                self.count += later.count;
                self.last = later.last;
            }
            Kind::Set => self.last = self.last.max(later.last),
        }
    }

    /// A stat of this point over `step_secs`, or `None` when it does not apply to the kind.
    pub fn stat(&self, kind: Kind, stat: &str, step_secs: f64) -> Option<f64> {
        Some(match (kind, stat) {
            (Kind::Counter, "count" | "sum") => self.sum,
            (Kind::Counter, "rate") => self.sum / step_secs,
            (Kind::Timer, "count") => self.count,
            (Kind::Timer, "rate") => self.count / step_secs,
            (Kind::Timer, "sum") => self.sum,
            (Kind::Timer, "mean") if self.count > 0.0 => self.sum / self.count,
            (Kind::Timer, "min") | (Kind::Gauge, "min") => self.min,
            (Kind::Timer, "max") | (Kind::Gauge, "max") => self.max,
            (Kind::Timer, "p50") => self.p50,
            (Kind::Timer, "p90") => self.p90,
            (Kind::Timer, "p99") => self.p99,
            (Kind::Gauge, "value") => self.last,
            (Kind::Gauge, "mean") if self.count > 0.0 => self.sum / self.count,
            (Kind::Set, "distinct") => self.last,
            _ => return None,
        })
    }
}
