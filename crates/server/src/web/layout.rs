//! The page layout every domain's pages share (rendered with maud: HTML escaped by construction), the sign-in
//! form, and the not-found page.

use super::{WebUser, NAV};
use crate::http::query_pairs;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

pub fn layout(title: &str, user: Option<&WebUser>, current: &str, body: Markup) -> Markup {
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

pub async fn not_found() -> Response {
    not_found_page()
}

pub fn not_found_page() -> Response {
    let body = html! { h1 { "Not found" } p { a href="/timeline" { "Back to the timeline" } } };
    (StatusCode::NOT_FOUND, layout("Not found", None, "", body)).into_response()
}
