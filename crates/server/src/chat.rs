//! The robot in the server: `[chat]` of crew.toml, the IRC connection started with `crew serve`, the timeline
//! announced to rooms by their filters, and chat commands run as the crew user the speaker maps to (with that
//! user's role, `via chat`). The protocol and the command registry live in `crew-chat`.

use crate::deploys;
use crate::error::ApiError;
use crate::state::AppState;
use crew_chat::commands::{self, Invocation, Limiter};
use crew_chat::irc::{self, Incoming, IrcConfig, Outgoing};
use crew_chat::{announce, mask};
use crew_core::{Actor, Event, EventFilter, NewEvent, Role, Via};
use crew_flags::knobs::{self, Knob};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `[chat]` of crew.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSection {
    pub irc: Option<IrcSection>,
    /// Who is speaking: crew users and their chat identities.
    #[serde(default)]
    pub users: Vec<ChatUser>,
    /// IM webhooks (Slack, Mattermost, generic JSON) that hear the timeline.
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
}

/// `[[chat.webhooks]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub kind: crew_chat::webhook::Kind,
    /// The environment variable holding the URL (it is a secret), or the URL itself.
    pub url_env: Option<String>,
    pub url: Option<String>,
    /// Mattermost: post to this channel instead of the webhook's own.
    pub channel: Option<String>,
    /// The event kinds it hears (dotted prefixes, `*` for all); deploy, lock, flag, alert and incident if not given.
    #[serde(default)]
    pub announce: Vec<String>,
}

/// `[chat.irc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrcSection {
    pub server: String,
    /// 6697 with TLS, 6667 without, when not given.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: bool,
    /// Extra CA certificates (PEM) for a server with a private certificate.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_nick")]
    pub nick: String,
    #[serde(default)]
    pub alternates: Vec<String>,
    pub channels: Vec<String>,
    pub sasl: Option<Sasl>,
    /// Per room: the event kinds announced there (dotted prefixes, `*` for all). A channel not named here
    /// hears deploys, locks, flags, alerts and incidents.
    #[serde(default)]
    pub announce: BTreeMap<String, Vec<String>>,
    /// The flood rule: `burst` lines at once, then `lines_per_second`.
    pub burst: Option<u32>,
    pub lines_per_second: Option<f64>,
}

fn default_nick() -> String {
    "crew".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    pub account: String,
    /// The environment variable that holds the password (never the password itself in the file).
    pub password_env: String,
}

/// `[[chat.users]]`: a crew user (a token's name, whose role applies) and the chat identity that speaks as it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatUser {
    pub name: String,
    /// A hostmask pattern (`alice!*@*.example.com`) or `account:alice` for a services account.
    pub irc: Option<String>,
}

impl ChatSection {
    /// Cross-field checks, naming the key: channel names, hostmask patterns, ports.
    pub fn check(&self) -> Result<(), String> {
        if let Some(irc) = &self.irc {
            if irc.server.trim().is_empty() {
                return Err("chat.irc.server: empty".into());
            }
            if irc.channels.is_empty() {
                return Err("chat.irc.channels: name at least one channel".into());
            }
            for c in &irc.channels {
                if !c.starts_with(['#', '&']) || c.contains([' ', ',', '\x07']) {
                    return Err(format!("chat.irc.channels: `{c}` is not a channel name (#name)"));
                }
            }
            for room in irc.announce.keys() {
                if !irc.channels.iter().any(|c| c.eq_ignore_ascii_case(room)) {
                    return Err(format!("chat.irc.announce: `{room}` is not one of chat.irc.channels"));
                }
            }
            if irc.lines_per_second.is_some_and(|r| !(r > 0.0 && r <= 100.0)) {
                return Err("chat.irc.lines_per_second: between 0 and 100".into());
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            match (&w.url, &w.url_env) {
                (Some(_), Some(_)) => return Err(format!("chat.webhooks[{i}]: give url or url_env, not both")),
                (None, None) => return Err(format!("chat.webhooks[{i}]: url_env (or url) is missing")),
                (Some(u), None) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return Err(format!("chat.webhooks[{i}].url: not an http(s) URL"))
                }
                _ => {}
            }
            if w.channel.is_some() && w.kind != crew_chat::webhook::Kind::Mattermost {
                return Err(format!("chat.webhooks[{i}].channel: only Mattermost webhooks take a channel"));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if let Some(p) = &u.irc {
                mask::check_pattern(p).map_err(|e| format!("chat.users[{i}].irc: {e}"))?;
            }
        }
        Ok(())
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
    fn remember(&self, room: &str, who: &str, text: &str) {
        let mut r = self.recent.lock().expect("recent");
        if r.len() >= 50 {
            r.pop_front();
        }
        r.push_back(Said { at: chrono::Utc::now(), room: room.into(), who: who.into(), text: text.into() });
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
    Ok(cfg)
}

/// Starts the robot as crew.toml configures it: the IRC connection with its command loop, the webhooks, and
/// the announcer that feeds them the timeline.
pub fn start(st: &AppState, bus: tokio::sync::broadcast::Receiver<Arc<Event>>) -> anyhow::Result<()> {
    let Some(section) = st.settings.file.chat.clone() else { return Ok(()) };
    let base = base_url(st);
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
        hooks.push((crew_chat::webhook::spawn(hook, st.shutdown.clone()), w.clone()));
    }
    let _ = st.chat.webhooks.set(hooks.iter().map(|(h, _)| (h.name.clone(), h.counts.clone())).collect());
    let irc = match section.irc.clone() {
        Some(irc_section) => {
            let cfg = irc_config(&irc_section).map_err(anyhow::Error::msg)?;
            let _ = st.chat.whois.set(cfg.whois.clone());
            // Accounts matter if crew.toml or a stored link names one (the link handler turns it on later).
            let configured = section.users.iter().any(|u| u.irc.as_deref().is_some_and(|p| p.starts_with("account:")));
            cfg.whois.store(configured, std::sync::atomic::Ordering::Relaxed);
            let (store, flag) = (st.store.clone(), cfg.whois.clone());
            tokio::spawn(async move {
                if store.chat_links().await.is_ok_and(|l| l.iter().any(|l| l.identity.starts_with("account:"))) {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let (handle, incoming) = irc::spawn(cfg, format!("{base}/"), st.shutdown.clone());
            let _ = st.chat.state.set(handle.state.clone());
            tokio::spawn(listen(st.clone(), section.clone(), handle.out.clone(), incoming));
            Some((irc_section, handle.out))
        }
        None => None,
    };
    if irc.is_some() || !hooks.is_empty() {
        tokio::spawn(announcer(st.clone(), irc, hooks, bus));
    }
    Ok(())
}

fn base_url(st: &AppState) -> String {
    format!("http://{}", st.addr)
}

async fn announcer(
    st: AppState,
    irc: Option<(IrcSection, tokio::sync::mpsc::Sender<Outgoing>)>,
    hooks: Vec<(crew_chat::webhook::Sender, WebhookSection)>,
    mut bus: tokio::sync::broadcast::Receiver<Arc<Event>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let base = base_url(&st);
    loop {
        let e = tokio::select! {
            _ = st.shutdown.cancelled() => return,
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
        if e.kind == "chat.linked" && e.data["identity"].as_str().is_some_and(|i| i.starts_with("account:")) {
            if let Some(w) = st.chat.whois.get() {
                w.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let text = announce::line(&e, &base);
        if let Some((irc, out)) = &irc {
            for room in &irc.channels {
                let filters =
                    irc.announce.iter().find(|(r, _)| r.eq_ignore_ascii_case(room)).map(|(_, f)| f.as_slice());
                if announce::wanted(filters.unwrap_or(&[]), &e.kind) {
                    st.chat.remember(room, "crew", &text);
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
    st: AppState,
    section: ChatSection,
    out: tokio::sync::mpsc::Sender<Outgoing>,
    mut incoming: tokio::sync::mpsc::Receiver<Incoming>,
) {
    let mut limiter = Limiter::default();
    while let Some(m) = incoming.recv().await {
        let Some(parsed) = commands::parse(&m.text) else { continue };
        st.chat.remember(&m.room, &m.sender.nick, &m.text);
        let reply = |text: String| Outgoing::Reply { room: m.room.clone(), text };
        let inv = match parsed {
            Ok(i) => i,
            Err(e) => {
                let _ = out.send(reply(format!("{}: {e}", m.sender.nick))).await;
                continue;
            }
        };
        let spec = commands::spec(inv.name).expect("parsed commands are known");
        // Who is speaking: the first [[chat.users]] whose pattern matches, and that user's role now (a revoked
        // token's user is nobody). Unknown people may run read commands only.
        let user = match section.users.iter().find(|u| u.irc.as_deref().is_some_and(|p| mask::matches(p, &m.sender))) {
            Some(u) => Some(u.name.clone()),
            None => match st.store.chat_links().await {
                Ok(links) => links.into_iter().find(|l| mask::matches(&l.identity, &m.sender)).map(|l| l.user),
                Err(e) => {
                    tracing::error!(error = %e, "reading chat links failed; treating the speaker as unknown");
                    None
                }
            },
        };
        let role = match &user {
            Some(name) => {
                st.store.tokens().await.ok().and_then(|t| t.into_iter().find(|t| &t.name == name)).map(|t| t.role)
            }
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
            let _ = out.send(reply(why)).await;
            continue;
        }
        let who = user.clone().unwrap_or_else(|| format!("{} (unmapped)", m.sender.nick));
        if !limiter.allow(&who, spec, Instant::now()) {
            let _ = out
                .send(reply(format!(
                    "{}: slow down: !{} at most {} times a minute",
                    m.sender.nick, spec.name, spec.limit.0
                )))
                .await;
            continue;
        }
        let actor = Actor::new(user.unwrap_or_else(|| m.sender.nick.clone()), Via::Chat);
        let text = match run(&st, &inv, actor, &m.room, &out).await {
            Ok(t) => t,
            Err(e) => format!("{}: {e}", m.sender.nick),
        };
        st.chat.remember(&m.room, "crew", &text);
        let _ = out.send(reply(text)).await;
    }
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Runs one command; the answer is one short message (long-running ones answer at once and report later).
async fn run(
    st: &AppState,
    inv: &Invocation,
    actor: Actor,
    room: &str,
    out: &tokio::sync::mpsc::Sender<Outgoing>,
) -> Result<String, ApiError> {
    let arg = |i: usize| inv.args.get(i).map(String::as_str);
    match inv.name {
        "help" => Ok(commands::help(arg(0))),
        "status" => status(st).await,
        "log" => {
            let deploys = st.store.deploys(arg(0), 3).await?;
            if deploys.is_empty() {
                return Ok("no deploys yet".into());
            }
            Ok(deploys.iter().map(deploys::log_line).collect::<Vec<_>>().join("\n"))
        }
        "pending" => {
            let cfg = st.deploy.clone().ok_or_else(no_app)?;
            let env = arg(0).unwrap_or_default();
            cfg.environment(env).map_err(ApiError::NotFound)?;
            let head = crew_deploy::git::resolve(&cfg.repo, &cfg.app.branch, None)
                .await
                .map_err(|e| ApiError::BadRequest(e.0))?;
            let live = deploys::live(&*st.store, env).await?;
            let commits = crew_deploy::git::commits(&cfg.repo, live.as_ref().map(|d| d.revision.as_str()), &head)
                .await
                .map_err(|e| ApiError::BadRequest(e.0))?;
            Ok(format!("{} commits on {} not yet on {env}", commits.len(), cfg.app.branch))
        }
        "graph" => {
            let name = arg(0).unwrap_or_default();
            let since = arg(1).unwrap_or("1h");
            let now = chrono::Utc::now();
            let from = crew_core::time::parse_time(&format!("-{}", since.trim_start_matches('-')), now)
                .map_err(ApiError::BadRequest)?;
            let q = crate::api::metrics::Query {
                name: name.to_string(),
                labels: vec![],
                from: from.timestamp_millis(),
                to: now.timestamp_millis(),
                step: None,
                stat: None,
            };
            let out = crate::api::metrics::run_query(st, &q).await?;
            let link = format!(
                "{}/graphs?q={}&range=1h",
                base_url(st),
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
                        short(last),
                        short(lo),
                        short(hi)
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
            let page = st.store.query(&f).await?;
            if page.events.is_empty() {
                return Ok("nothing on the timeline matches".into());
            }
            let base = base_url(st);
            Ok(page
                .events
                .iter()
                .map(|e| format!("{} {}", e.at.format("%Y-%m-%d %H:%M"), announce::line(e, &base)))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "lock" => {
            let (env, reason) = (arg(0).unwrap_or_default(), arg(1).unwrap_or_default());
            deploys::lock(st, env, reason, actor.clone(), Some(room)).await?;
            Ok(format!("{env} locked by {}: {reason}", actor.name))
        }
        "unlock" => {
            let env = arg(0).unwrap_or_default();
            deploys::unlock(st, env, actor, false, Some(room)).await?;
            Ok(format!("{env} unlocked"))
        }
        "deploy" | "rollback" => {
            let env = arg(0).unwrap_or_default();
            let d = if inv.name == "deploy" {
                deploys::start(st, env, arg(1), &format!("from {room}"), actor).await?
            } else {
                deploys::rollback(st, env, None, actor).await?
            };
            // The outcome is reported in this room when the deploy's final event arrives.
            let (st2, out2, room2, id) = (st.clone(), out.clone(), room.to_string(), d.id);
            let mut bus = st.store.subscribe();
            tokio::spawn(async move {
                let ended = tokio::time::timeout(Duration::from_secs(3600), async {
                    loop {
                        match bus.recv().await {
                            Ok(e)
                                if matches!(
                                    e.kind.as_str(),
                                    "deploy.finished" | "deploy.failed" | "deploy.rolled_back"
                                ) && e.data.get("deploy").and_then(|v| v.as_i64()) == Some(id) =>
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
                    let _ = out2.send(Outgoing::Reply { room: room2, text: announce::line(&e, &base_url(&st2)) }).await;
                }
            });
            let verb = if inv.name == "deploy" { "deploying" } else { "rolling back" };
            Ok(format!("{verb} {} to {env}, #{}", d.app, d.id))
        }
        "flag" => {
            let key = arg(0).unwrap_or_default();
            let knob = match (arg(1), arg(2)) {
                (Some("on"), None) => Knob::On,
                (Some("off"), None) => Knob::Off,
                (Some("rollout"), Some(n)) => Knob::Rollout(
                    n.trim_end_matches('%')
                        .parse()
                        .map_err(|_| ApiError::BadRequest(format!("rollout takes a percent, not `{n}`")))?,
                ),
                _ => return Err(ApiError::BadRequest("usage: !flag KEY on|off|rollout N".into())),
            };
            let (_, after) = crate::flags::turn(st, key, &knob, true, &format!("from {room}"), actor).await?;
            Ok(format!("{key}: {}", after.as_ref().map(knobs::describe).unwrap_or_default()))
        }
        other => Ok(format!("!{other} is not available here yet")),
    }
}

/// `POST /api/v1/chat/command` `{"text": "!status"}`: the robot's commands over HTTP, run as the caller with
/// the caller's role (the same registry and code as in a room). A long-running command's outcome is not
/// reported here: follow the deploy it names.
pub async fn command(
    caller: crate::auth::Caller,
    axum::extract::State(st): axum::extract::State<AppState>,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        text: String,
    }
    caller.require(Role::Viewer)?;
    let req: Req = crate::api::parse_json(&body)?;
    let inv = match commands::parse(&req.text) {
        None => return Err(ApiError::BadRequest("a command starts with `!`: try `!help`".into())),
        Some(Err(e)) => return Err(ApiError::BadRequest(e)),
        Some(Ok(i)) => i,
    };
    let spec = commands::spec(inv.name).expect("parsed commands are known");
    caller.require(spec.role)?;
    let (out, _) = tokio::sync::mpsc::channel(1);
    let reply = run(&st, &inv, caller.actor(), "the API", &out).await?;
    Ok(axum::Json(json!({"command": inv.name, "reply": reply})))
}

/// `GET /api/v1/chat/links`: the identities linked by `crew chat link` (crew.toml's [[chat.users]] too).
pub async fn links(
    _: crate::auth::Viewer,
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let stored: Vec<serde_json::Value> = st
        .store
        .chat_links()
        .await?
        .into_iter()
        .map(|l| json!({"identity": l.identity, "user": l.user, "created_at": crew_core::time::rfc3339(l.created_at), "created_by": l.created_by, "from": "crew chat link"}))
        .collect();
    let configured = st
        .settings
        .file
        .chat
        .iter()
        .flat_map(|c| c.users.iter())
        .filter_map(|u| u.irc.as_ref().map(|p| json!({"identity": p, "user": u.name, "from": "crew.toml"})));
    Ok(axum::Json(json!({"links": configured.chain(stored).collect::<Vec<_>>()})))
}

/// `POST /api/v1/chat/links` `{identity, user}` links (admin); `{identity, user: null}` removes the link.
pub async fn link(
    crate::auth::Admin(caller): crate::auth::Admin,
    axum::extract::State(st): axum::extract::State<AppState>,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        identity: String,
        user: Option<String>,
    }
    let req: Req = crate::api::parse_json(&body)?;
    let identity = req.identity.trim();
    mask::check_pattern(identity).map_err(ApiError::BadRequest)?;
    let event = match &req.user {
        Some(user) => {
            if !st.store.tokens().await?.iter().any(|t| &t.name == user) {
                return Err(ApiError::NotFound(format!(
                    "no crew user `{user}`: create its token first (crew token create {user})"
                )));
            }
            NewEvent::new(
                caller.actor(),
                "chat.linked",
                &format!("user:{user}"),
                format!("{} linked {identity} to {user}", caller.name),
            )
            .with_data(json!({"identity": identity, "user": user}))
        }
        None => NewEvent::new(
            caller.actor(),
            "chat.unlinked",
            &format!("chat:{identity}"),
            format!("{} unlinked {identity}", caller.name),
        )
        .with_data(json!({"identity": identity})),
    };
    let e = st.store.put_chat_link(identity, req.user.as_deref(), &caller.name, event).await?;
    if identity.starts_with("account:") && req.user.is_some() {
        if let Some(w) = st.chat.whois.get() {
            w.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(axum::Json(json!({"identity": identity, "user": req.user, "event": e.id})))
}

fn no_app() -> ApiError {
    ApiError::BadRequest("this server's crew.toml has no [app]: no deploys here".into())
}

async fn status(st: &AppState) -> Result<String, ApiError> {
    let flags = st.flags.current().stored.len();
    let Some(cfg) = st.deploy.clone() else { return Ok(format!("crew is up; {flags} flags; no app configured")) };
    let locks = st.store.locks().await?;
    let mut parts = Vec::new();
    for env in cfg.environments.keys() {
        let live = deploys::live(&*st.store, env).await?;
        let rev = live
            .as_ref()
            .map(|d| crew_deploy::git::short(&d.revision).to_string())
            .unwrap_or_else(|| "nothing live".into());
        let lock = locks
            .iter()
            .find(|l| &l.environment == env && l.kind != "deploy")
            .map(|l| format!(" (locked by {}: {})", l.holder, l.reason))
            .unwrap_or_default();
        let running = locks.iter().any(|l| &l.environment == env && l.kind == "deploy");
        parts.push(format!("{env} {rev}{}{lock}", if running { " deploying" } else { "" }));
    }
    Ok(format!("{}: {}; {flags} flags", cfg.app.name, parts.join(", ")))
}
