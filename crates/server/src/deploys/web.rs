//! The Deploys pages: per environment the live release, the lock and the pending commits, with Deploy,
//! Rollback and Lock buttons for members; the deploy log; one deploy's page with its output streaming live.

use super::{log_line, Deploys};
use crate::web::{layout, Form, WebError, WebUser};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crew_core::time::human;
use crew_core::Role;
use crew_deploy::git;
use maud::html;

pub async fn index(user: WebUser, State(deploys): State<Deploys>) -> Response {
    render_index(&user, &deploys, StatusCode::OK, None).await
}

async fn render_index(user: &WebUser, deploys: &Deploys, status: StatusCode, error: Option<String>) -> Response {
    match try_index(user, deploys, status, error).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn try_index(
    user: &WebUser,
    deploys: &Deploys,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, WebError> {
    let Some(cfg) = deploys.configured() else {
        let body = html! { h1 { "Deploys" } p { "This server's crew.toml has no " code { "[app]" } " and " code { "[build]" } ": nothing to deploy." } };
        return Ok(layout("Deploys", Some(user), "/deploys", body).into_response());
    };
    let member = user.role.allows(Role::Member);
    let mut cards = Vec::new();
    for env in deploys.environments().await? {
        let (name, live, pending, env_locks) = (&env.name, &env.live, &env.pending, &env.locks);
        let oncall = deploys.oncall_warnings(name).await;
        cards.push(html! {
            section.env data-environment=(name) {
                h2 { (name) }
                @match live {
                    Some(d) => p.live { "Live: " code { (git::short(&d.revision)) } " by " (d.actor) " at " (human(d.started_at)) " UTC " a href={ "/deploys/" (d.id) } { "#" (d.id) } },
                    None => p.live { "No live release yet." },
                }
                @for l in env_locks {
                    p.lock { "🔒 " @if Deploys::is_deploying(l) { "Deploying: " } @else { "Locked: " } (crew_store::deploys::describe(l)) }
                }
                @for w in &oncall { p.warning.oncall { "⚠ " (w) } }
                p.pending { (pending.len()) " commit(s) pending" }
                @if !pending.is_empty() {
                    ul.commits { @for c in pending.iter().take(10) { li { code { (git::short(&c.sha)) } " " (c.subject) " — " (c.author) } } }
                }
                @if member {
                    form.inline method="post" action="/deploys/start" {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input type="hidden" name="environment" value=(name);
                        input name="message" placeholder="why (optional)" aria-label="message";
                        button.deploy type="submit" { "Deploy " (name) }
                    }
                    form.inline method="post" action="/deploys/rollback" {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input type="hidden" name="environment" value=(name);
                        button.secondary type="submit" { "Rollback" }
                    }
                    @if env_locks.iter().any(|l| !Deploys::is_deploying(l)) {
                        form.inline method="post" action="/deploys/unlock" {
                            input type="hidden" name="csrf" value=(user.csrf);
                            input type="hidden" name="environment" value=(name);
                            button.secondary type="submit" { "Unlock" }
                        }
                    } @else {
                        form.inline method="post" action="/deploys/lock" {
                            input type="hidden" name="csrf" value=(user.csrf);
                            input type="hidden" name="environment" value=(name);
                            input name="reason" placeholder="reason" required aria-label="reason";
                            button.secondary type="submit" { "Lock" }
                        }
                    }
                }
            }
        });
    }
    let log = deploys.list(None, 30).await?;
    let body = html! {
        h1 { (cfg.app.name) " deploys" }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        div.envs { @for c in &cards { (c) } }
        h2 { "Deploy log" }
        ul.deploylog { @for d in &log { li { a href={ "/deploys/" (d.id) } { "#" (d.id) } " " (log_line(d)) } } }
    };
    Ok((status, layout("Deploys", Some(user), "/deploys", body)).into_response())
}

/// Lines of a deploy's log on one page.
const PAGE_LINES: i64 = 1000;

/// A deploy's page: its newest [`PAGE_LINES`] lines (streaming on while it runs), or with `?offset=N` the page
/// of lines from number N, with links to the pages before and after.
pub async fn show(
    user: WebUser,
    State(deploys): State<Deploys>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, WebError> {
    let Ok(id) = id.parse::<i64>() else { return Err(WebError::NotFound) };
    let asked = match q.as_deref() {
        None | Some("") => None,
        q => Some(super::api::log_offset(q)?),
    };
    let d = deploys.get(id).await?;
    let (first, next) = deploys.output_span(id).await?;
    let from = match asked {
        Some(o) => o.max(first),
        None => (next - PAGE_LINES).max(first),
    };
    let lines = deploys.output(id, from, PAGE_LINES).await?;
    let after = lines.last().map_or(from, |(n, _)| n + 1);
    // Only the page that reaches the end follows the log live.
    let tail = after >= next;
    let earlier = (from > first).then(|| (from - PAGE_LINES).max(first));
    let hosts = d.hosts.as_array().cloned().unwrap_or_default();
    let watch = if d.action == crew_core::DeployAction::Deploy { deploys.watch(&d.environment) } else { None };
    let verdicts = deploys.verdicts(&d).await?;
    let held =
        d.status == crew_core::DeployStatus::Running && verdicts.last().is_some_and(|e| e.data["action"] == "hold");
    let body = html! {
        h1 { "Deploy #" (d.id) }
        p.summary { (log_line(&d)) }
        p { "Status: " strong #deploy-status { (d.status) } }
        @if !hosts.is_empty() {
            table.hosts {
                thead { tr { th { "Host" } th { "State" } th { "Before" } th { "Error" } } }
                tbody { @for h in &hosts { tr {
                    td { (h["host"].as_str().unwrap_or("")) } td { (h["state"].as_str().unwrap_or("")) }
                    td { (h["previous"].as_str().unwrap_or("")) } td { (h["error"].as_str().unwrap_or("")) }
                } } }
            }
        }
        @if let Some((w, unseen)) = &watch {
            section.watch {
                h2 { "Watched by the judge" }
                p { "Every " (w.interval) " for " (w.window) "; on a failing verdict: " strong { (w.on_fail.as_str()) }
                    @if w.dry_run { " (dry run: records, never acts)" } }
                ul { @for s in &w.series {
                    li { code { (s.label()) } " — bad when it " (s.direction.as_str()) "s" @if s.critical { " (critical)" } }
                } }
                @for u in unseen { p.warning { "crew has never received " code { (u) } ": no data, so the judge holds" } }
            }
        }
        @for v in &verdicts {
            section.verdict {
                h3 { "Verdict: " (v.data["verdict"].as_str().unwrap_or("")) " — " (v.data["action"].as_str().unwrap_or("").replace('_', " ")) }
                p { (v.data["why"].as_str().unwrap_or("")) }
                @if let Some(ms) = v.data["metrics"].as_array().filter(|m| !m.is_empty()) {
                    table.verdict {
                        thead { tr { th { "Series" } th { "Class" } th { "Baseline" } th { "Canary" } th { "Effect" } th { "p" } th { "Why" } } }
                        tbody { @for m in ms { tr {
                            td { (m["name"].as_str().unwrap_or("")) }
                            td { (m["classification"].as_str().unwrap_or("")) }
                            td { (side(&m["baseline"])) }
                            td { (side(&m["canary"])) }
                            td { (m["effect"].as_f64().map(|e| format!("{e:.3}×")).unwrap_or_default()) }
                            td { (m["test"]["p_value"].as_f64().map(|p| crew_judge::judge::figure(p, 3, 6, 2)).unwrap_or_default()) }
                            td { (m["why"].as_str().unwrap_or("")) }
                        } } }
                    }
                }
            }
        }
        @if held && user.role.allows(crew_core::Role::Member) {
            form.decide method="post" action="/deploys/decide" {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="hidden" name="deploy" value=(d.id);
                button name="decision" value="proceed" { "Go on: switch the rest" }
                " "
                button name="decision" value="switch_back" { "Switch back" }
            }
        }
        @if let Some(e) = earlier {
            p.pages { a href={ "/deploys/" (d.id) "?offset=" (e) } { "← Earlier lines" } " (lines " (from) " to " (after) " of this log)" }
        }
        @if tail {
            pre #deploy-log data-log={ "/api/v1/deploys/" (d.id) "/log" } data-offset=(after) data-status=(d.status) {
                @for (_, l) in &lines { (l) "\n" }
            }
        } @else {
            pre #deploy-log-page {
                @for (_, l) in &lines { (l) "\n" }
            }
            p.pages { a href={ "/deploys/" (d.id) "?offset=" (after) } { "Later lines →" } " " a href={ "/deploys/" (d.id) } { "the newest" } }
        }
        p { a href="/deploys" { "← All deploys" } }
        script src="/static/deploy.js" {}
    };
    Ok(layout(&format!("Deploy #{id}"), Some(&user), "/deploys", body).into_response())
}

/// One side of a metric's verdict: `n=60 median 82.1 (errors 3/6000)`.
fn side(s: &serde_json::Value) -> String {
    let n = s["count"].as_u64().unwrap_or(0);
    match (s["median"].as_f64(), s["events"].as_u64()) {
        (_, Some(ev)) => format!("{ev}/{n}"),
        (Some(m), None) => format!("n={n}, median {}", crew_metrics::query::short(m)),
        _ => format!("n={n}"),
    }
}

/// What a form's action answers: to the deploy's page, or the Deploys page again with the refusal.
async fn answer<T>(
    deploys: &Deploys,
    f: &Form,
    result: Result<T, crate::error::ApiError>,
    to: impl FnOnce(T) -> String,
) -> Response {
    match result {
        Ok(x) => Redirect::to(&to(x)).into_response(),
        Err(e) => render_index(&f.user, deploys, e.status(), Some(e.to_string())).await,
    }
}

pub async fn start(State(deploys): State<Deploys>, f: Form) -> Response {
    let r = deploys.start(f.get("environment"), None, f.get("message"), f.user.actor()).await;
    answer(&deploys, &f, r, |d| format!("/deploys/{}", d.id)).await
}

pub async fn rollback(State(deploys): State<Deploys>, f: Form) -> Response {
    let r = deploys.rollback(f.get("environment"), None, f.user.actor()).await;
    answer(&deploys, &f, r, |d| format!("/deploys/{}", d.id)).await
}

pub async fn lock(State(deploys): State<Deploys>, f: Form) -> Response {
    let r = deploys.lock(f.get("environment"), f.get("reason"), f.user.actor(), None).await;
    answer(&deploys, &f, r, |_| "/deploys".into()).await
}

pub async fn unlock(State(deploys): State<Deploys>, f: Form) -> Response {
    let admin = f.user.role.allows(Role::Admin);
    let r = deploys.unlock(f.get("environment"), f.user.actor(), admin, None).await;
    answer(&deploys, &f, r, |_| "/deploys".into()).await
}

pub async fn decide(State(deploys): State<Deploys>, f: Form) -> Response {
    let id = f.get("deploy").parse::<i64>().unwrap_or(0);
    let r = match f.get("decision").parse::<super::Decision>() {
        Ok(d) => deploys.decide(id, d, "", f.user.actor()).await,
        Err(e) => Err(e),
    };
    answer(&deploys, &f, r, move |_| format!("/deploys/{id}")).await
}
