//! The Prometheus exposition (`GET /metrics`, the text format 0.0.4) and the samples remote write sends.

use super::{split_key, Exposed, Live};
use crew_metrics::Kind;

/// A Prometheus metric or label name: `.` and `-` become `_`, a leading digit gets a `_` before it.
pub fn prom_name(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// One Prometheus sample: metric name, labels (sorted, without `__name__`), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A series as Prometheus samples, and its family's name and type: counters as `_total` running totals,
/// gauges and set sizes as gauges, timers as summaries (the latest quantiles, running `_sum` and `_count`).
pub fn prom_samples(key: &str, e: &Exposed) -> (String, &'static str, Vec<Sample>) {
    let (name, labels) = split_key(key);
    let base = prom_name(name);
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (prom_name(k), v.to_string())).collect();
    labels.sort();
    let with = |extra: (&str, &str)| {
        let mut l = labels.clone();
        l.push((extra.0.to_string(), extra.1.to_string()));
        l.sort();
        l
    };
    let p = &e.last;
    match e.kind {
        Kind::Counter => {
            let f = format!("{base}_total");
            (f.clone(), "counter", vec![(f, labels.clone(), e.totals.0)])
        }
        Kind::Gauge | Kind::Set => (base.clone(), "gauge", vec![(base, labels.clone(), p.last)]),
        Kind::Timer => (
            base.clone(),
            "summary",
            vec![
                (base.clone(), with(("quantile", "0.5")), p.p50),
                (base.clone(), with(("quantile", "0.9")), p.p90),
                (base.clone(), with(("quantile", "0.99")), p.p99),
                (format!("{base}_sum"), labels.clone(), e.totals.1),
                (format!("{base}_count"), labels.clone(), e.totals.0),
            ],
        ),
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The Prometheus text format (0.0.4), one TYPE line per family.
pub fn exposition(m: &Live) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let ex = m.exposition.lock().expect("not poisoned");
    let mut families: BTreeMap<String, (&'static str, Vec<Sample>)> = BTreeMap::new();
    for (key, e) in &ex.series {
        let (family, typ, samples) = prom_samples(key, e);
        families.entry(family).or_insert((typ, vec![])).1.extend(samples);
    }
    let mut out = String::new();
    for (family, (typ, samples)) in families {
        let _ = writeln!(out, "# TYPE {family} {typ}");
        for (name, labels, v) in samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
                .collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(out, "{name}{labels} {}", num(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names_for_prometheus() {
        assert_eq!(super::super::split_key("lat{env=prod,route=/a}"), ("lat", vec![("env", "prod"), ("route", "/a")]));
        assert_eq!(super::super::split_key("hits"), ("hits", vec![]));
        assert_eq!(prom_name("api.req-time"), "api_req_time");
        assert_eq!(prom_name("5xx"), "_5xx");
    }
}
