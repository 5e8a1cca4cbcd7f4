//! The Incidents pages: the list (open first, with TTA and TTR) and one incident's page (its own timeline,
//! acknowledge, resolve and note forms for members, the runbook link).

use super::{api::incident_id, human_secs, Incidents};
use crate::web::{layout, Form, WebError, WebUser};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use crew_core::time::human;
use crew_core::{IncidentStatus, Role};
use maud::html;

pub async fn index(user: WebUser, State(incidents): State<Incidents>) -> Result<Response, WebError> {
    let list = incidents.list(false, 200).await?;
    let body = html! {
        h1 { "Incidents" }
        @if list.is_empty() { p { "No incidents yet." } }
        @else {
            table.incidents {
                thead { tr { th { "#" } th { "status" } th { "severity" } th { "summary" } th { "triggered" } th { "TTA" } th { "TTR" } } }
                tbody {
                    @for i in &list {
                        tr class=(i.status.as_str()) data-incident=(i.id) {
                            td { a href=(format!("/incidents/{}", i.id)) { "#" (i.id) } }
                            td.status { (i.status.as_str()) }
                            td { (i.severity.as_str()) }
                            td { @if i.drill { strong { "DRILL " } } (i.summary) }
                            td { (human(i.triggered_at)) }
                            td { (i.acked_at.map(|a| human_secs((a - i.triggered_at).num_seconds())).unwrap_or_default()) }
                            td { (i.resolved_at.map(|r| human_secs((r - i.triggered_at).num_seconds())).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Incidents", Some(&user), "/incidents", body).into_response())
}

pub async fn show(
    user: WebUser,
    State(incidents): State<Incidents>,
    State(runbooks): State<crate::runbooks::Runbooks>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let v = incidents.show(incident_id(&id)?).await?;
    let i = &v.incident;
    // The runbook inline, when it is one of the repository's (rendered with raw HTML as text).
    let inline_runbook = match i.runbook.as_deref().filter(|r| !crate::runbooks::is_url(r)) {
        Some(r) => runbooks.get(r).await.ok(),
        None => None,
    };
    let member = user.role.allows(Role::Member);
    let body = html! {
        h1 { @if i.drill { "DRILL " } "#" (i.id) " " (i.summary) }
        p.meta {
            span.status data-status=(i.status.as_str()) { (i.status.as_str()) } " · " (i.severity.as_str())
            " · from " (i.source) " · key " code { (i.key) }
            @if let Some(e) = &i.escalation { " · escalation " (e) }
        }
        p {
            "Triggered " (human(i.triggered_at))
            @if let (Some(a), Some(by)) = (i.acked_at, &i.acked_by) { " · acknowledged by " (by) " at " (human(a)) }
            @if let Some(t) = v.tta_seconds { " (TTA " (human_secs(t)) ")" }
            @if let (Some(r), Some(by)) = (i.resolved_at, &i.resolved_by) { " · resolved by " (by) " at " (human(r)) }
            @if let Some(t) = v.ttr_seconds { " (TTR " (human_secs(t)) ")" }
        }
        @if let Some(rb) = &v.runbook_url {
            p { "Runbook: " a.runbook href=(rb) rel="noopener noreferrer" { (rb) } @if !rb.starts_with(&incidents.base_url()) { " ↗" } }
        }
        @if member && i.status != IncidentStatus::Resolved {
            div.actions {
                @if i.status == IncidentStatus::Triggered {
                    form method="post" action=(format!("/incidents/{}/ack", i.id)) {
                        input type="hidden" name="csrf" value=(user.csrf);
                        button.ack type="submit" { "Acknowledge" }
                    }
                }
                form method="post" action=(format!("/incidents/{}/resolve", i.id)) {
                    input type="hidden" name="csrf" value=(user.csrf);
                    input type="text" name="note" placeholder="what fixed it";
                    button.resolve type="submit" { "Resolve" }
                }
            }
        }
        @if member {
            form.note method="post" action=(format!("/incidents/{}/notes", i.id)) {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="text" name="text" placeholder="a note for the timeline";
                button type="submit" { "Add note" }
            }
        }
        @if i.status == IncidentStatus::Resolved { p { a.postmortem href=(format!("/incidents/{}/postmortem", i.id)) { "The postmortem" } } }
        @if let Some(rb) = &inline_runbook {
            details.runbook open {
                summary { "Runbook: " (rb.title) }
                div.markdown { (maud::PreEscaped(&rb.html)) }
            }
        }
        h2 { "Changes before it" }
        @if v.changes.is_empty() { p { "crew changed nothing in the window before it." } }
        ul.changes {
            @for c in &v.changes {
                li data-kind=(c.kind) data-event=(c.event) {
                    span.before { (super::context::before_text(c.before_seconds)) } " " (c.summary)
                    @if let Some(m) = c.detail.get("message").and_then(|m| m.as_str()).filter(|m| !m.is_empty()) { " — " em { (m) } }
                    @if let Some(u) = &c.undo {
                        @if member {
                            form.inline.undo method="post" action=(format!("/incidents/{}/undo", i.id)) {
                                input type="hidden" name="csrf" value=(user.csrf);
                                input type="hidden" name="event" value=(c.event);
                                button.undo type="submit" {
                                    @match u {
                                        super::context::Undo::Rollback { environment, to, .. } => { "Roll " (environment) " back to #" (to) }
                                        super::context::Undo::FlagRevert { key, .. } => { "Switch " (key) " back" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Timeline" }
        ol.timeline {
            @for e in &v.timeline {
                li data-kind=(e.kind) { time { (human(e.at)) } " " span.actor { (e.actor.name) } " " (e.summary) }
            }
        }
    };
    Ok(layout(&format!("#{} {}", i.id, i.summary), Some(&user), "/incidents", body).into_response())
}

fn back(id: &str, r: Result<(), crate::error::ApiError>) -> Response {
    match r {
        Ok(()) => Redirect::to(&format!("/incidents/{}", id.trim_start_matches('#'))).into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}

pub async fn ack(State(incidents): State<Incidents>, Path(id): Path<String>, f: Form) -> Response {
    let r = async { incidents.ack(incident_id(&id)?, f.user.actor()).await.map(|_| ()) }.await;
    back(&id, r)
}

pub async fn resolve(State(incidents): State<Incidents>, Path(id): Path<String>, f: Form) -> Response {
    let note = Some(f.get("note")).filter(|n| !n.trim().is_empty());
    let r = async { incidents.resolve(incident_id(&id)?, note, f.user.actor()).await.map(|_| ()) }.await;
    back(&id, r)
}

pub async fn note(State(incidents): State<Incidents>, Path(id): Path<String>, f: Form) -> Response {
    let r = async { incidents.note(incident_id(&id)?, f.get("text"), f.user.actor()).await.map(|_| ()) }.await;
    back(&id, r)
}

pub async fn undo(State(incidents): State<Incidents>, Path(id): Path<String>, f: Form) -> Response {
    let r = async { incidents.undo(incident_id(&id)?, f.get("event"), f.user.actor()).await.map(|_| ()) }.await;
    back(&id, r)
}

/// An incident's postmortem: rendered, with its action items, and for members the Markdown to edit and the
/// buttons that move it to review and publish it.
pub async fn postmortem(
    user: WebUser,
    State(incidents): State<Incidents>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let n = incident_id(&id)?;
    let pm = incidents.postmortem(n).await?;
    let p = &pm.postmortem;
    let html = crate::runbooks::markdown::render_with_graphs(&p.markdown, "runbooks/postmortem.md");
    let member = user.role.allows(Role::Member);
    let editable = member && p.state != crew_core::PostmortemState::Published;
    let body = html! {
        p.meta { a href=(format!("/incidents/{n}")) { "#" (n) } " · postmortem " span.state data-state=(p.state.as_str()) { (p.state.as_str().replace('_', " ")) }
            " · last changed by " (p.updated_by) " at " (human(p.updated_at)) }
        @if !pm.action_items.is_empty() {
            ul.action-items {
                @for a in &pm.action_items {
                    li class=(if a.done { "done" } else { "open" }) { (if a.done { "✓ " } else { "○ " }) (a.text)
                        @if let Some(o) = &a.owner { " — " (o) } @if a.check.is_some() { " (crew checks this)" } }
                }
            }
        }
        div.markdown.postmortem { (maud::PreEscaped(html)) }
        @if editable {
            form.edit method="post" action=(format!("/incidents/{n}/postmortem")) {
                input type="hidden" name="csrf" value=(user.csrf);
                textarea name="markdown" rows="30" cols="100" { (p.markdown) }
                button type="submit" name="state" value=(p.state.as_str()) { "Save" }
                @if p.state == crew_core::PostmortemState::Draft { button type="submit" name="state" value="in_review" { "Save and move to review" } }
                @if p.state == crew_core::PostmortemState::InReview {
                    button type="submit" name="state" value="draft" { "Back to draft" }
                    button.publish type="submit" name="state" value="published" { "Publish" }
                }
            }
        }
    };
    Ok(layout(&format!("Postmortem #{n}"), Some(&user), "/incidents", body).into_response())
}

pub async fn save_postmortem(State(incidents): State<Incidents>, Path(id): Path<String>, f: Form) -> Response {
    let r = async {
        let n = incident_id(&id)?;
        let state: Option<crew_core::PostmortemState> = match f.get("state") {
            "" => None,
            s => Some(s.parse().map_err(crate::error::ApiError::BadRequest)?),
        };
        let md = Some(f.get("markdown")).filter(|m| !m.is_empty());
        incidents.put_postmortem(n, md, state, f.user.actor()).await.map(|_| n)
    }
    .await;
    match r {
        Ok(n) => Redirect::to(&format!("/incidents/{n}/postmortem")).into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}

/// `GET /ack/{token}`: an emailed link shows what it will acknowledge and a button (a link fetched by a mail
/// scanner acknowledges nothing); no session needed, the signed token is the credential.
pub async fn link_page(State(incidents): State<Incidents>, Path(token): Path<String>) -> Response {
    let (inc, person) = match incidents.link(&token).await {
        Ok(x) => x,
        Err(e) => return WebError::from(e).into_response(),
    };
    let body = html! {
        h1 { "#" (inc.id) " " (inc.summary) }
        p { "Status: " span.status { (inc.status.as_str()) } }
        @if inc.status == IncidentStatus::Triggered {
            form method="post" action=(format!("/ack/{token}")) {
                button.ack type="submit" { "Acknowledge as " (person) }
            }
        } @else {
            p { "Nothing to do: it is " (inc.status.as_str()) "." }
        }
    };
    layout(&format!("Acknowledge #{}", inc.id), None, "", body).into_response()
}

/// `POST /ack/{token}`: acknowledges as the link's person.
pub async fn link_ack(State(incidents): State<Incidents>, Path(token): Path<String>) -> Response {
    match incidents.ack_by_link(&token).await {
        Ok(inc) => {
            let body = html! { h1 { "#" (inc.id) " acknowledged" } p { "Nobody else is paged. " (inc.summary) } };
            layout("Acknowledged", None, "", body).into_response()
        }
        Err(e) => WebError::from(e).into_response(),
    }
}
