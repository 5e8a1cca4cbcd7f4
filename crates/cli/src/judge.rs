//! `crew judge`: the canary judge by hand, on this machine. Reads two files of numbers and prints what the judge
//! makes of them (crew-judge does the statistics); no server is involved.

use crate::cli::JudgeArgs;
use crate::Exit;
use anyhow::Result;
use crew_judge::{judge, Direction, JudgeConfig, Metric, MetricRule, Samples, Side, Test};
use serde_json::{json, Value};
use std::path::Path;

pub fn run(args: &JudgeArgs, as_json: bool) -> Result<()> {
    let baseline = numbers(&args.baseline)?;
    let canary = numbers(&args.canary)?;
    let direction: Direction = args.direction.parse().map_err(|e: String| Exit::new(2, format!("--direction: {e}")))?;
    let rule = MetricRule { direction, ..MetricRule::default() };
    let metric = Metric { name: "canary".into(), rule: rule.clone(), samples: Samples::Values { baseline, canary } };
    let config = JudgeConfig::default();
    let judgement = judge(&config, &[metric]).map_err(|e| Exit::new(2, e.to_string()))?;
    let m = &judgement.metrics[0];
    let test = match &m.test {
        Some(Test::RankSum { u, p_value, method, z, estimate, lower, upper, conf_level }) => {
            Some((*u, *p_value, *method, *z, *estimate, *lower, *upper, *conf_level))
        }
        _ => None,
    };
    if as_json {
        let side = |s: &Side, file: &Path| {
            let mut v = serde_json::to_value(s).expect("a side serialises");
            v["file"] = json!(file.display().to_string());
            v
        };
        let mut out = json!({
            "verdict": judgement.verdict,
            "score": judgement.score,
            "why": judgement.why,
            "classification": m.classification,
            "reason": m.why,
            "direction": direction,
            "baseline": side(&m.baseline, &args.baseline),
            "canary": side(&m.canary, &args.canary),
            "effect": m.effect,
            "allowed_increase": rule.allowed_increase,
            "allowed_decrease": rule.allowed_decrease,
        });
        let figures = match test {
            Some((u, p, method, z, estimate, lower, upper, conf_level)) => json!({
                "u": u, "p_value": p, "method": method, "z": z,
                "estimate": estimate, "lower": lower, "upper": upper, "conf_level": conf_level,
            }),
            None => json!({"u": null, "p_value": null, "method": null, "z": null,
                           "estimate": null, "lower": null, "upper": null, "conf_level": config.confidence}),
        };
        if let (Value::Object(o), Value::Object(f)) = (&mut out, figures) {
            o.extend(f);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (label, s) in [("canary", &m.canary), ("baseline", &m.baseline)] {
        println!("{label:<9} {}", side_line(s));
    }
    match test {
        Some((u, p, method, _, estimate, lower, upper, conf_level)) => {
            println!("Mann-Whitney U = {} ({}), p = {} (two-sided)", fmt(u), method_name(method), fmt(p));
            println!(
                "Hodges-Lehmann shift canary − baseline = {}, {}% interval [{}, {}]",
                signed(estimate),
                fmt(conf_level * 100.0),
                signed(lower),
                signed(upper)
            );
        }
        None => println!("no test"),
    }
    if let Some(e) = m.effect {
        println!(
            "effect    mean ×{} (tolerated: ×{} up, ×{} down)",
            fmt(e),
            fmt(rule.allowed_increase),
            fmt(rule.allowed_decrease)
        );
    }
    println!("{} (bad direction: {direction}): {}", m.classification.as_str(), m.why);
    let score = judgement.score.map(|s| format!(", score {s:.2}")).unwrap_or_default();
    println!("verdict: {}{score}: {}", judgement.verdict.as_str(), judgement.why);
    Ok(())
}

fn method_name(m: crew_judge::Method) -> &'static str {
    match m {
        crew_judge::Method::Exact => "exact",
        crew_judge::Method::Asymptotic => "normal approximation, tie and continuity corrected",
    }
}

fn side_line(s: &Side) -> String {
    let mut line = format!("{} values", s.count);
    for (name, v) in [("mean", s.mean), ("median", s.median), ("min", s.min), ("max", s.max)] {
        if let Some(v) = v {
            line.push_str(&format!("  {name} {}", fmt(v)));
        }
    }
    if s.not_finite > 0 {
        line.push_str(&format!("  ({} not numbers, left out)", s.not_finite));
    }
    line
}

/// A file of numbers, one a line; blank lines and `#` comments (whole lines or after a number) ignored. `nan`
/// is a gap (left out by the judge). Anything else is bad input (exit 2) naming the file and line.
fn numbers(path: &Path) -> Result<Vec<f64>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Exit::new(2, format!("{}: cannot read it: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let v: f64 = content
            .parse()
            .map_err(|_| Exit::new(2, format!("{}:{}: `{content}` is not a number", path.display(), i + 1)))?;
        out.push(v);
    }
    Ok(out)
}

/// 6 significant digits, no trailing zeros; scientific notation when very small or large.
fn fmt(v: f64) -> String {
    crew_judge::judge::figure(v, 6, 9, 4)
}

fn signed(v: f64) -> String {
    crew_judge::judge::signed_figure(v, 6, 9, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(fmt(0.000123456789), "0.000123457");
        assert_eq!(fmt(1234.5), "1234.5");
        assert_eq!(fmt(2.5e-12), "2.5000e-12");
        assert_eq!(fmt(0.0), "0");
        assert_eq!(signed(3.0), "+3");
    }
}
