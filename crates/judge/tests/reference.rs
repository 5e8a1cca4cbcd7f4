//! crew-judge against the reference figures of SciPy (`reference/scipy.json`) and R (`reference/r.json`),
//! written by `reference/make.py` and `reference/make.R` on the same seeded vectors. Every figure must agree to
//! 1e-9: absolutely for figures of magnitude up to 1 (p-values, most shifts), relatively above (U, large
//! shifts), i.e. |ours − theirs| ≤ 1e-9 · max(1, |theirs|). p-values are also held to 1e-9 relatively.

use crew_judge::{
    hodges_lehmann, hodges_lehmann_with, mann_whitney_u, mann_whitney_u_with, two_proportions, Alternative, Method,
};
use serde_json::Value;

const TOL: f64 = 1e-9;

/// The worst agreement seen, to print.
#[derive(Default)]
struct Worst {
    abs: f64,
    rel: f64,
    p_rel: f64,
    worst_p: String,
    compared: usize,
}

impl Worst {
    fn check(&mut self, what: &str, ours: f64, theirs: &Value) {
        let theirs = theirs.as_f64().unwrap_or_else(|| panic!("{what}: no reference figure ({theirs})"));
        let abs = (ours - theirs).abs();
        let rel = if theirs != 0.0 { abs / theirs.abs() } else { abs };
        assert!(abs <= TOL * theirs.abs().max(1.0), "{what}: ours {ours:e}, reference {theirs:e} (abs {abs:e})");
        self.abs = self.abs.max(abs);
        self.rel = self.rel.max(rel);
        self.compared += 1;
    }

    fn check_p(&mut self, what: &str, ours: f64, theirs: &Value) {
        self.check(what, ours, theirs);
        let theirs = theirs.as_f64().unwrap();
        if theirs > 0.0 {
            let rel = (ours - theirs).abs() / theirs;
            assert!(rel <= TOL, "{what}: ours {ours:e}, reference {theirs:e} (rel {rel:e})");
            if rel > self.p_rel {
                self.p_rel = rel;
                self.worst_p = format!("{what}: {theirs:e}");
            }
        }
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

const ALTERNATIVES: [(Alternative, &str, &str); 3] = [
    (Alternative::TwoSided, "two-sided", "two_sided"),
    (Alternative::Less, "less", "less"),
    (Alternative::Greater, "greater", "greater"),
];

fn load(text: &str) -> Value {
    serde_json::from_str(text).expect("reference JSON")
}

#[test]
fn mann_whitney_agrees_with_scipy_and_r() {
    let scipy = load(include_str!("reference/scipy.json"));
    let r = load(include_str!("reference/r.json"));
    let (s_cases, r_cases) = (scipy["mann_whitney"].as_array().unwrap(), r["mann_whitney"].as_array().unwrap());
    assert_eq!(s_cases.len(), r_cases.len());
    assert!(s_cases.len() >= 60);
    let mut w = Worst::default();
    let mut exact_cases = 0;
    for (s, rc) in s_cases.iter().zip(r_cases) {
        let name = s["name"].as_str().unwrap();
        let (x, y) = (floats(&s["x"]), floats(&s["y"]));
        // R read the very same doubles.
        assert_eq!((floats(&rc["x"]), floats(&rc["y"])), (x.clone(), y.clone()), "{name}: inputs differ");
        let r_exact = rc["method"].as_str().unwrap().contains("exact");
        for (alt, s_alt, r_alt) in ALTERNATIVES {
            let auto = mann_whitney_u(&x, &y, alt).unwrap();
            assert_eq!(auto.method == Method::Exact, r_exact, "{name}: method");
            w.check(&format!("{name} U (SciPy)"), auto.u, &s["u"]);
            w.check(&format!("{name} W (R)"), auto.u, &rc["w"]);
            w.check_p(&format!("{name} {s_alt} p (R, {:?})", auto.method), auto.p_value, &rc["p_auto"][r_alt]);
            let asym = mann_whitney_u_with(&x, &y, alt, Method::Asymptotic).unwrap();
            w.check_p(&format!("{name} {s_alt} asymptotic p (R)"), asym.p_value, &rc["p_asymptotic"][r_alt]);
            w.check_p(&format!("{name} {s_alt} asymptotic p (SciPy)"), asym.p_value, &s["asymptotic"][s_alt]);
            if r_exact {
                w.check_p(&format!("{name} {s_alt} exact p (SciPy)"), auto.p_value, &s["exact"][s_alt]);
            }
        }
        exact_cases += r_exact as usize;
    }
    assert!(exact_cases >= 12, "{exact_cases} exact cases");
    println!(
        "Mann-Whitney: {} figures, max abs error {:e}, max rel error {:e}, max p-value rel error {:e} ({})",
        w.compared, w.abs, w.rel, w.p_rel, w.worst_p
    );
}

#[test]
fn hodges_lehmann_agrees_with_r() {
    let r = load(include_str!("reference/r.json"));
    let mut w = Worst::default();
    let mut refused = Vec::new();
    for rc in r["mann_whitney"].as_array().unwrap() {
        let name = rc["name"].as_str().unwrap();
        let (x, y) = (floats(&rc["x"]), floats(&rc["y"]));
        for (key, shift) in [
            ("conf_int", hodges_lehmann(&x, &y, 0.98).unwrap()),
            ("conf_int_asymptotic", hodges_lehmann_with(&x, &y, 0.98, Method::Asymptotic).unwrap()),
        ] {
            let reference = &rc[key];
            if reference.is_null() {
                // R stops where every pairwise difference is the same; we give that difference.
                assert_eq!((shift.lower, shift.upper), (shift.estimate, shift.estimate), "{name} {key}");
                refused.push(format!("{name} {key}"));
                continue;
            }
            w.check(&format!("{name} {key} estimate"), shift.estimate, &reference["estimate"]);
            w.check(&format!("{name} {key} lower"), shift.lower, &reference["lower"]);
            w.check(&format!("{name} {key} upper"), shift.upper, &reference["upper"]);
        }
    }
    assert_eq!(
        refused,
        [
            "exact_1x1 conf_int_asymptotic",
            "exact_1x1_lower conf_int_asymptotic",
            "constant_vs_constant conf_int",
            "constant_vs_constant conf_int_asymptotic"
        ]
    );
    println!("Hodges-Lehmann: {} figures, max abs error {:e}, max rel error {:e}", w.compared, w.abs, w.rel);
}

#[test]
fn two_proportions_agree_with_r_and_scipy() {
    let scipy = load(include_str!("reference/scipy.json"));
    let r = load(include_str!("reference/r.json"));
    let mut w = Worst::default();
    let (s_cases, r_cases) = (scipy["proportions"].as_array().unwrap(), r["proportions"].as_array().unwrap());
    assert_eq!(s_cases.len(), r_cases.len());
    for (s, rc) in s_cases.iter().zip(r_cases) {
        let name = rc["name"].as_str().unwrap();
        let k = |v: &Value| v.as_f64().unwrap() as u64;
        let (x1, n1, x2, n2) = (k(&rc["x1"]), k(&rc["n1"]), k(&rc["x2"]), k(&rc["n2"]));
        for (alt, _, r_alt) in ALTERNATIVES {
            let t = two_proportions(x1, n1, x2, n2, alt, 0.98).unwrap();
            let f = &rc[r_alt];
            w.check(&format!("{name} {r_alt} X²"), t.statistic, &f["statistic"]);
            w.check_p(&format!("{name} {r_alt} p"), t.p_value, &f["p_value"]);
            w.check(&format!("{name} {r_alt} lower"), t.lower, &f["lower"]);
            w.check(&format!("{name} {r_alt} upper"), t.upper, &f["upper"]);
            w.check(&format!("{name} {r_alt} p1"), t.estimate1, &f["estimate1"]);
            w.check(&format!("{name} {r_alt} p2"), t.estimate2, &f["estimate2"]);
            if alt == Alternative::TwoSided {
                w.check(&format!("{name} X² (SciPy)"), t.statistic, &s["statistic"]);
                w.check_p(&format!("{name} p (SciPy)"), t.p_value, &s["p_value"]);
            }
        }
    }
    println!(
        "two proportions: {} figures, max abs error {:e}, max rel error {:e}, max p-value rel error {:e} ({})",
        w.compared, w.abs, w.rel, w.p_rel, w.worst_p
    );
}
