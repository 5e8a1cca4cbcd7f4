//! Human output: one line per event, in the Flickr log's spirit.

use crew_core::Event;

/// `[2026-11-26 16:03:57] [alice via cli] deploy.started www/production: alice deploying www to production`
pub fn event_line(e: &Event) -> String {
    let subject = if e.subject.is_empty() { String::new() } else { format!(" {}", e.subject) };
    format!(
        "[{}] [{} via {}] {}{}: {}",
        crew_core::time::human(e.at),
        e.actor.name,
        e.actor.via,
        e.kind,
        subject,
        e.summary
    )
}

/// A duration in words: `3d 4h`, `2h 5m`, `42s`.
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// `crew experiment KEY`: the current phase (or every phase) of a bucket test in words, from the results JSON.
pub fn experiment(r: &serde_json::Value, all: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let flag = r["flag"].as_str().unwrap_or("?");
    let phases = r["phases"].as_array().cloned().unwrap_or_default();
    if phases.is_empty() {
        return format!("{flag} is not a bucket test (crew flag {flag} split control=50,new=50 -r why)\n");
    }
    let _ = writeln!(
        out,
        "{flag}: conversions of {} after first exposure, {} intervals ({}% confidence)",
        r["metric"].as_str().unwrap_or("?"),
        r["method"].as_str().unwrap_or("?"),
        ((1.0 - r["alpha"].as_f64().unwrap_or(0.05)) * 100.0).round()
    );
    for (i, p) in phases.iter().enumerate() {
        if i > 0 && !all {
            let _ = writeln!(out, "({} earlier phase(s): --all shows them)", phases.len() - 1);
            break;
        }
        let started = p["started_ms"].as_i64().and_then(chrono::DateTime::from_timestamp_millis);
        let when = started.map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        let now = if p["ended_ms"].is_null() { " (current)" } else { "" };
        let sampled = if p["sampled"].as_bool() == Some(true) { ", sampled" } else { "" };
        let _ = writeln!(out, "\nphase from {when}{now}: {} users{sampled}", p["users"]);
        if let Some(c) = p["change"]["summary"].as_str() {
            let _ = writeln!(out, "  started by: {c}");
        }
        let _ =
            writeln!(out, "  {:<14} {:>8} {:>8} {:>24} {:>30} {:>8}", "variant", "users", "conv", "rate", "lift", "p");
        for v in p["variants"].as_array().into_iter().flatten() {
            let rate = match (v["rate_low"].as_f64(), v["rate_high"].as_f64()) {
                (Some(l), Some(h)) => format!("{} [{}, {}]", pct(v["rate"].as_f64().unwrap_or(0.0)), pct(l), pct(h)),
                _ => pct(v["rate"].as_f64().unwrap_or(0.0)),
            };
            let c = &v["comparison"];
            let (lift, p_value) = if c.is_null() {
                ("(control)".to_string(), "".to_string())
            } else {
                let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN) * 100.0;
                (
                    format!("{:+.1}% [{:+.1}%, {:+.1}%]", f("lift"), f("low"), f("high")),
                    format!("{:.4}", c["p_value"].as_f64().unwrap_or(1.0)),
                )
            };
            let _ = writeln!(
                out,
                "  {:<14} {:>8} {:>8} {:>24} {:>30} {:>8}",
                v["name"].as_str().unwrap_or("?"),
                v["users"],
                v["conversions"],
                rate,
                lift,
                p_value
            );
        }
        let srm = &p["srm"];
        if srm["mismatch"].as_bool() == Some(true) {
            let _ = writeln!(
                out,
                "  SAMPLE RATIO MISMATCH (p = {:.1e}): do not trust these figures",
                srm["p_value"].as_f64().unwrap_or(0.0)
            );
        }
        match p["winner"].as_str() {
            Some(w) => {
                let _ = writeln!(out, "  winner: {w}");
            }
            None => {
                let _ = writeln!(out, "  no winner yet");
            }
        }
        for g in p["guardrails"].as_array().into_iter().flatten() {
            let per: Vec<String> = g["variants"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| match v[1].as_f64() {
                    Some(x) => format!("{} {x:.4}", v[0].as_str().unwrap_or("?")),
                    None => format!("{} no data", v[0].as_str().unwrap_or("?")),
                })
                .collect();
            let _ = writeln!(out, "  guardrail {}: {}", g["series"].as_str().unwrap_or("?"), per.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes() {
        for (s, want) in [(5, "5s"), (65, "1m 5s"), (3700, "1h 1m"), (90000, "1d 1h")] {
            assert_eq!(uptime(s), want);
        }
    }
}
