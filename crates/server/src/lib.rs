//! `crew serve`: the HTTP API, the web UI and the live event stream in one process, over one [`Store`].
//!
//! [`App::build`] is shared by `main` and the tests: it opens the store, makes sure an admin token exists and
//! binds the listener; [`App::run`] serves until the shutdown token is cancelled.
//!
//! [`Store`]: crew_store::Store

pub mod alerts;
pub mod api;
pub mod auth;
pub mod chat;
pub mod config;
pub mod deploys;
pub mod error;
pub mod flags;
pub mod infra;
pub mod metrics;
pub mod remote_write;
mod state;
pub mod statsd;
pub mod web;

pub use config::{ConfigError, FileConfig, Overrides, Settings};
pub use state::AppState;

use anyhow::Context;
use crew_core::{Actor, NewEvent, Role};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why the server could not start; `main` maps these to exit codes (bad input 2, otherwise 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] crew_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StartError {
    /// Whether the cause is the user's input (a config value, a database URL that does not work).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StartError::Config(_)
                | StartError::Store(crew_store::StoreError::Connect { .. } | crew_store::StoreError::BadUrl(_))
        )
    }
}

/// A server that is bound and ready to run.
pub struct App {
    listener: tokio::net::TcpListener,
    state: AppState,
    /// Subscribed before the server says it is listening, so no flag change made after that is missed.
    flag_changes: tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
    token_changes: tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
    chat_events: tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
    statsd: Option<statsd::Sockets>,
}

impl App {
    pub async fn build(settings: Settings) -> Result<App, StartError> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
        let store = crew_store::open(&settings.database).await?;
        ensure_admin_token(&*store, &settings.data_dir).await?;
        deploys::interrupt_leftovers(&*store).await?;
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .map_err(|source| StartError::Listen { addr: settings.listen.clone(), source })?;
        let addr = listener.local_addr().context("listener address")?;
        let statsd = match settings.statsd {
            Some(a) => Some(
                statsd::bind(a)
                    .map_err(|source| StartError::Listen { addr: format!("{a} (StatsD, UDP and TCP)"), source })?,
            ),
            None => None,
        };
        let state = AppState::new(store, settings, addr);
        *state.metrics.addr.lock().expect("not poisoned") = statsd.as_ref().map(|s| s.addr);
        state.metrics.set_source(&replica_id(&state.settings.data_dir)?);
        let replayed = metrics::recover(&*state.store, &state.metrics).await?;
        if replayed > 0 {
            tracing::info!(rows = replayed, "metrics write-ahead rows replayed");
        }
        let flag_changes = state.store.subscribe();
        let token_changes = state.store.subscribe();
        let chat_events = state.store.subscribe();
        state.flags.reload(&*state.store).await?;
        Ok(App { listener, state, flag_changes, token_changes, chat_events, statsd })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.state.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, ends live streams and lets requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { listener, mut state, flag_changes, token_changes, chat_events, statsd } = self;
        state.shutdown = shutdown.clone();
        let router = router(state.clone());
        tokio::spawn(deploys::sweep(state.clone()));
        tokio::spawn(flags::follow_changes(state.clone(), flag_changes));
        tokio::spawn(auth::follow_tokens(state.clone(), token_changes));
        chat::start(&state, chat_events).context("the chat robot")?;
        infra::start(&state);
        let metrics_task = metrics::start(&state, statsd);
        tracing::info!(addr = %state.addr, store = state.store.engine().as_str(), "crew is serving");
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("HTTP server")?;
        // The metrics task stores its open chunks on the way out.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), metrics_task).await;
        tracing::info!("crew stopped");
        Ok(())
    }
}

/// Every route: the API under `/api/v1`, the web UI at the root.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .merge(api::router())
        .merge(web::router())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// This replica's lasting name (`<data-dir>/replica.id`, made on first start): the source of the metric
/// chunks and write-ahead rows it writes, so replicas sharing a database keep theirs apart.
fn replica_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("replica.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let id = format!("r-{}", &auth::random_id()[..12]);
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// On a store without tokens, creates the `admin` token and writes it to `<data-dir>/admin.token` (0600).
async fn ensure_admin_token(store: &dyn crew_store::Store, data_dir: &Path) -> anyhow::Result<()> {
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
    let secret = auth::new_secret();
    let info = crew_store::TokenInfo {
        name: "admin".into(),
        role: Role::Admin,
        created_at: chrono::Utc::now(),
        created_by: "crew".into(),
    };
    let event = NewEvent::new(Actor::system(), "token.created", "token:admin", "crew created the first admin token")
        .with_data(serde_json::json!({"name": "admin", "role": "admin"}));
    match store.create_token(&info, &auth::hash_secret(&secret), event).await {
        Ok(_) => {}
        // Another replica on the same database made it first; its data dir has the token.
        Err(crew_store::StoreError::Conflict(_)) => {
            tracing::warn!("another replica created the admin token first: set CREW_TOKEN to use the CLI here");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    write_private(&path, &format!("{secret}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        token.cancel();
    });
}

/// The store, shared; re-exported for the binary.
pub type SharedStore = Arc<dyn crew_store::Store>;
