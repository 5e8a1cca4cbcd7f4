//! The deploys domain, one function per action: start a deploy (the checks first: environment, revision on
//! trunk, `requires`, the locks), roll back, lock and unlock an environment, and read the deploy log, a deploy,
//! its output, what is live and what is pending. The API, the web pages and the robot all call these; the
//! deploy itself runs in the background (`runner.rs`).

pub mod api;
mod judged;
mod runner;
pub mod web;

pub use runner::{interrupt_leftovers, sweep, HEARTBEAT, STALE_AFTER};

use crate::error::ApiError;
use crate::state::Platform;
use crew_core::{kind, Actor, DeployAction, DeployStatus, Event, LockKind, NewEvent};
use crew_deploy::git::{self, Commit};
use crew_deploy::DeployConfig;
use crew_store::{Deploy, Lock, NewDeploy, Store};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Deploys {
    store: Arc<dyn Store>,
    /// The app's deploy configuration, if crew.toml has one.
    config: Option<Arc<DeployConfig>>,
    /// Where builds are kept (`<data-dir>/builds`), one per commit.
    builds: PathBuf,
    shutdown: CancellationToken,
    /// Who is on call, for the deploy gate (`[environments.*] oncall`).
    oncall: crate::oncall::Oncall,
    /// The judge's reading of the series, for `[environments.*.watch]`.
    feedback: crate::feedback::Feedback,
}

/// A person's decision on a deploy the judge held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Switch the rest of the hosts.
    Proceed,
    /// Switch every switched host back.
    SwitchBack,
}

impl std::str::FromStr for Decision {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match s {
            "proceed" => Ok(Decision::Proceed),
            "switch_back" | "switch-back" => Ok(Decision::SwitchBack),
            _ => Err(ApiError::BadRequest(format!("`decision`: `{s}` is not proceed or switch-back"))),
        }
    }
}

/// What is pending on an environment: the commits on trunk not live there, and (with `requires`) what the
/// required environment runs that this one lacks.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub environment: String,
    pub branch: String,
    pub head: String,
    pub hosts: usize,
    pub live: Option<String>,
    pub commits: Vec<Commit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires: Option<Required>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Required {
    pub environment: String,
    pub live: String,
    pub commits: Vec<Commit>,
}

/// One environment as the Deploys page, `crew status` and `!status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentState {
    pub name: String,
    pub live: Option<Deploy>,
    pub locks: Vec<Lock>,
    /// Commits on trunk not live here (empty when git cannot tell).
    #[serde(skip)]
    pub pending: Vec<Commit>,
}

/// `3f2a1c9..8e4d0b1 (7 commits)`, or `8e4d0b1 (first deploy)`.
pub fn range(previous: Option<&str>, revision: &str, commits: i64) -> String {
    match previous {
        Some(p) => format!(
            "{}..{} ({commits} commit{})",
            git::short(p),
            git::short(revision),
            if commits == 1 { "" } else { "s" }
        ),
        None => format!("{} (first deploy)", git::short(revision)),
    }
}

/// A deploy message or a lock reason: one line of at most 200 characters.
pub fn check_message(m: &str) -> Result<(), ApiError> {
    if m.chars().count() > 200 || m.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("message: one line of at most 200 characters".into()));
    }
    Ok(())
}

/// One deploy as a line of the deploy log, the Flickr way:
/// `[2026-11-26 16:03:57] [alice] www deployed to production: 3f2a1c9..8e4d0b1 (7 commits) "fix login"`.
pub fn log_line(d: &Deploy) -> String {
    use DeployAction::Rollback;
    use DeployStatus::*;
    let range = range(d.previous.as_deref(), &d.revision, d.commits);
    let msg = if d.action == Rollback { String::new() } else { quoted(&d.message) };
    let (app, env, err) = (&d.app, &d.environment, d.error.as_deref().unwrap_or(""));
    let rev = git::short(&d.revision);
    let what = match (d.action, d.status) {
        (Rollback, Succeeded) => format!("{app} rolled back {env} to {rev} ({})", d.message),
        (Rollback, Running) => format!("{app} rolling back {env} to {rev}"),
        (Rollback, st) => format!("{app} rollback of {env} {st}: {err}"),
        (_, Succeeded) => format!("{app} deployed to {env}: {range}{msg}"),
        (_, Running) => format!("{app} deploying to {env}: {range}{msg}"),
        (_, RolledBack) => format!("{app} deploy to {env} failed, switched back: {range}{msg}: {err}"),
        (_, Interrupted) => format!("{app} deploy to {env} interrupted: {range}{msg}"),
        (_, Failed) => format!("{app} failed to deploy to {env}: {range}{msg}: {err}"),
    };
    format!("[{}] [{}] {what}", crew_core::time::human(d.started_at), d.actor)
}

fn quoted(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" \"{message}\"")
    }
}

/// A git failure reading the server's own repository: the server's fault, not the caller's.
fn git_fault(e: crew_deploy::DeployError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(e.0))
}

impl Deploys {
    pub fn new(p: &Platform, oncall: crate::oncall::Oncall, feedback: crate::feedback::Feedback) -> Self {
        Deploys {
            feedback,
            store: p.store.clone(),
            config: p.settings.deploy.clone().map(Arc::new),
            builds: p.settings.data_dir.join("builds"),
            shutdown: p.shutdown.clone(),
            oncall,
        }
    }

    /// The deploy gate: what is wrong with deploying `environment` now as far as on-call goes — nobody on call
    /// for its schedule (`oncall = "ops"`), or a handoff less than 30 minutes away. Empty when all is well or
    /// the environment names no schedule.
    pub async fn oncall_warnings(&self, environment: &str) -> Vec<String> {
        let Some(cfg) = &self.config else { return vec![] };
        let Ok(env) = cfg.environment(environment) else { return vec![] };
        let Some(schedule) = &env.oncall else { return vec![] };
        let now = chrono::Utc::now();
        let who = match self.oncall.now(Some(schedule), now).await {
            Ok(mut w) => match w.pop() {
                Some(w) => w,
                None => return vec![],
            },
            Err(e) => return vec![format!("cannot tell who is on call for {schedule}: {e}")],
        };
        let mut out = Vec::new();
        match &who.now.user {
            None => out.push(format!("nobody is on call for {schedule} (the schedule of {environment}) right now")),
            Some(u) => {
                let left = who.now.until - now;
                if left < chrono::Duration::minutes(30) {
                    let next = who.next.as_ref().and_then(|n| n.user.clone()).unwrap_or_else(|| "nobody".into());
                    out.push(format!(
                        "{u}'s on-call shift for {schedule} ends in {} min (then {next}): deploy after the handoff",
                        left.num_minutes().max(0)
                    ));
                }
            }
        }
        out
    }

    /// The deploy configuration, or a 400 saying crew.toml has none.
    pub fn config(&self) -> Result<Arc<DeployConfig>, ApiError> {
        self.config.clone().ok_or_else(|| {
            ApiError::BadRequest("this server's crew.toml has no [app] and [build]: nothing to deploy".into())
        })
    }

    /// The configuration if there is one (pages show "nothing to deploy" without it).
    pub fn configured(&self) -> Option<Arc<DeployConfig>> {
        self.config.clone()
    }

    /// `www/production`: the subject of an environment's events; `NotFound` for an environment crew.toml lacks.
    pub fn known_environment(&self, env: &str) -> Result<String, ApiError> {
        let cfg = self.config()?;
        cfg.environment(env).map_err(ApiError::NotFound)?;
        Ok(format!("{}/{env}", cfg.app.name))
    }

    /// The deploy live on an environment: its newest succeeded deploy or rollback.
    pub async fn live(&self, environment: &str) -> Result<Option<Deploy>, ApiError> {
        Ok(self.store.deploys(Some(environment), 200).await?.into_iter().find(|d| d.status == DeployStatus::Succeeded))
    }

    /// The deploy log, newest first, of one environment or all.
    pub async fn list(&self, environment: Option<&str>, limit: u32) -> Result<Vec<Deploy>, ApiError> {
        Ok(self.store.deploys(environment, limit).await?)
    }

    /// One deploy by number.
    pub async fn get(&self, id: i64) -> Result<Deploy, ApiError> {
        self.store.deploy(id).await?.ok_or_else(|| ApiError::NotFound(format!("no deploy #{id}")))
    }

    /// A deploy's output from line `offset`, at most `limit` lines, each with its number.
    pub async fn output(&self, id: i64, offset: i64, limit: i64) -> Result<Vec<(i64, String)>, ApiError> {
        Ok(self.store.deploy_log(id, offset, limit).await?)
    }

    /// The number of a deploy's first stored log line and one past its last.
    pub async fn output_span(&self, id: i64) -> Result<(i64, i64), ApiError> {
        Ok(self.store.deploy_log_span(id).await?)
    }

    /// Every lock held (manual and running deploys').
    pub async fn locks(&self) -> Result<Vec<Lock>, ApiError> {
        Ok(self.store.locks().await?)
    }

    /// The commits on trunk's head not yet live on an environment (`live`: its live revision).
    async fn commits_to(&self, cfg: &DeployConfig, live: Option<&str>, head: &str) -> Result<Vec<Commit>, ApiError> {
        git::commits(&cfg.repo, live, head).await.map_err(git_fault)
    }

    /// What is pending on `env`: the one computation behind `crew pending`, the Deploys page and `!pending`.
    pub async fn pending(&self, env: &str) -> Result<Pending, ApiError> {
        let cfg = self.config()?;
        let e = cfg.environment(env).map_err(ApiError::NotFound)?;
        let head = git::resolve(&cfg.repo, &cfg.app.branch, None).await.map_err(git_fault)?;
        let live = self.live(env).await?.map(|d| d.revision);
        let commits = self.commits_to(&cfg, live.as_deref(), &head).await?;
        let requires = match &e.requires {
            Some(req) => match self.live(req).await? {
                Some(there) => {
                    let ahead = self.commits_to(&cfg, live.as_deref(), &there.revision).await?;
                    Some(Required { environment: req.clone(), live: there.revision, commits: ahead })
                }
                None => None,
            },
            None => None,
        };
        Ok(Pending {
            environment: env.to_string(),
            branch: cfg.app.branch.clone(),
            head,
            hosts: e.hosts.len(),
            live,
            commits,
            requires,
        })
    }

    /// Every environment with its live deploy, its locks and its pending commits (none when git cannot tell:
    /// a page that lists environments still shows them).
    pub async fn environments(&self) -> Result<Vec<EnvironmentState>, ApiError> {
        let Some(cfg) = self.config.clone() else { return Ok(vec![]) };
        let locks = self.store.locks().await?;
        let head = git::resolve(&cfg.repo, &cfg.app.branch, None).await.ok();
        let mut out = Vec::new();
        for name in cfg.environments.keys() {
            let live = self.live(name).await?;
            let pending = match &head {
                Some(h) => {
                    self.commits_to(&cfg, live.as_ref().map(|d| d.revision.as_str()), h).await.unwrap_or_default()
                }
                None => vec![],
            };
            let locks = locks.iter().filter(|l| &l.environment == name).cloned().collect();
            out.push(EnvironmentState { name: name.clone(), live, locks, pending });
        }
        Ok(out)
    }

    /// Takes a manual lock with its `lock.taken` event; `place` (a chat room) is named when the lock came from one.
    pub async fn lock(&self, env: &str, reason: &str, actor: Actor, place: Option<&str>) -> Result<Event, ApiError> {
        if reason.trim().is_empty() {
            return Err(ApiError::BadRequest("a lock needs a reason (-m \"why\"), so others know when to ask".into()));
        }
        check_message(reason)?;
        let what = format!("locked {env}: {reason}");
        let event = self.lock_event(
            env,
            kind::LOCK_TAKEN,
            &what,
            json!({"environment": env, "reason": reason}),
            &actor,
            place,
        )?;
        Ok(self.store.take_lock(env, &actor.name, reason, event).await?)
    }

    /// Releases `actor`'s manual lock (any lock for an admin) with its `lock.released` event.
    pub async fn unlock(&self, env: &str, actor: Actor, admin: bool, place: Option<&str>) -> Result<Event, ApiError> {
        let what = format!("unlocked {env}");
        let event = self.lock_event(env, kind::LOCK_RELEASED, &what, json!({"environment": env}), &actor, place)?;
        Ok(self.store.release_lock(env, &actor.name, admin, event).await?)
    }

    /// A lock's event: `alice locked production: db (in #ops)`, with the room in its data when it came from one.
    fn lock_event(
        &self,
        env: &str,
        kind: &str,
        what: &str,
        mut data: serde_json::Value,
        actor: &Actor,
        place: Option<&str>,
    ) -> Result<NewEvent, ApiError> {
        let subject = self.known_environment(env)?;
        let within = place.map(|p| format!(" (in {p})")).unwrap_or_default();
        if let Some(p) = place {
            data["room"] = json!(p);
        }
        Ok(NewEvent::new(actor.clone(), kind, &subject, format!("{} {what}{within}", actor.name)).with_data(data))
    }

    /// Checks and starts a deploy; it runs in the background. `Conflict` when locked or refused by `requires`.
    pub async fn start(
        &self,
        environment: &str,
        rev: Option<&str>,
        message: &str,
        actor: Actor,
    ) -> Result<Deploy, ApiError> {
        check_message(message)?;
        let cfg = self.config()?;
        let env = cfg.environment(environment).map_err(ApiError::NotFound)?;
        if env.require_oncall {
            let warnings = self.oncall_warnings(environment).await;
            if !warnings.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "{environment} requires someone on call (require_oncall): {}",
                    warnings.join("; ")
                )));
            }
        }
        let sha = git::resolve(&cfg.repo, &cfg.app.branch, rev).await.map_err(|e| ApiError::BadRequest(e.0))?;
        let previous = self.live(environment).await?.map(|d| d.revision);
        if let Some(required) = &env.requires {
            let there = self.live(required).await?;
            let ok = match &there {
                Some(d) => git::is_ancestor(&cfg.repo, &sha, &d.revision).await,
                None => false,
            };
            if !ok {
                let runs = there
                    .map(|d| format!("{} runs {}", required, git::short(&d.revision)))
                    .unwrap_or_else(|| format!("{required} has no live release"));
                return Err(ApiError::Conflict(format!(
                    "{environment} requires {required}: {} is not live on {required} yet ({runs})",
                    git::short(&sha)
                )));
            }
        }
        // A live commit that is gone from the repository (a force-push, then gc) must not block every later deploy.
        let commits = match git::commits(&cfg.repo, previous.as_deref(), &sha).await {
            Ok(c) => c.len() as i64,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the commits of this deploy");
                0
            }
        };
        let release = format!("{}-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"), git::short(&sha));
        let new = NewDeploy {
            app: cfg.app.name.clone(),
            environment: environment.to_string(),
            action: DeployAction::Deploy,
            revision: sha.clone(),
            previous: previous.clone(),
            release,
            commits,
            message: message.to_string(),
            actor: actor.clone(),
        };
        let summary = format!(
            "{} deploying {} to {environment}: {}{}",
            actor.name,
            cfg.app.name,
            range(previous.as_deref(), &sha, commits),
            quoted(message)
        );
        self.launch(cfg, new, summary).await
    }

    /// Starts a rollback of `environment` to the deploy `to`, or to the release live before the current one.
    pub async fn rollback(&self, environment: &str, to: Option<i64>, actor: Actor) -> Result<Deploy, ApiError> {
        let cfg = self.config()?;
        cfg.environment(environment).map_err(ApiError::NotFound)?;
        let history: Vec<Deploy> = self
            .store
            .deploys(Some(environment), 500)
            .await?
            .into_iter()
            .filter(|d| d.status == DeployStatus::Succeeded)
            .collect();
        let current = history
            .first()
            .cloned()
            .ok_or_else(|| ApiError::Conflict(format!("{environment} has no live release to roll back from")))?;
        let target =
            match to {
                Some(id) => history.iter().find(|d| d.id == id).cloned().ok_or_else(|| {
                    ApiError::NotFound(format!("deploy #{id} is not a succeeded deploy of {environment}"))
                })?,
                // Release names begin with their time: the newest release older than the live one, so a second
                // rollback goes further back, never forward again.
                None => history.iter().find(|d| d.release < current.release).cloned().ok_or_else(|| {
                    ApiError::Conflict(format!("{environment} has no earlier release to roll back to"))
                })?,
            };
        let new = NewDeploy {
            app: cfg.app.name.clone(),
            environment: environment.to_string(),
            action: DeployAction::Rollback,
            revision: target.revision.clone(),
            previous: Some(current.revision.clone()),
            release: target.release.clone(),
            commits: 0,
            message: format!("roll back to #{}", target.id),
            actor: actor.clone(),
        };
        let summary = format!(
            "{} rolling back {} {environment} from {} to {} (#{})",
            actor.name,
            cfg.app.name,
            git::short(&current.revision),
            git::short(&target.revision),
            target.id
        );
        self.launch(cfg, new, summary).await
    }

    /// Records the deploy (refused while locked) with its `deploy.started` event, then runs it in the background.
    async fn launch(&self, cfg: Arc<DeployConfig>, new: NewDeploy, summary: String) -> Result<Deploy, ApiError> {
        let subject = format!("{}/{}", cfg.app.name, new.environment);
        let (actor, action) = (new.actor.clone(), new.action);
        let (deploy, _) = self
            .store
            .start_deploy(
                new,
                Box::new(move |id| {
                    NewEvent::new(actor, kind::DEPLOY_STARTED, &subject, summary)
                        .with_data(json!({"deploy": id, "action": action}))
                        .with_link("deploy", &format!("/deploys/{id}"))
                }),
            )
            .await?;
        let watch = match deploy.action {
            DeployAction::Deploy => cfg.environment(&deploy.environment).ok().and_then(|e| e.watch.clone()),
            DeployAction::Rollback => None,
        };
        let gate = judged::Judged {
            feedback: self.feedback.clone(),
            store: self.store.clone(),
            deploy: deploy.clone(),
            watch,
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(runner::run(
            self.store.clone(),
            cfg,
            self.builds.clone(),
            deploy.clone(),
            self.shutdown.clone(),
            gate,
        ));
        Ok(deploy)
    }

    /// A person's decision on a running deploy the judge holds: its `deploy.decided` event, which the
    /// deploy's replica hears on the bus. `Conflict` when the deploy is not running.
    pub async fn decide(&self, id: i64, decision: Decision, reason: &str, actor: Actor) -> Result<Event, ApiError> {
        check_message(reason)?;
        let d = self.get(id).await?;
        if d.status != DeployStatus::Running || d.action != DeployAction::Deploy {
            return Err(ApiError::Conflict(format!("deploy #{id} is not running ({}): nothing to decide", d.status)));
        }
        let word = match decision {
            Decision::Proceed => judged::PROCEED,
            Decision::SwitchBack => judged::SWITCH_BACK,
        };
        let summary = format!(
            "{} decided deploy #{id} of {} to {}: {}{}",
            actor.name,
            d.app,
            d.environment,
            word.replace('_', " "),
            if reason.is_empty() { String::new() } else { format!(" ({reason})") }
        );
        let event = NewEvent::new(actor, kind::DEPLOY_DECIDED, &format!("{}/{}", d.app, d.environment), summary)
            .with_data(json!({"deploy": id, "decision": word, "reason": reason}))
            .with_link("deploy", &format!("/deploys/{id}"));
        Ok(self.store.append(vec![event]).await?.remove(0))
    }

    /// The judge's verdicts on a deploy (`deploy.judged`), oldest first.
    pub async fn verdicts(&self, d: &Deploy) -> Result<Vec<Event>, ApiError> {
        let mut f = crew_core::EventFilter::new().limit(200);
        f.kind = Some(kind::DEPLOY_JUDGED.into());
        f.subject = Some(format!("{}/{}", d.app, d.environment));
        f.since = Some(d.started_at);
        let mut out: Vec<Event> = self
            .store
            .query(&f)
            .await?
            .events
            .into_iter()
            .filter(|e| e.data["deploy"].as_i64() == Some(d.id))
            .collect();
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// The watch of an environment, if it has one (shown on the deploy's page), and the series in it crew has
    /// never received.
    pub fn watch(&self, environment: &str) -> Option<(crew_deploy::Watch, Vec<String>)> {
        let cfg = self.config.as_ref()?;
        let w = cfg.environment(environment).ok()?.watch.clone()?;
        let unseen = self.feedback.unseen(&w.series);
        Some((w, unseen))
    }

    /// Whether a lock is a running deploy's.
    pub fn is_deploying(l: &Lock) -> bool {
        l.kind == LockKind::Deploy
    }

    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
