//! `crew judge`: two files of numbers judged on this machine, no server; figures as R gives them.

use crate::harness::CREW;
use serde_json::Value;
use std::process::{Command, Output};

fn judge(dir: &std::path::Path, baseline: &str, canary: &str, extra: &[&str]) -> (i32, String, String) {
    let (b, c) = (dir.join("baseline.txt"), dir.join("canary.txt"));
    std::fs::write(&b, baseline).unwrap();
    std::fs::write(&c, canary).unwrap();
    let Output { status, stdout, stderr } = Command::new(CREW)
        .arg("judge")
        .arg("--baseline")
        .arg(&b)
        .arg("--canary")
        .arg(&c)
        .args(extra)
        .env_remove("CREW_SERVER")
        .output()
        .unwrap();
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

fn lines(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x}\n")).collect()
}

#[test]
fn judges_two_files_as_r_does() {
    let dir = tempfile::tempdir().unwrap();
    // R 4.2.2: wilcox.test(canary, baseline, conf.int = TRUE, conf.level = 0.98), exact (5 and 7 values, no ties).
    let canary = [12.1259765625, 7.6123046875, 9.0380859375, 12.279296875, 6.5810546875];
    let baseline = [8.1943359375, 13.21484375, 11.099609375, 7.939453125, 10.009765625, 11.390625, 8.32421875];
    let baseline_file = format!("# latency, ms\n\n{}   \n# the end\n", lines(&baseline));
    let (code, out, err) = judge(dir.path(), &baseline_file, &lines(&canary), &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["u"], 15.0);
    assert_eq!(v["method"], "exact");
    assert!((v["p_value"].as_f64().unwrap() - 0.7550505050505051).abs() < 1e-12, "{v}");
    assert_eq!(v["estimate"], -0.7119140625);
    assert_eq!((v["lower"].as_f64(), v["upper"].as_f64()), (Some(-4.5185546875), Some(3.955078125)));
    assert_eq!((v["classification"].as_str(), v["verdict"].as_str()), (Some("pass"), Some("pass")));
    assert_eq!((v["baseline"]["count"].as_u64(), v["canary"]["count"].as_u64()), (Some(7), Some(5)));
    assert!(v["baseline"]["file"].as_str().unwrap().ends_with("baseline.txt"));

    // spinnaker/kayenta#426's vectors, ties: the normal approximation (R: W = 27, p = 0.07314, shift 0.824 in
    // [0, 2]). The rank test passes sparse error counts; a ratio metric would not (see crew-judge's tests).
    let (code, out, err) =
        judge(dir.path(), &lines(&[0.0; 6]), &lines(&[0.0, 1.0, 2.0, 1.0, 0.0, 0.0]), &["--direction", "increase"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "Mann-Whitney U = 27 (normal approximation, tie and continuity corrected), p = 0.0731398 (two-sided)",
        "Hodges-Lehmann shift canary − baseline = +0.823978, 98% interval [0, +2]",
        "pass (bad direction: increase): no significant difference",
        "verdict: pass, score 100.00",
    ] {
        assert!(out.contains(want), "no `{want}` in:\n{out}");
    }

    // A clear regression fails.
    let base: Vec<f64> = (1..=40).map(|i| 100.0 + i as f64).collect();
    let slow: Vec<f64> = base.iter().map(|x| x + 30.5).collect();
    let (code, out, _) = judge(dir.path(), &lines(&base), &lines(&slow), &["--direction", "increase"]);
    assert_eq!(code, 0);
    assert!(out.contains("Mann-Whitney U = 1555 (exact)") && out.contains("shift canary − baseline = +30.5"), "{out}");
    assert!(out.contains("high (bad direction: increase): higher than the baseline"), "{out}");
    assert!(out.contains("verdict: fail, score 0.00: score 0.00 < 75 (canary is high)"), "{out}");
    // … unless only a decrease is bad.
    let (_, out, _) = judge(dir.path(), &lines(&base), &lines(&slow), &["--direction", "decrease", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["classification"].as_str(), v["verdict"].as_str()), (Some("pass"), Some("pass")), "{v}");

    // No data holds: the verdict is nodata, not a failure.
    let (code, out, _) = judge(dir.path(), &lines(&base), "# nothing yet\n", &["--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["verdict"].as_str(), v["reason"].as_str(), v["u"].is_null()),
        (Some("nodata"), Some("no canary data"), true)
    );
}

#[test]
fn bad_input_is_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = judge(dir.path(), "1\n2\n\n12ms\n", "1\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("baseline.txt:4: `12ms` is not a number"), "{err}");
    let (code, _, err) = judge(dir.path(), "1\n", "1\n", &["--direction", "up"]);
    assert_eq!(code, 2);
    assert!(err.contains("increase") && err.contains("either"), "{err}");
    let out = Command::new(CREW)
        .args(["judge", "--baseline", "/nonexistent/b.txt", "--canary", "/nonexistent/c.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/b.txt: cannot read it"));
}
