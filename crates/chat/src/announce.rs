//! The timeline in a room: which events a room wants (its filters) and each as one line readable at a glance,
//! `[deploy] alice deployed www to production: 3f2a1c9..8e4d0b1 (7 commits) in 42s <url>`.

use crew_core::Event;

/// What a room hears when its filters are not given.
pub const DEFAULT_KINDS: &[&str] = &["deploy", "lock", "flag", "alert", "incident"];

/// Whether a room with these filters (dotted kind prefixes, `*` for all) hears an event of `kind`.
pub fn wanted(filters: &[String], kind: &str) -> bool {
    let hears = |f: &str| f == "*" || kind == f || kind.strip_prefix(f).is_some_and(|rest| rest.starts_with('.'));
    if filters.is_empty() {
        DEFAULT_KINDS.iter().any(|f| hears(f))
    } else {
        filters.iter().any(|f| hears(f))
    }
}

/// The event as one line: its area in brackets, the summary (which names who and what), and the most useful
/// link (a runbook first, else the first link), made absolute with `base_url`.
pub fn line(e: &Event, base_url: &str) -> String {
    let area = e.kind.split('.').next().unwrap_or(&e.kind);
    let link = e.links.iter().find(|l| l.rel == "runbook").or_else(|| e.links.first()).map(|l| {
        if l.href.starts_with("http://") || l.href.starts_with("https://") {
            l.href.clone()
        } else {
            format!("{}{}", base_url.trim_end_matches('/'), l.href)
        }
    });
    // The summary is one line already; control characters (IRC colour codes someone typed) are dropped.
    let summary: String = e.summary.chars().filter(|c| !c.is_control()).collect();
    match link {
        Some(l) => format!("[{area}] {summary} {l}"),
        None => format!("[{area}] {summary}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crew_core::{Actor, Link, Via};

    fn event(kind: &str, summary: &str, links: Vec<Link>) -> Event {
        Event {
            id: "e1".into(),
            seq: 1,
            at: chrono::Utc::now(),
            actor: Actor::new("alice", Via::Cli),
            kind: kind.into(),
            subject: "www/production".into(),
            summary: summary.into(),
            data: serde_json::json!({}),
            links,
        }
    }

    #[test]
    fn rooms_hear_what_their_filters_say() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wanted(&[], "deploy.started"));
        assert!(wanted(&[], "flag.changed"));
        assert!(!wanted(&[], "note"));
        assert!(!wanted(&[], "deployment.x"), "a prefix is a whole dotted part");
        assert!(wanted(&f(&["deploy"]), "deploy.failed"));
        assert!(!wanted(&f(&["deploy"]), "flag.changed"));
        assert!(wanted(&f(&["*"]), "note"));
        assert!(wanted(&f(&["deploy.failed"]), "deploy.failed"));
        assert!(!wanted(&f(&["deploy.failed"]), "deploy.finished"));
    }

    #[test]
    fn one_line_with_the_best_link() {
        let l = |rel: &str, href: &str| Link { rel: rel.into(), href: href.into() };
        let e = event(
            "deploy.finished",
            "alice deployed www to production: a..b (2 commits) in 4s",
            vec![l("deploy", "/deploys/7")],
        );
        assert_eq!(
            line(&e, "http://crew:7070/"),
            "[deploy] alice deployed www to production: a..b (2 commits) in 4s http://crew:7070/deploys/7"
        );
        let e = event(
            "alert.fired",
            "p99 over 1s\u{3}4",
            vec![l("graph", "/metrics/x"), l("runbook", "https://wiki/rb/latency")],
        );
        assert_eq!(line(&e, "http://crew"), "[alert] p99 over 1s4 https://wiki/rb/latency");
        assert_eq!(line(&event("note", "hi", vec![]), "http://crew"), "[note] hi");
    }
}
