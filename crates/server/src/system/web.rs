//! The Status page: version, store, uptime, counts, warnings, and the robot's connection with the last lines
//! said.

use super::{System, VERSION};
use crate::web::{layout, WebError, WebUser};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use crew_core::time::human;
use maud::{html, Markup};

pub async fn status(user: WebUser, State(sys): State<System>) -> Result<Response, WebError> {
    // The same status the API answers, drawn as a page.
    let v = sys.status().await?;
    let st = &sys.platform;
    let up = v["uptime_seconds"].as_u64().unwrap_or(0);
    let body = html! {
        h1 { "Status" }
        dl.status {
            dt { "Version" } dd { (VERSION) }
            dt { "Store" } dd { (v["store"].as_str().unwrap_or("")) " · " code { (v["database"].as_str().unwrap_or("")) } }
            dt { "Up since" } dd { (human(st.started_at)) " UTC (" (up / 3600) "h " (up / 60 % 60) "m)" }
            dt { "Events" } dd { (v["counts"]["events"]) }
            dt { "Tokens" } dd { (v["counts"]["tokens"]) }
        }
        @let warnings = v["warnings"].as_array().cloned().unwrap_or_default();
        @if !warnings.is_empty() {
            h2 { "Warnings" }
            ul.warnings #warnings {
                @for w in &warnings { li { (w.as_str().unwrap_or("")) } }
            }
        }
        (robot(&sys))
    };
    Ok(layout("Status", Some(&user), "/status", body).into_response())
}

/// The robot's part of the status page: its IRC connection, rooms, and the last lines said.
fn robot(sys: &System) -> Markup {
    let v = sys.chat.json();
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
                // Why the robot is or is not logged in to its account (SASL), in a sentence.
                @if let Some(sasl) = irc["sasl"].as_str() { dt { "Account" } dd #sasl { (sasl) } }
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
