//! Alert rules (`[[alerts]]` in crew.toml) on series: after every flush each rule's stat is compared with its
//! threshold for every series it matches; a breach that lasts `for` records `alert.fired` (with the runbook and
//! a graph link), and its end records `alert.resolved`. A counter that received nothing counts as zero (so
//! "requests < 1" fires when traffic stops); other kinds without data keep their state. Firing alerts are read
//! back from the timeline at start, so a restart neither repeats nor forgets them.

use crate::metrics::{split_key, Exposed};
use crate::timeline::Timeline;
use crew_core::{kind, Actor, EventFilter, NewEvent, Via};
use crew_metrics::Kind;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// `[[alerts]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    pub name: String,
    pub series: String,
    /// `k=v,k2=v2`: only series with these labels.
    pub labels: Option<String>,
    pub stat: String,
    /// `>`, `>=`, `<`, `<=`, `==` or `!=`.
    pub op: String,
    pub threshold: f64,
    /// How long the breach must last (default: one flush).
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// `page`, `ticket` or `info`.
    #[serde(default = "page")]
    pub severity: String,
    pub summary: String,
    /// A path in the repository (`runbooks/checkout.md`) or a URL.
    pub runbook: Option<String>,
    /// The escalation policy (`[[escalations]]`) an incident of this rule follows: a `page` pages it.
    pub escalation: Option<String>,
}

fn page() -> String {
    "page".into()
}

/// How a rule compares its stat with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether `v` breaches `threshold`.
    pub fn breach(self, v: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => v > threshold,
            Op::Ge => v >= threshold,
            Op::Lt => v < threshold,
            Op::Le => v <= threshold,
            Op::Eq => v == threshold,
            Op::Ne => v != threshold,
        }
    }
}

pub use crew_core::Severity;

/// An alert rule as crew.toml's `[[alerts]]` gives it, checked and parsed once when the config loads.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub series: String,
    /// Only series with these labels.
    pub labels: Vec<(String, String)>,
    pub stat: String,
    pub op: Op,
    pub threshold: f64,
    /// How long the breach must last (zero: one flush).
    pub hold: Duration,
    /// As written (`"2m"`), for the events.
    pub for_text: Option<String>,
    pub severity: Severity,
    pub summary: String,
    pub runbook: Option<String>,
    pub escalation: Option<String>,
}

/// Checks every `[[alerts]]` and parses it into a [`Rule`]; errors name the rule and key.
pub fn check(alerts: &[AlertSection]) -> Result<Vec<Rule>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut rules = Vec::new();
    for (i, a) in alerts.iter().enumerate() {
        let at = format!("alerts[{i}]");
        if a.name.trim().is_empty() || !seen.insert(a.name.as_str()) {
            return Err(format!("{at}.name: `{}` is empty or named twice", a.name));
        }
        if a.series.is_empty() {
            return Err(format!("{at}.series: a series name"));
        }
        let stats = ["count", "rate", "sum", "mean", "min", "max", "p50", "p90", "p99", "value", "distinct"];
        if !stats.contains(&a.stat.as_str()) {
            return Err(format!("{at}.stat = \"{}\": one of {}", a.stat, stats.join(", ")));
        }
        let op = Op::parse(&a.op).ok_or_else(|| format!("{at}.op = \"{}\": one of >, >=, <, <=, ==, !=", a.op))?;
        if !a.threshold.is_finite() {
            return Err(format!("{at}.threshold: a finite number"));
        }
        let hold = match &a.for_ {
            Some(f) => humantime::parse_duration(f).map_err(|e| format!("{at}.for = \"{f}\": {e}"))?,
            None => Duration::ZERO,
        };
        let severity: Severity = a
            .severity
            .parse()
            .map_err(|_: String| format!("{at}.severity = \"{}\": page, ticket or info", a.severity))?;
        if a.summary.trim().is_empty() || a.summary.contains('\n') {
            return Err(format!("{at}.summary: one line"));
        }
        let mut labels = Vec::new();
        for kv in a.labels.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()) {
            let (k, v) =
                kv.split_once('=').ok_or_else(|| format!("{at}.labels: `{kv}` is not key=value (env=prod,route=/)"))?;
            labels.push((k.to_string(), v.to_string()));
        }
        rules.push(Rule {
            name: a.name.clone(),
            series: a.series.clone(),
            labels,
            stat: a.stat.clone(),
            op,
            threshold: a.threshold,
            hold,
            for_text: a.for_.clone(),
            severity,
            summary: a.summary.clone(),
            runbook: a.runbook.clone(),
            escalation: a.escalation.clone(),
        });
    }
    Ok(rules)
}

#[derive(Debug, Default, Clone)]
struct State {
    since: Option<i64>,
    firing: bool,
}

/// The rules' states per (alert, series key).
#[derive(Default)]
pub struct Alerts {
    states: std::sync::Mutex<HashMap<(String, String), State>>,
}

impl Alerts {
    /// Reads which alerts are firing from the timeline (the latest fired/resolved per alert and series).
    pub async fn load(&self, timeline: &Timeline) -> anyhow::Result<()> {
        let mut f = EventFilter::new();
        f.kind = Some(kind::ALERT.into());
        f.limit = 1000;
        let page = timeline.query(&f).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut states = self.states.lock().expect("not poisoned");
        let mut decided = std::collections::HashSet::new();
        for e in page.events {
            let (Some(name), Some(series)) = (e.data["alert"].as_str(), e.data["series"].as_str()) else { continue };
            let key = (name.to_string(), series.to_string());
            if decided.insert(key.clone()) && e.kind == kind::ALERT_FIRED {
                states.insert(key, State { since: None, firing: true });
            }
        }
        Ok(())
    }

    /// One evaluation after the flush at `t` (Unix ms): the events to record.
    pub fn evaluate(
        &self,
        rules: &[Rule],
        series: &std::collections::HashMap<Arc<str>, (Kind, Option<crew_metrics::Point>)>,
        t: i64,
        flush_secs: f64,
    ) -> Vec<NewEvent> {
        let mut out = vec![];
        let mut states = self.states.lock().expect("not poisoned");
        for r in rules {
            let (wanted, hold) = (&r.labels, r.hold);
            for (key, (kind, point)) in series {
                let (name, labels) = split_key(key);
                if name != r.series || !wanted.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)) {
                    continue;
                }
                let value = match point {
                    Some(p) => p.stat(*kind, &r.stat, flush_secs),
                    None if *kind == Kind::Counter && matches!(r.stat.as_str(), "count" | "rate" | "sum") => Some(0.0),
                    None => continue,
                };
                let Some(v) = value else { continue };
                let s = states.entry((r.name.clone(), key.to_string())).or_default();
                let bad = r.op.breach(v, r.threshold);
                let data = serde_json::json!({
                    "alert": r.name, "series": key.as_ref(), "stat": r.stat, "value": v, "op": r.op.as_str(),
                    "threshold": r.threshold, "severity": r.severity.as_str(), "for": r.for_text,
                });
                let subject = format!("alert:{}", r.name);
                if bad {
                    let since = *s.since.get_or_insert(t);
                    if !s.firing && t - since >= hold.as_millis() as i64 {
                        s.firing = true;
                        // When the breach began, for the postmortem's time to detect.
                        let mut data = data.clone();
                        if let Some(at) = chrono::DateTime::from_timestamp_millis(since) {
                            data["breach_since"] = serde_json::json!(crew_core::time::rfc3339(at));
                        }
                        let mut e = NewEvent::new(
                            Actor::new("crew", Via::Scheduler),
                            kind::ALERT_FIRED,
                            &subject,
                            format!(
                                "[{}] {}: {key} {} {} {} {}",
                                r.severity.as_str(),
                                r.summary,
                                r.stat,
                                short(v),
                                r.op.as_str(),
                                short(r.threshold)
                            ),
                        )
                        .with_data(data);
                        if let Some(rb) = &r.runbook {
                            // A URL as it is; a runbook of the repository (checked at start) as its page on crew.
                            let href = if crate::runbooks::is_url(rb) {
                                rb.clone()
                            } else {
                                crate::runbooks::resolve(rb)
                                    .map(|p| crate::runbooks::page(&p))
                                    .unwrap_or_else(|_| format!("/{}", rb.trim_start_matches('/')))
                            };
                            e = e.with_link("runbook", &href);
                        }
                        e = e.with_link(
                            "graph",
                            &format!(
                                "/graphs?q={}",
                                url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
                            ),
                        );
                        out.push(e);
                    }
                } else {
                    s.since = None;
                    if s.firing {
                        s.firing = false;
                        out.push(
                            NewEvent::new(
                                Actor::new("crew", Via::Scheduler),
                                kind::ALERT_RESOLVED,
                                &subject,
                                format!("resolved: {}: {key} {} is {}", r.summary, r.stat, short(v)),
                            )
                            .with_data(data),
                        );
                    }
                }
            }
        }
        out
    }
}

fn short(v: f64) -> String {
    crew_metrics::query::short(v)
}

/// The series the rules look at, from the exposition: each with its point if it had data at `t`.
pub fn snapshot(
    series: &rustc_hash::FxHashMap<Arc<str>, Exposed>,
    t: i64,
) -> HashMap<Arc<str>, (Kind, Option<crew_metrics::Point>)> {
    series.iter().map(|(k, e)| (k.clone(), (e.kind, (e.seen_ms == t).then_some(e.last)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crew_metrics::Point;

    fn section() -> AlertSection {
        AlertSection {
            name: "errors".into(),
            series: "shop.errors".into(),
            labels: None,
            stat: "count".into(),
            op: ">".into(),
            threshold: 5.0,
            for_: Some("2s".into()),
            severity: "page".into(),
            summary: "checkout errors".into(),
            runbook: Some("runbooks/checkout.md".into()),
            escalation: None,
        }
    }

    #[test]
    fn fires_after_its_for_and_resolves_once() {
        let a = Alerts::default();
        let key: Arc<str> = Arc::from("shop.errors");
        let at = |v: Option<f64>| {
            let mut m = HashMap::new();
            m.insert(key.clone(), (Kind::Counter, v.map(|v| Point { sum: v, count: 1.0, ..Point::default() })));
            m
        };
        let rules = check(&[section()]).unwrap();
        assert!(a.evaluate(&rules, &at(Some(9.0)), 1_000, 1.0).is_empty(), "pending");
        assert!(a.evaluate(&rules, &at(Some(9.0)), 2_000, 1.0).is_empty(), "1 s of 2");
        let fired = a.evaluate(&rules, &at(Some(9.0)), 3_000, 1.0);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].kind, kind::ALERT_FIRED);
        assert_eq!(fired[0].summary, "[page] checkout errors: shop.errors count 9 > 5");
        assert_eq!(fired[0].links[0].href, "/runbooks/checkout.md");
        // A short name links to the runbook's page too.
        let mut short = section();
        short.name = "short".into();
        short.runbook = Some("db/failover".into());
        let b = Alerts::default();
        let short = check(&[short]).unwrap();
        let by_short: Vec<NewEvent> =
            [1_000, 2_000, 3_000].into_iter().flat_map(|t| b.evaluate(&short, &at(Some(9.0)), t, 1.0)).collect();
        assert_eq!(by_short.len(), 1);
        assert_eq!(by_short[0].links[0].href, "/runbooks/db/failover.md");
        assert!(a.evaluate(&rules, &at(Some(9.0)), 4_000, 1.0).is_empty(), "fired once");
        let resolved = a.evaluate(&rules, &at(None), 5_000, 1.0);
        assert_eq!(resolved.len(), 1, "no errors counted is zero errors");
        assert_eq!(resolved[0].kind, kind::ALERT_RESOLVED);
        assert!(a.evaluate(&rules, &at(None), 6_000, 1.0).is_empty());
    }

    #[test]
    fn mistakes_name_the_rule_and_key() {
        let mut r = section();
        r.op = "=>".into();
        assert!(check(&[r]).unwrap_err().contains("alerts[0].op = \"=>\""));
        let mut r = section();
        r.stat = "avg".into();
        assert!(check(&[r]).unwrap_err().contains("alerts[0].stat"));
        let mut r = section();
        r.for_ = Some("a while".into());
        assert!(check(&[r]).unwrap_err().contains("alerts[0].for"));
        assert!(check(&[section(), section()]).unwrap_err().contains("named twice"));
        let mut r = section();
        r.labels = Some("env".into());
        assert!(check(&[r]).unwrap_err().contains("alerts[0].labels: `env` is not key=value"));
    }
}
