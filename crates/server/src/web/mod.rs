//! The web UI: server-rendered pages embedded in the binary (no front-end build), signed in with a token.
//!
//! Sessions are a random id in an HttpOnly, SameSite=Strict cookie; only its hash is stored. Every form that
//! changes something carries the session's CSRF secret, and sign-in checks the Origin header, so another site
//! can neither act as a signed-in user nor sign a browser in as someone else. Pages are served with a strict
//! Content-Security-Policy: scripts and styles only from crew itself, never inline.

pub mod layout;
pub mod svg;

use crate::auth::{cookie, hash_secret, random_id, Auth, SESSION_COOKIE};
use crate::http::Route;
use crate::tokens::Tokens;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use crew_core::{Actor, Role, Via};
use tower_http::set_header::SetResponseHeaderLayer;

pub use layout::{layout, not_found, not_found_page};

/// How long a browser session lasts.
const SESSION_DAYS: i64 = 7;

/// The pages in the navigation, in order. Each area adds its page here when it lands.
pub const NAV: &[(&str, &str)] = &[
    ("Timeline", "/timeline"),
    ("Deploys", "/deploys"),
    ("Flags", "/flags"),
    ("Metrics", "/graphs"),
    ("Infra", "/infra"),
    ("On call", "/oncall"),
    ("Incidents", "/incidents"),
    ("Drills", "/drills"),
    ("Runbooks", "/runbooks"),
    ("Status", "/status"),
];

/// The platform's own pages: the front door, sign-in and sign-out, and the embedded assets.
/// The web routes' router: the pages' security headers on every answer, and the not-found page.
pub fn router(routes: Vec<Route>) -> axum::Router<crate::AppState> {
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    crate::http::router_of(routes)
        .fallback(layout::not_found)
        // Forms are a few fields: a page's post never needs more than this.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 10))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp)))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
}

pub async fn asset(content_type: &'static str, body: &'static str) -> Response {
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

impl<S: Send + Sync> FromRequestParts<S> for WebUser
where
    Auth: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_ref(st);
        let to_signin = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/timeline");
            let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Redirect::to(&format!("/signin?next={next}")).into_response()
        };
        let Some(id) = cookie(parts, SESSION_COOKIE) else { return Err(to_signin()) };
        let hash = hash_secret(id);
        match auth.store.session(&hash).await {
            // Pages are for people: an application's evaluation key never has a page (sign-in refuses it too).
            Ok(Some(s)) if matches!(s.token.role, Role::Evaluate | Role::Alert) => {
                Err(WebError::Forbidden("an evaluation key has no pages: sign in with your own token".into())
                    .into_response())
            }
            Ok(Some(s)) => Ok(WebUser { name: s.token.name, role: s.token.role, csrf: s.csrf, session: hash }),
            Ok(None) => Err(to_signin()),
            Err(e) => Err(WebError::Unavailable(e.into()).into_response()),
        }
    }
}

impl WebUser {
    /// This person as the actor of what they do on a page.
    pub fn actor(&self) -> Actor {
        Actor::new(self.name.clone(), Via::Web)
    }
}

/// A signed-in person's form post, checked once for every form: the session's CSRF secret must come back, and
/// the person's role must be at least `R::ROLE` (member for every form that changes something).
pub struct Form<R: FormRole = MemberRole> {
    pub user: WebUser,
    pub fields: Vec<(String, String)>,
    _role: std::marker::PhantomData<R>,
}

/// The least role a [`Form`] admits.
pub trait FormRole: Send + Sync + 'static {
    const ROLE: Role;
}

/// Forms that change something: member and up.
pub struct MemberRole;
impl FormRole for MemberRole {
    const ROLE: Role = Role::Member;
}

/// Forms any signed-in person may send (sign-out).
pub struct AnyRole;
impl FormRole for AnyRole {
    const ROLE: Role = Role::Evaluate;
}

impl<R: FormRole> Form<R> {
    /// A field's value ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        field(&self.fields, name).unwrap_or("")
    }
}

impl<S: Send + Sync, R: FormRole> FromRequest<S> for Form<R>
where
    Auth: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(req: Request, st: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let user = WebUser::from_request_parts(&mut parts, st).await?;
        let body =
            Bytes::from_request(Request::from_parts(parts, body), st).await.map_err(IntoResponse::into_response)?;
        let fields = form(&body);
        if !crate::auth::same_secret(field(&fields, "csrf"), &user.csrf) {
            return Err(
                WebError::Forbidden("this form is stale or from another site; reload the page".into()).into_response()
            );
        }
        if !user.role.allows(R::ROLE) {
            return Err(WebError::Forbidden(format!("`{}` has role {}; this needs {}", user.name, user.role, R::ROLE))
                .into_response());
        }
        Ok(Form { user, fields, _role: std::marker::PhantomData })
    }
}

/// What a page answers when it cannot show itself: a page saying why (the cause of an outage goes to the log,
/// never to the page).
#[derive(Debug)]
pub enum WebError {
    NotFound,
    Forbidden(String),
    BadRequest(String),
    /// The store (or another dependency) failed; the cause is logged.
    Unavailable(anyhow::Error),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            WebError::NotFound => return layout::not_found_page(),
            WebError::Forbidden(t) => (StatusCode::FORBIDDEN, t),
            WebError::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
            WebError::Unavailable(e) => {
                tracing::error!(error = ?e, "a page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the store is unavailable; the server log has the cause".to_string(),
                )
            }
        };
        let body =
            maud::html! { h1 { (status.canonical_reason().unwrap_or("Error")) } p.error role="alert" { (text) } };
        (status, layout("Error", None, "", body)).into_response()
    }
}

impl From<crate::error::ApiError> for WebError {
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError as A;
        match e {
            A::NotFound(_) => WebError::NotFound,
            A::Forbidden(m) | A::Unauthorized(m) => WebError::Forbidden(m),
            A::Internal(e) => WebError::Unavailable(e),
            other => WebError::BadRequest(other.to_string()),
        }
    }
}

impl From<crew_store::StoreError> for WebError {
    fn from(e: crew_store::StoreError) -> Self {
        WebError::Unavailable(e.into())
    }
}

pub fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Only paths on this site, so sign-in cannot be used to send someone elsewhere.
/// Visible ASCII only: browsers drop tabs and newlines from URLs, so `/\t/evil.example` would become
/// `//evil.example`, another site.
pub fn safe_next(next: Option<&str>) -> String {
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

pub async fn signin(
    State(tokens): State<Tokens>,
    State(platform): State<crate::state::Platform>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let next = safe_next(field(&f, "next"));
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "sign-in from another site is refused").into_response();
    }
    let secret = field(&f, "token").unwrap_or("").trim();
    let token = match tokens.by_secret(secret).await {
        Ok(Some(t)) if !secret.is_empty() => t,
        Ok(_) => {
            return layout::signin_form(
                StatusCode::UNAUTHORIZED,
                Some("That token is not recognised: it was revoked or mistyped."),
                &next,
            )
        }
        Err(e) => return WebError::from(e).into_response(),
    };
    if matches!(token.role, Role::Evaluate | Role::Alert) {
        return layout::signin_form(
            StatusCode::FORBIDDEN,
            Some("That is an application's evaluation key: people sign in with their own token."),
            &next,
        );
    }
    let id = random_id();
    let expires = chrono::Utc::now() + chrono::Duration::days(SESSION_DAYS);
    if let Err(e) = tokens.start_session(&token.name, &hash_secret(&id), &random_id(), expires).await {
        return WebError::from(e).into_response();
    }
    let secure = if platform.https() { "; Secure" } else { "" };
    let cookie =
        format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_DAYS * 86400);
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

pub async fn signout(State(tokens): State<Tokens>, f: Form<AnyRole>) -> Response {
    if let Err(e) = tokens.end_session(&f.user.name, &f.user.session).await {
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
