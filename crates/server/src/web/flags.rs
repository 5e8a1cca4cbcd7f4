//! The Flags pages: every flag's state, rules in words, variants and last change; members switch and ramp
//! with a reason; a flag's page shows its history as before → after.

use super::pages::layout;
use super::{field, form, WebUser};
use crate::flags::change;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crew_core::time::human;
use crew_core::{Actor, Role, Via};
use crew_flags::knobs::{self, Knob};
use maud::html;

pub async fn index(user: WebUser, State(st): State<AppState>) -> Response {
    render(&user, &st, StatusCode::OK, None)
}

fn render(user: &WebUser, st: &AppState, status: StatusCode, error: Option<String>) -> Response {
    let c = st.flags.current();
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

pub async fn show(user: WebUser, State(st): State<AppState>, Path(key): Path<String>) -> Response {
    let c = st.flags.current();
    let Some(f) = c.stored.iter().find(|f| f.key == key).cloned() else { return super::pages::not_found().await };
    let mut filter = crew_core::EventFilter::new().limit(100);
    filter.subject = Some(format!("flag:{key}"));
    let history = match st.store.query(&filter).await {
        Ok(p) => p.events,
        Err(e) => {
            tracing::error!(error = %e, "flag history failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "the store is unavailable").into_response();
        }
    };
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
    layout(&format!("Flag {key}"), Some(&user), "/flags", body).into_response()
}

pub async fn knob(user: WebUser, State(st): State<AppState>, Path(key): Path<String>, body: Bytes) -> Response {
    let f = form(&body);
    if field(&f, "csrf") != Some(user.csrf.as_str()) {
        return (StatusCode::FORBIDDEN, "this form is stale or from another site; reload the page").into_response();
    }
    if !user.role.allows(Role::Member) {
        return (StatusCode::FORBIDDEN, format!("`{}` has role {}; flags need member", user.name, user.role))
            .into_response();
    }
    let knob = match (field(&f, "knob"), field(&f, "percent").and_then(|p| p.parse::<u8>().ok())) {
        (Some("on"), _) => Knob::On,
        (Some("off"), _) => Knob::Off,
        (Some("rollout"), Some(p)) => Knob::Rollout(p),
        _ => {
            return render(
                &user,
                &st,
                StatusCode::BAD_REQUEST,
                Some("choose switch on/off, or a percent to ramp to".into()),
            )
        }
    };
    let reason = field(&f, "reason").unwrap_or("").to_string();
    let current = match st.store.flags().await {
        Ok(all) => all.into_iter().find(|x| x.key == key).map(|x| x.definition),
        Err(e) => return render(&user, &st, StatusCode::INTERNAL_SERVER_ERROR, Some(e.to_string())),
    };
    let next = match knobs::apply(current.as_ref(), &knob) {
        Ok(n) => n,
        Err(e) => return render(&user, &st, StatusCode::BAD_REQUEST, Some(e)),
    };
    match change(&st, &key, Some(next), &reason, Actor::new(user.name.clone(), Via::Web)).await {
        Ok(_) => Redirect::to("/flags").into_response(),
        Err(e) => render(&user, &st, e.status(), Some(e.to_string())),
    }
}
