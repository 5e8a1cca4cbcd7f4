//! The Drills page: the drills in the repository, a Run button for members, and every run with whether the
//! hypothesis held and how fast the practice page was acknowledged, so a team sees whether it gets faster.

use super::Drills;
use crate::web::{layout, Form, WebError, WebUser};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use crew_core::time::human;
use crew_core::Role;
use maud::html;

pub async fn index(user: WebUser, State(drills): State<Drills>) -> Result<Response, WebError> {
    let files = drills.list().await.unwrap_or_default();
    let runs = drills.runs(100).await?;
    let member = user.role.allows(Role::Member);
    let body = html! {
        h1 { "Fire drills" }
        @if files.is_empty() { p { "No " code { "drills/*.toml" } " in the repository." } }
        ul.drills {
            @for d in &files {
                li data-drill=(d.name) {
                    strong { (d.name) } " " (d.title.as_deref().unwrap_or(""))
                    @if let Some(e) = &d.error { " " span.error { (e) } }
                    @if member && d.error.is_none() {
                        form.inline method="post" action="/drills/run" {
                            input type="hidden" name="csrf" value=(user.csrf);
                            input type="hidden" name="drill" value=(d.name);
                            button type="submit" { "Run" }
                        }
                    }
                }
            }
        }
        h2 { "Runs" }
        table.runs {
            thead { tr { th { "when" } th { "drill" } th { "hypothesis" } th { "time to acknowledge" } } }
            tbody {
                @for r in &runs {
                    tr {
                        td { (human(r.at)) }
                        td { (r.data["drill"].as_str().unwrap_or("")) }
                        td { (if r.data["deviated"] == true { "deviated" } else { "held" }) }
                        td { @for x in r.data["responders"].as_array().into_iter().flatten() {
                            (x["acked_by"].as_str().unwrap_or("nobody")) " "
                            (x["tta_seconds"].as_i64().map(crate::incidents::human_secs).unwrap_or_else(|| "—".into())) " "
                        } }
                    }
                }
            }
        }
    };
    Ok(layout("Drills", Some(&user), "/drills", body).into_response())
}

pub async fn run(State(drills): State<Drills>, f: Form) -> Response {
    match drills.run(f.get("drill"), f.user.actor()).await {
        Ok(_) => Redirect::to("/drills").into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}
