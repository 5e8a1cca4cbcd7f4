//! A deploy from start to end, and a rollback: build once, run the `before` hooks, then ship and switch the
//! canary hosts, then the rest `parallel` at a time; on any failure switch every already-switched host back.

use crate::config::{DeployConfig, Environment, Host};
use crate::host::{health, Target};
use crate::{build, DeployError, Journal};
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
}

pub struct Outcome {
    pub status: Status,
    pub hosts: Vec<HostResult>,
}

fn targets(env: &Environment) -> Vec<Target> {
    env.hosts
        .iter()
        .map(|h| Target { host: Host::parse(h).expect("checked with the config"), ssh_options: env.ssh_options.clone() })
        .collect()
}

/// Ships one host and switches it: prepare, transfer, switch, restart, health. Returns the previous release,
/// and whether the host was switched when it failed.
async fn ship_one(t: &Target, env: &Environment, artifact: &Path, release: &str, journal: &dyn Journal) -> (Option<String>, Result<(), (bool, DeployError)>) {
    let previous = match t.prepare().await {
        Ok(p) => p,
        Err(e) => return (None, Err((false, e))),
    };
    journal.line(format!("{}: shipping release {release}", t.host));
    if let Err(e) = t.transfer(artifact, release, previous.as_deref()).await {
        return (previous, Err((false, e)));
    }
    if let Err(e) = t.switch(release).await {
        return (previous, Err((false, e)));
    }
    journal.line(format!("{}: switched to {release}", t.host));
    if let Some(cmd) = &env.restart {
        if let Err(e) = t.restart(cmd).await {
            return (previous, Err((true, DeployError(format!("restart `{cmd}` failed: {e}")))));
        }
        journal.line(format!("{}: restarted", t.host));
    }
    if let Some(h) = &env.health {
        let url = h.url.replace("{host}", t.host.name());
        if let Err(e) = health(&url, h.expect, h.timeout()).await {
            return (previous, Err((true, DeployError(format!("{}: {e}", t.host)))));
        }
        journal.line(format!("{}: healthy ({url})", t.host));
    }
    (previous, Ok(()))
}

/// Deploys `sha` as `release` to `env_name`. `builds` is where builds are kept.
pub async fn deploy(cfg: &DeployConfig, env_name: &str, sha: &str, release: &str, builds: &Path, journal: &dyn Journal) -> Outcome {
    let env = cfg.environment(env_name).expect("checked by the caller");
    let targets = targets(env);
    let mut results: Vec<HostResult> =
        targets.iter().map(|t| HostResult { host: t.host.to_string(), state: "untouched".into(), previous: None, error: None }).collect();
    let fail = |msg: String, results: Vec<HostResult>| Outcome { status: Status::Failed(msg), hosts: results };

    let artifact = match build::ensure(cfg, builds, sha, env_name, journal).await {
        Ok(a) => a,
        Err(e) => return fail(e.0, results),
    };
    let checkout = builds.join(&cfg.app.name).join(sha).join("src");
    for hook in &env.hooks.before {
        journal.line(format!("hook: $ {hook}"));
        let vars = [("CREW_REVISION", sha), ("CREW_APP", cfg.app.name.as_str()), ("CREW_ENVIRONMENT", env_name)];
        if let Err(e) = build::run_logged(hook, &checkout, &vars, "hook", journal).await {
            return fail(format!("before hook stopped the deploy: {e}"), results);
        }
    }

    // Canaries first, alone; then the rest, `parallel` at a time.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    if env.canary > 0 {
        groups.push((0..env.canary).collect());
    }
    let rest: Vec<usize> = (env.canary..targets.len()).collect();
    groups.extend(rest.chunks(env.parallel).map(|c| c.to_vec()));

    let mut failure: Option<String> = None;
    for (g, group) in groups.iter().enumerate() {
        if env.canary > 0 && g == 0 {
            journal.line(format!("canary: {} host(s) first", group.len()));
        }
        let runs = join_all(group.iter().map(|&i| ship_one(&targets[i], env, &artifact, release, journal))).await;
        for (&i, (previous, res)) in group.iter().zip(runs) {
            results[i].previous = previous;
            match res {
                Ok(()) => results[i].state = "switched".into(),
                Err((switched, e)) => {
                    results[i].state = if switched { "switched".into() } else { "failed".into() };
                    results[i].error = Some(e.0.clone());
                    journal.line(format!("error: {}", e.0));
                    failure.get_or_insert(e.0);
                }
            }
        }
        if failure.is_some() {
            break;
        }
    }

    let Some(error) = failure else {
        for t in &targets {
            if let Err(e) = t.clean(env.keep_releases).await {
                journal.line(format!("warning: cleaning old releases: {e}"));
            }
        }
        for hook in &env.hooks.after {
            journal.line(format!("hook: $ {hook}"));
            let vars = [("CREW_REVISION", sha), ("CREW_APP", cfg.app.name.as_str()), ("CREW_ENVIRONMENT", env_name)];
            if let Err(e) = build::run_logged(hook, &checkout, &vars, "hook", journal).await {
                journal.line(format!("warning: after hook failed: {e}"));
            }
        }
        return Outcome { status: Status::Succeeded, hosts: results };
    };

    // Switch back every host that was switched, to what it ran before.
    let switched: Vec<usize> = (0..targets.len()).filter(|&i| results[i].state == "switched").collect();
    if switched.is_empty() {
        return fail(error, results);
    }
    journal.line(format!("switching back {} host(s)", switched.len()));
    let reverts = join_all(switched.iter().map(|&i| {
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
    for (&i, r) in switched.iter().zip(reverts) {
        match r {
            Ok(()) => {
                journal.line(format!("{}: switched back to {}", targets[i].host, results[i].previous.as_deref().unwrap_or("nothing")));
                if results[i].error.is_none() {
                    results[i].state = "reverted".into();
                } else {
                    results[i].state = "failed".into();
                }
            }
            Err(e) => {
                journal.line(format!("error: switching back: {e}"));
                results[i].error = Some(format!("switching back failed: {e}"));
            }
        }
    }
    Outcome { status: Status::RolledBack(error), hosts: results }
}

/// Switches every host of `env_name` to `release` (already on the hosts), restarts and checks health. No build.
pub async fn rollback(cfg: &DeployConfig, env_name: &str, release: &str, journal: &dyn Journal) -> Outcome {
    let env = cfg.environment(env_name).expect("checked by the caller");
    let targets = targets(env);
    let runs = join_all(targets.iter().map(|t| async move {
        let previous = t.prepare().await.ok().flatten();
        let r = async {
            t.switch(release).await?;
            if let Some(cmd) = &env.restart {
                t.restart(cmd).await?;
            }
            if let Some(h) = &env.health {
                health(&h.url.replace("{host}", t.host.name()), h.expect, h.timeout()).await?;
            }
            Ok::<_, DeployError>(())
        }
        .await;
        (previous, r)
    }))
    .await;
    let mut hosts = Vec::new();
    let mut error = None;
    for (t, (previous, r)) in targets.iter().zip(runs) {
        match r {
            Ok(()) => {
                journal.line(format!("{}: switched to {release}", t.host));
                hosts.push(HostResult { host: t.host.to_string(), state: "switched".into(), previous, error: None });
            }
            Err(e) => {
                journal.line(format!("error: {}", e.0));
                error.get_or_insert(e.0.clone());
                hosts.push(HostResult { host: t.host.to_string(), state: "failed".into(), previous, error: Some(e.0) });
            }
        }
    }
    Outcome { status: error.map_or(Status::Succeeded, Status::Failed), hosts }
}
