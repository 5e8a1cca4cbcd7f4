//! The two-proportion test for ratio metrics (errors over requests), as R's `prop.test(c(x1, x2), c(n1, n2),
//! correct = FALSE)`: the z test with the pooled proportion, reported as its chi-square (X² = z², 1 degree of
//! freedom) and p-value, and the Wald interval of the difference p1 − p2 (what R gives for two samples; Wilson's
//! interval is R's for one sample only), clipped to [−1, 1].
//!
//! A rank test over per-interval error ratios lets sparse errors pass: many intervals with no error on both
//! sides and a few errors only on the canary's rank as near-ties (spinnaker/kayenta#426, spinnaker#6278). The
//! pooled counts do not.

use crate::{normal, Alternative, StatError};
use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// A two-proportion test's figures; 1 is the first sample (the canary), 2 the second (the baseline).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proportions {
    /// X-squared (= z²).
    pub statistic: f64,
    /// z = sign(p1 − p2)·√X².
    pub z: f64,
    pub p_value: f64,
    pub alternative: Alternative,
    pub estimate1: f64,
    pub estimate2: f64,
    /// p1 − p2.
    pub difference: f64,
    /// The Wald interval of the difference (for a one-sided alternative, one end is −1 or 1).
    pub lower: f64,
    pub upper: f64,
    pub conf_level: f64,
}

/// Test x1 events out of n1 against x2 out of n2.
pub fn two_proportions(
    x1: u64,
    n1: u64,
    x2: u64,
    n2: u64,
    alternative: Alternative,
    conf_level: f64,
) -> Result<Proportions, StatError> {
    if n1 == 0 {
        return Err(StatError::Empty("first"));
    }
    if n2 == 0 {
        return Err(StatError::Empty("second"));
    }
    if x1 > n1 || x2 > n2 {
        return Err(StatError::BadArgument("more events than trials".into()));
    }
    if !(conf_level > 0.0 && conf_level < 1.0) {
        return Err(StatError::BadArgument(format!("conf_level {conf_level} is not between 0 and 1")));
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let (e1, e2) = (x1 / n1, x2 / n2);
    let p = (x1 + x2) / (n1 + n2);
    if p == 0.0 || p == 1.0 {
        return Err(StatError::NoVariance);
    }
    // The 2×2 table (events, non-events) against its expectation, summed column by column as R does.
    let observed = [x1, x2, n1 - x1, n2 - x2];
    let expected = [n1 * p, n2 * p, n1 * (1.0 - p), n2 * (1.0 - p)];
    let statistic: f64 = observed.iter().zip(expected).map(|(o, e)| (o - e).abs().powi(2) / e).sum();
    let difference = e1 - e2;
    let z = crate::rank_sum::sign(difference) * statistic.sqrt();
    let p_value = match alternative {
        Alternative::TwoSided => ChiSquared::new(1.0).expect("1 degree of freedom").sf(statistic),
        Alternative::Greater => normal::sf(z),
        Alternative::Less => normal::cdf(z),
    };
    let quantile = match alternative {
        Alternative::TwoSided => normal::quantile((1.0 + conf_level) / 2.0),
        _ => normal::quantile(conf_level),
    };
    let width = quantile * (e1 * (1.0 - e1) / n1 + e2 * (1.0 - e2) / n2).sqrt();
    let (lower, upper) = match alternative {
        Alternative::TwoSided => ((difference - width).max(-1.0), (difference + width).min(1.0)),
        Alternative::Greater => ((difference - width).max(-1.0), 1.0),
        Alternative::Less => (-1.0, (difference + width).min(1.0)),
    };
    Ok(Proportions {
        statistic,
        z,
        p_value,
        alternative,
        estimate1: e1,
        estimate2: e2,
        difference,
        lower,
        upper,
        conf_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_rates_and_bad_input() {
        let t = two_proportions(10, 100, 10, 100, Alternative::TwoSided, 0.98).unwrap();
        assert_eq!((t.statistic, t.difference), (0.0, 0.0));
        assert!((t.p_value - 1.0).abs() < 1e-15);
        assert_eq!(two_proportions(0, 10, 0, 10, Alternative::TwoSided, 0.98), Err(StatError::NoVariance));
        assert_eq!(two_proportions(1, 0, 0, 10, Alternative::TwoSided, 0.98), Err(StatError::Empty("first")));
        assert!(two_proportions(11, 10, 0, 10, Alternative::TwoSided, 0.98).is_err());
    }
}
