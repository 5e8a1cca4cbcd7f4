//! The state every handler sees.

use crate::config::Settings;
use crew_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    /// For `uptime` in the status.
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The app's deploy configuration, if crew.toml has one.
    pub deploy: Option<Arc<crew_deploy::DeployConfig>>,
    /// The compiled flags every evaluation uses.
    pub flags: Arc<crate::flags::FlagCache>,
    /// API tokens recently seen (emptied by every token event).
    pub tokens: Arc<crate::auth::TokenCache>,
    /// The robot's connection state and recent lines, for the status page and `crew chat status`.
    pub chat: Arc<crate::chat::ChatStatus>,
    /// Metrics: the time-series heads, the receive path's totals, the Prometheus exposition.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled when the server shuts down; live streams end on it so shutdown does not wait for them.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, settings: Settings, addr: SocketAddr) -> Self {
        AppState {
            store,
            deploy: settings.deploy.clone().map(Arc::new),
            flags: Arc::default(),
            tokens: Arc::default(),
            chat: Arc::default(),
            metrics: Arc::new(crate::metrics::Metrics::new(settings.metrics.clone())),
            settings: Arc::new(settings),
            addr,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            shutdown: CancellationToken::new(),
        }
    }
}
