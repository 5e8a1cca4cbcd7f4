//! crew's canary judge, with no IO: it compares a canary against a baseline and says pass, marginal, fail or no
//! data, metric by metric and why. The statistics agree with SciPy and R to 1e-9 (`tests/reference/`):
//! Mann-Whitney U (`rank_sum`, SciPy's `mannwhitneyu` / R's `wilcox.test`), the Hodges-Lehmann shift and its
//! interval (`shift`, R's `wilcox.test(conf.int = TRUE)`), a two-proportion test for error ratios
//! (`proportions`, R's `prop.test(correct = FALSE)`); Kayenta's NetflixACAJudge rules on top (`judge`): missing
//! values, outliers (`clean`), direction, effect-size tolerance, critical metrics, no data = hold, a weighted
//! score with pass and marginal thresholds. Data (and any time) are arguments: the caller fetches the series.

pub mod clean;
mod exact;
pub mod judge;
pub mod proportions;
mod rank;
pub mod rank_sum;
pub mod shift;
pub mod watch;
mod zeroin;

pub use clean::{clean, percentile, remove_outliers, Cleaned, NanStrategy};
pub use judge::{
    classify, judge, Classification, ConfigError, Counts, Direction, EffectMeasure, JudgeConfig, Judgement, Metric,
    MetricResult, MetricRule, Samples, Side, Test, Verdict,
};
pub use proportions::{two_proportions, Proportions};
pub use rank_sum::{auto_method, mann_whitney_u, mann_whitney_u_with, MannWhitney};
pub use shift::{hodges_lehmann, hodges_lehmann_with, Shift};
pub use watch::WatchSeries;

use serde::{Deserialize, Serialize};

/// The alternative hypothesis of a test, about the first sample (the canary) against the second (the baseline),
/// as SciPy's `alternative` and R's `alternative` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// The two differ, either way.
    TwoSided,
    /// The first is stochastically smaller.
    Less,
    /// The first is stochastically greater.
    Greater,
}

/// How a rank test's p-value (and the shift's interval) is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The exact distribution of U (no ties; R's default when both samples have fewer than 50 values).
    Exact,
    /// The normal approximation with the tie correction and the continuity correction.
    Asymptotic,
}

/// Why a statistic cannot be computed from its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatError {
    #[error("the {0} sample is empty")]
    Empty(&'static str),
    #[error("the {0} sample has a value that is not a finite number")]
    NotFinite(&'static str),
    #[error("{0}")]
    BadArgument(String),
    #[error("the pooled proportion is 0 or 1: the test has no variance")]
    NoVariance,
}

/// Both samples present and finite.
pub(crate) fn check_samples(x: &[f64], y: &[f64]) -> Result<(), StatError> {
    if x.is_empty() {
        return Err(StatError::Empty("first"));
    }
    if y.is_empty() {
        return Err(StatError::Empty("second"));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(StatError::NotFinite("first"));
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(StatError::NotFinite("second"));
    }
    Ok(())
}

/// The standard normal distribution's lower tail, upper tail and quantile (statrs).
pub(crate) mod normal {
    use statrs::distribution::{ContinuousCDF, Normal};

    fn standard() -> Normal {
        Normal::standard()
    }

    pub fn cdf(z: f64) -> f64 {
        standard().cdf(z)
    }

    pub fn sf(z: f64) -> f64 {
        standard().sf(z)
    }

    /// The lower-tail quantile.
    pub fn quantile(p: f64) -> f64 {
        standard().inverse_cdf(p)
    }
}

/// The exact distribution is for small samples: m·n at most 10,000 (R's automatic choice stays under 2,500).
pub(crate) fn check_exact_size(x: &[f64], y: &[f64], method: Method) -> Result<(), StatError> {
    if method == Method::Exact && x.len() * y.len() > 10_000 {
        return Err(StatError::BadArgument(format!(
            "the exact method is for small samples ({} × {} values is over 10,000 pairs)",
            x.len(),
            y.len()
        )));
    }
    Ok(())
}

/// A sorted copy (values already in order, as the judge passes them, are only checked).
pub(crate) fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    if !s.is_sorted_by(|a, b| a.total_cmp(b).is_le()) {
        s.sort_unstable_by(f64::total_cmp);
    }
    s
}

/// The median of sorted values (the mean of the middle two for an even count), as R's `median`.
pub(crate) fn median_sorted(s: &[f64]) -> f64 {
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}
