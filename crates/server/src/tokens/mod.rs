//! The tokens domain: who may call crew. Create a token (the secret is shown once), list, revoke, find one by
//! its secret, the role of a named person, browser sessions (sign-in and sign-out), and the first admin token
//! at start. Each change is an event.

pub mod api;

use crate::auth::{hash_secret, new_secret, TokenCache};
use crate::error::ApiError;
use crew_core::{kind, Actor, NewEvent, Role, Via};
use crew_store::{Store, TokenInfo};
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
pub struct Tokens {
    store: Arc<dyn Store>,
    cache: Arc<TokenCache>,
}

/// A token's name: the person or application it names, which becomes the actor of what it does.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "bad token name `{name}`: use 1 to 64 lowercase letters, digits, `.`, `_`, `@` or `-`"
        )))
    }
}

impl Tokens {
    pub fn new(store: Arc<dyn Store>, cache: Arc<TokenCache>) -> Self {
        Tokens { store, cache }
    }

    /// Creates a token; returns it and its secret (shown once, stored only as a hash).
    pub async fn create(&self, name: &str, role: Role, actor: Actor) -> Result<(TokenInfo, String), ApiError> {
        check_name(name)?;
        let secret = new_secret();
        let info =
            TokenInfo { name: name.into(), role, created_at: chrono::Utc::now(), created_by: actor.name.clone() };
        let event = NewEvent::new(
            actor.clone(),
            kind::TOKEN_CREATED,
            &format!("token:{name}"),
            format!("{} created token `{name}` with role {role}", actor.name),
        )
        .with_data(json!({"name": name, "role": role}));
        self.store.create_token(&info, &hash_secret(&secret), event).await?;
        Ok((info, secret))
    }

    pub async fn list(&self) -> Result<Vec<TokenInfo>, ApiError> {
        Ok(self.store.tokens().await?)
    }

    /// Revokes a token (its sessions end with it); this replica forgets it at once, the others when the event
    /// reaches their bus.
    pub async fn revoke(&self, name: &str, actor: Actor) -> Result<crew_core::Event, ApiError> {
        if check_name(name).is_err() {
            return Err(ApiError::NotFound(format!("no token named `{}`", name.escape_debug())));
        }
        let event = NewEvent::new(
            actor.clone(),
            kind::TOKEN_REVOKED,
            &format!("token:{name}"),
            format!("{} revoked token `{name}`", actor.name),
        )
        .with_data(json!({"name": name}));
        let e = self.store.revoke_token(name, event).await?;
        self.cache.clear();
        Ok(e)
    }

    /// The token a secret belongs to.
    pub async fn by_secret(&self, secret: &str) -> Result<Option<TokenInfo>, ApiError> {
        Ok(self.store.token_by_hash(&hash_secret(secret)).await?)
    }

    /// The role of the person (token) named `name` now; `None` when there is no such token.
    pub async fn role_of(&self, name: &str) -> Result<Option<Role>, ApiError> {
        Ok(self.store.tokens().await?.into_iter().find(|t| t.name == name).map(|t| t.role))
    }

    /// Starts a browser session (the session id and CSRF secret are the caller's random values).
    pub async fn start_session(
        &self,
        name: &str,
        session_hash: &str,
        csrf: &str,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ApiError> {
        let event = NewEvent::new(
            Actor::new(name, Via::Web),
            kind::SESSION_STARTED,
            &format!("token:{name}"),
            format!("{name} signed in to the web UI"),
        );
        self.store.create_session(session_hash, name, csrf, expires, event).await?;
        Ok(())
    }

    /// Ends a browser session (sign-out).
    pub async fn end_session(&self, name: &str, session_hash: &str) -> Result<(), ApiError> {
        let event = NewEvent::new(
            Actor::new(name, Via::Web),
            kind::SESSION_ENDED,
            &format!("token:{name}"),
            format!("{name} signed out of the web UI"),
        );
        self.store.delete_session(session_hash, event).await?;
        Ok(())
    }
}

/// On a store without tokens, creates the `admin` token and writes it to `<data-dir>/admin.token` (0600).
pub async fn ensure_admin(store: &dyn Store, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = data_dir.join("admin.token");
    if store.counts().await?.tokens > 0 {
        if !path.exists() {
            tracing::warn!(
                path = %path.display(),
                "the store has tokens but this data dir has no admin.token: set CREW_TOKEN to use the CLI here"
            );
        }
        return Ok(());
    }
    let secret = new_secret();
    let info = TokenInfo {
        name: "admin".into(),
        role: Role::Admin,
        created_at: chrono::Utc::now(),
        created_by: "crew".into(),
    };
    let event =
        NewEvent::new(Actor::system(), kind::TOKEN_CREATED, "token:admin", "crew created the first admin token")
            .with_data(json!({"name": "admin", "role": "admin"}));
    // The file first (under a temporary name), then the row: a token that exists is never one nobody can read.
    let tmp = path.with_extension("tmp");
    write_private(&tmp, &format!("{secret}\n")).with_context(|| format!("cannot write {}", tmp.display()))?;
    match store.create_token(&info, &hash_secret(&secret), event).await {
        Ok(_) => {}
        // Another replica on the same database made it first; its data dir has the token.
        Err(crew_store::StoreError::Conflict(_)) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!("another replica created the admin token first: set CREW_TOKEN to use the CLI here");
            return Ok(());
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(())
}

/// Writes a file only its owner can read, and makes sure it is on disk.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // A new file, never one someone left there (nor a link they planted under its name).
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}
