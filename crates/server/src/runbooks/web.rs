//! The Runbooks pages: the list (each runbook with the sections it lacks) and one runbook rendered in the site's
//! layout (its HTML comes from `markdown::render`, which lets no markup of the file through).

use super::Runbooks;
use crate::error::ApiError;
use crate::web::{layout, WebError, WebUser};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, PreEscaped};

pub async fn index(user: WebUser, State(runbooks): State<Runbooks>) -> Result<Response, WebError> {
    let Some(src) = runbooks.source().cloned() else {
        let body = html! {
            h1 { "Runbooks" }
            p { "This server's crew.toml has no " code { "[app]" } " repository. Runbooks are Markdown files under "
                code { "runbooks/" } " in it, with the sections Meaning, Impact, Diagnosis and Mitigation." }
        };
        return Ok(layout("Runbooks", Some(&user), "/runbooks", body).into_response());
    };
    let list = runbooks.list().await?;
    let body = html! {
        h1 { "Runbooks" }
        p.muted { (list.len()) " runbook(s) in " code { (src.repo) } " on " code { (src.branch) } "." }
        @if list.is_empty() {
            p.empty { "No runbooks yet: commit Markdown files under " code { "runbooks/" } " with the sections Meaning, Impact, Diagnosis and Mitigation." }
        } @else {
            table.runbooks {
                thead { tr { th { "Runbook" } th { "File" } th { "Sections" } } }
                tbody {
                    @for r in &list {
                        tr data-runbook=(r.path) {
                            td { a href=(r.url) { (r.title) } }
                            td { code { (r.path) } }
                            td {
                                @if let Some(e) = &r.error { span.warning { (e) } }
                                @else if r.missing_sections.is_empty() { span.badge.ok { "complete" } }
                                @else { span.warning { "no " (r.missing_sections.join(", no ")) } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Runbooks", Some(&user), "/runbooks", body).into_response())
}

pub async fn show(
    user: WebUser,
    State(runbooks): State<Runbooks>,
    Path(path): Path<String>,
) -> Result<Response, WebError> {
    let rb = match runbooks.get(&path).await {
        Ok(rb) => rb,
        // The page names what was asked for, as the API does.
        Err(ApiError::NotFound(why)) => {
            let body = html! { h1 { "No such runbook" } p.error role="alert" { (why) } p { a href="/runbooks" { "All runbooks" } } };
            return Ok(
                (StatusCode::NOT_FOUND, layout("No such runbook", Some(&user), "/runbooks", body)).into_response()
            );
        }
        Err(e) => return Err(e.into()),
    };
    let body = html! {
        p.muted { a href="/runbooks" { "Runbooks" } " / " code { (rb.path) } }
        @if !rb.missing_sections.is_empty() {
            p.warning role="note" { "This runbook has no " (rb.missing_sections.join(", no ")) " section." }
        }
        article.runbook { (PreEscaped(&rb.html)) }
    };
    Ok(layout(&rb.title, Some(&user), "/runbooks", body).into_response())
}
