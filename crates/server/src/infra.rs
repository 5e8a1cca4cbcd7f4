//! Infrastructure on the server: crew.toml's `[[hosts]]` (typed and checked at start), `[infra] check = "1h"`
//! (the drift schedule), and each host's latest run read back from the timeline for the Infrastructure page.
//!
//! The schedule runs `crew infra check all --json` as a child process of this same binary (the SSH transport
//! and the engine live in the CLI, and a child keeps a slow or hung host away from the server's own tasks),
//! then records what it found as `infra.drift` events by `crew via scheduler`. Replicas on one database take
//! turns through the store's `infra.check` lease, so each interval is checked once.

use crate::state::AppState;
use crew_core::{Actor, EventFilter, NewEvent, Via};
use crew_infra::engine::Report;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

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
pub fn start(st: &AppState) {
    let Some(section) = st.settings.file.infra.clone() else { return };
    let Ok((Some(every), timeout)) = section.durations() else { return };
    let Some(config) = st.settings.config_path.clone() else { return };
    let st = st.clone();
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
                _ = st.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match st.store.try_lease("infra.check", &holder, lease).await {
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
pub async fn check_once(st: &AppState, config: &std::path::Path) -> anyhow::Result<usize> {
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
    for h in &parsed.hosts {
        if let Some(r) = &h.report {
            if let Some(summary) = r.drift_summary(&h.host) {
                events.push(
                    NewEvent::new(actor.clone(), "infra.drift", &format!("host:{}", h.host), summary)
                        .with_data(serde_json::json!({"resources": r.changed(), "report": r.stored()})),
                );
            }
        }
        if let Some(why) = &h.unreachable {
            let why: String = why.chars().filter(|c| !c.is_control()).take(300).collect();
            events.push(NewEvent::new(
                actor.clone(),
                "infra.unreachable",
                &format!("host:{}", h.host),
                format!("infra check could not reach {}: {why}", h.host),
            ));
        }
    }
    let drifted = events.iter().filter(|e| e.kind == "infra.drift").count();
    if !events.is_empty() {
        st.store.append(events).await?;
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
pub async fn states(st: &AppState) -> anyhow::Result<BTreeMap<String, HostState>> {
    let mut f = EventFilter::new();
    f.kind = Some("infra".into());
    f.limit = 1000;
    let page = st.store.query(&f).await?;
    let mut out: BTreeMap<String, HostState> = BTreeMap::new();
    for e in page.events {
        let Some(host) = e.subject.strip_prefix("host:") else { continue };
        let s = out.entry(host.to_string()).or_default();
        let newer_than_apply = s.applied.is_none();
        match e.kind.as_str() {
            "infra.applied" if s.applied.is_none() => s.applied = Some(e),
            "infra.drift" if s.drift.is_none() && newer_than_apply => s.drift = Some(e),
            "infra.unreachable" if s.unreachable.is_none() && newer_than_apply => s.unreachable = Some(e),
            _ => {}
        }
    }
    Ok(out)
}
