//! `crew serve`: the HTTP API, the web UI and the live event stream in one process, over one [`Store`].
//!
//! A thin platform (`state`, `config`, `auth`, `error`, `http`, `web`) and one module per domain (timeline,
//! tokens, deploys, flags, metrics, feedback, alerts, chat, infra, runbooks, oncall, incidents, drills, system), each with its service in
//! `mod.rs` (one
//! function per action), its `api.rs` and its `web.rs`. [`App::build`] is shared by `main` and the tests: it
//! opens the store, makes sure an admin token exists and binds the listener; [`App::run`] serves until the
//! shutdown token is cancelled.
//!
//! [`Store`]: crew_store::Store

pub mod alerts;
pub mod auth;
pub mod chat;
pub mod config;
pub mod deploys;
pub mod drills;
pub mod error;
pub mod experiments;
pub mod feedback;
pub mod flags;
pub mod http;
pub mod incidents;
pub mod infra;
pub mod metrics;
pub mod oncall;
pub mod routes;
pub mod runbooks;
pub mod state;
pub mod system;
pub mod timeline;
pub mod tokens;
pub mod web;

pub use config::{ConfigError, FileConfig, Overrides, Settings};
pub use state::AppState;

use anyhow::Context;
use http::{Route, RouteInfo};
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
    alert_events: tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
    statsd: Option<metrics::statsd::Sockets>,
}

impl App {
    pub async fn build(settings: Settings) -> Result<App, StartError> {
        // With `[build] user` the build user must reach `<data-dir>/builds`: the data dir may then be passed
        // through (0711), never listed, and everything secret in it stays 0600.
        let passable = settings.deploy.as_ref().is_some_and(|d| d.build_user.is_some());
        private_dir(&settings.data_dir, passable)
            .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
        // A runbook an alert names must be on the branch's head (a URL is taken as it is).
        let runbooks = runbooks::Runbooks::new(&settings);
        runbooks.check_alerts(&settings.alerts).await.map_err(|message| ConfigError::Invalid {
            path: settings.config_path.clone().unwrap_or_else(|| "crew.toml".into()),
            message,
        })?;
        for w in runbooks.warnings().await {
            tracing::warn!("{w}");
        }
        let store = crew_store::open(&settings.database).await?;
        tokens::ensure_admin(&*store, &settings.data_dir).await?;
        deploys::interrupt_leftovers(&*store).await?;
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .map_err(|source| StartError::Listen { addr: settings.listen.clone(), source })?;
        let addr = listener.local_addr().context("listener address")?;
        let statsd = match settings.statsd {
            Some(a) => Some(
                metrics::statsd::bind(a)
                    .map_err(|source| StartError::Listen { addr: format!("{a} (StatsD, UDP and TCP)"), source })?,
            ),
            None => None,
        };
        let state = AppState::new(store.clone(), settings, addr, runbooks);
        let live = &state.metrics.live;
        *live.addr.lock().expect("not poisoned") = statsd.as_ref().map(|s| s.addr);
        live.set_source(&replica_id(&state.platform.settings.data_dir)?);
        let replayed = metrics::recover(&*store, live).await?;
        if replayed > 0 {
            tracing::info!(rows = replayed, "metrics write-ahead rows replayed");
        }
        let flag_changes = state.timeline.subscribe();
        let token_changes = state.timeline.subscribe();
        let chat_events = state.timeline.subscribe();
        let alert_events = state.timeline.subscribe();
        state.flags.reload().await?;
        Ok(App { listener, state, flag_changes, token_changes, chat_events, alert_events, statsd })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.state.platform.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, ends live streams and lets requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App { listener, state, flag_changes, token_changes, chat_events, alert_events, statsd } = self;
        let p = state.platform.clone();
        // The services hold the platform's token; the caller's cancels it.
        let ours = p.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            ours.cancel();
        });
        let router = router(state.clone());
        tokio::spawn(deploys::sweep(p.store.clone(), p.shutdown.clone()));
        tokio::spawn(flags::follow_changes(state.flags.clone(), p.shutdown.clone(), flag_changes));
        tokio::spawn(flags::ramp::run(state.flags.clone(), p.shutdown.clone()));
        tokio::spawn(auth::follow_tokens(state.auth.cache.clone(), p.shutdown.clone(), token_changes));
        chat::start(state.robot(), chat_events).context("the chat robot")?;
        infra::start(&state.infra);
        oncall::start(&state.oncall, &p, replica_id(&p.settings.data_dir)?);
        incidents::start(&state.incidents, alert_events);
        drills::start_schedule(&state.drills);
        let experiments_task = experiments::start(&state.experiments, p.shutdown.clone());
        let rules = p.settings.alerts.clone();
        let metrics_task = metrics::flush::start(&state.metrics, state.timeline.clone(), rules, statsd);
        tracing::info!(addr = %p.addr, store = p.store.engine().as_str(), "crew is serving");
        serve(listener, router, p.shutdown.clone(), &p.settings.limits).await;
        // The metrics task stores its open chunks on the way out.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), metrics_task).await;
        // And the experiments task its waiting exposures and conversions.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), experiments_task).await;
        tracing::info!("crew stopped");
        Ok(())
    }
}

/// Every route: the API's and the web's (see `routes.rs`).
pub fn all_routes() -> (Vec<Route>, Vec<Route>) {
    (routes::api(), routes::web())
}

/// Every route's method, path and least role, for the role table test.
pub fn routes() -> Vec<RouteInfo> {
    let (api, web) = all_routes();
    api.into_iter()
        .chain(web)
        .map(|r| RouteInfo { method: r.method.to_string(), path: r.path, least: r.least })
        .collect()
}

/// Every route: the API under `/api/v1` (and OFREP, `/metrics`), the web UI at the root.
pub fn router(state: AppState) -> axum::Router {
    let (api, web) = all_routes();
    let body_timeout = state.platform.settings.limits.header_timeout;
    axum::Router::new()
        .merge(http::router_of(api).route("/api/{*rest}", axum::routing::any(api_not_found)))
        .merge(web::router(web))
        // A body that trickles in is cut off like headers that do.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn api_not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::NotFound(format!("no API route {}", uri.path()))
}

/// Serves HTTP/1.1 until `stop` is cancelled, then lets open requests finish (up to 10 s). Unlike `axum::serve`
/// this bounds what a client can hold: a connection must send its request's headers within `header_timeout`
/// of connecting (or of its last answer, when kept alive), a request's body must arrive within the same time
/// (the router's body timeout), and at most `max_connections` are open at once (more are closed at once). An
/// accept error (out of file descriptors) is followed by a short pause rather than a spin. HTTP/2 is not
/// served: its streams and windows would need limits of their own, and every client crew has speaks HTTP/1.1.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: CancellationToken,
    limits: &config::Limits,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let max = connection_cap(limits.max_connections);
    let open = Arc::new(AtomicUsize::new(0));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; pausing");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                    continue;
                }
            },
        };
        pause = std::time::Duration::from_millis(10);
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(max, "too many HTTP connections: one refused");
            drop(stream);
            continue;
        }
        let slot = ConnectionSlot(open.clone());
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let first_byte = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // hyper's header timer starts with the first byte: a client that sends nothing at all is cut off here.
            let mut one = [0u8; 1];
            if !matches!(tokio::time::timeout(first_byte, stream.peek(&mut one)).await, Ok(Ok(n)) if n > 0) {
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "an HTTP connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("some HTTP connections were still open 10 s after shutdown began");
    }
}

/// An open connection's place in the count; given back when the connection's task ends, however it ends.
struct ConnectionSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The HTTP connection cap in force: the configured one, but never more than half this process's file
/// descriptors, so the store, deploys and StatsD keep theirs.
fn connection_cap(configured: usize) -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft as usize).unwrap_or(1024);
    configured.min((soft / 2).max(16))
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

/// The data dir, made if needed, readable by crew's own user only (it holds the admin token and the database);
/// `passable` lets others through it (0711) to the builds folder, without listing it.
fn private_dir(dir: &Path, passable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mode = if passable { 0o711 } else { 0o700 };
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
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
