//! Who is calling: bearer tokens (or `X-API-Key` for applications) and browser sessions, and the role guards
//! that every route uses.
//!
//! Tokens are random 40-character secrets; only their SHA-256 is stored. A fast hash is right here (not a
//! password hash): the secrets are long and random, so there is nothing to guess, and every request checks one.

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Method;
use crew_core::{Actor, Role, Via};
use crew_store::{Store, TokenInfo};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Tokens recently seen, by the hash of their secret, so that an evaluation or an API read does not wait on
/// the store. Every `token.*` event (from any replica, through the bus) empties it, so a revoked token stops
/// working as soon as its event arrives; entries also expire after a minute in case an event is ever missed.
/// A generation counter keeps a lookup that raced with a revocation from putting the old answer back.
#[derive(Default)]
pub struct TokenCache {
    inner: RwLock<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    generation: u64,
    tokens: HashMap<String, (TokenInfo, Instant)>,
}

impl TokenCache {
    const TTL: Duration = Duration::from_secs(60);
    /// Beyond this many tokens the cache starts over (a team has tens; this bounds memory, not hits).
    const MAX: usize = 10_000;

    /// The cached token, or the generation to hand back to `put` after asking the store.
    fn get(&self, hash: &str) -> Result<TokenInfo, u64> {
        let inner = self.inner.read().expect("token cache");
        match inner.tokens.get(hash) {
            Some((t, at)) if at.elapsed() < Self::TTL => Ok(t.clone()),
            _ => Err(inner.generation),
        }
    }

    fn put(&self, generation: u64, hash: String, token: TokenInfo) {
        let mut inner = self.inner.write().expect("token cache");
        if inner.generation != generation {
            return;
        }
        if inner.tokens.len() >= Self::MAX {
            inner.tokens.clear();
        }
        inner.tokens.insert(hash, (token, Instant::now()));
    }

    pub fn clear(&self) {
        let mut inner = self.inner.write().expect("token cache");
        inner.generation += 1;
        inner.tokens.clear();
    }
}

/// What authentication needs: the store (tokens, sessions), the cache of tokens recently seen, and the count
/// of live streams each token holds open.
#[derive(Clone)]
pub struct Auth {
    pub store: Arc<dyn Store>,
    pub cache: Arc<TokenCache>,
    pub streams: Arc<Streams>,
}

/// Live streams (server-sent events) open now, in all and per token: bounded, so no one token (or everyone at
/// once) can hold the server's connections; past a bound a new stream is refused with 429.
pub struct Streams {
    max: usize,
    max_per_token: usize,
    open: std::sync::Mutex<(usize, HashMap<String, usize>)>,
}

impl Streams {
    pub fn new(max: usize, max_per_token: usize) -> Self {
        Streams { max, max_per_token, open: Default::default() }
    }

    fn acquire(self: &Arc<Self>, name: &str) -> Result<StreamPermit, ApiError> {
        let mut open = self.open.lock().expect("streams");
        if open.0 >= self.max {
            return Err(ApiError::TooMany(format!(
                "{} live streams are open, the most crew keeps: try again later",
                self.max
            )));
        }
        let mine = open.1.entry(name.to_string()).or_default();
        if *mine >= self.max_per_token {
            return Err(ApiError::TooMany(format!(
                "`{name}` has {} live streams open, the most one token may: close one first",
                self.max_per_token
            )));
        }
        *mine += 1;
        open.0 += 1;
        Ok(StreamPermit { streams: self.clone(), name: name.to_string() })
    }
}

/// One open stream's place in [`Streams`]; given back when dropped.
pub struct StreamPermit {
    streams: Arc<Streams>,
    name: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("streams");
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.name);
            }
        }
    }
}

/// A live stream's hold on the server: its permit, and a way to learn its token was revoked.
pub struct LiveStream {
    _permit: StreamPermit,
    name: String,
    /// The session's hash, when a browser opened the stream.
    session: Option<String>,
    bus: tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
    store: Arc<dyn Store>,
}

impl LiveStream {
    /// Resolves when the token this stream was opened with is revoked (on any replica): the stream then ends.
    /// If the bus lagged (a revocation may have been missed), the store is asked whether the token still exists.
    pub async fn revoked(&mut self) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match self.bus.recv().await {
                Ok(e) if revokes(&e, &self.name) => return,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // A revocation may be among what was missed: ask the store, and end when it cannot say.
                    if !self.still_valid().await {
                        return;
                    }
                }
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl LiveStream {
    /// Whether the token (and, for a browser, the session) this stream was opened with still works.
    async fn still_valid(&self) -> bool {
        let token = self.store.tokens().await.is_ok_and(|t| t.iter().any(|t| t.name == self.name));
        match &self.session {
            Some(hash) => token && self.store.session(hash).await.is_ok_and(|s| s.is_some()),
            None => token,
        }
    }

    /// Resolves when the stream must end: its token revoked, or (a browser's) its session ended or expired,
    /// which is checked every minute.
    pub async fn ended(&mut self) {
        if self.session.is_none() {
            return self.revoked().await;
        }
        loop {
            tokio::select! {
                _ = self.revoked() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                    if !self.still_valid().await {
                        return;
                    }
                }
            }
        }
    }
}

/// Whether `e` revokes the token named `name`.
pub fn revokes(e: &crew_core::Event, name: &str) -> bool {
    e.kind == crew_core::kind::TOKEN_REVOKED && e.data.get("name").and_then(serde_json::Value::as_str) == Some(name)
}

impl Auth {
    /// Opens a live stream for `caller`: refused (429) past the bounds; ends when the caller's token is revoked.
    pub async fn open_stream(&self, caller: &Caller) -> Result<LiveStream, ApiError> {
        let permit = self.streams.acquire(&caller.name)?;
        let stream = LiveStream {
            _permit: permit,
            name: caller.name.clone(),
            session: caller.session.clone(),
            bus: self.store.subscribe(),
            store: self.store.clone(),
        };
        // Subscribed first, checked second: a revocation between the caller's check and now is not missed.
        if !stream.still_valid().await {
            return Err(ApiError::Unauthorized("token not recognised: it was revoked or mistyped".into()));
        }
        Ok(stream)
    }
}

/// Empties the token cache on every token event from the bus (and when the bus lagged: something may be missed).
pub async fn follow_tokens(
    cache: Arc<TokenCache>,
    shutdown: tokio_util::sync::CancellationToken,
    mut bus: tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            e = bus.recv() => match e {
                Ok(e) if crew_core::kind::is_under(&e.kind, crew_core::kind::TOKEN) => cache.clear(),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => cache.clear(),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// The token whose secret this is, from the cache or the store.
async fn token_for(auth: &Auth, secret: &str) -> Result<Option<TokenInfo>, ApiError> {
    let hash = hash_secret(secret);
    let generation = match auth.cache.get(&hash) {
        Ok(t) => return Ok(Some(t)),
        Err(g) => g,
    };
    let token = auth.store.token_by_hash(&hash).await?;
    if let Some(t) = &token {
        auth.cache.put(generation, hash, t.clone());
    }
    Ok(token)
}

/// The browser session cookie.
pub const SESSION_COOKIE: &str = "crew_session";
/// The header a signed-in page sends its CSRF secret in, for API writes made with the session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A new token secret: `crew_` and 40 random letters and digits (about 238 bits).
pub fn new_secret() -> String {
    format!("crew_{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
}

/// A random secret for sessions and CSRF.
pub fn random_id() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}

/// Whether a secret sent back (a form's or a header's CSRF secret) is the one expected, compared in constant
/// time so the comparison's timing says nothing about how much of it was right.
pub fn same_secret(sent: Option<&str>, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    sent.is_some_and(|s| s.len() == expected.len() && bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

pub fn hash_secret(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.trim().as_bytes()))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// The session's CSRF secret when the caller came with the session cookie.
    pub csrf: Option<String>,
    /// The session's hash when the caller came with the session cookie.
    pub session: Option<String>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::new(self.name.clone(), self.via)
    }

    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("`{}` has role {}; this needs {}", self.name, self.role, needed)))
        }
    }
}

/// The value of a cookie in a request.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Auth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_ref(state);
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = header("authorization")
            .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim).unwrap_or(""));
        if let Some(secret) = bearer.or_else(|| header("x-api-key").map(str::trim)) {
            if secret.is_empty() {
                return Err(ApiError::Unauthorized("malformed Authorization header: expected `Bearer <token>`".into()));
            }
            let token = token_for(&auth, secret)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("token not recognised: it was revoked or mistyped".into()))?;
            let via = match header("x-crew-via") {
                Some("cli") => Via::Cli,
                _ => Via::Api,
            };
            return Ok(Caller { name: token.name, role: token.role, via, csrf: None, session: None });
        }
        if let Some(id) = cookie(parts, SESSION_COOKIE) {
            let hash = hash_secret(id);
            if let Some(session) = auth.store.session(&hash).await? {
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                if !safe && !same_secret(header(CSRF_HEADER), &session.csrf) {
                    return Err(ApiError::Forbidden(format!(
                        "a write with the session cookie needs the page's {CSRF_HEADER} header"
                    )));
                }
                return Ok(Caller {
                    name: session.token.name,
                    role: session.token.role,
                    via: Via::Web,
                    csrf: Some(session.csrf),
                    session: Some(hash),
                });
            }
        }
        Err(ApiError::Unauthorized(
            "authentication required: send `Authorization: Bearer <token>` (crew token create NAME --role viewer)"
                .into(),
        ))
    }
}

macro_rules! role_guard {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl<S: Send + Sync> FromRequestParts<S> for $name
        where
            Auth: FromRef<S>,
        {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($role)?;
                Ok($name(caller))
            }
        }
    };
}

role_guard!(
    /// A caller who may evaluate flags: an application's evaluation key, or any person's token.
    Evaluator,
    Role::Evaluate
);
role_guard!(
    /// A caller who may read everything (viewer and up).
    Viewer,
    Role::Viewer
);
role_guard!(
    /// A caller who may change things: deploys, locks, flags, acks, events (member and up).
    Member,
    Role::Member
);
role_guard!(
    /// A caller who may manage tokens and configuration (admin).
    Admin,
    Role::Admin
);

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(super::same_secret(Some("abc123"), "abc123"));
        for sent in [None, Some(""), Some("abc12"), Some("abc1234"), Some("abd123")] {
            assert!(!super::same_secret(sent, "abc123"), "{sent:?}");
        }
    }
}
