//! crew-experiments against gbstats (the sequential and Welch intervals) and SciPy (the chi-square), from the
//! figures `tests/reference/make.py` wrote.

use crew_experiments::{compare, srm, Method};
use serde_json::Value;

fn close(name: &str, got: f64, want: &Value, relative: bool) {
    let want = want.as_f64().unwrap_or_else(|| panic!("{name}: no figure"));
    let err = (got - want).abs();
    // Relative to the figure's size, absolute below 1 (an interval's end near 0, a p-value).
    let bound = if relative { 1e-9 * want.abs().max(1.0) } else { 1e-9 };
    assert!(err <= bound, "{name}: got {got}, reference {want} (off by {err:e})");
}

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/reference.json")).unwrap()
}

#[test]
fn intervals_and_p_values_equal_gbstats() {
    let r = reference();
    let cases = r["comparisons"].as_array().unwrap();
    assert!(cases.len() >= 200);
    for (i, c) in cases.iter().enumerate() {
        let pair = |v: &Value| (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
        let (a, b) = (pair(&c["control"]), pair(&c["variant"]));
        let alpha = c["alpha"].as_f64().unwrap();
        for (method, key) in [(Method::default(), "sequential"), (Method::Fixed, "fixed")] {
            let got = compare(a, b, method, alpha).unwrap_or_else(|| panic!("case {i}: no comparison"));
            let want = &c[key];
            let name = format!("case {i} {key}");
            close(&format!("{name} lift"), got.lift, &want["lift"], true);
            close(&format!("{name} low"), got.low, &want["low"], true);
            close(&format!("{name} high"), got.high, &want["high"], true);
            close(&format!("{name} p"), got.p_value, &want["p_value"], false);
        }
    }
}

#[test]
fn sample_ratio_check_equals_scipy_chisquare() {
    let r = reference();
    for (i, c) in r["srm"].as_array().unwrap().iter().enumerate() {
        let users: Vec<u64> = c["users"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let weights: Vec<f64> = c["weights"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got = srm(&users, &weights);
        close(&format!("srm {i} chi2"), got.chi_square, &c["chi_square"], true);
        close(&format!("srm {i} p"), got.p_value, &c["p_value"], false);
    }
}
