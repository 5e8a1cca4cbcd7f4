//! The Infrastructure page: crew.toml's hosts with their roles, each host's last apply with what it changed
//! (diffs folded), drift found since, and the roles with what they declare.

use super::Infra;
use crate::web::{layout, WebError, WebUser};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use crew_core::time::human;
use crew_core::Event;
use maud::{html, Markup};
use std::collections::BTreeMap;

pub async fn index(user: WebUser, State(infra): State<Infra>) -> Result<Response, WebError> {
    let st = &infra.platform;
    let hosts = &st.settings.file.hosts;
    if hosts.is_empty() {
        let body = html! {
            h1 { "Infrastructure" }
            p { "This server's crew.toml has no " code { "[[hosts]]" } ". Map hosts to roles there and run " code { "crew infra plan all" } "." }
        };
        return Ok(layout("Infrastructure", Some(&user), "/infra", body).into_response());
    }
    let states = super::states(&infra).await?;
    let schedule = st.settings.file.infra.as_ref().and_then(|s| s.check.clone());
    let roles = roles(st, hosts);
    let body = html! {
        h1 { "Infrastructure" }
        p.schedule {
            (hosts.len()) " host(s), " (roles.len()) " role(s). "
            @match &schedule {
                Some(every) => { "Drift is checked every " (every) "." }
                None => { "No drift schedule: set " code { "[infra] check = \"1h\"" } " or run " code { "crew infra check all" } "." }
            }
        }
        table.hosts {
            thead { tr { th { "Host" } th { "Address" } th { "Roles" } th { "Last apply" } th { "State" } } }
            tbody {
                @for h in hosts {
                    @let s = states.get(&h.name);
                    tr data-host=(h.name) {
                        td { a href={ "#host-" (h.name) } { (h.name) } }
                        td { code { (h.address) } }
                        td { (h.roles.join(", ")) }
                        td.applied {
                            @match s.and_then(|s| s.applied.as_ref()) {
                                Some(e) => { (human(e.at)) " UTC by " (e.actor.name) ": " (changed_count(e)) }
                                None => { "never applied" }
                            }
                        }
                        td.state { (state(s)) }
                    }
                }
            }
        }
        @for h in hosts {
            @let s = states.get(&h.name);
            section.host id={ "host-" (h.name) } data-host=(h.name) {
                h2 { (h.name) }
                @if let Some(e) = s.and_then(|s| s.drift.as_ref()) {
                    p.drift role="alert" { "⚠ " (e.summary) " (found " (human(e.at)) " UTC)" }
                    (outcomes(e))
                }
                @if let Some(e) = s.and_then(|s| s.unreachable.as_ref()) {
                    p.unreachable role="alert" { (e.summary) " (" (human(e.at)) " UTC)" }
                }
                @match s.and_then(|s| s.applied.as_ref()) {
                    Some(e) => {
                        p.lastrun { "Last apply " (human(e.at)) " UTC by " (e.actor.name) " via " (e.actor.via.as_str()) ": " (e.summary) }
                        (outcomes(e))
                    }
                    None => p { "Not applied yet: " code { "crew infra apply " (h.name) } },
                }
            }
        }
        h2 { "Roles" }
        table.roles {
            thead { tr { th { "Role" } th { "Resources" } th { "Hosts" } } }
            tbody {
                @for (name, (what, on)) in &roles {
                    tr data-role=(name) {
                        td { code { "roles/" (name) ".toml" } }
                        td { (what) }
                        td { (on.join(", ")) }
                    }
                }
            }
        }
    };
    Ok(layout("Infrastructure", Some(&user), "/infra", body).into_response())
}

fn changed_count(e: &Event) -> String {
    let s = &e.data["summary"];
    format!(
        "{} changed, {} failed, {} refreshed",
        s["changed"].as_u64().unwrap_or(0),
        s["failed"].as_u64().unwrap_or(0),
        s["refreshed"].as_u64().unwrap_or(0)
    )
}

fn state(s: Option<&super::HostState>) -> Markup {
    match s {
        Some(s) if s.drift.is_some() => html! { span.badge.drift { "drifted" } },
        Some(s) if s.unreachable.is_some() => html! { span.badge.unreachable { "unreachable" } },
        Some(s) if s.applied.is_some() => html! { span.badge.ok { "as applied" } },
        _ => html! { span.badge { "unknown" } },
    }
}

/// A stored report's outcomes (`data.report.resources`): what changed, failed or was skipped, diffs folded.
fn outcomes(e: &Event) -> Markup {
    let list = e.data["report"]["resources"].as_array().cloned().unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    html! {
        @if !list.is_empty() {
            ul.outcomes {
                @for o in &list {
                    li class=(text(&o["status"])) {
                        code { (text(&o["resource"])) } " "
                        @let changes: Vec<String> = o["changes"].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
                        (changes.join(", "))
                        @if o["refreshed"].as_bool() == Some(true) { " (refreshed)" }
                        @if let Some(err) = o["error"].as_str() { " — " span.error { (err) } }
                        @if let Some(d) = o["diff"].as_str() {
                            details { summary { "diff" } pre.diff { (d) } }
                        }
                    }
                }
            }
        }
    }
}

/// Each role the hosts name: what it declares (by type) or why it cannot be read, and its hosts.
fn roles(st: &crate::state::Platform, hosts: &[crew_infra::Host]) -> BTreeMap<String, (String, Vec<String>)> {
    let base = st
        .settings
        .config_path
        .as_deref()
        .and_then(std::path::Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let mut out: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for h in hosts {
        for r in &h.roles {
            out.entry(r.clone()).or_insert_with(|| (describe(&base, r), vec![])).1.push(h.name.clone());
        }
    }
    out
}

fn describe(base: &std::path::Path, role: &str) -> String {
    let shown = format!("roles/{role}.toml");
    let text = match std::fs::read_to_string(base.join(&shown)) {
        Ok(t) => t,
        Err(e) => return format!("cannot read {shown}: {e}"),
    };
    match crew_infra::parse_role(&shown, &text) {
        Ok(r) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for res in &r.resources {
                *counts.entry(res.kind.as_str()).or_default() += 1;
            }
            counts.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
        }
        Err(e) => e.to_string(),
    }
}
