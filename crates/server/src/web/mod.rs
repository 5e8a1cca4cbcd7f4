//! The web UI: server-rendered pages embedded in the binary (no front-end build), signed in with a token.
//!
//! Sessions are a random id in an HttpOnly, SameSite=Strict cookie; only its hash is stored. Every form that
//! changes something carries the session's CSRF secret, and sign-in checks the Origin header, so another site
//! can neither act as a signed-in user nor sign a browser in as someone else. Pages are served with a strict
//! Content-Security-Policy: scripts and styles only from crew itself, never inline.

mod deploys;
mod flags;
pub mod graphs;
mod infra;
pub(crate) mod pages;

use crate::auth::{cookie, hash_secret, random_id, SESSION_COOKIE};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use crew_core::{Actor, NewEvent, Role, Via};
use tower_http::set_header::SetResponseHeaderLayer;

/// How long a browser session lasts.
const SESSION_DAYS: i64 = 7;

/// The pages in the navigation, in order. Each area adds its page here when it lands.
pub const NAV: &[(&str, &str)] = &[
    ("Timeline", "/timeline"),
    ("Deploys", "/deploys"),
    ("Flags", "/flags"),
    ("Metrics", "/graphs"),
    ("Infra", "/infra"),
    ("Status", "/status"),
];

pub fn router() -> Router<AppState> {
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    Router::new()
        .route("/", get(|| async { Redirect::to("/timeline") }))
        .route("/signin", get(pages::signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/timeline", get(pages::timeline))
        .route("/status", get(pages::status))
        .route("/flags", get(flags::index))
        .route("/flags/{key}", get(flags::show))
        .route("/flags/{key}/knob", post(flags::knob))
        .route("/infra", get(infra::index))
        .route("/graphs", get(graphs::index))
        .route(
            "/static/graphs.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../../assets/graphs.js"))),
        )
        .route("/deploys", get(deploys::index))
        .route("/deploys/{id}", get(deploys::show))
        .route("/deploys/start", post(deploys::start))
        .route("/deploys/rollback", post(deploys::rollback))
        .route("/deploys/lock", post(deploys::lock))
        .route("/deploys/unlock", post(deploys::unlock))
        .route(
            "/static/deploy.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../../assets/deploy.js"))),
        )
        .route("/static/crew.css", get(|| asset("text/css; charset=utf-8", include_str!("../../assets/crew.css"))))
        .route(
            "/static/timeline.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../../assets/timeline.js"))),
        )
        .fallback(pages::not_found)
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp)))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The signed-in person of a page request; a page without one redirects to the sign-in page.
pub struct WebUser {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    /// The session id's hash, to end it.
    session: String,
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let to_signin = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/timeline");
            let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Redirect::to(&format!("/signin?next={next}")).into_response()
        };
        let Some(id) = cookie(parts, SESSION_COOKIE) else { return Err(to_signin()) };
        let hash = hash_secret(id);
        match st.store.session(&hash).await {
            Ok(Some(s)) => Ok(WebUser { name: s.token.name, role: s.token.role, csrf: s.csrf, session: hash }),
            Ok(None) => Err(to_signin()),
            Err(e) => {
                tracing::error!(error = %e, "reading a session failed");
                Err((StatusCode::INTERNAL_SERVER_ERROR, "the store is unavailable; the server log has the cause")
                    .into_response())
            }
        }
    }
}

pub(crate) fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(crate) fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Only paths on this site, so sign-in cannot be used to send someone elsewhere.
/// Visible ASCII only: browsers drop tabs and newlines from URLs, so `/\t/evil.example` would become
/// `//evil.example`, another site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
        {
            n.to_string()
        }
        _ => "/timeline".to_string(),
    }
}

/// A form post from another site: its Origin is not this server's Host.
fn cross_site(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some("null"), _) => true,
        (Some(o), Some(h)) => o.split_once("://").map(|(_, rest)| rest) != Some(h),
        _ => false,
    }
}

async fn signin(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let next = safe_next(field(&f, "next"));
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "sign-in from another site is refused").into_response();
    }
    let secret = field(&f, "token").unwrap_or("").trim();
    let token = match st.store.token_by_hash(&hash_secret(secret)).await {
        Ok(Some(t)) if !secret.is_empty() => t,
        Ok(_) => {
            return pages::signin_form(
                StatusCode::UNAUTHORIZED,
                Some("That token is not recognised: it was revoked or mistyped."),
                &next,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "the store is unavailable").into_response();
        }
    };
    if token.role == Role::Evaluate {
        return pages::signin_form(
            StatusCode::FORBIDDEN,
            Some("That is an application's evaluation key: people sign in with their own token."),
            &next,
        );
    }
    let id = random_id();
    let expires = chrono::Utc::now() + chrono::Duration::days(SESSION_DAYS);
    let event = NewEvent::new(
        Actor::new(token.name.clone(), Via::Web),
        "session.started",
        &format!("token:{}", token.name),
        format!("{} signed in to the web UI", token.name),
    );
    if let Err(e) = st.store.create_session(&hash_secret(&id), &token.name, &random_id(), expires, event).await {
        tracing::error!(error = %e, "creating a session failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, "the store is unavailable").into_response();
    }
    let cookie = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_DAYS * 86400);
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

async fn signout(State(st): State<AppState>, user: WebUser, body: Bytes) -> Response {
    let f = form(&body);
    if field(&f, "csrf") != Some(user.csrf.as_str()) {
        return (StatusCode::FORBIDDEN, "this form is stale or from another site; reload the page").into_response();
    }
    let event = NewEvent::new(
        Actor::new(user.name.clone(), Via::Web),
        "session.ended",
        &format!("token:{}", user.name),
        format!("{} signed out of the web UI", user.name),
    );
    if let Err(e) = st.store.delete_session(&user.session, event).await {
        tracing::error!(error = %e, "ending a session failed");
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_stays_on_this_site() {
        let table = [
            (Some("/timeline?kind=deploy"), "/timeline?kind=deploy"),
            (Some("//evil.example"), "/timeline"),
            (Some("/\t/evil.example"), "/timeline"),
            (Some("/\\evil.example"), "/timeline"),
            (Some("/a\r\nSet-Cookie: x"), "/timeline"),
            (Some("https://evil.example"), "/timeline"),
            (None, "/timeline"),
        ];
        for (next, want) in table {
            assert_eq!(super::safe_next(next), want, "{next:?}");
        }
    }
}
