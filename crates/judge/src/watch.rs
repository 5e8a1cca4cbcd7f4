//! The series a launch plan or an environment's `watch` names, as crew.toml and plan files write them: the
//! series, its stat, its bad direction, whether it is critical, and for error ratios the series it is over.
//! Checked here once (unknown stats, directions and keys are errors naming the key); the caller fetches the
//! data and turns each into a [`Metric`](crate::Metric) with [`WatchSeries::rule`].

use crate::judge::{Direction, MetricRule};
use serde::{Deserialize, Serialize};

/// The stats a watch may name (each applies to some kinds of series: which, the caller knows).
pub const STATS: [&str; 11] = ["count", "rate", "sum", "mean", "min", "max", "p50", "p90", "p99", "value", "distinct"];

/// Interval points a side a watched series needs before the judge says anything of it.
pub const WATCH_MIN_POINTS: usize = 3;

/// One series to watch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSeries {
    /// The series name (`www.latency`); `series` in a plan file.
    #[serde(alias = "series")]
    pub name: String,
    /// The stat of each interval's point (`p99`); the series' usual one when left out (a timer's mean, a
    /// counter's rate, a gauge's value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<String>,
    /// The bad direction: `increase`, `decrease` or `either`.
    #[serde(default)]
    pub direction: Direction,
    /// A critical series that is high or low fails the verdict whatever the score.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
    /// Its weight in the score (1 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// An error ratio: `name` counts the bad events and `over` the trials (`www.errors` over `www.requests`),
    /// judged by a two-proportion test on the counts rather than by ranks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over: Option<String>,
    /// A higher canary is bad only past this ratio of the baseline (1.1 by default: 10% more is tolerated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_increase: Option<f64>,
    /// A lower canary is bad only under this ratio (0.9 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_decrease: Option<f64>,
}

/// A series name as StatsD makes them: letters, digits, `.`, `_`, `-`, at most 200 bytes.
fn good_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl WatchSeries {
    /// The name the judge reports: `www.latency p99`, `www.errors/www.requests`.
    pub fn label(&self) -> String {
        match (&self.over, &self.stat) {
            (Some(over), _) => format!("{}/{over}", self.name),
            (None, Some(stat)) => format!("{} {stat}", self.name),
            (None, None) => self.name.clone(),
        }
    }

    /// The judge's rule for this series. A watched series needs [`WATCH_MIN_POINTS`] interval points a side
    /// to be judged: one or two points can never differ significantly, so they would pass any canary (a loaded
    /// server that flushes late must hold, not pass).
    pub fn rule(&self) -> MetricRule {
        let d = MetricRule::default();
        MetricRule {
            direction: self.direction,
            critical: self.critical,
            weight: self.weight.unwrap_or(d.weight),
            allowed_increase: self.allowed_increase.unwrap_or(d.allowed_increase),
            allowed_decrease: self.allowed_decrease.unwrap_or(d.allowed_decrease),
            min_points: if self.over.is_some() { d.min_points } else { WATCH_MIN_POINTS },
            ..d
        }
    }

    /// Checks one series; `at` names where it is (`environments.production.watch.series[0]`).
    pub fn check(&self, at: &str) -> Result<(), String> {
        if !good_name(&self.name) {
            return Err(format!(
                "{at}.name: `{}` is not a series name (letters, digits, `.`, `_`, `-`)",
                self.name.escape_debug()
            ));
        }
        if let Some(over) = &self.over {
            if !good_name(over) {
                return Err(format!("{at}.over: `{}` is not a series name", over.escape_debug()));
            }
            if self.stat.is_some() {
                return Err(format!("{at}.stat: a ratio (`over`) is judged on counts; leave `stat` out"));
            }
        }
        if let Some(stat) = &self.stat {
            if !STATS.contains(&stat.as_str()) {
                return Err(format!(
                    "{at}.stat: unknown stat `{}`: expected one of {}",
                    stat.escape_debug(),
                    STATS.join(", ")
                ));
            }
        }
        self.rule().validate(at).map_err(|e| e.to_string())
    }
}

/// Checks a list of series: at least one, each good, no series named twice.
pub fn check_all(series: &[WatchSeries], at: &str) -> Result<(), String> {
    if series.is_empty() {
        return Err(format!("{at}: name at least one series to watch"));
    }
    if series.len() > 50 {
        return Err(format!("{at}: at most 50 series ({} given)", series.len()));
    }
    for (i, s) in series.iter().enumerate() {
        s.check(&format!("{at}[{i}]"))?;
        if series[..i].iter().any(|o| o.label() == s.label()) {
            return Err(format!("{at}[{i}]: `{}` is watched twice", s.label()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_src: &str) -> Result<Vec<WatchSeries>, String> {
        #[derive(Deserialize)]
        struct F {
            series: Vec<WatchSeries>,
        }
        let f: F = toml::from_str(toml_src).map_err(|e| e.to_string())?;
        check_all(&f.series, "watch.series").map(|_| f.series)
    }

    #[test]
    fn mistakes_name_the_key() {
        for (src, says) in [
            (r#"series = [{ name = "a", stat = "p98" }]"#, "watch.series[0].stat: unknown stat `p98`"),
            (r#"series = [{ name = "a", direction = "up" }]"#, "unknown variant `up`"),
            (r#"series = [{ name = "a", colour = "red" }]"#, "unknown field `colour`"),
            (r#"series = [{ name = "a b" }]"#, "watch.series[0].name"),
            (r#"series = [{ name = "e", over = "r", stat = "rate" }]"#, "watch.series[0].stat: a ratio"),
            (r#"series = [{ name = "a" }, { name = "a" }]"#, "watch.series[1]: `a` is watched twice"),
            (r#"series = [{ name = "a", weight = 0 }]"#, "watch.series[0].weight"),
            (r#"series = []"#, "watch.series: name at least one series"),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.contains(says), "{src}: {e}");
        }
        let ok = parse(r#"series = [{ series = "www.latency", stat = "p99", direction = "increase", critical = true }, { name = "www.errors", over = "www.requests", direction = "increase" }]"#).unwrap();
        assert_eq!(ok[0].label(), "www.latency p99");
        assert_eq!(ok[1].label(), "www.errors/www.requests");
        assert!(ok[0].rule().critical);
        assert_eq!(ok[0].rule().direction, Direction::Increase);
    }
}
