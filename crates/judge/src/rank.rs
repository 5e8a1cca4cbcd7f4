//! Ranks of two samples pooled, ties given their average rank, by walking the sorted samples together: U of the
//! first sample (its rank sum less n(n+1)/2: the pairs x > y, ties counting ½) and the tie term Σ(t³ − t) over
//! the groups of equal values. Every figure is a multiple of ½ (or an integer) well below 2⁵³, so it is exact
//! and equals R's `rank` and `table` arithmetic bit for bit.

/// Two sorted samples, the first to be shifted.
pub(crate) struct Pooled<'a> {
    xs: &'a [f64],
    ys: &'a [f64],
    /// Σ(t³ − t) over the second sample's own groups of equal values.
    y_ties: u64,
}

fn tie(t: u64) -> u64 {
    t * t * t - t
}

impl<'a> Pooled<'a> {
    /// Both slices sorted ascending.
    pub fn new(xs: &'a [f64], ys: &'a [f64]) -> Self {
        let mut y_ties = 0;
        let mut j = 0;
        while j < ys.len() {
            let mut b = 1;
            while j + b < ys.len() && ys[j + b] == ys[j] {
                b += 1;
            }
            y_ties += tie(b as u64);
            j += b;
        }
        Pooled { xs, ys, y_ties }
    }

    /// U and the tie term for `xs[i] - shift` pooled with `ys` (the shift applied as R applies it: x − d, so
    /// that two x values made equal by rounding are tied, as in R).
    pub fn at(&self, shift: f64) -> (f64, f64) {
        let (xs, ys) = (self.xs, self.ys);
        let (mut lt, mut le) = (0usize, 0usize);
        let mut twice_u = 0u64;
        let mut ties = self.y_ties;
        let n = xs.len();
        let mut i = 0;
        // Each shifted value is computed once: the look-ahead for a group of equal values keeps the next one.
        let mut next = xs.first().map(|x| x - shift).unwrap_or_default();
        while i < n {
            let v = next;
            let mut a = 1;
            while i + a < n {
                next = xs[i + a] - shift;
                if next != v {
                    break;
                }
                a += 1;
            }
            while lt < ys.len() && ys[lt] < v {
                lt += 1;
            }
            le = le.max(lt);
            while le < ys.len() && ys[le] == v {
                le += 1;
            }
            let b = (le - lt) as u64;
            // Each of the a values beats lt values of y and ties b of them.
            twice_u += a as u64 * (2 * lt as u64 + b);
            // The group of v is a + b strong; the y part of it was counted alone.
            if a > 1 || b > 0 {
                ties += tie(a as u64 + b) - tie(b);
            }
            i += a;
        }
        (twice_u as f64 / 2.0, ties as f64)
    }
}

/// Whether sorted values hold two equal ones.
pub(crate) fn has_ties(sorted: &[f64]) -> bool {
    sorted.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_with_ties() {
        // Pooled: 1 1 2 3 3 3 → ranks 1.5 1.5 3 5 5 5; x = {1, 3}: rank sum 6.5, U = 3.5.
        let (u, ties) = Pooled::new(&[1.0, 3.0], &[1.0, 2.0, 3.0, 3.0]).at(0.0);
        assert_eq!(u, 6.5 - 3.0);
        assert_eq!(ties, 6.0 + 24.0);
        let (u, ties) = Pooled::new(&[2.0, 4.0], &[1.0, 3.0]).at(1.0);
        assert_eq!((u, ties), (2.0, 12.0));
        // Ties within x only.
        let (u, ties) = Pooled::new(&[5.0, 5.0, 5.0], &[1.0, 9.0]).at(0.0);
        assert_eq!((u, ties), (3.0, 24.0));
        assert!(has_ties(&[1.0, 2.0, 2.0]) && !has_ties(&[1.0, 2.0]));
    }
}
