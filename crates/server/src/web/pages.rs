//! The pages, rendered with maud (HTML escaped by construction).

use super::{WebUser, NAV};
use crate::api::events::parse_filter;
use crate::api::query_pairs;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crew_core::time::{human, rfc3339};
use crew_core::Event;
use maud::{html, Markup, DOCTYPE};

pub(crate) fn layout(title: &str, user: Option<&WebUser>, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(u) = user { meta name="csrf-token" content=(u.csrf); }
                title { (title) " · crew" }
                link rel="stylesheet" href="/static/crew.css";
            }
            body {
                header.top {
                    a.brand href="/timeline" { "crew" }
                    @if user.is_some() {
                        nav {
                            @for (name, href) in NAV {
                                a href=(href) class=[(*href == current).then_some("current")] { (name) }
                            }
                        }
                    }
                    @if let Some(u) = user {
                        form.who method="post" action="/signout" {
                            span { (u.name) " · " (u.role) }
                            input type="hidden" name="csrf" value=(u.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub async fn signin_page(RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let next = super::safe_next(pairs.iter().find(|(k, _)| k == "next").map(|(_, v)| v.as_str()));
    signin_form(StatusCode::OK, None, &next)
}

pub fn signin_form(status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let body = html! {
        section.signin {
            h1 { "Sign in" }
            p { "Paste your crew token. An admin makes one with " code { "crew token create NAME --role viewer" } "; the first admin token is in " code { "<data-dir>/admin.token" } "." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/signin" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button #signin type="submit" { "Sign in" }
            }
        }
    };
    (status, layout("Sign in", None, "", body)).into_response()
}

fn event_row(e: &Event) -> Markup {
    html! {
        tr data-id=(e.id) {
            td.at { time datetime=(rfc3339(e.at)) { (human(e.at)) } }
            td.actor { (e.actor.name) span.via { " via " (e.actor.via) } }
            td.kind { a href={ "/timeline?kind=" (e.kind) } { (e.kind) } }
            td.subject { @if !e.subject.is_empty() { a href={ "/timeline?subject=" (urlencode(&e.subject)) } { (e.subject) } } }
            td.summary {
                (e.summary)
                @for l in &e.links { " " a.link href=(l.href) { (l.rel) } }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn timeline(user: WebUser, State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (filter, error) = match parse_filter(&pairs, true) {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let page = match &filter {
        Some(f) => match st.store.query(f).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, "timeline query failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "the store is unavailable; the server log has the cause")
                    .into_response();
            }
        },
        None => None,
    };
    // The live stream takes the same filters, without paging; only the first page updates live.
    let mut live: Vec<(String, String)> =
        pairs.iter().filter(|(k, v)| !v.is_empty() && k != "cursor" && k != "limit").cloned().collect();
    // From the newest event this page shows: whatever happens while the page loads is replayed, not lost.
    let newest = match page.as_ref().and_then(|p| p.events.first()) {
        Some(e) => e.seq,
        // Nothing matches yet: from the newest event of all.
        None => match st.store.query(&crew_core::EventFilter::new().limit(1)).await {
            Ok(p) => p.events.first().map_or(0, |e| e.seq),
            Err(_) => 0,
        },
    };
    if newest > 0 {
        live.push(("after".into(), newest.to_string()));
    }
    let stream_url = format!(
        "/api/v1/events/stream?{}",
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&live).finish()
    );
    let first_page = get("cursor").is_empty();
    let body = html! {
        h1 { "Timeline" }
        form.filters method="get" action="/timeline" {
            input name="q" placeholder="search words" value=(get("q")) aria-label="search";
            input name="kind" placeholder="kind (deploy)" value=(get("kind")) aria-label="kind";
            input name="subject" placeholder="subject (www/production)" value=(get("subject")) aria-label="subject";
            input name="actor" placeholder="actor" value=(get("actor")) aria-label="actor";
            input name="since" placeholder="since (1h, 2026-11-26T10:00:00Z)" value=(get("since")) aria-label="since";
            button type="submit" { "Filter" }
            a href="/timeline" { "Clear" }
        }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        @if let Some(p) = &page {
            p.live-status #live-status { @if first_page { "Live: new events appear at the top." } @else { "An older page: not live." } }
            table.timeline #timeline data-stream=[first_page.then_some(stream_url.as_str())] {
                thead { tr { th { "When (UTC)" } th { "Who" } th { "Kind" } th { "Subject" } th { "What" } } }
                tbody #events {
                    @for e in &p.events { (event_row(e)) }
                }
            }
            @if p.events.is_empty() { p.empty #empty { "No events match." } }
            @if let Some(c) = p.next {
                a.older href={ "/timeline?" (older_query(&pairs, c)) } { "Older events →" }
            }
        }
        script src="/static/timeline.js" {}
    };
    layout("Timeline", Some(&user), "/timeline", body).into_response()
}

/// The query string of the next (older) page: the same filters, the next cursor.
fn older_query(pairs: &[(String, String)], next: crew_core::Cursor) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.extend_pairs(pairs.iter().filter(|(k, _)| k != "cursor"));
    s.append_pair("cursor", &next.encode());
    s.finish()
}

pub async fn status(user: WebUser, State(st): State<AppState>) -> Response {
    let counts = match st.store.counts().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "status failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "the store is unavailable").into_response();
        }
    };
    let up = st.started.elapsed().as_secs();
    let body = html! {
        h1 { "Status" }
        dl.status {
            dt { "Version" } dd { (crate::api::system::VERSION) }
            dt { "Store" } dd { (st.store.engine().as_str()) " · " code { (st.store.url()) } }
            dt { "Up since" } dd { (human(st.started_at)) " UTC (" (up / 3600) "h " (up / 60 % 60) "m)" }
            dt { "Events" } dd { (counts.events) }
            dt { "Tokens" } dd { (counts.tokens) }
        }
        (robot(&st))
    };
    layout("Status", Some(&user), "/status", body).into_response()
}

/// The robot's part of the status page: its IRC connection, rooms, and the last lines said.
fn robot(st: &AppState) -> Markup {
    let v = st.chat.json();
    let irc = &v["irc"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    html! {
        h2 { "Robot" }
        @if irc.is_null() {
            p.muted { "No robot: add " code { "[chat.irc]" } " to crew.toml." }
        } @else {
            dl.status #robot {
                dt { "IRC" }
                dd {
                    @if irc["connected"] == true {
                        "connected to " (text(&irc["server"])) " as " strong { (text(&irc["nick"])) }
                    } @else {
                        "not connected to " (text(&irc["server"]))
                        @if let Some(e) = irc["last_error"].as_str() { " (" (e) ")" }
                    }
                }
                dt { "Rooms" }
                dd { @for c in irc["channels"].as_array().into_iter().flatten() { code { (text(c)) } " " } }
                dt { "Reconnects" } dd { (irc["reconnects"]) }
                dt { "Waiting to be said" } dd { (irc["backlog"]) }
            }
            @let recent = v["recent"].as_array().cloned().unwrap_or_default();
            @if !recent.is_empty() {
                ul.recent {
                    @for m in recent.iter().rev().take(20) {
                        li { span.muted { (text(&m["at"]).get(11..19).unwrap_or("")) " " (text(&m["room"])) } " "
                             strong { (text(&m["who"])) } " " (text(&m["text"])) }
                    }
                }
            }
        }
    }
}

pub async fn not_found() -> Response {
    let body = html! { h1 { "Not found" } p { a href="/timeline" { "Back to the timeline" } } };
    (StatusCode::NOT_FOUND, layout("Not found", None, "", body)).into_response()
}
