//! A deploy from start to end, and a rollback: build once, run the `before` hooks, then ship and switch the
//! canary hosts, then the rest `parallel` at a time; on any failure switch every already-switched host back.

use crate::config::{DeployConfig, Environment, Host};
use crate::host::{health, Target};
use crate::{build, DeployError, Gate, Journal, Proceed, Stage};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What happened on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResult {
    pub host: String,
    /// `switched` (runs the new release), `reverted` (switched, then back), `failed` (this host failed),
    /// `untouched` (the deploy stopped before it).
    pub state: String,
    /// The release `current` pointed to before.
    pub previous: Option<String>,
    pub error: Option<String>,
}

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    /// Failed before any host was switched (build, hooks, transfer).
    Failed(String),
    /// Failed after some hosts were switched; they were switched back.
    RolledBack(String),
    /// Stopped before touching another host because the journal said so ([`Journal::stopped`]): the deploy is
    /// no longer this server's. Hosts already switched stay as they are; switching them back would touch hosts.
    Stopped(String),
}

pub struct Outcome {
    pub status: Status,
    pub hosts: Vec<HostResult>,
}

fn targets(env: &Environment) -> Vec<Target> {
    env.hosts
        .iter()
        .map(|h| Target {
            host: Host::parse(h).expect("checked with the config"),
            ssh_options: env.ssh_options.clone(),
        })
        .collect()
}

/// If the deploy must stop, the outcome that says so (logged), with the hosts as they are.
fn stop_here(journal: &dyn Journal, hosts: &[HostResult]) -> Option<Outcome> {
    let why = journal.stopped()?;
    journal.line(format!("stopped: {why}; no further host is touched"));
    Some(Outcome { status: Status::Stopped(why), hosts: hosts.to_vec() })
}

/// Every host's result before anything happened to it.
fn untouched(targets: &[Target]) -> Vec<HostResult> {
    targets
        .iter()
        .map(|t| HostResult { host: t.host.to_string(), state: "untouched".into(), previous: None, error: None })
        .collect()
}

/// Switches one shipped host and brings it up: switch, restart, health. An error means the host was switched.
async fn switch_one(t: &Target, env: &Environment, release: &str, journal: &dyn Journal) -> Result<(), DeployError> {
    t.switch(release).await?;
    journal.line(format!("{}: switched to {release}", t.host));
    if let Some(cmd) = &env.restart {
        let limit = crate::config::span(&env.restart_timeout);
        match tokio::time::timeout(limit, t.restart(cmd)).await {
            Ok(r) => r.map_err(|e| DeployError(format!("restart `{cmd}` failed: {e}")))?,
            Err(_) => {
                return Err(DeployError(format!("{}: restart `{cmd}` did not finish in {}s", t.host, limit.as_secs())))
            }
        }
        journal.line(format!("{}: restarted", t.host));
    }
    if let Some(h) = &env.health {
        let url = h.url.replace("{host}", t.host.name());
        health(&url, h.expect, h.timeout()).await.map_err(|e| DeployError(format!("{}: {e}", t.host)))?;
        journal.line(format!("{}: healthy ({url})", t.host));
    }
    Ok(())
}

/// Ships one host: prepare, transfer. Returns the release `current` pointed to.
async fn ship_one(
    t: &Target,
    artifact: &Path,
    release: &str,
    journal: &dyn Journal,
) -> Result<Option<String>, DeployError> {
    let previous = t.prepare().await?;
    t.transfer(artifact, release, previous.as_deref()).await?;
    journal.line(format!("{}: shipped release {release}", t.host));
    Ok(previous)
}

/// Switches hosts back to what they ran before (`previous`; none means the host had no `current`).
async fn switch_back(
    targets: &[Target],
    hosts: &[usize],
    results: &mut [HostResult],
    env: &Environment,
    journal: &dyn Journal,
) {
    journal.line(format!("switching back {} host(s)", hosts.len()));
    let reverts = join_all(hosts.iter().map(|&i| {
        let t = &targets[i];
        let previous = results[i].previous.clone();
        async move {
            match &previous {
                Some(p) => {
                    t.switch(p).await?;
                    if let Some(cmd) = &env.restart {
                        t.restart(cmd).await?;
                    }
                    Ok::<_, DeployError>(())
                }
                None => t.unswitch().await,
            }
        }
    }))
    .await;
    for (&i, r) in hosts.iter().zip(reverts) {
        match r {
            Ok(()) => {
                journal.line(format!(
                    "{}: switched back to {}",
                    targets[i].host,
                    results[i].previous.as_deref().unwrap_or("nothing")
                ));
                results[i].state = if results[i].error.is_none() { "reverted".into() } else { "failed".into() };
            }
            Err(e) => {
                journal.line(format!("error: switching back: {e}"));
                results[i].error = Some(format!("switching back failed: {e}"));
            }
        }
    }
}

/// Deploys `sha` as `release` to `env_name`. `builds` is where builds are kept. The release is shipped to every
/// host before any host switches, so an unreachable host stops the deploy with nothing changed anywhere.
pub async fn deploy(
    cfg: &DeployConfig,
    env_name: &str,
    sha: &str,
    release: &str,
    builds: &Path,
    journal: &dyn Journal,
    gate: &dyn Gate,
) -> Outcome {
    let env = cfg.environment(env_name).expect("checked by the caller");
    let targets = targets(env);
    let mut results = untouched(&targets);

    if let Err(e) = build::ensure(cfg, builds, sha, env_name, journal).await {
        return Outcome { status: Status::Failed(e.0), hosts: results };
    }
    let checkout = builds.join(&cfg.app.name).join(sha).join("src");
    let shell = build::Shell::new(cfg, sha, env_name);
    for hook in &env.hooks.before {
        journal.line(format!("hook: $ {hook}"));
        if let Err(e) =
            build::run_logged(hook, &checkout, &shell, crate::config::span(&cfg.build.timeout), "hook", journal).await
        {
            return Outcome { status: Status::Failed(format!("before hook stopped the deploy: {e}")), hosts: results };
        }
    }
    // Checked again after the hooks, which run the committer's files in the checkout and could swap it.
    let artifact = match build::check_artifact(&checkout, &cfg.build.artifact) {
        Ok(a) => a,
        Err(e) => return Outcome { status: Status::Failed(e.0), hosts: results },
    };

    // Ship everywhere, `parallel` hosts at a time.
    let all: Vec<usize> = (0..targets.len()).collect();
    let mut failure: Option<String> = None;
    for chunk in all.chunks(env.parallel) {
        if let Some(stopped) = stop_here(journal, &results) {
            return stopped;
        }
        let shipped = join_all(chunk.iter().map(|&i| ship_one(&targets[i], &artifact, release, journal))).await;
        for (&i, r) in chunk.iter().zip(shipped) {
            match r {
                Ok(previous) => {
                    results[i].previous = previous;
                    results[i].state = "shipped".into();
                }
                Err(e) => {
                    journal.line(format!("error: {}", e.0));
                    results[i].state = "failed".into();
                    results[i].error = Some(e.0.clone());
                    failure.get_or_insert(e.0);
                }
            }
        }
    }

    // Switch: canaries first, alone; then the rest, `parallel` at a time.
    if failure.is_none() {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        if env.canary > 0 {
            groups.push((0..env.canary).collect());
        }
        groups.extend(all[env.canary..].chunks(env.parallel).map(|c| c.to_vec()));
        for (g, group) in groups.iter().enumerate() {
            if let Some(stopped) = stop_here(journal, &results) {
                return stopped;
            }
            if env.canary > 0 && g == 0 {
                journal.line(format!("canary: {} host(s) first", group.len()));
            }
            let runs = join_all(group.iter().map(|&i| switch_one(&targets[i], env, release, journal))).await;
            for (&i, res) in group.iter().zip(runs) {
                results[i].state = "switched".into();
                if let Err(e) = res {
                    results[i].error = Some(e.0.clone());
                    journal.line(format!("error: {}", e.0));
                    failure.get_or_insert(e.0);
                }
            }
            if failure.is_some() {
                break;
            }
            if env.canary > 0 && g == 0 {
                let tags: Vec<String> = targets.iter().map(|t| t.host.tag()).collect();
                let (canaries, baseline) = tags.split_at(env.canary);
                if let Proceed::SwitchBack(why) = gate.judge(Stage::Canary { canaries, baseline }, journal).await {
                    failure = Some(why);
                    break;
                }
            }
        }
        if failure.is_none() && env.canary == 0 {
            let hosts: Vec<String> = targets.iter().map(|t| t.host.tag()).collect();
            if let Proceed::SwitchBack(why) = gate.judge(Stage::Whole { hosts: &hosts }, journal).await {
                failure = Some(why);
            }
        }
    }

    if let Some(stopped) = stop_here(journal, &results) {
        return stopped;
    }
    let Some(error) = failure else {
        for (i, t) in targets.iter().enumerate() {
            if let Err(e) = t.clean(env.keep_releases, results[i].previous.as_deref()).await {
                journal.line(format!("warning: cleaning old releases: {e}"));
            }
        }
        for hook in &env.hooks.after {
            journal.line(format!("hook: $ {hook}"));
            if let Err(e) =
                build::run_logged(hook, &checkout, &shell, crate::config::span(&cfg.build.timeout), "hook", journal)
                    .await
            {
                journal.line(format!("warning: after hook failed: {e}"));
            }
        }
        return Outcome { status: Status::Succeeded, hosts: results };
    };

    let switched: Vec<usize> = all.iter().copied().filter(|&i| results[i].state == "switched").collect();
    if !switched.is_empty() {
        switch_back(&targets, &switched, &mut results, env, journal).await;
    }
    // The release never went live: remove it wherever it was shipped (never a release `current` points to).
    for (i, t) in targets.iter().enumerate() {
        if results[i].state != "untouched" {
            let _ = t.discard(release).await;
        }
        if results[i].state == "shipped" {
            results[i].state = "untouched".into();
        }
    }
    let status = if switched.is_empty() { Status::Failed(error) } else { Status::RolledBack(error) };
    Outcome { status, hosts: results }
}

/// Switches every host of `env_name` to `release` (already on the hosts), restarts and checks health. No build.
/// Every host must have the release before any switches; if a host fails, the ones that switched go back.
pub async fn rollback(cfg: &DeployConfig, env_name: &str, release: &str, journal: &dyn Journal) -> Outcome {
    let env = cfg.environment(env_name).expect("checked by the caller");
    let targets = targets(env);
    let mut results = untouched(&targets);
    let checks =
        join_all(targets.iter().map(|t| async move { (t.prepare().await, t.has_release(release).await) })).await;
    for (i, (prev, has)) in checks.into_iter().enumerate() {
        let problem = match (prev, has) {
            (Ok(p), Ok(true)) => {
                results[i].previous = p;
                None
            }
            (_, Ok(false)) => Some(format!("{}: release {release} is no longer on this host", targets[i].host)),
            (Err(e), _) | (_, Err(e)) => Some(e.0),
        };
        if let Some(p) = problem {
            journal.line(format!("error: {p}"));
            results[i].state = "failed".into();
            results[i].error = Some(p.clone());
            return Outcome { status: Status::Failed(p), hosts: results };
        }
    }
    if let Some(stopped) = stop_here(journal, &results) {
        return stopped;
    }
    let runs = join_all(targets.iter().map(|t| switch_one(t, env, release, journal))).await;
    let mut error = None;
    for (i, r) in runs.into_iter().enumerate() {
        results[i].state = "switched".into();
        if let Err(e) = r {
            journal.line(format!("error: {}", e.0));
            results[i].error = Some(e.0.clone());
            error.get_or_insert(e.0);
        }
    }
    match error {
        None => Outcome { status: Status::Succeeded, hosts: results },
        Some(e) => {
            let all: Vec<usize> = (0..targets.len()).collect();
            switch_back(&targets, &all, &mut results, env, journal).await;
            Outcome { status: Status::Failed(e), hosts: results }
        }
    }
}
