//! The HTTP platform every domain's `api.rs` shares: strict JSON bodies, query pairs, bounded numbers, and
//! the route registry (each route with the least role it admits), from which the one router is built.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;
use crew_core::Role;
use serde::de::DeserializeOwned;

/// Parses a JSON body, naming the field that is wrong: `malformed JSON body at `role`: ...`.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path == "?" || path.is_empty() {
            ApiError::BadRequest(format!("malformed JSON body: {inner}"))
        } else {
            ApiError::BadRequest(format!("malformed JSON body at `{path}`: {inner}"))
        }
    })
}

/// The pairs of a query string, decoded.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect()
}

/// A whole number from a query field, within `range`; otherwise a 400 naming the field and the range.
pub fn bounded<T>(field: &str, v: &str, range: std::ops::RangeInclusive<T>) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match v.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "`{field}`: `{v}` is not a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// What most handlers answer: a JSON body, or the error envelope.
pub type Answer = crate::error::ApiResult<axum::Json<serde_json::Value>>;

/// What a handler that makes something answers: 201 (or 202) and the thing.
pub type Created<T = serde_json::Value> = crate::error::ApiResult<(axum::http::StatusCode, axum::Json<T>)>;

/// Who a route lets in, as the role table test checks it against the real router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Least {
    /// No authentication: health, the sign-in page, static assets.
    Anyone,
    /// A token (or session) of at least this role; API routes answer 401 without one, 403 below it.
    Token(Role),
    /// A web page: without a session it redirects to sign-in; below the role it answers 403.
    Page(Role),
    /// A web form post: a session, its CSRF secret, and at least this role.
    Form(Role),
}

/// One route: its method and path, the least it admits, and its handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub least: Least,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    /// A route answering `method` on `path` with handler `h`.
    pub fn on<H: Handler<T, AppState>, T: 'static>(method: Method, path: &'static str, least: Least, h: H) -> Route {
        let filter = axum::routing::MethodFilter::try_from(method.clone()).expect("a method axum routes");
        Route { method, path, least, handler: axum::routing::on(filter, h) }
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(path: &'static str, least: Least, h: H) -> Route {
        Route::on(Method::GET, path, least, h)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, least: Least, h: H) -> Route {
        Route::on(Method::POST, path, least, h)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(path: &'static str, least: Least, h: H) -> Route {
        Route::on(Method::PUT, path, least, h)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(path: &'static str, least: Least, h: H) -> Route {
        Route::on(Method::DELETE, path, least, h)
    }

    /// The same route with a layer on its handler (a body limit, say).
    pub fn map(mut self, f: impl FnOnce(MethodRouter<AppState>) -> MethodRouter<AppState>) -> Route {
        self.handler = f(self.handler);
        self
    }
}

/// A route as the role table test sees it: method, path, least.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: String,
    pub path: &'static str,
    pub least: Least,
}

/// Builds a router from routes; several methods on one path merge into one entry.
pub fn router_of(routes: Vec<Route>) -> axum::Router<AppState> {
    routes.into_iter().fold(axum::Router::new(), |r, route| r.route(route.path, route.handler))
}
