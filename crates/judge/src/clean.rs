//! Preparing a side's values before a test, as Kayenta does: values that are not finite numbers (NaN, a gap;
//! ±∞) are removed or replaced by 0, then, optionally, outliers are removed by Kayenta's IQR rule with reduced
//! sensitivity: a value is an outlier when it is below min(P1, Q1 − k·IQR) or above max(P99, Q3 + k·IQR),
//! percentiles by linear interpolation (R's type 7), k = 3 by default.

use serde::{Deserialize, Serialize};

/// What to do with a value that is not a finite number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanStrategy {
    /// Drop it (Kayenta's default): a gap is no data.
    #[default]
    Remove,
    /// Count it as 0 (a counter that did not report counted nothing).
    Zero,
}

/// A side's values after cleaning, and what was taken out.
#[derive(Clone, Debug, PartialEq)]
pub struct Cleaned {
    pub values: Vec<f64>,
    pub not_finite: usize,
    pub outliers: usize,
}

/// Clean one side: missing values by `nan`, then outliers when `outlier_factor` is given.
pub fn clean(values: &[f64], nan: NanStrategy, outlier_factor: Option<f64>) -> Cleaned {
    let not_finite = values.iter().filter(|v| !v.is_finite()).count();
    let finite: Vec<f64> = match nan {
        NanStrategy::Remove => values.iter().copied().filter(|v| v.is_finite()).collect(),
        NanStrategy::Zero => values.iter().map(|&v| if v.is_finite() { v } else { 0.0 }).collect(),
    };
    match outlier_factor {
        Some(k) => {
            let kept = remove_outliers(&finite, k);
            Cleaned { outliers: finite.len() - kept.len(), values: kept, not_finite }
        }
        None => Cleaned { values: finite, not_finite, outliers: 0 },
    }
}

/// The values that are not outliers by Kayenta's rule (see the module), in their order. `factor` > 0.
pub fn remove_outliers(values: &[f64], factor: f64) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let mut s = values.to_vec();
    s.sort_unstable_by(f64::total_cmp);
    let (q1, q3) = (percentile(&s, 25.0), percentile(&s, 75.0));
    let iqr = q3 - q1;
    let low = percentile(&s, 1.0).min(q1 - factor * iqr);
    let high = percentile(&s, 99.0).max(q3 + factor * iqr);
    values.iter().copied().filter(|&v| v >= low && v <= high).collect()
}

/// The p-th percentile (0 ≤ p ≤ 100) of sorted values by linear interpolation between order statistics (R's
/// `quantile(type = 7)`, numpy's default); NaN for no values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * (p / 100.0).clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_outliers() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&s, 50.0), 2.5);
        assert_eq!(percentile(&s, 25.0), 1.75);
        assert_eq!(percentile(&s, 100.0), 4.0);
        assert!(percentile(&[], 50.0).is_nan());
        // 100 values 1..=100 and one wild one: only the wild one goes.
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.push(10_000.0);
        let kept = remove_outliers(&v, 3.0);
        assert_eq!(kept.len(), 100);
        assert!(!kept.contains(&10_000.0));
        // A constant series has no outliers.
        assert_eq!(remove_outliers(&[5.0; 10], 3.0).len(), 10);
    }

    #[test]
    fn missing_values() {
        let v = [1.0, f64::NAN, 3.0, f64::INFINITY];
        assert_eq!(clean(&v, NanStrategy::Remove, None).values, vec![1.0, 3.0]);
        let z = clean(&v, NanStrategy::Zero, None);
        assert_eq!((z.values, z.not_finite), (vec![1.0, 0.0, 3.0, 0.0], 2));
    }
}
