//! `[people.*]`, `[smtp]`, `[[schedules]]`, `[[escalations]]` and `[incidents]` of crew.toml: read strictly,
//! checked across sections (every person, schedule and policy named exists), and parsed once into the pure
//! types of `crew-oncall`.

use crew_core::Channel;
use crew_oncall::escalation::{Policy, Step, Target};
use crew_oncall::schedule::{self, Layer, Restriction, Rotation, Schedule};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `[people.NAME]`: a person (a crew user, by token name) and how to reach them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonSection {
    pub email: Option<String>,
    /// `chat` (an IRC private message to the person's linked identity, and a highlight in the room) and/or
    /// `email` (over `[smtp]`).
    #[serde(default)]
    pub notify: Vec<String>,
    /// The IRC nick to send private messages to, when no chat link names one.
    pub irc: Option<String>,
    /// How the IM webhooks mention the person (`<@U024BE7LH>` in Slack, `@alice` in Mattermost): `chat` pages
    /// post there too.
    pub im: Option<String>,
}

/// `[smtp]`: where email pages go out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// `HOST:PORT`.
    pub server: String,
    /// `starttls` (default), `tls` or `none`.
    pub tls: Option<String>,
    pub username: Option<String>,
    /// The variable holding the password.
    pub password_env: Option<String>,
    pub from: String,
}

/// `[[schedules]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    pub name: String,
    pub zone: String,
    #[serde(default)]
    pub layers: Vec<LayerSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSection {
    pub name: String,
    pub users: Vec<String>,
    /// `daily`, `weekly` or a span (`12h`, `3d`).
    pub rotation: String,
    /// The first handoff, wall clock in the schedule's zone: `2026-11-30T09:00`.
    pub start: String,
    #[serde(default)]
    pub restrict: Vec<RestrictSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictSection {
    pub days: String,
    pub from: String,
    pub to: String,
}

/// `[[escalations]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSection {
    pub name: String,
    pub steps: Vec<StepSection>,
    #[serde(default)]
    pub repeat: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSection {
    /// `schedule:NAME`, `user:NAME`, `room:#NAME`.
    pub notify: Vec<String>,
    /// How long to wait for an acknowledgement before the next step (`5m`).
    pub wait: String,
}

/// `[incidents]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentsSection {
    /// How long an acknowledgement holds before the escalation starts again (default `30m`; `0s` = for ever).
    pub ack_timeout: Option<String>,
    /// An incident whose key fires again within this long of its resolution is reopened (default `1h`).
    pub reopen: Option<String>,
    /// The chat room incidents are announced and highlighted in (default: the robot's first channel).
    pub room: Option<String>,
    /// How far before an incident its context reaches (default `30m`).
    pub context: Option<String>,
}

/// A person, checked.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub email: Option<String>,
    pub notify: Vec<Channel>,
    pub irc: Option<String>,
    pub im: Option<String>,
}

/// How email leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Tls,
    None,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub from: String,
}

/// Everything of on-call and incidents, checked once at start.
#[derive(Debug, Clone)]
pub struct OncallConfig {
    pub people: BTreeMap<String, Person>,
    pub smtp: Option<Smtp>,
    pub schedules: Vec<Schedule>,
    pub escalations: BTreeMap<String, Policy>,
    pub ack_timeout: Option<Duration>,
    pub reopen: Duration,
    pub room: Option<String>,
    pub context: Duration,
    /// What is not wrong but will hurt: a person nobody can reach.
    pub warnings: Vec<String>,
}

impl Default for OncallConfig {
    fn default() -> Self {
        OncallConfig {
            people: BTreeMap::new(),
            smtp: None,
            schedules: vec![],
            escalations: BTreeMap::new(),
            ack_timeout: Some(Duration::from_secs(1800)),
            reopen: Duration::from_secs(3600),
            room: None,
            context: Duration::from_secs(1800),
            warnings: vec![],
        }
    }
}

fn span(key: &str, v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{key} = \"{v}\": {e}; a duration like \"5m\""))
}

/// Checks the sections. `alert_escalations` are the `escalation = ...` of `[[alerts]]` (key and name), and
/// `environment_schedules` the `oncall = ...` of `[environments.*]`: each must name what exists.
pub fn check(
    people: &BTreeMap<String, PersonSection>,
    smtp: Option<&SmtpSection>,
    schedules: &[ScheduleSection],
    escalations: &[EscalationSection],
    incidents: Option<&IncidentsSection>,
    references: &[(String, String, &'static str)],
) -> Result<OncallConfig, String> {
    let mut out = OncallConfig::default();
    for (name, p) in people {
        let key = format!("people.{name}");
        if name.trim().is_empty() || name.len() > 100 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{key}: a person's name is one word (a crew user's token name)"));
        }
        let mut notify = Vec::new();
        for (i, n) in p.notify.iter().enumerate() {
            let c: Channel = n.parse().map_err(|e| format!("{key}.notify[{i}]: {e}"))?;
            if c == Channel::Room || c == Channel::Im {
                return Err(format!(
                    "{key}.notify[{i}]: `room` is for escalation steps (room:#ops); a person has chat or email"
                ));
            }
            if c == Channel::Email && p.email.is_none() {
                return Err(format!("{key}.notify[{i}]: email, but {key} has no email"));
            }
            notify.push(c);
        }
        if let Some(m) = &p.im {
            if m.is_empty() || m.len() > 100 || m.chars().any(char::is_control) {
                return Err(format!("{key}.im: a mention as the IM service writes it, like <@U024BE7LH> or @{name}"));
            }
        }
        if let Some(e) = &p.email {
            if e.parse::<lettre::Address>().is_err() {
                return Err(format!("{key}.email = \"{e}\": not an email address"));
            }
        }
        if notify.is_empty() {
            out.warnings.push(format!("{key}: no way to reach {name} (notify is empty): pages to them go nowhere"));
        }
        if notify.contains(&Channel::Email) && smtp.is_none() {
            out.warnings.push(format!("{key}: notify has email but crew.toml has no [smtp]: emails cannot be sent"));
        }
        out.people.insert(
            name.clone(),
            Person { name: name.clone(), email: p.email.clone(), notify, irc: p.irc.clone(), im: p.im.clone() },
        );
    }
    if let Some(s) = smtp {
        let (host, port) = s
            .server
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| format!("smtp.server = \"{}\": HOST:PORT like smtp.example.com:587", s.server))?;
        let tls = match s.tls.as_deref().unwrap_or("starttls") {
            "starttls" => SmtpTls::StartTls,
            "tls" => SmtpTls::Tls,
            "none" => SmtpTls::None,
            other => return Err(format!("smtp.tls = \"{other}\": starttls, tls or none")),
        };
        if s.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!("smtp.from = \"{}\": not an email address", s.from));
        }
        if s.username.is_some() != s.password_env.is_some() {
            return Err("smtp: username and password_env go together".into());
        }
        out.smtp = Some(Smtp {
            host,
            port,
            tls,
            username: s.username.clone(),
            password_env: s.password_env.clone(),
            from: s.from.clone(),
        });
    }
    let person = |key: &str, u: &str| -> Result<(), String> {
        if people.contains_key(u) {
            Ok(())
        } else {
            Err(format!("{key}: no person `{u}` (add [people.{u}])"))
        }
    };
    let mut names = std::collections::BTreeSet::new();
    for (i, s) in schedules.iter().enumerate() {
        let key = format!("schedules[{i}]");
        if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
            return Err(format!("{key}.name: `{}` is empty or named twice", s.name));
        }
        if !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("{key}.name = \"{}\": letters, digits, - _ . only", s.name));
        }
        let zone = schedule::parse_zone(&s.zone).map_err(|e| format!("{key}.zone: {e}"))?;
        let mut layers = Vec::new();
        for (j, l) in s.layers.iter().enumerate() {
            let lk = format!("{key}.layers[{j}]");
            for (k, u) in l.users.iter().enumerate() {
                person(&format!("{lk}.users[{k}]"), u)?;
            }
            let rotation = Rotation::parse(&l.rotation).map_err(|e| format!("{lk}.rotation: {e}"))?;
            let start = chrono::NaiveDateTime::parse_from_str(&l.start, "%Y-%m-%dT%H:%M")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(&l.start, "%Y-%m-%dT%H:%M:%S"))
                .map_err(|_| format!("{lk}.start = \"{}\": a wall-clock time like 2026-11-30T09:00", l.start))?;
            let mut restrict = Vec::new();
            for (k, r) in l.restrict.iter().enumerate() {
                restrict
                    .push(Restriction::parse(&r.days, &r.from, &r.to).map_err(|e| format!("{lk}.restrict[{k}]: {e}"))?);
            }
            layers.push(Layer { name: l.name.clone(), users: l.users.clone(), rotation, start, restrict });
        }
        let sched = Schedule { name: s.name.clone(), zone, layers };
        sched.check().map_err(|e| format!("{key}.{e}"))?;
        out.schedules.push(sched);
    }
    for (i, e) in escalations.iter().enumerate() {
        let key = format!("escalations[{i}]");
        if e.name.trim().is_empty() || out.escalations.contains_key(&e.name) {
            return Err(format!("{key}.name: `{}` is empty or named twice", e.name));
        }
        let mut steps = Vec::new();
        for (j, st) in e.steps.iter().enumerate() {
            let sk = format!("{key}.steps[{j}]");
            let mut notify = Vec::new();
            for (k, t) in st.notify.iter().enumerate() {
                let target = Target::parse(t).map_err(|m| format!("{sk}.notify[{k}]: {m}"))?;
                match &target {
                    Target::Schedule(s) if !names.contains(s.as_str()) => {
                        return Err(format!("{sk}.notify[{k}]: no schedule `{s}`"));
                    }
                    Target::User(u) => person(&format!("{sk}.notify[{k}]"), u)?,
                    _ => {}
                }
                notify.push(target);
            }
            let wait = span(&format!("{sk}.wait"), &st.wait)?;
            steps.push(Step { notify, wait_secs: wait.as_secs() });
        }
        let policy = Policy { name: e.name.clone(), steps, repeat: e.repeat };
        policy.check().map_err(|m| format!("{key}.{m}"))?;
        out.escalations.insert(e.name.clone(), policy);
    }
    for (key, name, what) in references {
        let known = match *what {
            "escalation" => out.escalations.contains_key(name),
            _ => names.contains(name.as_str()),
        };
        if !known {
            return Err(format!("{key}: no {what} `{name}`"));
        }
    }
    if let Some(inc) = incidents {
        if let Some(t) = &inc.ack_timeout {
            let d = span("incidents.ack_timeout", t)?;
            out.ack_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(r) = &inc.reopen {
            out.reopen = span("incidents.reopen", r)?;
        }
        if let Some(c) = &inc.context {
            out.context = span("incidents.context", c)?;
        }
        out.room = inc.room.clone();
    }
    Ok(out)
}
