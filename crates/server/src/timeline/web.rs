//! The Timeline page: filters, full-text search, paging, and new events appearing live at the top.

use super::{parse_filter, Timeline};
use crate::http::query_pairs;
use crate::web::{layout, WebError, WebUser};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use crew_core::time::{human, rfc3339};
use crew_core::Event;
use maud::{html, Markup};

fn event_row(e: &Event) -> Markup {
    html! {
        tr data-id=(e.id) {
            td.at { time datetime=(rfc3339(e.at)) { (human(e.at)) } }
            td.actor { (e.actor.name) span.via { " via " (e.actor.via) } }
            td.kind { a href={ "/timeline?kind=" (e.kind) } { (e.kind) } }
            td.subject { @if !e.subject.is_empty() { a href={ "/timeline?subject=" (urlencode(&e.subject)) } { (e.subject) } } }
            td.summary {
                (e.summary)
                @for l in &e.links {
                    " "
                    @if l.href.starts_with('/') { a.link href=(l.href) { (l.rel) } }
                    @else { a.link.external href=(l.href) rel="noopener noreferrer" title=(l.href) { (l.rel) " ↗" } }
                }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn timeline(user: WebUser, State(tl): State<Timeline>, RawQuery(q): RawQuery) -> Result<Response, WebError> {
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (filter, error) = match parse_filter(&pairs, true) {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let page = match &filter {
        Some(f) => Some(tl.query(f).await?),
        None => None,
    };
    // The live stream takes the same filters, without paging; only the first page updates live.
    let mut live: Vec<(String, String)> =
        pairs.iter().filter(|(k, v)| !v.is_empty() && k != "cursor" && k != "limit").cloned().collect();
    // From the newest event this page shows: whatever happens while the page loads is replayed, not lost.
    let newest = match page.as_ref().and_then(|p| p.events.first()) {
        Some(e) => e.seq,
        // Nothing matches yet: from the newest event of all.
        None => tl.newest_seq().await.unwrap_or(0),
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
    Ok(layout("Timeline", Some(&user), "/timeline", body).into_response())
}

/// The query string of the next (older) page: the same filters, the next cursor.
fn older_query(pairs: &[(String, String)], next: crew_core::Cursor) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.extend_pairs(pairs.iter().filter(|(k, _)| k != "cursor"));
    s.append_pair("cursor", &next.encode());
    s.finish()
}
