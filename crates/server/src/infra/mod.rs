//! The infra domain: crew.toml's `[[hosts]]` (typed and checked at start), `[infra] check = "1h"` (the drift
//! schedule), the runs `crew infra apply` and `crew infra check` report (`POST /api/v1/infra/reports`, recorded
//! here as `infra.applied`, `infra.drift`, `infra.unreachable`: people cannot post those kinds themselves), and
//! each host's latest run read back from the timeline for the Infrastructure page.
//!
//! The schedule runs `crew infra check all --json` as a child process of this same binary (the SSH transport
//! and the engine live in the CLI, and a child keeps a slow or hung host away from the server's own tasks),
//! then records what it found as `infra.drift` events by `crew via scheduler`. Replicas on one database take
//! turns through the store's `infra.check` lease, so each interval is checked once.

pub mod api;
pub mod web;

use crate::error::ApiError;
use crate::state::Platform;
use crate::timeline::Timeline;
use crew_core::{kind, Actor, Event, EventFilter, NewEvent, Via};
use crew_infra::engine::Report;
use crew_store::Store;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The infra service.
#[derive(Clone)]
pub struct Infra {
    pub(crate) platform: Platform,
    timeline: Timeline,
}

/// What a run found on one host, as `crew infra apply` and `crew infra check` report it.
#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Finding {
    /// An apply ran on the host.
    Applied { host: String, report: Report },
    /// A check found the host out of its roles.
    Drift { host: String, report: Report },
    /// The host could not be reached.
    Unreachable { host: String, reason: String, during: During },
}

/// Which run could not reach a host.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum During {
    Apply,
    Check,
}

/// The event a finding records, or `None` when a check found nothing to say.
pub fn event(actor: Actor, f: &Finding) -> Result<Option<NewEvent>, ApiError> {
    let host = match f {
        Finding::Applied { host, .. } | Finding::Drift { host, .. } | Finding::Unreachable { host, .. } => host,
    };
    if host.is_empty() || host.len() > 100 || host.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::BadRequest(format!("`host`: `{}` is not a host name", host.escape_debug())));
    }
    let subject = format!("host:{host}");
    Ok(match f {
        Finding::Applied { report: r, .. } => {
            let s = &r.summary;
            let changed: Vec<&str> = r.changed().into_iter().take(50).collect();
            Some(
                NewEvent::new(
                    actor,
                    kind::INFRA_APPLIED,
                    &subject,
                    format!(
                        "infra applied on {host}: {} changed, {} failed, {} refreshed",
                        s.changed, s.failed, s.refreshed
                    ),
                )
                .with_data(serde_json::json!({"summary": s, "changed": changed, "report": r.stored()})),
            )
        }
        Finding::Drift { report: r, .. } => r.drift_summary(host).map(|summary| {
            // One line, however long the drifted paths: an event's summary is at most 500 characters.
            let summary: String = summary.chars().filter(|c| !c.is_control()).take(480).collect();
            let resources: Vec<&str> = r.changed().into_iter().take(50).collect();
            NewEvent::new(actor, kind::INFRA_DRIFT, &subject, summary)
                .with_data(serde_json::json!({"resources": resources, "report": r.stored()}))
        }),
        Finding::Unreachable { reason, during, .. } => {
            let why: String = reason.chars().filter(|c| !c.is_control()).take(300).collect();
            let run = match during {
                During::Apply => "infra apply",
                During::Check => "infra check",
            };
            Some(NewEvent::new(
                actor,
                kind::INFRA_UNREACHABLE,
                &subject,
                format!("{run} could not reach {host}: {why}"),
            ))
        }
    })
}

impl Infra {
    pub fn new(p: &Platform, timeline: Timeline) -> Self {
        Infra { platform: p.clone(), timeline }
    }

    /// Records what a run found (the CLI's apply and check report here).
    pub async fn report(&self, actor: Actor, f: Finding) -> Result<Option<Event>, ApiError> {
        // A server that knows its hosts takes reports of those alone, so nobody can paint a host it does not
        // manage, or bury the real ones under made-up names.
        let hosts = &self.platform.settings.file.hosts;
        let host = match &f {
            Finding::Applied { host, .. } | Finding::Drift { host, .. } | Finding::Unreachable { host, .. } => host,
        };
        if !hosts.is_empty() && !hosts.iter().any(|h| &h.name == host) {
            return Err(ApiError::NotFound(format!(
                "no host `{}` in this server's crew.toml [[hosts]]",
                host.escape_debug()
            )));
        }
        match event(actor, &f)? {
            Some(e) => Ok(self.timeline.append_system(vec![e]).await?.pop()),
            None => Ok(None),
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.platform.store
    }
}

/// `[infra]` of crew.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfraSection {
    /// How often to check every host for drift (`"1h"`, `"30m"`); no schedule when absent.
    pub check: Option<String>,
    /// How long one scheduled check may take before it is stopped (default 10m).
    pub timeout: Option<String>,
}

impl InfraSection {
    /// The schedule's interval and timeout, or a message naming the key.
    pub fn durations(&self) -> Result<(Option<Duration>, Duration), String> {
        let parse = |key: &str, v: &str| -> Result<Duration, String> {
            let d = humantime::parse_duration(v)
                .map_err(|e| format!("[infra] {key} = \"{v}\": {e}; write e.g. \"1h\" or \"30m\""))?;
            if d < Duration::from_secs(10) {
                return Err(format!("[infra] {key} = \"{v}\": at least 10s"));
            }
            Ok(d)
        };
        let every = self.check.as_deref().map(|v| parse("check", v)).transpose()?;
        let timeout =
            self.timeout.as_deref().map(|v| parse("timeout", v)).transpose()?.unwrap_or(Duration::from_secs(600));
        Ok((every, timeout))
    }
}

/// Checks `[[hosts]]` and `[infra]` together: names unique, every host in some role, the schedule readable.
pub fn check(hosts: &[crew_infra::Host], section: Option<&InfraSection>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for h in hosts {
        if !seen.insert(h.name.as_str()) {
            return Err(format!("[[hosts]]: `{}` is named twice", h.name));
        }
        if h.roles.is_empty() {
            return Err(format!("[[hosts]] `{}`: no roles", h.name));
        }
    }
    if let Some(s) = section {
        let (every, _) = s.durations()?;
        if every.is_some() && hosts.is_empty() {
            return Err("[infra] check is set but crew.toml has no [[hosts]]".into());
        }
    }
    Ok(())
}

/// Starts the drift schedule when `[infra] check` is set.
pub fn start(infra: &Infra) {
    let settings = &infra.platform.settings;
    let Some(section) = settings.file.infra.clone() else { return };
    let Ok((Some(every), timeout)) = section.durations() else { return };
    let Some(config) = settings.config_path.clone() else { return };
    let st = infra.clone();
    let shutdown = infra.platform.shutdown.clone();
    // Replicas sharing a database take turns through a lease: one checks each interval; if it dies, another
    // takes over once its lease (an interval and a half) has run out.
    let holder = format!("{}-{}", std::process::id(), rand::random::<u64>());
    let lease = every + every / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the first check comes one interval after start
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match st.store().try_lease("infra.check", &holder, lease).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "the infra check lease is unavailable");
                    continue;
                }
            }
            match tokio::time::timeout(timeout, check_once(&st, &config)).await {
                Ok(Ok(n)) => tracing::info!(drifted = n, "scheduled infra check done"),
                Ok(Err(e)) => tracing::warn!(error = %e, "scheduled infra check failed"),
                Err(_) => tracing::warn!(?timeout, "scheduled infra check took too long and was stopped"),
            }
        }
    });
}

#[derive(Deserialize)]
struct CheckOutput {
    hosts: Vec<HostResult>,
}

#[derive(Deserialize)]
struct HostResult {
    host: String,
    report: Option<Report>,
    unreachable: Option<String>,
}

/// One check of every host; the number of hosts that drifted.
pub async fn check_once(st: &Infra, config: &std::path::Path) -> anyhow::Result<usize> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .args(["infra", "check", "all", "--json", "--no-record", "--config"])
        .arg(config)
        .env_remove("CREW_SERVER")
        .env_remove("CREW_TOKEN")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    let parsed: CheckOutput = serde_json::from_slice(&out.stdout).map_err(|e| {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::anyhow!("crew infra check exited with {}: {}; {e}", out.status, err.trim())
    })?;
    let actor = Actor::new("crew", Via::Scheduler);
    let mut events = Vec::new();
    for h in parsed.hosts {
        let finding = match (h.report, h.unreachable) {
            (_, Some(reason)) => Finding::Unreachable { host: h.host, reason, during: During::Check },
            (Some(report), None) => Finding::Drift { host: h.host, report },
            (None, None) => continue,
        };
        if let Some(e) = event(actor.clone(), &finding).map_err(|e| anyhow::anyhow!("{e}"))? {
            events.push(e);
        }
    }
    let drifted = events.iter().filter(|e| e.kind == kind::INFRA_DRIFT).count();
    // One host at a time: one host's event that the store refuses never loses the others'.
    for e in events {
        if let Err(e) = st.timeline.append_system(vec![e]).await {
            tracing::warn!(error = %e, "a scheduled infra finding was not recorded");
        }
    }
    Ok(drifted)
}

/// What the Infrastructure page shows of one host: its latest apply, and drift or unreachability since.
#[derive(Debug, Default)]
pub struct HostState {
    pub applied: Option<crew_core::Event>,
    pub drift: Option<crew_core::Event>,
    pub unreachable: Option<crew_core::Event>,
}

/// The latest `infra.*` events per host (`host:NAME`), newest first per kind; drift and unreachability only
/// when newer than the last apply (an apply repairs drift).
pub async fn states(st: &Infra) -> Result<BTreeMap<String, HostState>, ApiError> {
    let mut out: BTreeMap<String, HostState> = BTreeMap::new();
    // Each host's own events: one host's many runs never push another's out of view.
    for h in &st.platform.settings.file.hosts {
        let mut f = EventFilter::new();
        f.kind = Some(kind::INFRA.into());
        f.subject = Some(format!("host:{}", h.name));
        f.limit = 100;
        let s = out.entry(h.name.clone()).or_default();
        for e in st.timeline.query(&f).await?.events {
            let newer_than_apply = s.applied.is_none();
            match e.kind.as_str() {
                kind::INFRA_APPLIED if s.applied.is_none() => s.applied = Some(e),
                kind::INFRA_DRIFT if s.drift.is_none() && newer_than_apply => s.drift = Some(e),
                kind::INFRA_UNREACHABLE if s.unreachable.is_none() && newer_than_apply => s.unreachable = Some(e),
                _ => {}
            }
        }
    }
    Ok(out)
}
