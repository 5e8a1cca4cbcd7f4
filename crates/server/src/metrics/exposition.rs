//! The Prometheus exposition (`GET /metrics`, the text format 0.0.4) and the samples remote write sends. Names
//! and labels follow Prometheus' rules (`crew_metrics::prom`): a tag that would be a reserved label or one crew
//! adds, or the same label twice, is renamed (`tag_quantile`) and counted (`crew_metrics_labels_renamed`); values
//! are kept as sent and escaped. Every family has `# HELP` and `# TYPE`, and a family is one type: a series whose
//! name would put it in another family's samples (a gauge `x_total` beside a counter `x`, say), or that repeats a
//! series already written (`a.b` and `a-b`), is left out and counted (`crew_metrics_exposition_conflicts`), so
//! Prometheus never sees a duplicate and never marks the target down.
//!
//! OpenMetrics 1.0 (`application/openmetrics-text`) is offered when the scraper asks for it, as Prometheus does:
//! the same families, a counter's family named without `_total`, `# EOF` at the end; a family whose names would
//! clash with another's there (a gauge `x` beside a counter `x`), or a series whose values OpenMetrics forbids (a
//! negative counter, a count that is not whole, as a sample rate can make), is left out of it and counted.

use super::{split_key, Exposed, Live};
use crew_metrics::{prom, Kind};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One Prometheus sample: metric name, labels (sorted, without `__name__`), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A series as Prometheus sees it: its family's name, type and help, its samples, and how many of its labels
/// were renamed.
pub struct Family {
    pub name: String,
    pub typ: &'static str,
    pub help: String,
    pub samples: Vec<Sample>,
    pub renamed: usize,
}

/// What crew's own series mean (they are StatsD series of the receive path, named here in base units).
const CREW_HELP: &[(&str, &str)] = &[
    ("crew_statsd_packets_total", "StatsD datagrams crew received over UDP."),
    ("crew_statsd_lines_total", "StatsD lines crew received over UDP and TCP."),
    ("crew_statsd_bad_lines_total", "StatsD lines crew refused as malformed (counted and skipped)."),
    ("crew_statsd_drops_total", "StatsD datagrams the kernel dropped on crew's UDP socket."),
    ("crew_statsd_series_limited_total", "StatsD samples dropped because their new series was past max_series."),
    ("crew_metrics_series", "Series aggregated in the last flush interval."),
    ("crew_metrics_flush_seconds", "How long crew's last flush of metrics took."),
];

/// The families this exposition adds itself (never a StatsD series).
const RENAMED: &str = "crew_metrics_labels_renamed";
const CONFLICTS: &str = "crew_metrics_exposition_conflicts";

/// A series as Prometheus samples, in its family: counters as `_total` running totals, gauges and set sizes as
/// gauges, timers as summaries (the latest quantiles, running `_sum` and `_count`).
pub fn family(key: &str, e: &Exposed) -> Family {
    let (statsd_name, tags) = split_key(key);
    let base = prom::name(statsd_name);
    let (labels, renamed) = prom::labels(tags);
    let with = |q: &str| {
        let mut l = labels.clone();
        l.push(("quantile".to_string(), q.to_string()));
        l.sort();
        l
    };
    let p = &e.last;
    let (name, typ, samples) = match e.kind {
        Kind::Counter => {
            let f = format!("{base}_total");
            (f.clone(), "counter", vec![(f, labels, e.totals.0)])
        }
        Kind::Gauge | Kind::Set => (base.clone(), "gauge", vec![(base, labels, p.last)]),
        Kind::Timer => (
            base.clone(),
            "summary",
            vec![
                (base.clone(), with("0.5"), p.p50),
                (base.clone(), with("0.9"), p.p90),
                (base.clone(), with("0.99"), p.p99),
                (format!("{base}_sum"), labels.clone(), e.totals.1),
                (format!("{base}_count"), labels, e.totals.0),
            ],
        ),
    };
    let help = match CREW_HELP.iter().find(|(n, _)| *n == name) {
        Some((_, h)) => h.to_string(),
        None => match e.kind {
            Kind::Counter => format!("StatsD counter {statsd_name}: the total since crew started."),
            Kind::Gauge => format!("StatsD gauge {statsd_name}: its last value."),
            Kind::Set => format!("StatsD set {statsd_name}: distinct members in the last interval with data."),
            Kind::Timer => format!(
                "StatsD timer {statsd_name} as sent (ms for `ms`): quantiles of the last interval with data, sum and count since crew started."
            ),
        },
    };
    Family { name, typ, help, samples, renamed }
}

/// The exposition formats crew writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.
    OpenMetrics,
}

impl Format {
    /// What an `Accept` header prefers: OpenMetrics when it weighs it at least as much as the text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0f64, 0.0f64);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f64>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "*/*" | "text/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A family's name in OpenMetrics: a counter's without its `_total`.
fn om_name<'a>(name: &'a str, typ: &str) -> &'a str {
    if typ == "counter" {
        name.strip_suffix("_total").unwrap_or(name)
    } else {
        name
    }
}

/// Every name a family takes: its samples' names, and in OpenMetrics the names its type reserves.
fn names_taken(f: &Family, format: Format) -> Vec<String> {
    let mut names: Vec<String> = f.samples.iter().map(|(n, _, _)| n.clone()).collect();
    if format == Format::OpenMetrics {
        let base = om_name(&f.name, f.typ);
        let suffixes: &[&str] = match f.typ {
            "counter" => &["", "_total", "_created"],
            "summary" => &["", "_count", "_sum", "_created"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{base}{s}")));
    }
    names
}

/// Whether OpenMetrics allows a family's values: counter-like samples neither negative nor NaN, counts whole,
/// quantiles not negative.
fn om_values_allowed(f: &Family) -> bool {
    let base = om_name(&f.name, f.typ);
    f.samples.iter().all(|(n, _, v)| {
        let suffix = &n[base.len().min(n.len())..];
        match (f.typ, suffix) {
            ("counter", "_total") | ("summary", "_sum") => *v >= 0.0,
            ("summary", "_count") => *v >= 0.0 && v.fract() == 0.0,
            ("summary", "") => v.is_nan() || *v >= 0.0,
            _ => true,
        }
    })
}

/// Every family, sorted by name, with the series that may be exposed, and the two counts.
struct Plan {
    families: BTreeMap<String, (&'static str, String, Vec<Sample>)>,
    renamed: usize,
    conflicts: usize,
}

#[cfg(test)]
fn plan<'a>(series: impl IntoIterator<Item = (&'a str, &'a Exposed)>) -> Plan {
    plan_with(series, |_| true, Format::Text)
}

/// The samples of the series seen in the flush at `t`, as remote write sends them: the same names and labels
/// as the exposition, and the same series left out (a receiver refuses a batch with a duplicate series, or
/// whose name is another family's, as Prometheus refuses a scrape).
pub fn fresh_samples<'a>(series: impl IntoIterator<Item = (&'a str, &'a Exposed)>, t: i64) -> Vec<Sample> {
    plan_with(series, |e| e.seen_ms == t, Format::Text).families.into_values().flat_map(|(_, _, s)| s).collect()
}

/// The plan of every series, judged against all of them, keeping the samples of those `keep` says.
fn plan_with<'a>(
    series: impl IntoIterator<Item = (&'a str, &'a Exposed)>,
    keep: impl Fn(&Exposed) -> bool,
    format: Format,
) -> Plan {
    let mut series: Vec<(&str, &Exposed)> = series.into_iter().collect();
    series.sort_by_key(|(k, _)| *k);
    let mut families: BTreeMap<String, (&'static str, String, Vec<Sample>)> = BTreeMap::new();
    // Which family each sample name belongs to (the exposition's own: to none a series can be in), and every
    // (name, labels) written.
    let mut owner: HashMap<String, String> =
        [RENAMED, CONFLICTS].iter().map(|n| (n.to_string(), String::new())).collect();
    if format == Format::OpenMetrics {
        // `# EOF` ends the exposition; no family may be named after it.
        owner.insert("EOF".into(), String::new());
    }
    let mut written: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    let (mut renamed, mut conflicts) = (0, 0);
    for (key, e) in series {
        let f = family(key, e);
        let same_type = families.get(&f.name).is_none_or(|(t, _, _)| *t == f.typ);
        let taken = names_taken(&f, format);
        let names_free = taken.iter().all(|n| owner.get(n).is_none_or(|o| *o == f.name));
        let new = f.samples.iter().all(|(n, l, _)| !written.contains(&(n.clone(), l.clone())));
        let allowed = format == Format::Text || om_values_allowed(&f);
        if !(same_type && names_free && new && allowed) {
            conflicts += 1;
            continue;
        }
        renamed += f.renamed;
        for n in taken {
            owner.insert(n, f.name.clone());
        }
        for (n, l, _) in &f.samples {
            written.insert((n.clone(), l.clone()));
        }
        let family = families.entry(f.name).or_insert((f.typ, f.help, vec![]));
        if keep(e) {
            family.2.extend(f.samples);
        }
    }
    Plan { families, renamed, conflicts }
}

fn write_family(out: &mut String, name: &str, typ: &str, help: &str, samples: &[Sample], format: Format) {
    let family = match format {
        Format::Text => name,
        Format::OpenMetrics => om_name(name, typ),
    };
    out.push_str("# HELP ");
    out.push_str(family);
    out.push(' ');
    match format {
        Format::Text => prom::escape_help(help, out),
        // OpenMetrics escapes `"` in HELP too, as in label values.
        Format::OpenMetrics => prom::escape_value(help, out),
    }
    out.push('\n');
    out.push_str(&format!("# TYPE {family} {typ}\n"));
    for (n, labels, v) in samples {
        out.push_str(n);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                prom::escape_value(v, out);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(&prom::number(*v));
        out.push('\n');
    }
}

/// The exposition in `format`: every family with `# HELP` and `# TYPE`.
pub fn exposition(m: &Live, format: Format) -> String {
    let ex = m.exposition.lock().expect("not poisoned");
    let plan = plan_with(ex.series.iter().map(|(k, e)| (&**k, e)), |_| true, format);
    drop(ex);
    let mut out = String::new();
    for (name, (typ, help, samples)) in &plan.families {
        write_family(&mut out, name, typ, help, samples, format);
    }
    let own = [
        (
            RENAMED,
            "Labels of StatsD tags renamed in this exposition: reserved (__ prefix), one crew adds (quantile, le, __name__) or the same name twice after sanitising; each is written tag_NAME.",
            plan.renamed,
        ),
        (
            CONFLICTS,
            "StatsD series left out of this exposition because their name falls in another family of another type, or repeats a series already written.",
            plan.conflicts,
        ),
    ];
    for (name, help, v) in own {
        write_family(&mut out, name, "gauge", help, &[(name.to_string(), vec![], v as f64)], format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crew_metrics::Point;

    fn exposed(kind: Kind) -> Exposed {
        Exposed { kind, last: Point { last: 1.0, ..Default::default() }, totals: (2.0, 3.0), seen_ms: 0 }
    }

    #[test]
    fn keys_split_into_names_and_labels() {
        assert_eq!(split_key("lat{env=prod,route=/a}"), ("lat", vec![("env", "prod"), ("route", "/a")]));
        assert_eq!(split_key("hits"), ("hits", vec![]));
        assert_eq!(split_key("x{v=a=b{c},w=/\"\\}"), ("x", vec![("v", "a=b{c}"), ("w", "/\"\\")]));
    }

    #[test]
    fn hostile_tags_are_renamed_and_counted() {
        let f = family("lat{__name__=x,quantile=q,le=1,city=Zürich}", &exposed(Kind::Timer));
        assert_eq!(f.renamed, 3);
        assert_eq!(f.typ, "summary");
        let labels: Vec<&str> = f.samples[0].1.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(labels, ["city", "quantile", "tag___name__", "tag_le", "tag_quantile"]);
        assert_eq!(f.samples[0].1[0].1, "Zürich");
    }

    #[test]
    fn a_family_is_one_type_and_no_series_is_written_twice() {
        let (c, g, t) = (exposed(Kind::Counter), exposed(Kind::Gauge), exposed(Kind::Timer));
        let p = plan([
            ("x", &c),
            ("x_total", &g), // in the counter's family: left out
            ("a.b", &g),
            ("a-b", &g), // the same series as a.b: left out
            ("lat", &t),
            ("lat_count", &g), // one of the summary's samples: left out
            ("lat{k=v}", &t),
            ("crew.metrics.labels_renamed", &g), // the exposition's own: left out
        ]);
        assert_eq!(p.conflicts, 4);
        assert_eq!(p.families.keys().collect::<Vec<_>>(), ["a_b", "lat", "x_total"]);
        assert_eq!(p.families["lat"].2.len(), 10);
        assert_eq!(p.families["x_total"].0, "counter");
    }

    #[test]
    fn every_family_has_help_and_type_and_crew_speaks_base_units() {
        let f = family("crew.metrics.flush_seconds", &exposed(Kind::Gauge));
        assert_eq!(f.help, "How long crew's last flush of metrics took.");
        let mut out = String::new();
        write_family(
            &mut out,
            "a_b",
            "gauge",
            "line\\one\ntwo",
            &[("a_b".into(), vec![("p".into(), "/a\"b\\c\nd".into())], 0.5)],
            Format::Text,
        );
        assert_eq!(out, "# HELP a_b line\\\\one\\ntwo\n# TYPE a_b gauge\na_b{p=\"/a\\\"b\\\\c\\nd\"} 0.5\n");
    }

    #[test]
    fn openmetrics_when_the_scraper_prefers_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (Some(prometheus), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"), Format::Text),
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("garbage;;;q=x,,"), Format::Text),
            (None, Format::Text),
        ] {
            assert_eq!(Format::from_accept(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn openmetrics_leaves_out_what_it_forbids_and_names_counters_without_total() {
        let (c, g, t) = (exposed(Kind::Counter), exposed(Kind::Gauge), exposed(Kind::Timer));
        let mut negative = exposed(Kind::Counter);
        negative.totals.0 = -3.0;
        let mut sampled = exposed(Kind::Timer);
        sampled.totals.0 = 3.5; // a count a sample rate made
        let series = [
            ("x", &c),
            ("x.created", &g), // a counter's reserved name in OpenMetrics
            ("y", &g),
            ("y", &g),
            ("neg", &negative),
            ("lat", &t),
            ("lat.created", &g),
            ("rated", &sampled),
            ("EOF", &g),
        ];
        let om = plan_with(series, |_| true, Format::OpenMetrics);
        assert_eq!(om.families.keys().collect::<Vec<_>>(), ["lat", "x_total", "y"]);
        assert_eq!(om.conflicts, 6);
        let text = plan_with(series, |_| true, Format::Text);
        assert_eq!(
            text.families.keys().collect::<Vec<_>>(),
            ["EOF", "lat", "lat_created", "neg_total", "rated", "x_created", "x_total", "y"]
        );
        let mut out = String::new();
        write_family(&mut out, "x_total", "counter", "say \"hi\"", &om.families["x_total"].2, Format::OpenMetrics);
        assert_eq!(out, "# HELP x say \\\"hi\\\"\n# TYPE x counter\nx_total 2\n");
    }
}
