//! Brent's root finder as R's `uniroot` runs it (the netlib `zeroin` in R's `R_zeroin2` form: f at both ends
//! given, the same steps, tolerance and stopping rule), so that a root found over a step function, where any
//! point of the step within the tolerance would do, is the very point R reports.

/// A root of `f` in [a, b], where `fa = f(a)` and `fb = f(b)` have opposite signs (or one is 0); `tol` is
/// uniroot's `tol`, `max_iter` its `maxiter`. Returns the root and whether it converged.
pub(crate) fn zeroin(a: f64, b: f64, fa: f64, fb: f64, f: impl Fn(f64) -> f64, tol: f64, max_iter: u32) -> (f64, bool) {
    let (mut a, mut b, mut fa, mut fb) = (a, b, fa, fb);
    let (mut c, mut fc) = (a, fa);
    if fa == 0.0 {
        return (a, true);
    }
    if fb == 0.0 {
        return (b, true);
    }
    for _ in 0..=max_iter {
        let prev_step = b - a;
        if fc.abs() < fb.abs() {
            // Make b the best approximation.
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol_act = 2.0 * f64::EPSILON * b.abs() + tol / 2.0;
        let mut new_step = (c - b) / 2.0;
        if new_step.abs() <= tol_act || fb == 0.0 {
            return (b, true);
        }
        // Interpolate when the previous step was large enough and went the right way.
        if prev_step.abs() >= tol_act && fa.abs() > fb.abs() {
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                // Two distinct points: linear interpolation.
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                // Inverse quadratic interpolation.
                let qq = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * qq * (qq - t1) - (b - a) * (t1 - 1.0));
                q = (qq - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tol_act * q).abs() / 2.0) && p < (prev_step * q / 2.0).abs() {
                new_step = p / q;
            }
        }
        if new_step.abs() < tol_act {
            new_step = if new_step > 0.0 { tol_act } else { -tol_act };
        }
        a = b;
        fa = fb;
        b += new_step;
        fb = f(b);
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            c = a;
            fc = fa;
        }
    }
    (b, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_roots() {
        let f = |x: f64| x * x - 2.0;
        let (r, ok) = zeroin(0.0, 2.0, f(0.0), f(2.0), f, 1e-12, 1000);
        assert!(ok && (r - 2f64.sqrt()).abs() < 1e-11);
        // A step function: any point within tol of the jump.
        let g = |x: f64| if x < 0.3 { 1.0 } else { -1.0 };
        let (r, ok) = zeroin(0.0, 1.0, 1.0, -1.0, g, 1e-4, 1000);
        assert!(ok && (r - 0.3).abs() < 1e-4);
        assert_eq!(zeroin(0.0, 1.0, 0.0, -1.0, g, 1e-4, 10), (0.0, true));
    }
}
