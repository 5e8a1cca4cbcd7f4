//! The Deploys pages: per environment the live release, the lock and the pending commits, with Deploy,
//! Rollback and Lock buttons for members; the deploy log; one deploy's page with its output streaming live.

use super::pages::layout;
use super::{field, form, WebUser};
use crate::deploys;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crew_core::time::human;
use crew_core::{Actor, NewEvent, Role, Via};
use crew_deploy::git;
use maud::html;

fn actor(u: &WebUser) -> Actor {
    Actor::new(u.name.clone(), Via::Web)
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "deploys page failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "the store is unavailable; the server log has the cause").into_response()
}

pub async fn index(user: WebUser, State(st): State<AppState>) -> Response {
    render_index(&user, &st, StatusCode::OK, None).await
}

async fn render_index(user: &WebUser, st: &AppState, status: StatusCode, error: Option<String>) -> Response {
    let Some(cfg) = st.deploy.clone() else {
        let body = html! { h1 { "Deploys" } p { "This server's crew.toml has no " code { "[app]" } " and " code { "[build]" } ": nothing to deploy." } };
        return layout("Deploys", Some(user), "/deploys", body).into_response();
    };
    let locks = match st.store.locks().await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let head = git::resolve(&cfg.repo, &cfg.app.branch, None).await.ok();
    let member = user.role.allows(Role::Member);
    let mut cards = Vec::new();
    for name in cfg.environments.keys() {
        let live = match deploys::live(&*st.store, name).await {
            Ok(l) => l,
            Err(e) => return unavailable(e),
        };
        let pending = match &head {
            Some(h) => git::commits(&cfg.repo, live.as_ref().map(|d| d.revision.as_str()), h).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let env_locks: Vec<_> = locks.iter().filter(|l| &l.environment == name).cloned().collect();
        cards.push(html! {
            section.env data-environment=(name) {
                h2 { (name) }
                @match &live {
                    Some(d) => p.live { "Live: " code { (git::short(&d.revision)) } " by " (d.actor) " at " (human(d.started_at)) " UTC " a href={ "/deploys/" (d.id) } { "#" (d.id) } },
                    None => p.live { "No live release yet." },
                }
                @for l in &env_locks {
                    p.lock { "🔒 " @if l.kind == "deploy" { "Deploying: " } @else { "Locked: " } (crew_store::deploys::describe(l)) }
                }
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
                    @if env_locks.iter().any(|l| l.kind == "manual") {
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
    let log = match st.store.deploys(None, 30).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let body = html! {
        h1 { (cfg.app.name) " deploys" }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        div.envs { @for c in &cards { (c) } }
        h2 { "Deploy log" }
        ul.deploylog { @for d in &log { li { a href={ "/deploys/" (d.id) } { "#" (d.id) } " " (deploys::log_line(d)) } } }
    };
    (status, layout("Deploys", Some(user), "/deploys", body)).into_response()
}

pub async fn show(user: WebUser, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else { return super::pages::not_found().await };
    let d = match st.store.deploy(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return super::pages::not_found().await,
        Err(e) => return unavailable(e),
    };
    let lines = match st.store.deploy_log(id, 0, 100_000).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let hosts = d.hosts.as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Deploy #" (d.id) }
        p.summary { (deploys::log_line(&d)) }
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
        pre #deploy-log data-log={ "/api/v1/deploys/" (d.id) "/log" } data-offset=(lines.len()) data-status=(d.status) {
            @for l in &lines { (l) "\n" }
        }
        p { a href="/deploys" { "← All deploys" } }
        script src="/static/deploy.js" {}
    };
    layout(&format!("Deploy #{id}"), Some(&user), "/deploys", body).into_response()
}

/// Checks a member's form post; returns the environment field.
fn checked(user: &WebUser, body: &Bytes) -> Result<(Vec<(String, String)>, String), Response> {
    let f = form(body);
    if field(&f, "csrf") != Some(user.csrf.as_str()) {
        return Err((StatusCode::FORBIDDEN, "this form is stale or from another site; reload the page").into_response());
    }
    if !user.role.allows(Role::Member) {
        return Err((StatusCode::FORBIDDEN, format!("`{}` has role {}; deploys need member", user.name, user.role))
            .into_response());
    }
    let env = field(&f, "environment").unwrap_or("").to_string();
    Ok((f, env))
}

pub async fn start(user: WebUser, State(st): State<AppState>, body: Bytes) -> Response {
    let (f, env) = match checked(&user, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let message: String = field(&f, "message").unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect();
    match deploys::start(&st, &env, None, &message, actor(&user)).await {
        Ok(d) => Redirect::to(&format!("/deploys/{}", d.id)).into_response(),
        Err(e) => render_index(&user, &st, e.status(), Some(e.to_string())).await,
    }
}

pub async fn rollback(user: WebUser, State(st): State<AppState>, body: Bytes) -> Response {
    let (_, env) = match checked(&user, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match deploys::rollback(&st, &env, None, actor(&user)).await {
        Ok(d) => Redirect::to(&format!("/deploys/{}", d.id)).into_response(),
        Err(e) => render_index(&user, &st, e.status(), Some(e.to_string())).await,
    }
}

pub async fn lock(user: WebUser, State(st): State<AppState>, body: Bytes) -> Response {
    let (f, env) = match checked(&user, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let reason: String = field(&f, "reason").unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect();
    let subject = st.deploy.as_ref().map(|c| format!("{}/{env}", c.app.name)).unwrap_or_default();
    let event = NewEvent::new(actor(&user), "lock.taken", &subject, format!("{} locked {env}: {reason}", user.name))
        .with_data(serde_json::json!({"environment": env, "reason": reason}));
    let known = st.deploy.as_ref().is_some_and(|c| c.environments.contains_key(&env));
    let result = if !known || reason.trim().is_empty() {
        Err(format!("lock {env}: a known environment and a reason are needed"))
    } else {
        st.store.take_lock(&env, &user.name, &reason, event).await.map(|_| ()).map_err(|e| e.to_string())
    };
    match result {
        Ok(()) => Redirect::to("/deploys").into_response(),
        Err(e) => render_index(&user, &st, StatusCode::CONFLICT, Some(e)).await,
    }
}

pub async fn unlock(user: WebUser, State(st): State<AppState>, body: Bytes) -> Response {
    let (_, env) = match checked(&user, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let subject = st.deploy.as_ref().map(|c| format!("{}/{env}", c.app.name)).unwrap_or_default();
    let event = NewEvent::new(actor(&user), "lock.released", &subject, format!("{} unlocked {env}", user.name))
        .with_data(serde_json::json!({"environment": env}));
    match st.store.release_lock(&env, &user.name, user.role.allows(Role::Admin), event).await {
        Ok(_) => Redirect::to("/deploys").into_response(),
        Err(e) => render_index(&user, &st, StatusCode::CONFLICT, Some(e.to_string())).await,
    }
}
