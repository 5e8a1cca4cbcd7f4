//! The Flags pages: every flag's state, rules in words, variants and last change; members switch and ramp
//! with a reason; a flag's page shows its launch plan, its ramp (started and cancelled there too) and its
//! history as before → after.

use super::Flags;
use crate::web::{layout, Form, WebError, WebUser};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crew_core::time::human;
use crew_core::Role;
use crew_flags::knobs;
use maud::html;

pub async fn index(user: WebUser, State(flags): State<Flags>) -> Response {
    render(&user, &flags, StatusCode::OK, None)
}

fn render(user: &WebUser, flags: &Flags, status: StatusCode, error: Option<String>) -> Response {
    let c = flags.current();
    let member = user.role.allows(Role::Member);
    let body = html! {
        h1 { "Flags" }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        @if c.stored.is_empty() { p.empty { "No flags yet. " code { "crew flag KEY on -r why" } " makes one." } }
        table.flags {
            thead { tr { th { "Flag" } th { "What it does" } th { "Variants" } th { "Last change" } @if member { th { "Change (with a reason)" } } } }
            tbody {
                @for f in &c.stored {
                    tr data-flag=(f.key) {
                        td { a href={ "/flags/" (f.key) } { code { (f.key) } } }
                        td.description { (knobs::describe(&f.definition)) }
                        td { @if let Some(v) = f.definition["variants"].as_object() {
                            @for (k, val) in v { code { (k) "=" (val.to_string()) } " " }
                        } }
                        td { (f.updated_by) ", " (human(f.updated_at)) }
                        @if member {
                            td {
                                form.inline.switch method="post" action={ "/flags/" (f.key) "/knob" } {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    input name="reason" placeholder="why" required aria-label="reason";
                                    @if f.definition["state"] == "DISABLED" {
                                        button.switch name="knob" value="on" type="submit" { "Switch on" }
                                    } @else {
                                        button.switch name="knob" value="off" type="submit" { "Switch off" }
                                    }
                                }
                                form.inline.ramp method="post" action={ "/flags/" (f.key) "/knob" } {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    input type="hidden" name="knob" value="rollout";
                                    input name="percent" type="number" min="0" max="100" required placeholder="%" aria-label="percent";
                                    input name="reason" placeholder="why" required aria-label="reason";
                                    button.secondary type="submit" { "Ramp" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    (status, layout("Flags", Some(user), "/flags", body)).into_response()
}

pub async fn show(user: WebUser, State(flags): State<Flags>, Path(key): Path<String>) -> Result<Response, WebError> {
    render_show(&user, &flags, &key, StatusCode::OK, None).await
}

/// A flag's page: its definition, its launch plan, its ramp (members start and cancel one), its history.
async fn render_show(
    user: &WebUser,
    flags: &Flags,
    key: &str,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, WebError> {
    let (f, history) = flags.show(key, 100).await?;
    let plan = flags.show_plan(key).await.ok();
    let ramp = flags.ramp(key).await.ok();
    let member = user.role.allows(Role::Member);
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let body = html! {
        h1 { "Flag " code { (key) } }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        p.description { (knobs::describe(&f.definition)) }
        pre.definition { (pretty(&f.definition)) }
        h2 { "Launch plan" }
        @match &plan {
            None => p.empty { "No launch plan. " code { "crew flag " (key) " plan --file plan.toml" } " sets one." },
            Some((stored, p, warnings)) => section.plan {
                p { "Owner " strong { (p.owner) } " · contingency " strong { (p.contingency) }
                    @if let Some(r) = &p.runbook { " · runbook " a href={ "/" (r) } { (r) } } }
                @if !p.risks.is_empty() { p.risks { "Risks: " (p.risks) } }
                @if !p.watch.is_empty() {
                    p { "Watching: " @for w in &p.watch { code { (w.label()) } " (bad: " (w.direction.as_str()) ") " } }
                }
                @for w in warnings { p.warning { (w) } }
                p.meta { "set by " (stored.updated_by) ", " (human(stored.updated_at)) }
            },
        }
        h2 { "Ramp" }
        @if let Some(r) = &ramp {
            section.ramp data-status=(r.status.as_str()) {
                p { "Ramp " (r.id) ": " strong { (r.status.as_str()) } " at " strong { (r.percent()) "%" }
                    " (step " (r.step + 1) " of " (r.steps.len()) ": "
                    (r.steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → ")) ")" }
                @if let Some(last) = &r.last {
                    p.verdict { "Last verdict: " (last["verdict"].as_str().unwrap_or("")) " — " (last["why"].as_str().unwrap_or(""))
                        " → " (last["note"].as_str().unwrap_or("")) }
                }
                @if let Some(due) = r.due_at { p.meta { "judged next " (human(due)) } }
                @if member && r.status == crew_store::RampStatus::Running {
                    form.inline method="post" action={ "/flags/" (key) "/ramp/cancel" } {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input name="reason" placeholder="why" required aria-label="reason";
                        button.secondary type="submit" { "Cancel the ramp" }
                    }
                }
            }
        } @else { p.empty { "Never ramped." } }
        @if member && ramp.as_ref().is_none_or(|r| r.status != crew_store::RampStatus::Running) {
            form.ramp method="post" action={ "/flags/" (key) "/ramp" } {
                input type="hidden" name="csrf" value=(user.csrf);
                input name="steps" required placeholder="1,5,25,50,100" aria-label="steps";
                input name="every" required placeholder="10m" aria-label="every";
                input name="reason" placeholder="why" required aria-label="reason";
                button type="submit" { "Start a judged ramp" }
            }
        }
        h2 { "History" }
        @for e in &history {
            section.change {
                p { strong { (human(e.at)) } " · " (e.actor.name) " · " (e.data["reason"].as_str().unwrap_or(e.summary.as_str())) }
                @if e.data.get("before").is_some() || e.data.get("after").is_some() {
                    div.diff {
                        pre.before { (if e.data["before"].is_null() { "(absent)".to_string() } else { pretty(&e.data["before"]) }) }
                        pre.after { (if e.data["after"].is_null() { "(removed)".to_string() } else { pretty(&e.data["after"]) }) }
                    }
                }
            }
        }
        p { a href="/flags" { "← All flags" } }
    };
    Ok((status, layout(&format!("Flag {key}"), Some(user), "/flags", body)).into_response())
}

/// A judged ramp from the flag's page: the same service call as `crew flag KEY ramp` and `!flag KEY ramp`.
pub async fn ramp(State(flags): State<Flags>, Path(key): Path<String>, f: Form) -> Result<Response, WebError> {
    let steps = super::ramp::parse_steps_text(f.get("steps")).map_err(crate::error::ApiError::BadRequest);
    let result = match steps {
        Ok(steps) => flags.start_ramp(&key, &steps, f.get("every"), f.get("reason"), f.user.actor()).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/flags/{key}")).into_response()),
        Err(e) => render_show(&f.user, &flags, &key, e.status(), Some(e.to_string())).await,
    }
}

/// Cancels the flag's running ramp from its page.
pub async fn cancel_ramp(State(flags): State<Flags>, Path(key): Path<String>, f: Form) -> Result<Response, WebError> {
    match flags.cancel_ramp(&key, f.get("reason"), f.user.actor()).await {
        Ok(_) => Ok(Redirect::to(&format!("/flags/{key}")).into_response()),
        Err(e) => render_show(&f.user, &flags, &key, e.status(), Some(e.to_string())).await,
    }
}

/// A switch or a ramp from the Flags page: the same knob and the same service call as `crew flag` and `!flag`.
pub async fn knob(State(flags): State<Flags>, Path(key): Path<String>, f: Form) -> Response {
    let percent = match f.get("percent") {
        "" => None,
        p => match p.parse::<u8>() {
            Ok(p) => Some(p),
            Err(_) => {
                let e = format!("`{p}` is not a percent from 0 to 100");
                return render(&f.user, &flags, StatusCode::BAD_REQUEST, Some(e));
            }
        },
    };
    let result = match super::knob(f.get("knob"), percent, vec![], vec![], None) {
        Ok(k) => flags.turn(&key, &k, false, f.get("reason"), f.user.actor()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/flags").into_response(),
        Err(e) => render(&f.user, &flags, e.status(), Some(e.to_string())),
    }
}
