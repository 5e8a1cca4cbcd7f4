//! The Flags pages: every flag's state, rules in words, variants and last change; members switch and ramp
//! with a reason; a flag's page shows its history as before → after.

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
    let (f, history) = flags.show(&key, 100).await?;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let body = html! {
        h1 { "Flag " code { (key) } }
        p.description { (knobs::describe(&f.definition)) }
        pre.definition { (pretty(&f.definition)) }
        h2 { "History" }
        @for e in &history {
            section.change {
                p { strong { (human(e.at)) } " · " (e.actor.name) " · " (e.data["reason"].as_str().unwrap_or("")) }
                div.diff {
                    pre.before { (if e.data["before"].is_null() { "(absent)".to_string() } else { pretty(&e.data["before"]) }) }
                    pre.after { (if e.data["after"].is_null() { "(removed)".to_string() } else { pretty(&e.data["after"]) }) }
                }
            }
        }
        p { a href="/flags" { "← All flags" } }
    };
    Ok(layout(&format!("Flag {key}"), Some(&user), "/flags", body).into_response())
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
