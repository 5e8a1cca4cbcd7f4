//! The chat domain: the robot in the server. `[chat]` of crew.toml (`config.rs`), the IRC connection started
//! with `crew serve`, the timeline announced to rooms by their filters, who is speaking (crew.toml's
//! `[[chat.users]]` and the links `crew chat link` makes), and chat commands run as the crew user the speaker
//! maps to (with that user's role, `via chat`) by calling the other domains' services; and the lines said in
//! its channels, people's and its own, kept in the store (30 days, at most 100,000) for postmortems. The
//! protocol and the command registry live in `crew-chat`.

pub mod api;
pub mod config;

pub use config::{ChatSection, ChatUser, IrcSection, Sasl, WebhookSection};

use crate::deploys::Deploys;
use crate::error::ApiError;
use crate::flags::Flags;
use crate::metrics::Metrics;
use crate::runbooks::Runbooks;
use crate::state::{AppState, Platform};
use crate::timeline::Timeline;
use crate::tokens::Tokens;
use axum::extract::FromRef;
use crew_chat::commands::{self, Invocation, Limiter};
use crew_chat::irc::{self, Incoming, IrcConfig, Outgoing};
use crew_chat::mask::Sender;
use crew_chat::{announce, mask};
use crew_core::{kind, Actor, Delivery, Event, EventFilter, NewEvent, Role, Via};
use crew_flags::knobs::{self, Knob};
use crew_store::{ChatLine, ChatLink, Store};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The chat service: the robot's status, the identity links, and who is speaking.
#[derive(Clone)]
pub struct Chat {
    pub status: Arc<ChatStatus>,
    store: Arc<dyn Store>,
    config: Option<Arc<ChatSection>>,
    tokens: Tokens,
}

/// How long the lines said in channels are kept, and how many at most.
pub const LINES_KEPT_FOR: Duration = Duration::from_secs(30 * 86_400);
pub const LINES_KEPT_MAX: i64 = 100_000;

/// Whether an IRC target is a channel (`#ops`, `&local`, `+modeless`, `!safe`) rather than a nick.
fn is_channel(room: &str) -> bool {
    room.starts_with(['#', '&', '+', '!'])
}

/// How long a page waits for the IRC server's answer before it counts as failed.
pub const PAGE_ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A link as `GET /api/v1/chat/links` lists it: from crew.toml or made with `crew chat link`.
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    pub identity: String,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    pub from: &'static str,
}

impl Chat {
    pub fn new(p: &Platform, status: Arc<ChatStatus>, tokens: Tokens) -> Self {
        Chat { status, store: p.store.clone(), config: p.settings.file.chat.clone().map(Arc::new), tokens }
    }

    /// Every link: crew.toml's `[[chat.users]]` first, then the stored ones.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, ApiError> {
        let configured = self.config.iter().flat_map(|c| c.users.iter()).filter_map(|u| {
            u.irc.as_ref().map(|p| LinkInfo {
                identity: p.clone(),
                user: u.name.clone(),
                created_at: None,
                created_by: None,
                from: "crew.toml",
            })
        });
        let stored = self.store.chat_links().await?.into_iter().map(|l: ChatLink| LinkInfo {
            identity: l.identity,
            user: l.user,
            created_at: Some(crew_core::time::rfc3339(l.created_at)),
            created_by: Some(l.created_by),
            from: "crew chat link",
        });
        Ok(configured.chain(stored).collect())
    }

    /// Links a chat identity to a crew user (`Some`), or removes its link (`None`), with its event.
    pub async fn link(&self, identity: &str, user: Option<&str>, actor: Actor) -> Result<Event, ApiError> {
        let identity = identity.trim();
        // A link is checked when it is made; removing one never is, so a link stored before a rule tightened
        // can always be taken away.
        if user.is_some() {
            mask::check_pattern(identity).map_err(ApiError::BadRequest)?;
        }
        let event = match user {
            Some(user) => {
                if self.tokens.role_of(user).await?.is_none() {
                    return Err(ApiError::NotFound(format!(
                        "no crew user `{user}`: create its token first (crew token create {user})"
                    )));
                }
                NewEvent::new(
                    actor.clone(),
                    kind::CHAT_LINKED,
                    &format!("user:{user}"),
                    format!("{} linked {identity} to {user}", actor.name),
                )
                .with_data(json!({"identity": identity, "user": user}))
            }
            None => NewEvent::new(
                actor.clone(),
                kind::CHAT_UNLINKED,
                &format!("chat:{identity}"),
                format!("{} unlinked {identity}", actor.name),
            )
            .with_data(json!({"identity": identity})),
        };
        let e = self.store.put_chat_link(identity, user, &actor.name, event).await?;
        if identity.starts_with("account:") && user.is_some() {
            self.status.want_accounts();
        }
        Ok(e)
    }

    /// Pages `to` (a nick or a room) over the robot's IRC connection and waits for the server's answer: the
    /// outcome as a delivery result and its reason. `Delivered` means the server processed the message (a
    /// `PING` sent behind it came back); a nick nobody holds is `Refused` with the server's words; no
    /// connection, or no answer within [`PAGE_ANSWER_WITHIN`], is `Failed` (and retried by the caller).
    pub async fn page(&self, to: &str, text: &str) -> (Delivery, Option<String>) {
        let Some(out) = self.status.out.get() else {
            return (Delivery::Failed, Some("crew.toml has no [chat.irc]: the robot is not on IRC".into()));
        };
        let connected = self.status.state.get().is_some_and(|s| s.borrow().connected);
        if !connected {
            return (Delivery::Failed, Some("the robot is not connected to IRC right now".into()));
        }
        let text = text.replace(['\r', '\n'], " ");
        let (done, answer) = irc::Confirm::new();
        if out.send(Outgoing::Page { to: to.to_string(), text: text.clone(), done }).await.is_err() {
            return (Delivery::Failed, Some("the IRC connection stopped".into()));
        }
        match tokio::time::timeout(PAGE_ANSWER_WITHIN, answer).await {
            Ok(Ok(irc::PageOutcome::Delivered)) => {
                self.said(to, "crew", &text).await;
                (Delivery::Delivered, None)
            }
            Ok(Ok(irc::PageOutcome::Refused(why))) => (Delivery::Refused, Some(why)),
            Ok(Ok(irc::PageOutcome::Failed(why))) => (Delivery::Failed, Some(why)),
            Ok(Err(_)) => (Delivery::Failed, Some("the IRC connection stopped before the server answered".into())),
            Err(_) => (
                Delivery::Failed,
                Some(format!("the IRC server did not answer within {}s", PAGE_ANSWER_WITHIN.as_secs())),
            ),
        }
    }

    /// Posts a page to every IM webhook, mentioning the person; how many took it, or why none did.
    pub fn page_im(&self, mention: &str, text: &str) -> Result<usize, String> {
        let hooks = self.status.hooks.get().map(Vec::as_slice).unwrap_or_default();
        if hooks.is_empty() {
            return Err("crew.toml has no [[chat.webhooks]]".into());
        }
        let n = hooks
            .iter()
            .filter(|(h, w)| h.offer(crew_chat::webhook::page_body(w.kind, mention, text, w.channel.as_deref())))
            .count();
        if n == 0 {
            return Err("every webhook's queue is full".into());
        }
        Ok(n)
    }

    /// A line said in `room` by `who` (`crew` for the robot): remembered for the status page and, in a channel
    /// (never a private message), kept in the store for [`LINES_KEPT_FOR`], at most [`LINES_KEPT_MAX`] lines in
    /// all. A store that fails loses the line, never the conversation.
    pub async fn said(&self, room: &str, who: &str, text: &str) {
        let at = chrono::Utc::now();
        self.status.remember(room, who, text, at);
        if !is_channel(room) {
            return;
        }
        let line = ChatLine { at, room: room.to_string(), who: who.to_string(), text: text.to_string() };
        let since = at - chrono::Duration::from_std(LINES_KEPT_FOR).expect("30 days fit");
        if let Err(e) = self.store.add_chat_line(&line, since, LINES_KEPT_MAX).await {
            tracing::warn!(error = %e, room, "a chat line was not kept");
        }
    }

    /// The lines said in `room` (every channel when `None`) in [from, to], oldest first, at most `limit`: what
    /// every replica's robot kept.
    pub async fn lines(
        &self,
        room: Option<&str>,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<ChatLine>, ApiError> {
        Ok(self.store.chat_lines(room, from, to, limit).await?)
    }

    /// The robot's first channel, where incidents are highlighted unless `[incidents] room` says otherwise.
    pub fn first_channel(&self) -> Option<String> {
        self.config.as_ref().and_then(|c| c.irc.as_ref()).and_then(|i| i.channels.first().cloned())
    }

    /// The IRC nick a crew user is reached at: a link whose identity names a nick (`alice`, `alice!*@*`,
    /// `account:alice`), crew.toml's `[[chat.users]]` first.
    pub async fn nick_of(&self, user: &str) -> Option<String> {
        let links = self.links().await.ok()?;
        links.into_iter().filter(|l| l.user == user).find_map(|l| {
            let id = l.identity.strip_prefix("account:").unwrap_or(&l.identity);
            let nick = id.split('!').next().unwrap_or_default();
            (!nick.is_empty() && !nick.contains(['*', '?', '@'])).then(|| nick.to_string())
        })
    }

    /// The crew user a chat speaker maps to: the first `[[chat.users]]` whose pattern matches, then the links.
    pub async fn speaker(&self, sender: &Sender) -> Option<String> {
        let configured = self.config.iter().flat_map(|c| c.users.iter());
        if let Some(u) = configured.into_iter().find(|u| u.irc.as_deref().is_some_and(|p| mask::matches(p, sender))) {
            return Some(u.name.clone());
        }
        match self.store.chat_links().await {
            // A stored link that today's rules refuse (one made before `alice!*@*` was refused) is never used.
            Ok(links) => links
                .into_iter()
                .filter(|l| match mask::check_pattern(&l.identity) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(identity = %l.identity, reason = %e, "a stored chat link is not used; unlink it");
                        false
                    }
                })
                .find(|l| mask::matches(&l.identity, sender))
                .map(|l| l.user),
            Err(e) => {
                tracing::error!(error = %e, "reading chat links failed; treating the speaker as unknown");
                None
            }
        }
    }
}

/// The robot: every service its commands call. `!deploy` runs [`Deploys::start`], `!flag` [`Flags::turn`], and
/// so on — the same functions as the API and the web.
#[derive(Clone)]
pub struct Robot {
    pub chat: Chat,
    pub timeline: Timeline,
    pub deploys: Deploys,
    pub flags: Flags,
    pub metrics: Metrics,
    pub tokens: Tokens,
    pub oncall: crate::oncall::Oncall,
    pub incidents: crate::incidents::Incidents,
    pub runbooks: Runbooks,
    pub experiments: crate::experiments::Experiments,
    pub platform: Platform,
}

impl FromRef<AppState> for Robot {
    fn from_ref(st: &AppState) -> Robot {
        Robot {
            chat: st.chat.clone(),
            timeline: st.timeline.clone(),
            deploys: st.deploys.clone(),
            flags: st.flags.clone(),
            metrics: st.metrics.clone(),
            tokens: st.tokens.clone(),
            oncall: st.oncall.clone(),
            incidents: st.incidents.clone(),
            runbooks: st.runbooks.clone(),
            experiments: st.experiments.clone(),
            platform: st.platform.clone(),
        }
    }
}

/// What the status page and `crew chat status` show, shared with the running robot.
#[derive(Default)]
pub struct ChatStatus {
    state: OnceLock<tokio::sync::watch::Receiver<irc::State>>,
    /// Set when some mapping names an `account:`: the IRC connection then asks WHOIS for accounts.
    whois: OnceLock<Arc<std::sync::atomic::AtomicBool>>,
    /// Each webhook's name (never its URL) and delivery counts.
    webhooks: OnceLock<Vec<(String, Arc<crew_chat::webhook::Counts>)>>,
    recent: Mutex<VecDeque<Said>>,
    /// The robot's IRC connection, for pages: private messages and highlights.
    out: OnceLock<tokio::sync::mpsc::Sender<Outgoing>>,
    /// The IM webhooks, for pages with a mention.
    hooks: OnceLock<Vec<(crew_chat::webhook::Sender, WebhookSection)>>,
}

/// One line in a room, as the status page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Said {
    pub at: chrono::DateTime<chrono::Utc>,
    pub room: String,
    pub who: String,
    pub text: String,
}

impl ChatStatus {
    /// Accounts matter now (a link names one): the IRC connection asks WHOIS for them.
    fn want_accounts(&self) {
        if let Some(w) = self.whois.get() {
            w.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn remember(&self, room: &str, who: &str, text: &str, at: chrono::DateTime<chrono::Utc>) {
        let mut r = self.recent.lock().expect("recent");
        if r.len() >= 50 {
            r.pop_front();
        }
        r.push_back(Said { at, room: room.into(), who: who.into(), text: text.into() });
    }

    pub fn json(&self) -> serde_json::Value {
        let recent: Vec<Said> = self.recent.lock().expect("recent").iter().cloned().collect();
        use std::sync::atomic::Ordering::Relaxed;
        let webhooks: Vec<serde_json::Value> = self
            .webhooks
            .get()
            .into_iter()
            .flatten()
            .map(|(name, c)| {
                json!({"name": name, "sent": c.sent.load(Relaxed), "failed": c.failed.load(Relaxed), "dropped": c.dropped.load(Relaxed)})
            })
            .collect();
        let irc = match self.state.get() {
            None => serde_json::Value::Null,
            Some(s) => json!(*s.borrow()),
        };
        json!({"irc": irc, "webhooks": webhooks, "recent": recent})
    }
}

fn irc_config(s: &IrcSection) -> Result<IrcConfig, String> {
    let port = s.port.unwrap_or(if s.tls { 6697 } else { 6667 });
    let mut cfg = IrcConfig::new(&s.server, port, &s.nick, s.channels.clone());
    cfg.tls = s.tls;
    cfg.ca_file = s.ca_file.clone();
    cfg.alternates = s.alternates.clone();
    cfg.fingerprints = s.fingerprints.iter().filter_map(|f| irc::parse_fingerprint(f)).collect();
    if let Some(path) = &s.client_cert {
        // It holds the robot's private key: like ssh with its keys, refuse one that others may read.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("chat.irc.client_cert: {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "chat.irc.client_cert: {} holds a private key and others may read it (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
        cfg.client_cert = Some(path.clone());
    }
    if let Some(sasl) = &s.sasl {
        let password = std::env::var(&sasl.password_env)
            .map_err(|_| format!("chat.irc.sasl.password_env: ${} is not set", sasl.password_env))?;
        cfg.sasl = Some((sasl.account.clone(), password));
    }
    if let Some(b) = s.burst {
        cfg.rate.burst = b.max(1);
    }
    if let Some(r) = s.lines_per_second {
        cfg.rate.every = Duration::from_secs_f64(1.0 / r);
    }
    if cfg.tls {
        // The CA file and the client certificate are read at every connect; a mistake in them is named now.
        let field = if s.client_cert.is_some() { "chat.irc.client_cert" } else { "chat.irc.ca_file" };
        irc::tls_config(&cfg).map_err(|e| format!("{field}: {e}"))?;
    }
    Ok(cfg)
}

/// Starts the robot as crew.toml configures it: the IRC connection with its command loop, the webhooks, and
/// the announcer that feeds them the timeline.
pub fn start(robot: Robot, bus: tokio::sync::broadcast::Receiver<Arc<Event>>) -> anyhow::Result<()> {
    let Some(section) = robot.chat.config.clone() else { return Ok(()) };
    let shutdown = robot.platform.shutdown.clone();
    let base = robot.platform.base_url();
    let mut hooks = Vec::new();
    for (i, w) in section.webhooks.iter().enumerate() {
        let url = match (&w.url, &w.url_env) {
            (Some(u), _) => u.clone(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| anyhow::anyhow!("chat.webhooks[{i}].url_env: ${var} is not set"))?
            }
            (None, None) => anyhow::bail!("chat.webhooks[{i}]: no url"),
        };
        let hook = crew_chat::webhook::Webhook {
            name: format!("webhook {} ({:?})", i + 1, w.kind).to_lowercase(),
            kind: w.kind,
            url,
            channel: w.channel.clone(),
            attempts: 5,
            backoff: Duration::from_secs(1),
        };
        hooks.push((crew_chat::webhook::spawn(hook, shutdown.clone()), w.clone()));
    }
    let status = robot.chat.status.clone();
    let _ = status.webhooks.set(hooks.iter().map(|(h, _)| (h.name.clone(), h.counts.clone())).collect());
    let irc = match section.irc.clone() {
        Some(irc_section) => {
            let cfg = irc_config(&irc_section).map_err(anyhow::Error::msg)?;
            let _ = status.whois.set(cfg.whois.clone());
            // Accounts matter if crew.toml or a stored link names one (the link handler turns it on later).
            let configured = section.users.iter().any(|u| u.irc.as_deref().is_some_and(|p| p.starts_with("account:")));
            cfg.whois.store(configured, std::sync::atomic::Ordering::Relaxed);
            let (store, flag) = (robot.chat.store.clone(), cfg.whois.clone());
            tokio::spawn(async move {
                if store.chat_links().await.is_ok_and(|l| l.iter().any(|l| l.identity.starts_with("account:"))) {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let (handle, incoming) = irc::spawn(cfg, format!("{base}/"), shutdown.clone());
            let _ = status.state.set(handle.state.clone());
            let _ = status.out.set(handle.out.clone());
            tokio::spawn(listen(robot.clone(), handle.out.clone(), incoming));
            Some((irc_section, handle.out))
        }
        None => None,
    };
    let _ = status.hooks.set(hooks.iter().map(|(h, w)| (h.clone(), w.clone())).collect());
    if irc.is_some() || !hooks.is_empty() {
        tokio::spawn(announcer(robot, irc, hooks, bus));
    }
    Ok(())
}

async fn announcer(
    robot: Robot,
    irc: Option<(IrcSection, tokio::sync::mpsc::Sender<Outgoing>)>,
    hooks: Vec<(crew_chat::webhook::Sender, WebhookSection)>,
    mut bus: tokio::sync::broadcast::Receiver<Arc<Event>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let base = robot.platform.base_url();
    let shutdown = robot.platform.shutdown.clone();
    let status = &robot.chat.status;
    loop {
        let e = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = bus.recv() => match e {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the robot fell behind the timeline; some events were not announced");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        // A link made on any replica may name a services account: accounts then matter here too.
        if e.kind == kind::CHAT_LINKED && e.data["identity"].as_str().is_some_and(|i| i.starts_with("account:")) {
            status.want_accounts();
        }
        let text = announce::line(&e, &base);
        if let Some((irc, out)) = &irc {
            for room in &irc.channels {
                let filters =
                    irc.announce.iter().find(|(r, _)| r.eq_ignore_ascii_case(room)).map(|(_, f)| f.as_slice());
                if announce::wanted(filters.unwrap_or(&[]), &e.kind) {
                    robot.chat.said(room, "crew", &text).await;
                    let _ = out
                        .send(Outgoing::Announce { room: room.clone(), kind: e.kind.clone(), text: text.clone() })
                        .await;
                }
            }
        }
        for (sender, w) in &hooks {
            if announce::wanted(&w.announce, &e.kind) {
                sender.send(crew_chat::webhook::body(w.kind, &text, &e, w.channel.as_deref()));
            }
        }
    }
}

async fn listen(
    robot: Robot,
    out: tokio::sync::mpsc::Sender<Outgoing>,
    mut incoming: tokio::sync::mpsc::Receiver<Incoming>,
) {
    let mut limiter = Limiter::default();
    while let Some(m) = incoming.recv().await {
        // Every line said in a channel is kept, commands or not: a postmortem's timeline shows what was said.
        robot.chat.said(&m.room, &m.sender.nick, &m.text).await;
        let Some(parsed) = commands::parse(&m.text) else { continue };
        let reply = |text: String| Outgoing::Reply { room: m.room.clone(), text };
        // Refusals and errors are rate limited per person too (known or not), so bad commands cannot make the
        // robot flood a room.
        let sender_key = format!("{}@{}", m.sender.user, m.sender.host);
        let inv = match parsed {
            Ok(i) => i,
            Err(e) => {
                if limiter.allow_error(&sender_key, Instant::now()) {
                    let _ = out.send(reply(format!("{}: {e}", m.sender.nick))).await;
                }
                continue;
            }
        };
        let spec = commands::spec(inv.name).expect("parsed commands are known");
        // Who is speaking: the first [[chat.users]] whose pattern matches, and that user's role now (a revoked
        // token's user is nobody). Unknown people may run read commands only.
        let user = robot.chat.speaker(&m.sender).await;
        let role = match &user {
            Some(name) => robot.tokens.role_of(name).await.ok().flatten(),
            None => None,
        };
        let allowed = match role {
            Some(r) => r.allows(spec.role),
            None => Role::Viewer.allows(spec.role),
        };
        if !allowed {
            let why = match (&user, role) {
                (None, _) => format!("{}: !{} needs a crew user with role {}; you are not mapped to one ([[chat.users]] or crew chat link)", m.sender.nick, spec.name, spec.role.as_str()),
                (Some(u), Some(r)) => format!("{}: !{} needs role {}; {u} is {}", m.sender.nick, spec.name, spec.role.as_str(), r.as_str()),
                (Some(u), None) => format!("{}: {u} has no crew token; ask an admin", m.sender.nick),
            };
            if limiter.allow_error(&sender_key, Instant::now()) {
                let _ = out.send(reply(why)).await;
            }
            continue;
        }
        // Unmapped people are counted by user@host, not by nick, so changing nick gets no fresh budget.
        let who = user.clone().unwrap_or_else(|| format!("{}@{} (unmapped)", m.sender.user, m.sender.host));
        if !limiter.allow(&who, spec, Instant::now()) {
            if limiter.allow_error(&sender_key, Instant::now()) {
                let text =
                    format!("{}: slow down: !{} at most {} times a minute", m.sender.nick, spec.name, spec.limit.0);
                let _ = out.send(reply(text)).await;
            }
            continue;
        }
        let actor = Actor::new(user.unwrap_or_else(|| m.sender.nick.clone()), Via::Chat);
        let text = match run(&robot, &inv, actor, &m.room, &out).await {
            Ok(t) => t,
            Err(e) => format!("{}: {e}", m.sender.nick),
        };
        robot.chat.said(&m.room, "crew", &text).await;
        let _ = out.send(reply(text)).await;
    }
}

/// Runs one command; the answer is one short message (long-running ones answer at once and report later).
pub(crate) async fn run(
    robot: &Robot,
    inv: &Invocation,
    actor: Actor,
    room: &str,
    out: &tokio::sync::mpsc::Sender<Outgoing>,
) -> Result<String, ApiError> {
    let arg = |i: usize| inv.args.get(i).map(String::as_str);
    match inv.name {
        "help" => Ok(commands::help(arg(0))),
        "status" => status(robot).await,
        "log" => {
            let deploys = robot.deploys.list(arg(0), 3).await?;
            if deploys.is_empty() {
                return Ok("no deploys yet".into());
            }
            Ok(deploys.iter().map(crate::deploys::log_line).collect::<Vec<_>>().join("\n"))
        }
        "pending" => {
            let env = arg(0).unwrap_or_default();
            let p = robot.deploys.pending(env).await?;
            Ok(format!("{} commits on {} not yet on {env}", p.commits.len(), p.branch))
        }
        "graph" => {
            let name = arg(0).unwrap_or_default();
            let since = arg(1).unwrap_or("1h");
            let now = chrono::Utc::now();
            let from = crew_core::time::parse_time(&format!("-{}", since.trim_start_matches('-')), now)
                .map_err(ApiError::BadRequest)?;
            let q = crate::metrics::query::Query {
                name: name.to_string(),
                labels: vec![],
                from: from.timestamp_millis(),
                to: now.timestamp_millis(),
                step: None,
                stat: None,
            };
            let out = robot.metrics.query(&q).await?;
            let link = format!(
                "{}/graphs?q={}&range=1h",
                robot.platform.base_url(),
                url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
            );
            if out.series.iter().all(|s| s.points.is_empty()) {
                return Ok(format!("no data for {name} over {since}"));
            }
            let mut lines: Vec<String> = out
                .series
                .iter()
                .filter(|s| !s.points.is_empty())
                .take(3)
                .map(|s| {
                    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let title =
                        if labels.is_empty() { s.name.clone() } else { format!("{}{{{}}}", s.name, labels.join(",")) };
                    let last = s.points.last().map(|p| p.1).unwrap_or_default();
                    let (lo, hi) =
                        s.points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.1), h.max(p.1)));
                    format!(
                        "{title} {}: {} last {} (min {}, max {})",
                        s.stat,
                        crew_metrics::query::sparkline(&s.points, out.from, out.to, 24),
                        crew_metrics::query::short(last),
                        crew_metrics::query::short(lo),
                        crew_metrics::query::short(hi)
                    )
                })
                .collect();
            lines.push(link);
            Ok(lines.join("\n"))
        }
        "search" => {
            let mut f = EventFilter::new();
            f.words = crew_core::search_words(arg(0).unwrap_or_default());
            f.limit = 3;
            let page = robot.timeline.query(&f).await?;
            if page.events.is_empty() {
                return Ok("nothing on the timeline matches".into());
            }
            let base = robot.platform.base_url();
            Ok(page
                .events
                .iter()
                .map(|e| format!("{} {}", e.at.format("%Y-%m-%d %H:%M"), announce::line(e, &base)))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "lock" => {
            let (env, reason) = (arg(0).unwrap_or_default(), arg(1).unwrap_or_default());
            robot.deploys.lock(env, reason, actor.clone(), Some(room)).await?;
            Ok(format!("{env} locked by {}: {reason}", actor.name))
        }
        "unlock" => {
            let env = arg(0).unwrap_or_default();
            robot.deploys.unlock(env, actor, false, Some(room)).await?;
            Ok(format!("{env} unlocked"))
        }
        "deploy" | "rollback" => {
            let env = arg(0).unwrap_or_default();
            let d = if inv.name == "deploy" {
                robot.deploys.start(env, arg(1), &format!("from {room}"), actor).await?
            } else {
                let d = robot.deploys.rollback(env, None, actor.clone()).await?;
                // The rollback undoes a deploy listed before an open incident: it goes on that incident's timeline.
                if let Err(e) = robot.incidents.rolled_back(env, d.id, &actor).await {
                    tracing::warn!(error = %e, "the rollback was not recorded on the open incidents");
                }
                d
            };
            // The outcome is reported in this room when the deploy's final event arrives.
            let (base, out2, room2, id) = (robot.platform.base_url(), out.clone(), room.to_string(), d.id);
            let mut bus = robot.timeline.subscribe();
            tokio::spawn(async move {
                let ended = tokio::time::timeout(Duration::from_secs(3600), async {
                    loop {
                        match bus.recv().await {
                            Ok(e)
                                if kind::DEPLOY_ENDINGS[..3].contains(&e.kind.as_str())
                                    && e.data.get("deploy").and_then(|v| v.as_i64()) == Some(id) =>
                            {
                                return Some(e)
                            }
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => return None,
                        }
                    }
                })
                .await;
                if let Ok(Some(e)) = ended {
                    let _ = out2.send(Outgoing::Reply { room: room2, text: announce::line(&e, &base) }).await;
                }
            });
            let verb = if inv.name == "deploy" { "deploying" } else { "rolling back" };
            let warnings = robot.deploys.oncall_warnings(env).await;
            let warn = if warnings.is_empty() { String::new() } else { format!(" (warning: {})", warnings.join("; ")) };
            Ok(format!("{verb} {} to {env}, #{}{warn}", d.app, d.id))
        }
        "flag" => {
            let key = arg(0).unwrap_or_default();
            // The rest of the line after the key, as words.
            let words: Vec<&str> = inv.args.iter().skip(1).flat_map(|a| a.split_whitespace()).collect();
            let knob = match (words.first().copied(), words.get(1).copied(), words.len()) {
                (Some("on"), None, _) => Knob::On,
                (Some("off"), None, _) => Knob::Off,
                (Some("rollout"), Some(n), 2) => Knob::Rollout(
                    n.trim_end_matches('%')
                        .parse()
                        .map_err(|_| ApiError::BadRequest(format!("rollout takes a percent, not `{n}`")))?,
                ),
                (Some("ramp"), Some("cancel"), _) => {
                    let why = match words[2..].join(" ") {
                        w if w.is_empty() => format!("from {room}"),
                        w => w,
                    };
                    let r = robot.flags.cancel_ramp(key, &why, actor).await?;
                    return Ok(format!("{key}: ramp {} cancelled at {}%", r.id, r.percent()));
                }
                (Some("ramp"), Some(steps), n) if n >= 4 && words[2] == "every" => {
                    let steps = crate::flags::ramp::parse_steps_text(steps).map_err(ApiError::BadRequest)?;
                    let why = match words[4..].join(" ") {
                        w if w.is_empty() => format!("from {room}"),
                        w => w,
                    };
                    let (r, warnings) = robot.flags.start_ramp(key, &steps, words[3], &why, actor).await?;
                    let warn = if warnings.is_empty() {
                        String::new()
                    } else {
                        format!(" (warning: {})", warnings.join("; "))
                    };
                    return Ok(format!(
                        "{key}: ramp {} at {}%, judged every {} ({}){warn}",
                        r.id,
                        r.percent(),
                        words[3],
                        r.steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → ")
                    ));
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "usage: !flag KEY on|off|rollout N|ramp 1,5,25 every 10m WHY|ramp cancel WHY".into(),
                    ))
                }
            };
            let (_, after) = robot.flags.turn(key, &knob, true, &format!("from {room}"), actor).await?;
            Ok(format!("{key}: {}", after.as_ref().map(knobs::describe).unwrap_or_default()))
        }
        "oncall" => {
            let who = robot.oncall.now(arg(0), chrono::Utc::now()).await?;
            if who.is_empty() {
                return Ok("no schedules: crew.toml has no [[schedules]]".into());
            }
            Ok(who
                .iter()
                .map(|w| {
                    let now = w.now.user.as_deref().unwrap_or("NOBODY");
                    let next = w
                        .next
                        .as_ref()
                        .map(|n| {
                            format!(
                                ", then {} from {}",
                                n.user.as_deref().unwrap_or("nobody"),
                                n.from.format("%a %H:%M UTC")
                            )
                        })
                        .unwrap_or_default();
                    format!("{}: {now} until {}{next}", w.schedule, w.now.until.format("%a %H:%M UTC"))
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "incidents" => {
            let open = robot.incidents.list(true, 10).await?;
            if open.is_empty() {
                return Ok("no open incidents".into());
            }
            Ok(open
                .iter()
                .map(|i| format!("#{} {} [{}] {}", i.id, i.status, i.severity, i.summary))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "ack" => {
            let id = match arg(0) {
                Some(a) => crate::incidents::incident_id(a)?,
                None => match robot.incidents.newest_open().await? {
                    Some(i) => i.id,
                    None => return Ok("nothing to acknowledge: no incident is triggered".into()),
                },
            };
            let inc = robot.incidents.ack(id, actor.clone()).await?;
            Ok(format!("#{} acknowledged by {}: {}", inc.id, actor.name, inc.summary))
        }
        "resolve" => {
            let all = arg(0).unwrap_or_default();
            let (id, note) = match all.split_once(' ') {
                Some((id, note)) => (id, Some(note)),
                None => (all, None),
            };
            let inc = robot.incidents.resolve(crate::incidents::incident_id(id)?, note, actor.clone()).await?;
            Ok(format!("#{} resolved by {}", inc.id, actor.name))
        }
        "page" => {
            // The parser hands `!page` two arguments: WHO, then the rest of the line as TEXT.
            let (Some(who), Some(text)) = (arg(0), arg(1)) else {
                return Err(ApiError::BadRequest("usage: !page WHO TEXT".into()));
            };
            let escalation = if robot.oncall.config.escalations.contains_key(who) {
                who.to_string()
            } else if robot.oncall.person(who).is_some() {
                // A person: a one-step policy made for this page, snapshotted like any other.
                return page_person(robot, who, text, actor, room).await;
            } else {
                return Err(ApiError::BadRequest(format!("!page {who}: no escalation policy or person `{who}`")));
            };
            let t = crate::incidents::Trigger {
                key: format!("chat:{}", uuid::Uuid::now_v7()),
                summary: text.to_string(),
                severity: crew_core::Severity::Page,
                source: "person",
                escalation: Some(escalation.clone()),
                runbook: None,
                details: json!({"room": room}),
                source_id: None,
                drill: false,
            };
            let (inc, _) = robot.incidents.trigger(t, actor).await?;
            Ok(format!("#{} opened, paging {escalation}: {}", inc.id, inc.summary))
        }
        "runbook" => {
            let (path, text) = robot.runbooks.read(arg(0).unwrap_or_default()).await?;
            let link = format!("{}{}", robot.platform.base_url(), crate::runbooks::page(&path));
            let mut lines = crate::runbooks::markdown::mitigation_lines(&text, crate::runbooks::ROBOT_LINES);
            if lines.is_empty() {
                lines.push(format!("{path} has no Mitigation section"));
            }
            lines.push(link);
            Ok(lines.join("\n"))
        }
        "experiment" => {
            let key = arg(0).unwrap_or_default();
            let r = robot.experiments.results(key, arg(1), crew_experiments::Method::default()).await?;
            let link = format!("{}/flags/{key}/results", robot.platform.base_url());
            let Some(p) = r.phases.first() else {
                return Ok(format!("{key} is not a bucket test (split it to start one) {link}"));
            };
            let parts: Vec<String> = p
                .analysis
                .variants
                .iter()
                .map(|v| match &v.comparison {
                    None => format!("{} {:.2}% of {}", v.name, v.rate * 100.0, v.users),
                    Some(c) => format!(
                        "{} {:.2}% of {} ({:+.1}% [{:+.1}%, {:+.1}%], p {:.3})",
                        v.name,
                        v.rate * 100.0,
                        v.users,
                        c.lift * 100.0,
                        c.low * 100.0,
                        c.high * 100.0,
                        c.p_value
                    ),
                })
                .collect();
            let verdict = match &p.winner {
                Some(w) => format!("winner: {w}"),
                None => "no winner yet".into(),
            };
            let srm = if p.analysis.srm.mismatch { " · SAMPLE RATIO MISMATCH: do not trust it" } else { "" };
            Ok(format!("{key} on {}: {} · {verdict}{srm} {link}", r.metric, parts.join(" · ")))
        }
        other => Ok(format!("!{other} is not available here yet")),
    }
}

/// `!page PERSON TEXT`: an incident whose escalation is that one person.
async fn page_person(robot: &Robot, who: &str, text: &str, actor: Actor, room: &str) -> Result<String, ApiError> {
    let t = crate::incidents::Trigger {
        key: format!("chat:{}", uuid::Uuid::now_v7()),
        summary: text.to_string(),
        severity: crew_core::Severity::Page,
        source: "person",
        escalation: None,
        runbook: None,
        details: json!({"room": room, "page": who}),
        source_id: None,
        drill: false,
    };
    let (inc, _) = robot.incidents.trigger_to(t, who, actor).await?;
    Ok(format!("#{} opened, paging {who}: {}", inc.id, inc.summary))
}

async fn status(robot: &Robot) -> Result<String, ApiError> {
    let flags = robot.flags.current().stored.len();
    let Some(cfg) = robot.deploys.configured() else {
        return Ok(format!("crew is up; {flags} flags; no app configured"));
    };
    let mut parts = Vec::new();
    for env in robot.deploys.environments().await? {
        let rev = env
            .live
            .as_ref()
            .map(|d| crew_deploy::git::short(&d.revision).to_string())
            .unwrap_or_else(|| "nothing live".into());
        let lock = env
            .locks
            .iter()
            .find(|l| !Deploys::is_deploying(l))
            .map(|l| format!(" (locked by {}: {})", l.holder, l.reason))
            .unwrap_or_default();
        let running = env.locks.iter().any(Deploys::is_deploying);
        parts.push(format!("{} {rev}{}{lock}", env.name, if running { " deploying" } else { "" }));
    }
    Ok(format!("{}: {}; {flags} flags", cfg.app.name, parts.join(", ")))
}
