//! The server's state: the platform every domain shares (store, settings, clock of the process, shutdown)
//! and one service per domain. Handlers take the service they need (`State<Deploys>`, `State<Flags>`, ...)
//! through axum's `FromRef`, never the whole [`AppState`].

use crate::auth::{Auth, TokenCache};
use crate::chat::{Chat, ChatStatus, Robot};
use crate::config::Settings;
use crate::deploys::Deploys;
use crate::drills::Drills;
use crate::experiments::Experiments;
use crate::flags::{FlagCache, Flags};
use crate::incidents::Incidents;
use crate::infra::Infra;
use crate::metrics::{Live, Metrics};
use crate::oncall::Oncall;
use crate::runbooks::Runbooks;
use crate::system::System;
use crate::timeline::Timeline;
use crate::tokens::Tokens;
use axum::extract::FromRef;
use crew_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What every domain may know of the process it runs in.
#[derive(Clone)]
pub struct Platform {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    /// For `uptime` in the status.
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Cancelled when the server shuts down; live streams and background tasks end on it.
    pub shutdown: CancellationToken,
}

impl Platform {
    /// The server's own URL, for links in chat and webhooks: `[server] public_url` when set.
    pub fn base_url(&self) -> String {
        match &self.settings.file.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.addr),
        }
    }

    /// Whether people reach crew over HTTPS (a proxy in front): then cookies are `Secure`.
    pub fn https(&self) -> bool {
        self.settings.file.server.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

/// Every service, built once; each handler extracts the one it needs.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub platform: Platform,
    pub auth: Auth,
    pub timeline: Timeline,
    pub tokens: Tokens,
    pub deploys: Deploys,
    pub flags: Flags,
    pub metrics: Metrics,
    pub feedback: crate::feedback::Feedback,
    pub chat: Chat,
    pub infra: Infra,
    pub oncall: Oncall,
    pub incidents: Incidents,
    pub drills: Drills,
    pub experiments: Experiments,
    pub runbooks: Runbooks,
    pub system: System,
}

impl AppState {
    /// The services; `runbooks` is made (and checked) before, from the same settings.
    pub fn new(store: Arc<dyn Store>, settings: Settings, addr: SocketAddr, runbooks: Runbooks) -> Self {
        let settings = Arc::new(settings);
        let platform = Platform {
            store: store.clone(),
            settings: settings.clone(),
            addr,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            shutdown: CancellationToken::new(),
        };
        let cache = Arc::new(TokenCache::default());
        let limits = &settings.limits;
        let streams = Arc::new(crate::auth::Streams::new(limits.max_streams, limits.max_streams_per_token));
        let auth = Auth { store: store.clone(), cache: cache.clone(), streams };
        let timeline = Timeline::new(store.clone(), platform.shutdown.clone());
        let tokens = Tokens::new(store.clone(), cache);
        let oncall = Oncall::new(&platform, timeline.clone());
        let live = Arc::new(Live::new(settings.metrics.clone()));
        let metrics = Metrics::new(&platform, live, timeline.clone());
        let feedback = crate::feedback::Feedback::new(metrics.clone());
        let deploys = Deploys::new(&platform, oncall.clone(), feedback.clone());
        let flags_config = crate::flags::FlagsConfig {
            require_plan_above: settings.file.flags.as_ref().and_then(|f| f.require_plan_above),
            flush: settings.metrics.flush,
        };
        let fractional = settings.file.flags.as_ref().and_then(|f| f.fractional).unwrap_or_default();
        let flags = Flags::new(store.clone(), Arc::new(FlagCache::new(fractional)), feedback.clone(), flags_config);
        let status = Arc::new(ChatStatus::default());
        let chat = Chat::new(&platform, status.clone(), tokens.clone());
        let infra = Infra::new(&platform, timeline.clone());
        let peers = crate::incidents::Peers {
            chat: chat.clone(),
            deploys: deploys.clone(),
            flags: flags.clone(),
            runbooks: runbooks.clone(),
            metrics: metrics.clone(),
        };
        let incidents = Incidents::new(&platform, timeline.clone(), oncall.clone(), peers);
        let drills = Drills::new(
            &platform,
            timeline.clone(),
            incidents.clone(),
            deploys.clone(),
            flags.clone(),
            metrics.clone(),
        );
        let experiments =
            Experiments::new(&platform, flags.clone(), timeline.clone(), feedback.clone(), metrics.clone());
        let system =
            System { platform: platform.clone(), chat: status, runbooks: runbooks.clone(), oncall: oncall.clone() };
        AppState {
            platform,
            auth,
            timeline,
            tokens,
            deploys,
            flags,
            metrics,
            feedback,
            chat,
            infra,
            runbooks,
            oncall,
            incidents,
            drills,
            experiments,
            system,
        }
    }

    /// The robot's view: every service its commands call.
    pub fn robot(&self) -> Robot {
        Robot::from_ref(self)
    }
}
