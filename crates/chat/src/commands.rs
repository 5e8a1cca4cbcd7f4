//! The robot's commands as data: name, arguments, help, the role they need, how often one person may run
//! them. Shared by IRC, the HTTP API and any later chat adapter; parsing here, running in the server.

use crew_core::Role;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One command's contract.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// The arguments as help shows them.
    pub usage: &'static str,
    pub help: &'static str,
    /// The least role that may run it; people who are not mapped to a crew user are viewers at most.
    pub role: Role,
    pub min_args: usize,
    /// `None`: the last argument takes the rest of the line (a lock's reason, search words).
    pub max_args: Option<usize>,
    /// At most this many runs per person in `per`.
    pub limit: (u32, Duration),
    /// Answers at once and reports the outcome later in the same room.
    pub long_running: bool,
}

const MINUTE: Duration = Duration::from_secs(60);

/// Every command the robot knows, in the order `!help` lists them.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "deploy",
        usage: "ENV [REV]",
        help: "deploy trunk (or REV) to ENV",
        role: Role::Member,
        min_args: 1,
        max_args: Some(2),
        limit: (3, MINUTE),
        long_running: true,
    },
    Spec {
        name: "rollback",
        usage: "ENV",
        help: "switch ENV back to its previous release",
        role: Role::Member,
        min_args: 1,
        max_args: Some(1),
        limit: (3, MINUTE),
        long_running: true,
    },
    Spec {
        name: "lock",
        usage: "ENV REASON",
        help: "stop deploys to ENV until unlocked",
        role: Role::Member,
        min_args: 2,
        max_args: None,
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "unlock",
        usage: "ENV",
        help: "release your lock on ENV",
        role: Role::Member,
        min_args: 1,
        max_args: Some(1),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "log",
        usage: "[ENV]",
        help: "the last deploys (of ENV)",
        role: Role::Viewer,
        min_args: 0,
        max_args: Some(1),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "pending",
        usage: "ENV",
        help: "commits on trunk not yet live on ENV",
        role: Role::Viewer,
        min_args: 1,
        max_args: Some(1),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "status",
        usage: "",
        help: "what is live where, and locks",
        role: Role::Viewer,
        min_args: 0,
        max_args: Some(0),
        limit: (20, MINUTE),
        long_running: false,
    },
    Spec {
        name: "flag",
        usage: "KEY on|off|rollout N|ramp 1,5,25 every 10m WHY|ramp cancel WHY",
        help: "switch a flag, set its rollout, or ramp it with the judge",
        role: Role::Member,
        min_args: 2,
        // The rest of the line after the key: a ramp's reason is words.
        max_args: None,
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "search",
        usage: "WORDS",
        help: "search the timeline",
        role: Role::Viewer,
        min_args: 1,
        max_args: None,
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "graph",
        usage: "NAME [SINCE]",
        help: "a series as a sparkline over SINCE (default 1h), with its graph's link",
        role: Role::Viewer,
        min_args: 1,
        max_args: Some(2),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "oncall",
        usage: "[SCHEDULE]",
        help: "who is on call now and next",
        role: Role::Viewer,
        min_args: 0,
        max_args: Some(1),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "incidents",
        usage: "",
        help: "the open incidents",
        role: Role::Viewer,
        min_args: 0,
        max_args: Some(0),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "ack",
        usage: "[ID]",
        help: "acknowledge an incident (the newest triggered one without ID): nobody else is paged",
        role: Role::Member,
        min_args: 0,
        max_args: Some(1),
        limit: (20, MINUTE),
        long_running: false,
    },
    Spec {
        name: "resolve",
        usage: "ID [NOTE]",
        help: "resolve an incident, saying what fixed it",
        role: Role::Member,
        min_args: 1,
        max_args: None,
        limit: (20, MINUTE),
        long_running: false,
    },
    Spec {
        name: "page",
        usage: "WHO TEXT",
        help: "open an incident that pages WHO (an escalation policy, or a person)",
        role: Role::Member,
        min_args: 2,
        max_args: None,
        limit: (5, MINUTE),
        long_running: false,
    },
    Spec {
        name: "runbook",
        usage: "NAME",
        help: "a runbook's first steps of mitigation, with its page's link",
        role: Role::Viewer,
        min_args: 1,
        max_args: Some(1),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "experiment",
        usage: "KEY [METRIC]",
        help: "a bucket test's results: each variant's rate, its lift on the control, the winner",
        role: Role::Viewer,
        min_args: 1,
        max_args: Some(2),
        limit: (10, MINUTE),
        long_running: false,
    },
    Spec {
        name: "help",
        usage: "[CMD]",
        help: "the commands, or one command's usage",
        role: Role::Viewer,
        min_args: 0,
        max_args: Some(1),
        limit: (20, MINUTE),
        long_running: false,
    },
];

/// A command as typed: `!lock production db migration` → `lock`, `["production", "db migration"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub name: &'static str,
    pub args: Vec<String>,
}

pub fn spec(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name == name)
}

/// Reads a chat line: `None` when it is not addressed to the robot (no leading `!`), else the command or the
/// short reply that says what is wrong.
pub fn parse(line: &str) -> Option<Result<Invocation, String>> {
    let body = line.trim().strip_prefix('!')?;
    if body.starts_with(char::is_whitespace) {
        return None;
    }
    let mut words = body.split_whitespace();
    let name = words.next()?.to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let Some(spec) = spec(&name) else {
        return Some(Err(format!("unknown command !{}; try !help", crate::text::truncate(&name, 32))));
    };
    let words: Vec<&str> = words.collect();
    let args: Vec<String> = match spec.max_args {
        Some(max) if words.len() > max => {
            return Some(Err(format!("too many arguments; usage: {}", usage(spec))));
        }
        Some(_) => words.iter().map(|w| w.to_string()).collect(),
        None => {
            let mut a: Vec<String> =
                words.iter().take(spec.min_args.saturating_sub(1)).map(|w| w.to_string()).collect();
            let rest = words.iter().skip(a.len()).copied().collect::<Vec<_>>().join(" ");
            if !rest.is_empty() {
                a.push(rest);
            }
            a
        }
    };
    if args.len() < spec.min_args {
        return Some(Err(format!("usage: {}", usage(spec))));
    }
    Some(Ok(Invocation { name: spec.name, args }))
}

pub fn usage(spec: &Spec) -> String {
    if spec.usage.is_empty() {
        format!("!{}", spec.name)
    } else {
        format!("!{} {}", spec.name, spec.usage)
    }
}

/// `!help` and `!help CMD`.
pub fn help(topic: Option<&str>) -> String {
    match topic.map(|t| t.trim_start_matches('!')) {
        Some(t) => match spec(&t.to_ascii_lowercase()) {
            Some(s) => format!("{}: {} (needs {})", usage(s), s.help, s.role.as_str()),
            None => format!("unknown command !{}", crate::text::truncate(t, 32)),
        },
        None => format!(
            "commands: {}; !help CMD for one",
            COMMANDS.iter().map(|s| format!("!{}", s.name)).collect::<Vec<_>>().join(" ")
        ),
    }
}

/// Per-person, per-command rate limits (a sliding window of recent runs).
#[derive(Default)]
pub struct Limiter {
    recent: HashMap<(String, &'static str), Vec<Instant>>,
    /// Calls since the map was last pruned.
    calls: u32,
}

/// How many refusals and error answers a person gets a minute (past that, the robot says nothing).
pub const ERRORS_PER_MINUTE: u32 = 5;

/// The longest window any limit counts over: entries older than this say nothing and are pruned.
const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl Limiter {
    /// Whether `who` may run `spec` now; counts the run when it may.
    pub fn allow(&mut self, who: &str, spec: &'static Spec, now: Instant) -> bool {
        self.take(who, spec.name, spec.limit, now)
    }

    /// Whether `who` may be answered with an error or a refusal now (unknown people included): so that nobody
    /// can make the robot flood a room by sending it bad commands.
    pub fn allow_error(&mut self, who: &str, now: Instant) -> bool {
        self.take(who, "error", (ERRORS_PER_MINUTE, WINDOW), now)
    }

    fn take(&mut self, who: &str, what: &'static str, (max, per): (u32, std::time::Duration), now: Instant) -> bool {
        self.prune(now);
        let runs = self.recent.entry((who.to_string(), what)).or_default();
        runs.retain(|t| now.duration_since(*t) < per);
        if runs.len() as u32 >= max {
            return false;
        }
        runs.push(now);
        true
    }

    /// Every so often, forgets people with no run in the last window, so the map stays as small as the people
    /// active in it.
    fn prune(&mut self, now: Instant) {
        self.calls += 1;
        if self.calls < 256 && self.recent.len() < 1024 {
            return;
        }
        self.calls = 0;
        self.recent.retain(|_, runs| runs.iter().any(|t| now.duration_since(*t) < WINDOW));
    }

    /// How many (person, command) entries are remembered.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> (String, Vec<String>) {
        let i = parse(line).unwrap().unwrap();
        (i.name.to_string(), i.args)
    }

    #[test]
    fn the_limiter_forgets_people_gone_quiet_and_limits_errors() {
        let mut l = Limiter::default();
        let t = Instant::now();
        let status = spec("status").unwrap();
        for i in 0..5000 {
            assert!(l.allow(&format!("nick{i}"), status, t));
        }
        assert_eq!(l.len(), 5000, "everyone active within the minute is remembered");
        let later = t + WINDOW + std::time::Duration::from_secs(1);
        for i in 0..300 {
            l.allow(&format!("later{i}"), status, later);
        }
        assert!(l.len() <= 1024, "the quiet ones are forgotten: {}", l.len());
        let errs = (0..20).filter(|_| l.allow_error("stranger", later)).count();
        assert_eq!(errs, ERRORS_PER_MINUTE as usize);
    }

    #[test]
    fn lines_become_commands() {
        assert_eq!(ok("!deploy production"), ("deploy".into(), vec!["production".into()]));
        assert_eq!(ok("  !DEPLOY production abc123 "), ("deploy".into(), vec!["production".into(), "abc123".into()]));
        assert_eq!(
            ok("!lock production db  migration now"),
            ("lock".into(), vec!["production".into(), "db migration now".into()])
        );
        assert_eq!(ok("!search login   error"), ("search".into(), vec!["login error".into()]));
        assert_eq!(ok("!flag video rollout 10"), ("flag".into(), vec!["video".into(), "rollout 10".into()]));
        assert_eq!(ok("!status"), ("status".into(), vec![]));
        assert_eq!(ok("!runbook db/failover"), ("runbook".into(), vec!["db/failover".into()]));
        assert_eq!(parse("!runbook").unwrap().unwrap_err(), "usage: !runbook NAME");
    }

    #[test]
    fn other_lines_are_not_commands_and_mistakes_get_a_short_reply() {
        for line in ["hello", "", "!", "! deploy", "!!!", "wow!deploy"] {
            assert!(parse(line).is_none(), "{line:?}");
        }
        assert_eq!(parse("!nope").unwrap().unwrap_err(), "unknown command !nope; try !help");
        assert_eq!(parse("!deploy").unwrap().unwrap_err(), "usage: !deploy ENV [REV]");
        assert_eq!(parse("!status now").unwrap().unwrap_err(), "too many arguments; usage: !status");
        assert_eq!(parse("!lock production").unwrap().unwrap_err(), "usage: !lock ENV REASON");
        assert!(parse(&format!("!{}", "x".repeat(600))).unwrap().unwrap_err().len() < 80);
    }

    #[test]
    fn help_lists_and_explains() {
        assert!(help(None).contains("!deploy") && help(None).contains("!search"));
        assert_eq!(
            help(Some("!flag")),
            "!flag KEY on|off|rollout N|ramp 1,5,25 every 10m WHY|ramp cancel WHY: switch a flag, set its rollout, or \
             ramp it with the judge (needs member)"
        );
    }

    #[test]
    fn a_person_is_held_to_the_rate() {
        let mut l = Limiter::default();
        let t = Instant::now();
        let s = spec("deploy").unwrap();
        assert!((0..3).all(|_| l.allow("alice", s, t)));
        assert!(!l.allow("alice", s, t));
        assert!(l.allow("bob", s, t), "per person");
        assert!(l.allow("alice", s, t + Duration::from_secs(61)), "the window slides");
    }
}
