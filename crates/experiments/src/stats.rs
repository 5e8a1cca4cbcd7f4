//! The formulas: relative lift and its intervals, p-values, and the chi-square sample-ratio check.

use serde::Serialize;
use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

/// The sample-ratio mismatch is flagged below this p-value...
pub const SRM_P: f64 = 0.001;
/// ...and only when every variant has at least this many users.
pub const SRM_MIN_USERS: u64 = 8;

/// Which interval a comparison reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// An asymptotic confidence sequence: valid under continuous peeking. `tuning` is the sample size at which
    /// it is tightest (gbstats' `sequential_tuning_parameter`, 5,000 by default).
    Sequential { tuning: f64 },
    /// Welch's t interval for a single look.
    Fixed,
}

impl Default for Method {
    fn default() -> Self {
        Method::Sequential { tuning: 5000.0 }
    }
}

/// A variant against the control: the relative lift of its rate, its interval and p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// `(rate − control rate) / control rate`.
    pub lift: f64,
    pub low: f64,
    pub high: f64,
    pub p_value: f64,
}

fn rate(users: u64, conversions: u64) -> f64 {
    if users == 0 {
        0.0
    } else {
        conversions as f64 / users as f64
    }
}

/// The variant `(users, conversions)` against the control's, at level `1 − alpha`. `None` when it cannot be
/// computed: no users on a side (or one user for Welch), a control rate of 0, or no variance on either side.
pub fn compare(control: (u64, u64), variant: (u64, u64), method: Method, alpha: f64) -> Option<Comparison> {
    let (na, nb) = (control.0 as f64, variant.0 as f64);
    let (ma, mb) = (rate(control.0, control.1), rate(variant.0, variant.1));
    let (va, vb) = (ma * (1.0 - ma), mb * (1.0 - mb));
    if na == 0.0 || nb == 0.0 || ma == 0.0 || va <= 0.0 || vb <= 0.0 {
        return None;
    }
    let lift = (mb - ma) / ma;
    let variance = vb / (ma * ma * nb) + va * mb * mb / (ma.powi(4) * na);
    match method {
        Method::Fixed => {
            if na < 2.0 || nb < 2.0 {
                return None;
            }
            let dof =
                (vb / nb + va / na).powi(2) / (vb * vb / (nb * nb * (nb - 1.0)) + va * va / (na * na * (na - 1.0)));
            let t = StudentsT::new(0.0, 1.0, dof).ok()?;
            let width = t_quantile(&t, 1.0 - alpha / 2.0) * variance.sqrt();
            let stat = lift / variance.sqrt();
            let p_value = 2.0 * t.sf(stat.abs());
            Some(Comparison { lift, low: lift - width, high: lift + width, p_value })
        }
        Method::Sequential { tuning } => {
            let n = na + nb;
            let (width, p_value) = sequential(lift, variance, n, tuning, alpha);
            Some(Comparison { lift, low: lift - width, high: lift + width, p_value })
        }
    }
}

/// The half-width and always-valid p-value of the asymptotic confidence sequence for an estimate with
/// `variance` after `n` units (gbstats' `SequentialTwoSidedTTest`).
fn sequential(estimate: f64, variance: f64, n: f64, tuning: f64, alpha: f64) -> (f64, f64) {
    let rho2 = (-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / tuning;
    let s2 = variance * n;
    let nr2p1 = n * rho2 + 1.0;
    let width = s2.sqrt() * ((2.0 * nr2p1) * (nr2p1.sqrt() / alpha).ln() / (n * n * rho2)).sqrt();
    let st2 = estimate * estimate * n / variance;
    let evalue = (rho2 * st2 / (2.0 * nr2p1)).exp() / nr2p1.sqrt();
    (width, (1.0 / evalue).min(1.0))
}

/// A rate's own interval (for the chart): the normal interval of a proportion at a fixed horizon, or the
/// confidence sequence for one mean. `None` without users.
pub fn rate_interval(users: u64, conversions: u64, method: Method, alpha: f64) -> Option<(f64, f64)> {
    if users == 0 {
        return None;
    }
    let n = users as f64;
    let m = rate(users, conversions);
    let variance = m * (1.0 - m) / n;
    let width = match method {
        Method::Fixed => Normal::standard().inverse_cdf(1.0 - alpha / 2.0) * variance.sqrt(),
        Method::Sequential { tuning } => sequential(0.0, variance, n, tuning, alpha).0,
    };
    Some(((m - width).max(0.0), (m + width).min(1.0)))
}

/// Student's t quantile: statrs' inverse refined by Newton steps on its CDF, so it is exact to the CDF's
/// precision (the inverse regularised beta alone is not).
fn t_quantile(t: &StudentsT, p: f64) -> f64 {
    let mut x = t.inverse_cdf(p);
    for _ in 0..4 {
        let step = (t.cdf(x) - p) / t.pdf(x);
        if !step.is_finite() {
            break;
        }
        x -= step;
        if step.abs() < 1e-15 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// The sample-ratio check: Pearson's chi-square of the users per variant against the configured weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Srm {
    pub chi_square: f64,
    pub p_value: f64,
    /// `p_value < SRM_P` with at least [`SRM_MIN_USERS`] users in every variant.
    pub mismatch: bool,
}

/// Users per variant against weights (any positive scale). Variants of weight 0 are left out. With fewer than two
/// weighted variants or no users the p-value is 1.
pub fn srm(users: &[u64], weights: &[f64]) -> Srm {
    let pairs: Vec<(f64, f64)> =
        users.iter().zip(weights).filter(|(_, w)| **w > 0.0).map(|(u, w)| (*u as f64, *w)).collect();
    let total: f64 = pairs.iter().map(|p| p.0).sum();
    let weight: f64 = pairs.iter().map(|p| p.1).sum();
    if pairs.len() < 2 || total == 0.0 {
        return Srm { chi_square: 0.0, p_value: 1.0, mismatch: false };
    }
    let chi_square: f64 = pairs
        .iter()
        .map(|(o, w)| {
            let e = total * w / weight;
            (o - e) * (o - e) / e
        })
        .sum();
    let p_value = ChiSquared::new((pairs.len() - 1) as f64).map(|d| d.sf(chi_square)).unwrap_or(1.0);
    let enough = pairs.iter().all(|p| p.0 >= SRM_MIN_USERS as f64);
    Srm { chi_square, p_value, mismatch: enough && p_value < SRM_P }
}
