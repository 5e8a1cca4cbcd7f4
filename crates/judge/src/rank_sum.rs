//! The Mann-Whitney U test (Wilcoxon rank sum) of two independent samples: U of the first sample as SciPy's
//! `mannwhitneyu` reports it (R's `W`), and its p-value, exact or asymptotic as R's `wilcox.test` chooses
//! (`exact = NULL, correct = TRUE`): exact when both samples have fewer than 50 values and no value is tied,
//! otherwise the normal approximation with the tie correction and the continuity correction (SciPy's
//! `method="asymptotic", use_continuity=True`).

use crate::exact::UDistribution;
use crate::rank::{has_ties, Pooled};
use crate::{check_exact_size, check_samples, normal, sorted, Alternative, Method, StatError};
use serde::Serialize;

/// A Mann-Whitney U test's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of the first sample: the number of pairs (x, y) with x > y, ties counting ½.
    pub u: f64,
    pub p_value: f64,
    pub alternative: Alternative,
    pub method: Method,
    /// The standardised statistic of the normal approximation (continuity-corrected); `None` for the exact
    /// test, or when every value is the same.
    pub z: Option<f64>,
    /// Whether any value occurs more than once in the pooled samples.
    pub ties: bool,
    pub n_x: usize,
    pub n_y: usize,
}

/// R's choice: exact when both samples have fewer than 50 values and there are no ties.
pub fn auto_method(x: &[f64], y: &[f64]) -> Method {
    if x.len() >= 50 || y.len() >= 50 {
        return Method::Asymptotic;
    }
    let mut pooled = sorted(x);
    pooled.extend_from_slice(y);
    pooled.sort_unstable_by(f64::total_cmp);
    if x.len() < 50 && y.len() < 50 && !has_ties(&pooled) {
        Method::Exact
    } else {
        Method::Asymptotic
    }
}

/// The test, its method chosen as R chooses it (`auto_method`).
pub fn mann_whitney_u(x: &[f64], y: &[f64], alternative: Alternative) -> Result<MannWhitney, StatError> {
    check_samples(x, y)?;
    mann_whitney_u_with(x, y, alternative, auto_method(x, y))
}

/// The test with the method given. The exact method with ties is what SciPy's `method="exact"` does: the
/// distribution without ties, at the floor of U.
pub fn mann_whitney_u_with(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: Method,
) -> Result<MannWhitney, StatError> {
    check_samples(x, y)?;
    check_exact_size(x, y, method)?;
    let (xs, ys) = (sorted(x), sorted(y));
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let (u, tie_term) = Pooled::new(&xs, &ys).at(0.0);
    let ties = tie_term > 0.0;
    let (p_value, z) = match method {
        Method::Exact => {
            let d = UDistribution::new(x.len(), y.len());
            let p = match alternative {
                Alternative::TwoSided => {
                    let p = if u > nx * ny / 2.0 { d.p(u - 1.0, false) } else { d.p(u, true) };
                    (2.0 * p).min(1.0)
                }
                Alternative::Greater => d.p(u - 1.0, false),
                Alternative::Less => d.p(u, true),
            };
            (p, None)
        }
        Method::Asymptotic => asymptotic(u, nx, ny, tie_term, alternative),
    };
    Ok(MannWhitney { u, p_value, alternative, method, z, ties, n_x: x.len(), n_y: y.len() })
}

/// The normal approximation: z = (U − mn/2 − correction) / σ, σ² = mn/12 · ((N + 1) − Σ(t³ − t)/(N(N − 1))).
fn asymptotic(u: f64, nx: f64, ny: f64, tie_term: f64, alternative: Alternative) -> (f64, Option<f64>) {
    let centred = u - nx * ny / 2.0;
    let sigma = sigma(nx, ny, tie_term);
    if sigma == 0.0 {
        // Every value the same: no evidence either way.
        return (1.0, None);
    }
    let correction = match alternative {
        Alternative::TwoSided => 0.5 * sign(centred),
        Alternative::Greater => 0.5,
        Alternative::Less => -0.5,
    };
    let z = (centred - correction) / sigma;
    let p = match alternative {
        Alternative::Less => normal::cdf(z),
        Alternative::Greater => normal::sf(z),
        Alternative::TwoSided => 2.0 * normal::cdf(z).min(normal::sf(z)),
    };
    (p, Some(z))
}

/// σ of U under the null hypothesis, ties corrected, in R's order of operations.
pub(crate) fn sigma(nx: f64, ny: f64, tie_term: f64) -> f64 {
    ((nx * ny / 12.0) * ((nx + ny + 1.0) - tie_term / ((nx + ny) * (nx + ny - 1.0)))).sqrt()
}

/// R's `sign`: −1, 0 or 1.
pub(crate) fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_figures() {
        // x entirely above y: U = m·n, the exact two-sided p = 2 / C(m+n, m).
        let r = mann_whitney_u(&[10.0, 11.0, 12.0], &[1.0, 2.0, 3.0, 4.0], Alternative::TwoSided).unwrap();
        assert_eq!((r.u, r.method), (12.0, Method::Exact));
        assert!((r.p_value - 2.0 / 35.0).abs() < 1e-15);
        let g = mann_whitney_u(&[10.0, 11.0, 12.0], &[1.0, 2.0, 3.0, 4.0], Alternative::Greater).unwrap();
        assert!((g.p_value - 1.0 / 35.0).abs() < 1e-15);
        let all_same = mann_whitney_u(&[5.0; 60], &[5.0; 60], Alternative::TwoSided).unwrap();
        assert_eq!((all_same.u, all_same.p_value, all_same.method), (1800.0, 1.0, Method::Asymptotic));
        assert_eq!(mann_whitney_u(&[], &[1.0], Alternative::Less), Err(StatError::Empty("first")));
        assert_eq!(mann_whitney_u(&[1.0], &[f64::NAN], Alternative::Less), Err(StatError::NotFinite("second")));
    }
}
