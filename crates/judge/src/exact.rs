//! The exact null distribution of the Mann-Whitney U statistic for samples of m and n values without ties, and
//! its distribution and quantile functions with R's `pwilcox` and `qwilcox` semantics (summing the shorter tail,
//! R's fuzz in the quantile search).

/// P(U = k) for k in 0 ..= m·n.
pub(crate) struct UDistribution {
    mn: usize,
    pmf: Vec<f64>,
}

impl UDistribution {
    /// Built by the recursion on the largest of the m + n values: it is one of the first sample's with
    /// probability m/(m+n), and then exceeds all n of the second's: P(m,n,k) = m/(m+n)·P(m−1,n,k−n) +
    /// n/(m+n)·P(m,n−1,k). O(m²n²/4) additions; every term is positive, so nothing cancels.
    pub fn new(m: usize, n: usize) -> UDistribution {
        // prev[j] = the distribution for (i − 1, j); cur[j] for (i, j).
        let mut prev: Vec<Vec<f64>> = vec![vec![1.0]; n + 1];
        for i in 1..=m {
            let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
            cur.push(vec![1.0]);
            for j in 1..=n {
                let (fi, fj) = (i as f64, j as f64);
                let (wx, wy) = (fi / (fi + fj), fj / (fi + fj));
                let mut p = vec![0.0; i * j + 1];
                // x largest: k = j + U(i − 1, j), U(i − 1, j) in 0 ..= (i − 1)·j.
                for (k, &q) in prev[j].iter().enumerate() {
                    p[k + j] += wx * q;
                }
                // y largest: k = U(i, j − 1), in 0 ..= i·(j − 1).
                for (k, &q) in cur[j - 1].iter().enumerate() {
                    p[k] += wy * q;
                }
                cur.push(p);
            }
            prev = cur;
        }
        let pmf = prev.pop().expect("n + 1 distributions");
        UDistribution { mn: m * n, pmf }
    }

    /// P(U ≤ q) (`lower`) or P(U > q), as R's `pwilcox(q, m, n, lower.tail)`: q is floored (with R's 1e-7), and
    /// the shorter range of the pmf is summed.
    pub fn p(&self, q: f64, lower: bool) -> f64 {
        let mn = self.mn as f64;
        let q = (q + 1e-7).floor();
        if q < 0.0 {
            return if lower { 0.0 } else { 1.0 };
        }
        if q >= mn {
            return if lower { 1.0 } else { 0.0 };
        }
        let (mut p, mut lower) = (0.0, lower);
        if q <= mn / 2.0 {
            for k in 0..=(q as usize) {
                p += self.pmf[k];
            }
        } else {
            // P(U ≤ q) = 1 − P(U > q) = 1 − P(U < m·n − q) by symmetry.
            for k in 0..((mn - q) as usize) {
                p += self.pmf[k];
            }
            lower = !lower;
        }
        if lower {
            p
        } else {
            0.5 - p + 0.5
        }
    }

    /// The smallest q with P(U ≤ q) ≥ x, as R's `qwilcox(x, m, n)` (with its 10·ε fuzz).
    pub fn quantile(&self, x: f64) -> usize {
        if x <= 0.0 {
            return 0;
        }
        if x >= 1.0 {
            return self.mn;
        }
        let mut p = 0.0;
        let mut q = 0usize;
        if x <= 0.5 {
            let x = x - 10.0 * f64::EPSILON;
            loop {
                p += self.pmf[q];
                if p >= x {
                    return q;
                }
                q += 1;
            }
        } else {
            let x = 1.0 - x + 10.0 * f64::EPSILON;
            loop {
                p += self.pmf[q];
                if p > x {
                    return self.mn - q;
                }
                q += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_distributions() {
        // m = 2, n = 2: the 6 orderings give U = 0, 1, 2, 2, 3, 4.
        let d = UDistribution::new(2, 2);
        let want = [1.0, 1.0, 2.0, 1.0, 1.0].map(|c| c / 6.0);
        for (a, b) in d.pmf.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{:?}", d.pmf);
        }
        assert!((d.p(1.0, true) - 2.0 / 6.0).abs() < 1e-15);
        assert!((d.p(2.0, false) - 2.0 / 6.0).abs() < 1e-15);
        assert_eq!(d.quantile(0.3), 1);
        let total: f64 = UDistribution::new(7, 11).pmf.iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert_eq!(UDistribution::new(1, 1).pmf, vec![0.5, 0.5]);
        assert_eq!(UDistribution::new(3, 0).pmf, vec![1.0]);
    }
}
