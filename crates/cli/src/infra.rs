//! `crew infra plan|apply TARGET`: reads crew.toml's [[hosts]] and roles/*.toml, checks everything before any
//! host is touched, then runs the engine for each host (on this machine for `local` hosts or with `--local`;
//! push over SSH lands next) and prints the changes with diffs and a summary. An apply is recorded on the
//! timeline as `infra.applied` when a crew server is reachable.

use crate::cli::InfraArgs;
use crate::client::Client;
use crate::Exit;
use anyhow::Result;
use crew_infra::engine::{self, Report, Status, Target};
use crew_infra::{Host, Resource};
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
struct HostsFile {
    #[serde(default)]
    hosts: Vec<Host>,
}

/// The hosts TARGET names, each with its resources (its roles in order), all checked.
fn load(config: &Path, target: &str) -> Result<Vec<(Host, Vec<Resource>)>, Exit> {
    let text =
        std::fs::read_to_string(config).map_err(|e| Exit::new(2, format!("cannot read {}: {e}", config.display())))?;
    // Only [[hosts]] is read here; the server checks the rest of the file.
    let file: HostsFile = toml::from_str(&text).map_err(|e| Exit::new(2, format!("{}: {e}", config.display())))?;
    if file.hosts.is_empty() {
        return Err(Exit::new(2, format!("{}: no [[hosts]]", config.display())));
    }
    let base = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let chosen: Vec<&Host> = file
        .hosts
        .iter()
        .filter(|h| target == "all" || h.name == target || h.roles.iter().any(|r| r == target))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = file.hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(Exit::new(
            2,
            format!("`{target}` is no host or role of {} (hosts: {})", config.display(), names.join(", ")),
        ));
    }
    let mut out = Vec::new();
    for h in chosen {
        if h.roles.is_empty() {
            return Err(Exit::new(2, format!("{}: host `{}` has no roles", config.display(), h.name)));
        }
        let mut resources = Vec::new();
        for role in &h.roles {
            let shown = format!("roles/{role}.toml");
            let text = std::fs::read_to_string(base.join(&shown))
                .map_err(|e| Exit::new(2, format!("{shown} (role of host `{}`): {e}", h.name)))?;
            let parsed = crew_infra::parse_role(&shown, &text).map_err(|e| Exit::new(2, e.to_string()))?;
            resources.extend(parsed.resources);
        }
        // The order is checked for every host before any is touched (cycles, unknown references).
        crew_infra::order(&resources).map_err(|e| Exit::new(2, format!("host `{}`: {e}", h.name)))?;
        out.push((h.clone(), resources));
    }
    Ok(out)
}

pub async fn run(args: &InfraArgs, apply: bool, as_json: bool, client: impl Fn() -> Result<Client>) -> Result<()> {
    let hosts = load(&args.config, &args.target)?;
    let base = args.config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut targets = Vec::new();
    for (h, resources) in &hosts {
        if h.address != "local" && !args.local {
            return Err(Exit::new(
                2,
                format!(
                    "host `{}` is at {}: pushing over SSH is not built yet; use --local to run here",
                    h.name, h.address
                ),
            )
            .into());
        }
        let root = match &args.root {
            Some(r) => r.clone(),
            None => {
                let r = PathBuf::from(&h.root);
                if r.is_absolute() {
                    r
                } else {
                    base.join(r)
                }
            }
        };
        let mut context = serde_json::to_value(&h.vars).unwrap_or_default();
        context["facts"] = json!({"hostname": h.name, "roles": h.roles, "root": root.display().to_string()});
        let target = Target { root, repo: base.clone(), context };
        // Templates and unsupported types are refused here, for every host, before any host is touched.
        engine::run(resources, &target, false).map_err(|e| Exit::new(2, format!("host `{}`: {e}", h.name)))?;
        targets.push((h, resources, target));
    }
    let mut reports = Vec::new();
    for (h, resources, target) in targets {
        let report =
            engine::run(resources, &target, apply).map_err(|e| Exit::new(2, format!("host `{}`: {e}", h.name)))?;
        if !as_json {
            print_report(&h.name, &report);
        }
        reports.push((h.name.clone(), report));
    }
    if as_json {
        let v: Vec<_> = reports.iter().map(|(h, r)| json!({"host": h, "report": r})).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"hosts": v}))?);
    }
    if apply {
        record(&reports, client).await;
    }
    if reports.iter().any(|(_, r)| r.summary.failed > 0) {
        return Err(Exit::new(1, "some resources failed").into());
    }
    Ok(())
}

fn print_report(host: &str, r: &Report) {
    let verb = if r.applied { "" } else { "would be " };
    println!("{host}:");
    for o in &r.resources {
        match o.status {
            Status::Unchanged if !o.refreshed => {}
            Status::Failed => println!("  ✗ {}: {}", o.resource, o.error.as_deref().unwrap_or("failed")),
            Status::Skipped => println!("  - {} {}", o.resource, o.error.as_deref().unwrap_or("skipped")),
            _ => {
                let mut what = o.changes.join(", ");
                if o.refreshed {
                    what = if what.is_empty() { "refreshed".into() } else { format!("{what}, refreshed") };
                }
                println!("  ~ {} {verb}{what}", o.resource);
                if let Some(d) = &o.diff {
                    for l in d.lines() {
                        println!("      {l}");
                    }
                }
            }
        }
    }
    let s = &r.summary;
    println!(
        "  {} changed, {} unchanged, {} failed, {} skipped, {} refreshed",
        s.changed, s.unchanged, s.failed, s.skipped, s.refreshed
    );
}

/// Each host's apply as an `infra.applied` event, when a server answers (the machines changed either way).
async fn record(reports: &[(String, Report)], client: impl Fn() -> Result<Client>) {
    let Ok(client) = client() else {
        eprintln!("crew: no crew server to record this apply on (set CREW_SERVER and CREW_TOKEN)");
        return;
    };
    for (host, r) in reports {
        let s = &r.summary;
        let changed: Vec<&str> =
            r.resources.iter().filter(|o| o.status == Status::Changed).map(|o| o.resource.as_str()).take(50).collect();
        let body = json!({
            "kind": "infra.applied",
            "subject": format!("host:{host}"),
            "summary": format!("infra applied on {host}: {} changed, {} failed, {} refreshed", s.changed, s.failed, s.refreshed),
            "data": {"summary": s, "changed": changed},
        });
        if let Err(e) = client.json(Method::POST, "/api/v1/events", Some(&body)).await {
            eprintln!("crew: the apply on {host} was not recorded on the timeline: {e}");
        }
    }
}
