//! The server's own status: version, store, uptime and counts, warnings (runbooks lacking a section), and the
//! robot's connection (for the Status page, `crew status` and `GET /api/v1/status`).

pub mod api;
pub mod web;

use crate::chat::ChatStatus;
use crate::error::ApiError;
use crate::runbooks::Runbooks;
use crate::state::Platform;
use serde_json::{json, Value};
use std::sync::Arc;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone)]
pub struct System {
    pub platform: Platform,
    pub chat: Arc<ChatStatus>,
    pub oncall: crate::oncall::Oncall,
    pub runbooks: Runbooks,
}

impl System {
    /// The status as `GET /api/v1/status` answers it.
    pub async fn status(&self) -> Result<Value, ApiError> {
        let p = &self.platform;
        let counts = p.store.counts().await?;
        // What someone should fix in the repository or crew.toml, though crew runs: runbooks lacking a section.
        let mut warnings = self.runbooks.warnings().await;
        warnings.extend(self.oncall.warnings(chrono::Utc::now()).await);
        Ok(json!({
            "version": VERSION,
            "store": p.store.engine().as_str(),
            "database": p.store.url(),
            "listen": p.addr.to_string(),
            "started_at": crew_core::time::rfc3339(p.started_at),
            "uptime_seconds": p.started.elapsed().as_secs(),
            "counts": {"events": counts.events, "tokens": counts.tokens},
            "warnings": warnings,
        }))
    }
}
