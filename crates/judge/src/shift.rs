//! The Hodges-Lehmann estimate of the shift between two samples (first − second: canary − baseline) and its
//! two-sided confidence interval, as R's `wilcox.test(x, y, conf.int = TRUE, conf.level)` computes them.
//!
//! Exact (both samples under 50 values, no ties): the estimate is the median of the m·n pairwise differences
//! x − y and the interval runs from the k-th smallest difference to the k-th largest, k = `qwilcox(α/2, m, n)`
//! (at least 1). Asymptotic: the interval inverts the continuity-corrected normal approximation, finding where
//! the standardised rank statistic of (x − d, y) crosses ±z₁₋α/₂ by R's root finder (`uniroot`, tol 1e-4),
//! and the estimate is where the uncorrected statistic crosses 0, found the same way: a point within the
//! tolerance of (or between) the middle differences, and exactly the point R reports.

use crate::exact::UDistribution;
use crate::rank::Pooled;
use crate::rank_sum::{auto_method, sigma, sign};
use crate::zeroin::zeroin;
use crate::{check_exact_size, check_samples, median_sorted, normal, sorted, Method, StatError};
use serde::Serialize;

/// uniroot's tolerance in R's `wilcox.test` (`tol.root`).
const TOL_ROOT: f64 = 1e-4;
/// uniroot's default `maxiter`.
const MAX_ITER: u32 = 1000;

/// The shift of the first sample against the second, with its interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shift {
    /// R's `estimate` ("difference in location").
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// The confidence level asked for.
    pub conf_level: f64,
    /// The level the exact interval reaches (its quantiles are discrete); the level asked for otherwise.
    pub achieved_conf_level: f64,
    pub method: Method,
}

/// The estimate and interval, exact or asymptotic as R chooses.
pub fn hodges_lehmann(x: &[f64], y: &[f64], conf_level: f64) -> Result<Shift, StatError> {
    check_samples(x, y)?;
    hodges_lehmann_with(x, y, conf_level, auto_method(x, y))
}

/// The estimate and interval with the method given. Where R gives up, because every pairwise difference is the
/// same (each sample constant: "all observations are tied"), the shift is that difference, its interval that
/// point.
pub fn hodges_lehmann_with(x: &[f64], y: &[f64], conf_level: f64, method: Method) -> Result<Shift, StatError> {
    check_samples(x, y)?;
    check_exact_size(x, y, method)?;
    if !(conf_level > 0.0 && conf_level < 1.0) {
        return Err(StatError::BadArgument(format!("conf_level {conf_level} is not between 0 and 1")));
    }
    let (xs, ys) = (sorted(x), sorted(y));
    let alpha = 1.0 - conf_level;
    let mumin = xs[0] - ys[ys.len() - 1];
    let mumax = xs[xs.len() - 1] - ys[0];
    if mumin == mumax {
        return Ok(Shift {
            estimate: mumin,
            lower: mumin,
            upper: mumin,
            conf_level,
            achieved_conf_level: conf_level,
            method,
        });
    }
    match method {
        Method::Exact => Ok(exact(&xs, &ys, conf_level)),
        Method::Asymptotic => {
            let (nx, ny) = (xs.len() as f64, ys.len() as f64);
            // R's W(d): the standardised rank statistic of (x − d, y), continuity-corrected or not. (R's
            // rank sum less n.x(n.x + 1)/2 is U; every term is exact, so the order of the sums does not matter.)
            let pooled = Pooled::new(&xs, &ys);
            let w = |d: f64, correct: bool| {
                let (u, ties) = pooled.at(d);
                let dz = u - nx * ny / 2.0;
                let correction = if correct { sign(dz) * 0.5 } else { 0.0 };
                (dz - correction) / sigma(nx, ny, ties)
            };
            let (w_min, w_max) = (w(mumin, true), w(mumax, true));
            let root = |zq: f64| {
                let f_lower = w_min - zq;
                if f_lower <= 0.0 {
                    return mumin;
                }
                let f_upper = w_max - zq;
                if f_upper >= 0.0 {
                    return mumax;
                }
                zeroin(mumin, mumax, f_lower, f_upper, |d| w(d, true) - zq, TOL_ROOT, MAX_ITER).0
            };
            let z_lower_tail = normal::quantile(alpha / 2.0);
            let lower = root(-z_lower_tail);
            let upper = root(z_lower_tail);
            let estimate =
                zeroin(mumin, mumax, w(mumin, false), w(mumax, false), |d| w(d, false), TOL_ROOT, MAX_ITER).0;
            Ok(Shift { estimate, lower, upper, conf_level, achieved_conf_level: conf_level, method })
        }
    }
}

/// The exact interval from the sorted pairwise differences and the quantiles of U.
fn exact(xs: &[f64], ys: &[f64], conf_level: f64) -> Shift {
    let (m, n) = (xs.len(), ys.len());
    let mut diffs: Vec<f64> = xs.iter().flat_map(|x| ys.iter().map(move |y| x - y)).collect();
    diffs.sort_unstable_by(f64::total_cmp);
    let alpha = 1.0 - conf_level;
    let d = UDistribution::new(m, n);
    let qu = d.quantile(alpha / 2.0).max(1);
    let ql = m * n - qu;
    let achieved_alpha = 2.0 * d.p(qu as f64 - 1.0, true);
    Shift {
        estimate: median_sorted(&diffs),
        lower: diffs[qu - 1],
        upper: diffs[ql],
        conf_level,
        achieved_conf_level: 1.0 - achieved_alpha,
        method: Method::Exact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_small() {
        // Differences of [4, 6] − [1, 2]: 2 3 4 5; median 3.5; with 2 and 2 values no interval narrower than
        // the whole range reaches any useful level.
        let s = hodges_lehmann(&[4.0, 6.0], &[1.0, 2.0], 0.98).unwrap();
        assert_eq!((s.estimate, s.lower, s.upper, s.method), (3.5, 2.0, 5.0, Method::Exact));
        let c = hodges_lehmann(&[5.0, 5.0, 5.0], &[3.0, 3.0], 0.98).unwrap();
        assert_eq!((c.estimate, c.lower, c.upper), (2.0, 2.0, 2.0));
        assert!(hodges_lehmann(&[1.0], &[2.0], 1.0).is_err());
    }
}
