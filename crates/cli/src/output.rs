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
