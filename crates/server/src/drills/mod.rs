//! Fire drills: `drills/*.toml` in the app's repository, in the shape of a Chaos Toolkit experiment — a title, a
//! steady-state hypothesis (probes on crew's own series, checked before and after), a method (actions with
//! crew's levers: a flag off or on, a rollback, a lock, a practice page through the real escalation, a wait) and
//! rollbacks that run at the end whatever happened. A run refuses while an incident is open or a deploy runs,
//! marks everything it causes with DRILL, and records its journal as the `drill.finished` event: each probe
//! before and after, each action and its result, whether the hypothesis held, and each responder's time to
//! acknowledge.

pub mod api;
pub mod web;

use crate::error::ApiError;
use crate::state::Platform;
use crate::timeline::Timeline;
use chrono::Utc;
use crew_core::{kind, Actor, EventFilter, IncidentStatus, NewEvent, Severity, Via};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// `[drills]`: unannounced drills, within working hours of an on-call schedule (off without the section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillsSection {
    /// The on-call schedule whose people are paged and whose zone the hours are in.
    pub schedule: String,
    /// About one unannounced drill per this span (`"14d"`, the default), never two within half of it.
    #[serde(default = "fortnight")]
    pub every: String,
    /// The working hours on the schedule's wall clock: days and `HH:MM-HH:MM` (`"mon-fri 10:00-16:00"`).
    #[serde(default = "office_hours")]
    pub hours: String,
    /// The drills to choose from (by name); all of `drills/` when left out.
    #[serde(default)]
    pub names: Vec<String>,
}

fn fortnight() -> String {
    "14d".into()
}
fn office_hours() -> String {
    "mon-fri 10:00-16:00".into()
}

impl DrillsSection {
    /// The hours and the span, checked; errors name the key.
    pub fn parsed(&self) -> Result<(crew_oncall::Restriction, chrono::Duration), String> {
        let (days, times) = self.hours.trim().split_once(' ').ok_or_else(|| {
            format!("drills.hours = \"{}\": write days and times, like \"mon-fri 10:00-16:00\"", self.hours)
        })?;
        let (from, to) = times
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("drills.hours = \"{}\": the times are HH:MM-HH:MM", self.hours))?;
        let r = crew_oncall::Restriction::parse(days, from, to).map_err(|e| format!("drills.hours: {e}"))?;
        let every = crew_oncall::parse_span(&self.every).map_err(|e| format!("drills.every: {e}"))?;
        if every < chrono::Duration::hours(1) {
            return Err(format!("drills.every = \"{}\": at least an hour", self.every));
        }
        if crew_oncall::hours::weekly_minutes(&r) == 0 {
            return Err(format!("drills.hours = \"{}\": no minute of the week is inside", self.hours));
        }
        Ok((r, every))
    }

    pub fn check(&self) -> Result<(), String> {
        self.parsed()?;
        if let Some(n) = self.names.iter().find(|n| !valid_name(n)) {
            return Err(format!("drills.names: `{n}` is not a drill's name (letters, digits, - and _)"));
        }
        Ok(())
    }
}

/// Runs unannounced drills (`[drills]`): once a minute, on the replica holding the lease, `hours::drill_due`
/// decides; a due drill is one of `names` (or of `drills/`) at random, run as `crew` by the scheduler; one
/// that is refused (an open incident, a deploy) waits for the next chance.
pub fn start_schedule(drills: &Drills) {
    let Some(section) = drills.platform.settings.file.drills.clone() else { return };
    let Ok((hours, every)) = section.parsed() else { return };
    let Some(zone) =
        drills.incidents.oncall.config.schedules.iter().find(|s| s.name == section.schedule).map(|s| s.zone)
    else {
        return;
    };
    let weekly = crew_oncall::hours::weekly_minutes(&hours);
    let me = drills.clone();
    let holder = format!("{}-{}", std::process::id(), rand::random::<u64>());
    tokio::spawn(async move {
        loop {
            let now = Utc::now();
            tokio::select! {
                _ = me.platform.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(crew_oncall::hours::to_next_minute(now))) => {}
            }
            let store = &me.platform.store;
            if !store.try_lease("drills-unannounced", &holder, Duration::from_secs(120)).await.unwrap_or(false) {
                continue;
            }
            let last = me.last_unannounced().await;
            if !crew_oncall::hours::drill_due(&hours, weekly, zone, every, last, Utc::now(), rand::random::<f64>()) {
                continue;
            }
            let names: Vec<String> = if section.names.is_empty() {
                me.list().await.unwrap_or_default().into_iter().filter(|l| l.error.is_none()).map(|l| l.name).collect()
            } else {
                section.names.clone()
            };
            if names.is_empty() {
                continue;
            }
            let name = &names[rand::random_range(0..names.len())];
            match me.run(name, Actor::new(UNANNOUNCED, Via::Scheduler)).await {
                Ok(_) => tracing::info!(drill = %name, "an unannounced drill started"),
                Err(e) => tracing::info!(drill = %name, error = %e, "an unannounced drill waits for its next chance"),
            }
        }
    });
}

/// The actor of unannounced drills: the scheduler, so the Drills page and the last run's time can tell them.
pub const UNANNOUNCED: &str = "crew-drills";

/// A drill file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillFile {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "steady-state-hypothesis")]
    pub hypothesis: Option<Hypothesis>,
    #[serde(default)]
    pub method: Vec<Action>,
    #[serde(default)]
    pub rollbacks: Vec<Action>,
    /// A drill that touches the `production` environment (a rollback, a lock) must say so.
    #[serde(default)]
    pub allow_production: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    pub title: String,
    #[serde(default)]
    pub probes: Vec<Probe>,
}

/// A probe on one of crew's series: its stat over the last `window` must be within [min, max].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    pub series: String,
    pub stat: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// How far back the stat is taken (default `1m`).
    pub window: Option<String>,
}

/// One step: exactly one lever.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub name: String,
    /// `flag = "KEY"` with `state = "on" | "off" | "before"` (before: as it was when the drill started).
    pub flag: Option<String>,
    pub state: Option<String>,
    /// `rollback = "ENV"`.
    pub rollback: Option<String>,
    /// `lock = "ENV"` / `unlock = "ENV"`.
    pub lock: Option<String>,
    pub unlock: Option<String>,
    /// `page = "POLICY"`: a practice incident through the real escalation policy and schedule.
    pub page: Option<String>,
    /// `wait = "30s"`.
    pub wait: Option<String>,
    /// `command = "..."` on `host` (a `[[hosts]]` name): run with `sh -c` there — over SSH for an `ssh://`
    /// address; for a `local` host on the crew server in the host's root, with the builds' clean environment and
    /// `[build] user` — stopped after `timeout` (default 60 s, at most 10 min); a non-zero exit fails it.
    pub command: Option<String>,
    pub host: Option<String>,
    pub timeout: Option<String>,
}

/// The lever of an action, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Lever {
    /// `on: None` puts the flag back as it was when the drill started.
    Flag {
        key: String,
        on: Option<bool>,
    },
    Rollback(String),
    Lock(String),
    Unlock(String),
    Page(String),
    Wait(Duration),
    Command {
        host: String,
        command: String,
        timeout: Duration,
    },
}

/// The longest a drill's command may run.
const MAX_COMMAND_TIME: Duration = Duration::from_secs(600);
/// The longest command a drill may give.
const MAX_COMMAND_BYTES: usize = 4096;

/// The longest wait an action may ask (a drill is a rehearsal, not a siege).
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The most actions in a drill.
const MAX_ACTIONS: usize = 50;
/// The largest drill file read.
const MAX_BYTES: usize = 64 * 1024;

impl Action {
    /// The one lever this action pulls, or what is wrong, naming the key.
    pub fn lever(&self, key: &str) -> Result<Lever, String> {
        let mut levers = vec![];
        if let Some(f) = &self.flag {
            let on = match self.state.as_deref() {
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some("before") => None,
                other => {
                    return Err(format!(
                        "{key}.state: {other:?}; a flag action says state = \"on\", \"off\" or \"before\""
                    ))
                }
            };
            levers.push(Lever::Flag { key: f.clone(), on });
        }
        if let Some(e) = &self.rollback {
            levers.push(Lever::Rollback(e.clone()));
        }
        if let Some(e) = &self.lock {
            levers.push(Lever::Lock(e.clone()));
        }
        if let Some(e) = &self.unlock {
            levers.push(Lever::Unlock(e.clone()));
        }
        if let Some(p) = &self.page {
            levers.push(Lever::Page(p.clone()));
        }
        if let Some(w) = &self.wait {
            let d = humantime::parse_duration(w).map_err(|e| format!("{key}.wait = \"{w}\": {e}"))?;
            if d > MAX_WAIT {
                return Err(format!("{key}.wait = \"{w}\": at most an hour"));
            }
            levers.push(Lever::Wait(d));
        }
        match (&self.command, &self.host) {
            (Some(c), Some(h)) => {
                if c.trim().is_empty() || c.len() > MAX_COMMAND_BYTES || c.contains('\0') {
                    return Err(format!("{key}.command: a shell command of 1 to {MAX_COMMAND_BYTES} bytes"));
                }
                let timeout = match &self.timeout {
                    None => Duration::from_secs(60),
                    Some(t) => {
                        let d = humantime::parse_duration(t).map_err(|e| format!("{key}.timeout = \"{t}\": {e}"))?;
                        if d.is_zero() || d > MAX_COMMAND_TIME {
                            return Err(format!("{key}.timeout = \"{t}\": from 1s to 10m"));
                        }
                        d
                    }
                };
                levers.push(Lever::Command { host: h.clone(), command: c.clone(), timeout });
            }
            (Some(_), None) => return Err(format!("{key}.host: a command runs on a host: name one of [[hosts]]")),
            (None, Some(_)) => return Err(format!("{key}.command: a host needs the command to run there")),
            (None, None) => {
                if self.timeout.is_some() {
                    return Err(format!("{key}.timeout: only with command = \"...\""));
                }
            }
        }
        if self.state.is_some() && self.flag.is_none() {
            return Err(format!("{key}.state: only with flag = \"KEY\""));
        }
        match levers.len() {
            1 => Ok(levers.remove(0)),
            0 => Err(format!("{key}: no lever: one of flag, rollback, lock, unlock, page, wait, command")),
            _ => Err(format!("{key}: one lever per action, not several")),
        }
    }
}

/// Reads and checks a drill file's text; errors name the file and the key.
pub fn parse(name: &str, text: &str) -> Result<(DrillFile, Vec<Lever>, Vec<Lever>), String> {
    let file = format!("drills/{name}.toml");
    if text.len() > MAX_BYTES {
        return Err(format!("{file}: {} bytes; at most {MAX_BYTES}", text.len()));
    }
    let de = toml::Deserializer::parse(text).map_err(|e| format!("{file}: {e}"))?;
    let d: DrillFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        format!("{file}: `{key}`: {}", e.into_inner().message())
    })?;
    if d.title.trim().is_empty() {
        return Err(format!("{file}: title: say what the drill rehearses"));
    }
    if d.method.is_empty() {
        return Err(format!("{file}: method: at least one action"));
    }
    if d.method.len() + d.rollbacks.len() > MAX_ACTIONS {
        return Err(format!("{file}: at most {MAX_ACTIONS} actions and rollbacks"));
    }
    if let Some(h) = &d.hypothesis {
        for (i, p) in h.probes.iter().enumerate() {
            if p.min.is_none() && p.max.is_none() {
                return Err(format!("{file}: steady-state-hypothesis.probes[{i}]: a min, a max or both"));
            }
            if let Some(w) = &p.window {
                humantime::parse_duration(w)
                    .map_err(|e| format!("{file}: steady-state-hypothesis.probes[{i}].window: {e}"))?;
            }
        }
    }
    let method =
        d.method.iter().enumerate().map(|(i, a)| a.lever(&format!("{file}: method[{i}]"))).collect::<Result<_, _>>()?;
    let rollbacks = d
        .rollbacks
        .iter()
        .enumerate()
        .map(|(i, a)| a.lever(&format!("{file}: rollbacks[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok((d, method, rollbacks))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The drills service.
#[derive(Clone)]
pub struct Drills {
    platform: Platform,
    timeline: Timeline,
    incidents: crate::incidents::Incidents,
    deploys: crate::deploys::Deploys,
    flags: crate::flags::Flags,
    metrics: crate::metrics::Metrics,
}

/// A drill as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub name: String,
    pub title: Option<String>,
    pub error: Option<String>,
}

impl Drills {
    pub fn new(
        platform: &Platform,
        timeline: Timeline,
        incidents: crate::incidents::Incidents,
        deploys: crate::deploys::Deploys,
        flags: crate::flags::Flags,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Drills { platform: platform.clone(), timeline, incidents, deploys, flags, metrics }
    }

    async fn git(&self, args: &[&str]) -> Result<String, ApiError> {
        let Some(cfg) = &self.platform.settings.deploy else {
            return Err(ApiError::NotFound(
                "this server's crew.toml has no [app]: no repository to read drills from".into(),
            ));
        };
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&cfg.repo)
            .args(args)
            .output()
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("git: {e}")))?;
        if !out.status.success() {
            return Err(ApiError::NotFound(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn branch(&self) -> String {
        self.platform.settings.deploy.as_ref().map(|d| d.app.branch.clone()).unwrap_or_else(|| "main".into())
    }

    /// The drills on the branch's head.
    pub async fn list(&self) -> Result<Vec<Listed>, ApiError> {
        let branch = self.branch();
        let names = self.git(&["ls-tree", "--name-only", &branch, "drills/"]).await.unwrap_or_default();
        let mut out = Vec::new();
        for path in names.lines().take(200) {
            let Some(name) = path.strip_prefix("drills/").and_then(|n| n.strip_suffix(".toml")) else { continue };
            if !valid_name(name) {
                continue;
            }
            match self.read(name).await {
                Ok((d, _, _)) => out.push(Listed { name: name.into(), title: Some(d.title), error: None }),
                Err(e) => out.push(Listed { name: name.into(), title: None, error: Some(e.to_string()) }),
            }
        }
        Ok(out)
    }

    pub async fn read(&self, name: &str) -> Result<(DrillFile, Vec<Lever>, Vec<Lever>), ApiError> {
        if !valid_name(name) {
            return Err(ApiError::BadRequest(format!("`{name}`: a drill's name is letters, digits, - and _")));
        }
        let text = self
            .git(&["show", &format!("{}:drills/{name}.toml", self.branch())])
            .await
            .map_err(|_| ApiError::NotFound(format!("no drills/{name}.toml on {}", self.branch())))?;
        let (d, method, rollbacks) = parse(name, &text).map_err(ApiError::Unprocessable)?;
        self.check_names(name, &d, &method, &rollbacks).map_err(ApiError::Unprocessable)?;
        Ok((d, method, rollbacks))
    }

    /// Every flag, environment, policy and series a drill names must exist, and production is touched only with
    /// `allow_production = true`: checked before anything runs.
    fn check_names(&self, name: &str, d: &DrillFile, method: &[Lever], rollbacks: &[Lever]) -> Result<(), String> {
        let file = format!("drills/{name}.toml");
        let flags = self.flags.current();
        let series = self.metrics.names();
        if let Some(h) = &d.hypothesis {
            for (i, p) in h.probes.iter().enumerate() {
                if !series.iter().any(|s| s == &p.series) {
                    return Err(format!(
                        "{file}: steady-state-hypothesis.probes[{i}].series: crew has no series `{}`",
                        p.series
                    ));
                }
            }
        }
        let levers = method.iter().enumerate().map(|(i, l)| (format!("method[{i}]"), l));
        let levers = levers.chain(rollbacks.iter().enumerate().map(|(i, l)| (format!("rollbacks[{i}]"), l)));
        for (key, lever) in levers {
            let env = match lever {
                Lever::Flag { key: f, .. } => {
                    if !flags.stored.iter().any(|s| &s.key == f) {
                        return Err(format!("{file}: {key}.flag: no flag `{f}`"));
                    }
                    None
                }
                Lever::Rollback(e) | Lever::Lock(e) | Lever::Unlock(e) => Some(e),
                Lever::Page(p) => {
                    if !self.incidents.oncall.config.escalations.contains_key(p) {
                        return Err(format!("{file}: {key}.page: no escalation policy `{p}`"));
                    }
                    None
                }
                Lever::Wait(_) => None,
                Lever::Command { host, .. } => {
                    if !self.platform.settings.file.hosts.iter().any(|h| &h.name == host) {
                        return Err(format!("{file}: {key}.host: no host `{host}` in crew.toml's [[hosts]]"));
                    }
                    None
                }
            };
            if let Some(e) = env {
                let known = self.deploys.configured().is_some_and(|c| c.environment(e).is_ok());
                if !known {
                    return Err(format!("{file}: {key}: no environment `{e}`"));
                }
                if e == "production" && !d.allow_production {
                    return Err(format!("{file}: {key}: touches production; say allow_production = true to mean it"));
                }
            }
        }
        Ok(())
    }

    /// Why a drill may not start now: an open (real) incident or a running deploy.
    async fn refusal(&self) -> Result<Option<String>, ApiError> {
        let open = self.incidents.list(true, 100).await?;
        if let Some(i) = open.iter().find(|i| !i.drill) {
            return Ok(Some(format!("incident #{} is open ({}): no drills during a real one", i.id, i.summary)));
        }
        if let Some(i) = open.iter().find(|i| i.drill) {
            return Ok(Some(format!("practice incident #{} of another drill is still open", i.id)));
        }
        if self.deploys.configured().is_some() {
            if let Some(l) = self.deploys.locks().await?.iter().find(|l| crate::deploys::Deploys::is_deploying(l)) {
                return Ok(Some(format!("a deploy of {} is running", l.environment)));
            }
        }
        Ok(None)
    }

    /// Starts a run: refused (409, the reason named) while an incident is open or a deploy runs. The run goes
    /// on in the background; its events tell how it goes. Returns the run's id (its `drill.started` event).
    pub async fn run(&self, name: &str, actor: Actor) -> Result<Value, ApiError> {
        let (file, method, rollbacks) = self.read(name).await?;
        if let Some(why) = self.refusal().await? {
            return Err(ApiError::Conflict(format!("drill {name} refused: {why}")));
        }
        let started = self
            .timeline
            .append_system(vec![NewEvent::new(
                actor.clone(),
                kind::DRILL_STARTED,
                &format!("drill:{name}"),
                format!("DRILL {name} started by {}: {}", actor.name, file.title),
            )
            .with_data(json!({"drill": name, "title": file.title}))
            .with_link("drills", "/drills")])
            .await?
            .remove(0);
        let me = self.clone();
        let (run, name2) = (started.id.clone(), name.to_string());
        tokio::spawn(async move { me.carry_out(run, name2, file, method, rollbacks, actor).await });
        Ok(json!({"run": started.id, "drill": name}))
    }

    async fn probe(&self, p: &Probe) -> Value {
        let window =
            p.window.as_deref().and_then(|w| humantime::parse_duration(w).ok()).unwrap_or(Duration::from_secs(60));
        let now = Utc::now().timestamp_millis();
        let span = i64::try_from(window.as_millis()).unwrap_or(60_000).max(1000);
        let q = crate::metrics::query::Query {
            name: p.series.clone(),
            labels: vec![],
            from: now - span,
            to: now,
            step: Some(span),
            stat: Some(p.stat.clone()),
        };
        let value = match self.metrics.query(&q).await {
            Ok(out) => out.series.iter().flat_map(|s| s.points.last()).map(|pt| pt.1).reduce(f64::max),
            Err(e) => return json!({"probe": p.name, "error": e.to_string(), "ok": false}),
        };
        // No data reads as zero for a bound from above (nothing happened), and fails a bound from below.
        let v = value.unwrap_or(0.0);
        let ok = p.min.is_none_or(|m| value.is_some() && v >= m) && p.max.is_none_or(|m| v <= m);
        json!({"probe": p.name, "series": p.series, "stat": p.stat, "value": value, "min": p.min, "max": p.max, "ok": ok})
    }

    async fn act(
        &self,
        lever: &Lever,
        name: &str,
        actor: &Actor,
        practice: &mut Vec<i64>,
        saved: &std::collections::HashMap<String, Option<Value>>,
    ) -> Result<String, String> {
        let why = format!("DRILL {name}");
        let e = |e: ApiError| e.to_string();
        match lever {
            Lever::Flag { key, on: Some(on) } => {
                let knob = if *on { crew_flags::knobs::Knob::On } else { crew_flags::knobs::Knob::Off };
                self.flags.turn(key, &knob, true, &why, actor.clone()).await.map_err(e)?;
                Ok(format!("{key} {}", if *on { "on" } else { "off" }))
            }
            Lever::Flag { key, on: None } => {
                let before = saved.get(key).cloned().flatten();
                let gone = before.is_none();
                match self.flags.change(key, before, &why, actor.clone()).await {
                    Ok(_) => {}
                    // It did not exist before and does not now: nothing to put back.
                    Err(ApiError::NotFound(_)) if gone => {}
                    Err(err) => return Err(err.to_string()),
                }
                Ok(format!("{key} back as it was before the drill"))
            }
            Lever::Rollback(env) => {
                let d = self.deploys.rollback(env, None, actor.clone()).await.map_err(e)?;
                Ok(format!("rolling {env} back (#{})", d.id))
            }
            Lever::Lock(env) => {
                self.deploys.lock(env, &why, actor.clone(), None).await.map_err(e)?;
                Ok(format!("{env} locked"))
            }
            Lever::Unlock(env) => {
                self.deploys.unlock(env, actor.clone(), false, None).await.map_err(e)?;
                Ok(format!("{env} unlocked"))
            }
            Lever::Page(policy) => {
                let t = crate::incidents::Trigger {
                    key: format!("drill:{name}:{}", uuid::Uuid::now_v7()),
                    summary: format!("DRILL {name}: practice page, acknowledge it as you would a real one"),
                    severity: Severity::Page,
                    source: "drill",
                    escalation: Some(policy.clone()),
                    runbook: None,
                    details: json!({"drill": name}),
                    source_id: None,
                    drill: true,
                };
                let (inc, _) = self.incidents.trigger(t, actor.clone()).await.map_err(e)?;
                practice.push(inc.id);
                Ok(format!("practice incident #{} paging through {policy}", inc.id))
            }
            Lever::Command { host, command, timeout } => self.command(host, command, *timeout).await,
            Lever::Wait(d) => {
                tokio::select! {
                    _ = self.platform.shutdown.cancelled() => return Err("the server stopped".into()),
                    _ = tokio::time::sleep(*d) => {}
                }
                Ok(format!("waited {}", humantime::format_duration(*d)))
            }
        }
    }

    /// Runs a drill's command on a `[[hosts]]` host; the result is its last lines of output.
    async fn command(&self, host: &str, command: &str, timeout: Duration) -> Result<String, String> {
        let h = self
            .platform
            .settings
            .file
            .hosts
            .iter()
            .find(|h| h.name == host)
            .ok_or_else(|| format!("no host `{host}` in [[hosts]]"))?;
        if h.address == "local" {
            let cfg = self.platform.settings.deploy.as_ref().ok_or("this server's crew.toml has no [app]")?;
            let shell = crew_deploy::build::Shell::new(cfg, "", "drill");
            let lines = Lines::default();
            let root = std::path::Path::new(&h.root);
            let r = crew_deploy::build::run_logged(command, root, &shell, timeout, host, &lines).await;
            let tail = lines.tail();
            return match r {
                Ok(()) => Ok(format!("{host}: `{command}` ok{tail}")),
                Err(e) => Err(format!("{host}: {e}{tail}")),
            };
        }
        let u = url::Url::parse(&h.address).map_err(|e| format!("{host}: address `{}`: {e}", h.address))?;
        let name =
            u.host_str().filter(|n| !n.is_empty()).ok_or_else(|| format!("{host}: no host in `{}`", h.address))?;
        let user = Some(u.username().to_string()).filter(|u| !u.is_empty());
        if name.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
            return Err(format!("{host}: a host or user name cannot start with `-`"));
        }
        let target = crew_deploy::host::Target {
            host: crew_deploy::Host::Ssh { user, host: name.to_string(), port: u.port(), path: h.root.clone() },
            ssh_options: h.ssh_options.clone(),
        };
        match tokio::time::timeout(timeout, target.run(command)).await {
            Err(_) => Err(format!("{host}: `{command}` did not finish in {}s and was stopped", timeout.as_secs())),
            Ok(Err(e)) => Err(e.0),
            Ok(Ok(out)) => {
                let tail: Vec<&str> = out.lines().rev().take(5).collect();
                let tail: String =
                    tail.into_iter().rev().map(|l| format!("\n{}", l.chars().take(200).collect::<String>())).collect();
                Ok(format!("{host}: `{command}` ok{tail}"))
            }
        }
    }

    async fn carry_out(
        &self,
        run: String,
        name: String,
        file: DrillFile,
        method: Vec<Lever>,
        rollbacks: Vec<Lever>,
        actor: Actor,
    ) {
        let system = Actor::new("crew", Via::Scheduler);
        let probes = file.hypothesis.as_ref().map(|h| h.probes.clone()).unwrap_or_default();
        let mut before = Vec::new();
        for p in &probes {
            before.push(self.probe(p).await);
        }
        // The flags the drill touches, as they are now: `state = "before"` puts them back.
        let mut saved = std::collections::HashMap::new();
        for lever in method.iter().chain(&rollbacks) {
            if let Lever::Flag { key, .. } = lever {
                if !saved.contains_key(key) {
                    let def = self.flags.show(key, 0).await.ok().map(|(f, _)| f.definition);
                    saved.insert(key.clone(), def);
                }
            }
        }
        let mut practice = Vec::new();
        let mut journal = Vec::new();
        for (i, (lever, a)) in method.iter().zip(&file.method).enumerate() {
            let r = self.act(lever, &name, &actor, &mut practice, &saved).await;
            let (ok, said) = match &r {
                Ok(s) => (true, s.clone()),
                Err(s) => (false, s.clone()),
            };
            journal.push(json!({"step": i, "action": a.name, "ok": ok, "result": said}));
            let _ = self
                .timeline
                .append_system(vec![NewEvent::new(
                    system.clone(),
                    kind::DRILL_ACTION,
                    &format!("drill:{name}"),
                    format!("DRILL {name}: {}: {said}", a.name),
                )
                .with_data(json!({"drill": name, "run": run, "step": i, "action": a.name, "ok": ok, "result": said}))])
                .await;
            if !ok {
                break;
            }
        }
        // Practice pages: give responders until the end of the method; whatever is open is resolved by the drill.
        let mut responders = Vec::new();
        for id in &practice {
            if let Ok(inc) = self.incidents.get(*id).await {
                let tta = inc.acked_at.map(|a| (a - inc.triggered_at).num_seconds());
                responders.push(json!({"incident": id, "acked_by": inc.acked_by, "tta_seconds": tta}));
                if inc.status != IncidentStatus::Resolved {
                    let _ = self.incidents.resolve(*id, Some("the drill ended"), system.clone()).await;
                }
            }
        }
        let mut rolled = Vec::new();
        for (lever, a) in rollbacks.iter().zip(&file.rollbacks) {
            let mut none = Vec::new();
            let r = self.act(lever, &name, &actor, &mut none, &saved).await;
            rolled.push(json!({"action": a.name, "ok": r.is_ok(), "result": r.unwrap_or_else(|e| e)}));
        }
        let mut after = Vec::new();
        for p in &probes {
            after.push(self.probe(p).await);
        }
        let held = before.iter().chain(&after).all(|p| p["ok"] == true);
        let acted = journal.iter().all(|j| j["ok"] == true);
        let tta: Vec<i64> = responders.iter().filter_map(|r| r["tta_seconds"].as_i64()).collect();
        let summary = format!(
            "DRILL {name} finished: hypothesis {}{}{}",
            if held { "held" } else { "deviated" },
            if acted { "" } else { "; an action failed" },
            match tta.iter().max() {
                Some(t) => format!("; acknowledged in {}", crate::incidents::human_secs(*t)),
                None if practice.is_empty() => String::new(),
                None => "; nobody acknowledged the practice page".into(),
            }
        );
        let _ = self
            .timeline
            .append_system(vec![NewEvent::new(system, kind::DRILL_FINISHED, &format!("drill:{name}"), summary)
                .with_data(json!({
                    "drill": name, "run": run, "title": file.title, "deviated": !held, "actions_ok": acted,
                    "before": before, "after": after, "method": journal, "rollbacks": rolled,
                    "responders": responders,
                }))
                .with_link("drill", &format!("/drills/{run}"))])
            .await;
    }

    /// When the last unannounced drill started.
    async fn last_unannounced(&self) -> Option<chrono::DateTime<Utc>> {
        let mut f = EventFilter::new().limit(200);
        f.kind = Some(kind::DRILL_STARTED.to_string());
        let page = self.timeline.query(&f).await.ok()?;
        page.events.iter().find(|e| e.actor.name == UNANNOUNCED).map(|e| e.at)
    }

    /// Finished runs, newest first (their journals).
    pub async fn runs(&self, limit: u32) -> Result<Vec<crew_core::Event>, ApiError> {
        let mut f = EventFilter::new();
        f.kind = Some(kind::DRILL_FINISHED.to_string());
        f.limit = limit;
        Ok(self.timeline.query(&f).await?.events)
    }

    /// One run: its start and, when it ended, its journal.
    pub async fn show(&self, run: &str) -> Result<Value, ApiError> {
        let started = self.timeline.one(run).await?;
        if started.kind != kind::DRILL_STARTED {
            return Err(ApiError::NotFound(format!("no drill run {run}")));
        }
        let finished = self.runs(1000).await?.into_iter().find(|e| e.data["run"].as_str() == Some(run));
        let mut f = EventFilter::new();
        f.kind = Some(kind::DRILL_ACTION.to_string());
        f.limit = 1000;
        let mut actions: Vec<_> =
            self.timeline.query(&f).await?.events.into_iter().filter(|e| e.data["run"].as_str() == Some(run)).collect();
        actions.reverse();
        Ok(json!({
            "run": run, "drill": started.data["drill"], "started": started, "actions": actions,
            "finished": finished, "state": if finished.is_some() { "finished" } else { "running" },
        }))
    }
}

/// A command's output as the drill keeps it: its last 5 lines, each cut at 200 bytes.
#[derive(Default)]
struct Lines(std::sync::Mutex<std::collections::VecDeque<String>>);

impl crew_deploy::Journal for Lines {
    fn line(&self, text: String) {
        let mut l = self.0.lock().expect("not poisoned");
        let mut end = text.len().min(200);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        l.push_back(text[..end].to_string());
        if l.len() > 5 {
            l.pop_front();
        }
    }
}

impl Lines {
    fn tail(&self) -> String {
        self.0.lock().expect("not poisoned").iter().map(|l| format!("\n{l}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unannounced_schedule_is_checked_naming_the_key() {
        let parse = |text: &str| -> Result<(), String> {
            let d: DrillsSection = toml::from_str(text).map_err(|e| e.to_string())?;
            d.check()
        };
        assert_eq!(parse("schedule = \"ops\""), Ok(()));
        assert_eq!(
            parse("schedule = \"ops\"\nhours = \"sat,sun 22:00-06:00\"\nevery = \"30d\"\nnames = [\"a-b\"]"),
            Ok(())
        );
        for (text, says) in [
            ("schedule = \"ops\"\nhours = \"weekdays\"", "drills.hours = \"weekdays\": write days and times"),
            ("schedule = \"ops\"\nhours = \"mon-fri 10-16\"", "drills.hours: from: expected a time of day"),
            ("schedule = \"ops\"\nhours = \"mon-fri 10:00\"", "drills.hours = \"mon-fri 10:00\": the times"),
            ("schedule = \"ops\"\nhours = \"moon 10:00-16:00\"", "drills.hours: days:"),
            ("schedule = \"ops\"\nevery = \"10m\"", "drills.every = \"10m\": at least an hour"),
            ("schedule = \"ops\"\nevery = \"soon\"", "drills.every"),
            ("schedule = \"ops\"\nnames = [\"../x\"]", "drills.names: `../x`"),
            ("schedule = \"ops\"\nschedul = 1", "unknown field `schedul`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
