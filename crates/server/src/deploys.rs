//! Deploys on the server: the checks before a deploy starts (environment, revision on trunk, `requires`, the
//! locks), the record and its events, the deploy itself in the background with its log written to the store,
//! and rollbacks.

use crate::error::ApiError;
use crate::state::AppState;
use crew_core::{Actor, NewEvent};
use crew_deploy::run::{Outcome, Status};
use crew_deploy::{git, DeployConfig, Journal};
use crew_store::{Deploy, NewDeploy, Store};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The deploy live on an environment: its newest succeeded deploy or rollback.
pub async fn live(store: &dyn Store, environment: &str) -> Result<Option<Deploy>, ApiError> {
    Ok(store.deploys(Some(environment), 200).await?.into_iter().find(|d| d.status == "succeeded"))
}

fn config(st: &AppState) -> Result<Arc<DeployConfig>, ApiError> {
    st.deploy.clone().ok_or_else(|| {
        ApiError::BadRequest("this server's crew.toml has no [app] and [build]: nothing to deploy".into())
    })
}

fn subject(cfg: &DeployConfig, environment: &str) -> String {
    format!("{}/{}", cfg.app.name, environment)
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

/// `www/production`: the subject of an environment's events; `NotFound` for an environment crew.toml lacks.
pub fn known_environment(st: &AppState, env: &str) -> Result<String, ApiError> {
    let cfg = st
        .deploy
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("this server's crew.toml has no [app] and [build]".into()))?;
    cfg.environment(env).map_err(ApiError::NotFound)?;
    Ok(format!("{}/{env}", cfg.app.name))
}

/// Takes a manual lock with its `lock.taken` event; `place` (a chat room) is named when the lock came from one.
/// Shared by the API, the web and the robot.
pub async fn lock(
    st: &AppState,
    env: &str,
    reason: &str,
    actor: Actor,
    place: Option<&str>,
) -> Result<crew_core::Event, ApiError> {
    if reason.trim().is_empty() {
        return Err(ApiError::BadRequest("a lock needs a reason (-m \"why\"), so others know when to ask".into()));
    }
    check_message(reason)?;
    let subject = known_environment(st, env)?;
    let within = place.map(|p| format!(" (in {p})")).unwrap_or_default();
    let mut data = json!({"environment": env, "reason": reason});
    if let Some(p) = place {
        data["room"] = json!(p);
    }
    let event =
        NewEvent::new(actor.clone(), "lock.taken", &subject, format!("{} locked {env}: {reason}{within}", actor.name))
            .with_data(data);
    Ok(st.store.take_lock(env, &actor.name, reason, event).await?)
}

/// Releases `actor`'s manual lock (any lock for an admin) with its `lock.released` event.
pub async fn unlock(
    st: &AppState,
    env: &str,
    actor: Actor,
    admin: bool,
    place: Option<&str>,
) -> Result<crew_core::Event, ApiError> {
    let subject = known_environment(st, env)?;
    let within = place.map(|p| format!(" (in {p})")).unwrap_or_default();
    let mut data = json!({"environment": env});
    if let Some(p) = place {
        data["room"] = json!(p);
    }
    let event =
        NewEvent::new(actor.clone(), "lock.released", &subject, format!("{} unlocked {env}{within}", actor.name))
            .with_data(data);
    Ok(st.store.release_lock(env, &actor.name, admin, event).await?)
}

/// Checks and starts a deploy; it runs in the background. `Conflict` when locked or refused by `requires`.
pub async fn start(
    st: &AppState,
    environment: &str,
    rev: Option<&str>,
    message: &str,
    actor: Actor,
) -> Result<Deploy, ApiError> {
    let cfg = config(st)?;
    let env = cfg.environment(environment).map_err(ApiError::NotFound)?;
    let sha = git::resolve(&cfg.repo, &cfg.app.branch, rev).await.map_err(|e| ApiError::BadRequest(e.0))?;
    let previous = live(&*st.store, environment).await?.map(|d| d.revision);
    if let Some(required) = &env.requires {
        let there = live(&*st.store, required).await?;
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
        action: "deploy".into(),
        revision: sha.clone(),
        previous: previous.clone(),
        release,
        commits,
        message: message.to_string(),
        actor: actor.clone(),
    };
    let subj = subject(&cfg, environment);
    let summary = format!(
        "{} deploying {} to {environment}: {}{}",
        actor.name,
        cfg.app.name,
        range(previous.as_deref(), &sha, commits),
        quoted(message)
    );
    launch(st, cfg, new, subj, summary).await
}

/// One deploy as a line of the deploy log, the Flickr way:
/// `[2026-11-26 16:03:57] [alice] www deployed to production: 3f2a1c9..8e4d0b1 (7 commits) "fix login"`.
pub fn log_line(d: &Deploy) -> String {
    let range = range(d.previous.as_deref(), &d.revision, d.commits);
    let msg = if d.action == "rollback" { String::new() } else { quoted(&d.message) };
    let (app, env, err) = (&d.app, &d.environment, d.error.as_deref().unwrap_or(""));
    let rev = git::short(&d.revision);
    let what = match (d.action.as_str(), d.status.as_str()) {
        ("rollback", "succeeded") => format!("{app} rolled back {env} to {rev} ({})", d.message),
        ("rollback", "running") => format!("{app} rolling back {env} to {rev}"),
        ("rollback", st) => format!("{app} rollback of {env} {st}: {err}"),
        (_, "succeeded") => format!("{app} deployed to {env}: {range}{msg}"),
        (_, "running") => format!("{app} deploying to {env}: {range}{msg}"),
        (_, "rolled_back") => format!("{app} deploy to {env} failed, switched back: {range}{msg}: {err}"),
        (_, "interrupted") => format!("{app} deploy to {env} interrupted: {range}{msg}"),
        (_, _) => format!("{app} failed to deploy to {env}: {range}{msg}: {err}"),
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

/// Starts a rollback of `environment` to the deploy `to`, or to the release live before the current one.
pub async fn rollback(st: &AppState, environment: &str, to: Option<i64>, actor: Actor) -> Result<Deploy, ApiError> {
    let cfg = config(st)?;
    cfg.environment(environment).map_err(ApiError::NotFound)?;
    let history: Vec<Deploy> =
        st.store.deploys(Some(environment), 500).await?.into_iter().filter(|d| d.status == "succeeded").collect();
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
            None => {
                history.iter().find(|d| d.release < current.release).cloned().ok_or_else(|| {
                    ApiError::Conflict(format!("{environment} has no earlier release to roll back to"))
                })?
            }
        };
    let new = NewDeploy {
        app: cfg.app.name.clone(),
        environment: environment.to_string(),
        action: "rollback".into(),
        revision: target.revision.clone(),
        previous: Some(current.revision.clone()),
        release: target.release.clone(),
        commits: 0,
        message: format!("roll back to #{}", target.id),
        actor: actor.clone(),
    };
    let subj = subject(&cfg, environment);
    let summary = format!(
        "{} rolling back {} {environment} from {} to {} (#{})",
        actor.name,
        cfg.app.name,
        git::short(&current.revision),
        git::short(&target.revision),
        target.id
    );
    launch(st, cfg, new, subj, summary).await
}

/// Records the deploy (refused while locked) with its `deploy.started` event, then runs it in the background.
async fn launch(
    st: &AppState,
    cfg: Arc<DeployConfig>,
    new: NewDeploy,
    subject: String,
    summary: String,
) -> Result<Deploy, ApiError> {
    let (actor, action) = (new.actor.clone(), new.action.clone());
    let (deploy, _) = st
        .store
        .start_deploy(
            new,
            Box::new(move |id| {
                NewEvent::new(actor, "deploy.started", &subject, summary)
                    .with_data(json!({"deploy": id, "action": action}))
                    .with_link("deploy", &format!("/deploys/{id}"))
            }),
        )
        .await?;
    tokio::spawn(run(st.clone(), cfg, deploy.clone()));
    Ok(deploy)
}

/// Sends log lines to the store in batches, from a task, so a deploy never waits on the database.
struct StoreJournal {
    lines: mpsc::UnboundedSender<String>,
}

impl Journal for StoreJournal {
    fn line(&self, text: String) {
        tracing::debug!(line = %text, "deploy");
        let _ = self.lines.send(text);
    }
}

fn journal(store: Arc<dyn Store>, id: i64) -> (StoreJournal, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            if let Err(e) = store.log_deploy(id, batch).await {
                tracing::error!(error = %e, deploy = id, "writing a deploy's log failed");
            }
        }
    });
    (StoreJournal { lines: tx }, task)
}

async fn run(st: AppState, cfg: Arc<DeployConfig>, d: Deploy) {
    let (journal, flusher) = journal(st.store.clone(), d.id);
    let beat = {
        let (store, id) = (st.store.clone(), d.id);
        tokio::spawn(async move {
            loop {
                if let Err(e) = store.deploy_heartbeat(id).await {
                    tracing::warn!(error = %e, deploy = id, "a deploy's heartbeat failed");
                }
                tokio::time::sleep(HEARTBEAT).await;
            }
        })
    };
    let builds = st.settings.data_dir.join("builds");
    let started = std::time::Instant::now();
    let outcome: Outcome = if d.action == "rollback" {
        journal.line(format!("rollback: switching every host of {} to {}", d.environment, d.release));
        crew_deploy::run::rollback(&cfg, &d.environment, &d.release, &journal).await
    } else {
        journal.line(format!("deploy #{}: {} {} to {}", d.id, cfg.app.name, git::short(&d.revision), d.environment));
        crew_deploy::run::deploy(&cfg, &d.environment, &d.revision, &d.release, &builds, &journal).await
    };
    let secs = started.elapsed().as_secs_f64();
    let (status, kind, error) = match &outcome.status {
        Status::Succeeded if d.action == "rollback" => ("succeeded", "deploy.rolled_back", None),
        Status::Succeeded => ("succeeded", "deploy.finished", None),
        Status::Failed(e) => ("failed", "deploy.failed", Some(e.clone())),
        Status::RolledBack(e) => ("rolled_back", "deploy.rolled_back", Some(e.clone())),
    };
    journal.line(match &error {
        None => format!("{status} in {secs:.1}s"),
        Some(e) => format!("{status} after {secs:.1}s: {e}"),
    });
    drop(journal);
    let _ = flusher.await;
    beat.abort();
    let actor = Actor::new(d.actor.clone(), d.via.parse().unwrap_or(crew_core::Via::Api));
    let what = range(d.previous.as_deref(), &d.revision, d.commits);
    let summary = match (d.action.as_str(), status) {
        ("rollback", "succeeded") => {
            format!("{} rolled back {} {} to {} (#{})", d.actor, d.app, d.environment, git::short(&d.revision), d.id)
        }
        ("rollback", _) => format!(
            "{}'s rollback of {} {} failed: {}",
            d.actor,
            d.app,
            d.environment,
            error.clone().unwrap_or_default()
        ),
        (_, "succeeded") => format!("{} deployed {} to {}: {what} in {secs:.0}s", d.actor, d.app, d.environment),
        (_, "rolled_back") => format!(
            "{}'s deploy of {} to {} failed and was switched back: {}",
            d.actor,
            d.app,
            d.environment,
            error.clone().unwrap_or_default()
        ),
        _ => format!(
            "{}'s deploy of {} to {} failed: {}",
            d.actor,
            d.app,
            d.environment,
            error.clone().unwrap_or_default()
        ),
    };
    let summary: String = summary.chars().filter(|c| !c.is_control()).take(480).collect();
    let event = NewEvent::new(actor, kind, &format!("{}/{}", d.app, d.environment), summary)
        .with_data(
            json!({"deploy": d.id, "action": d.action, "status": status, "seconds": secs, "hosts": outcome.hosts}),
        )
        .with_link("deploy", &format!("/deploys/{}", d.id));
    let hosts = serde_json::to_value(&outcome.hosts).unwrap_or_default();
    if let Err(e) = st.store.finish_deploy(d.id, status, hosts, error, event).await {
        tracing::error!(error = %e, deploy = d.id, "recording the end of a deploy failed");
    }
}

/// How often a running deploy's server says it is alive, and after how long without that a deploy counts as
/// cut short.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Marks deploys cut short by a stopped server `interrupted` and frees their environments. At start-up on
/// SQLite (one server) every `running` deploy was cut short; on PostgreSQL another replica may be running it,
/// so only deploys whose heartbeat stopped count, checked at start-up and then every 10 s (see [`sweep`]).
pub async fn interrupt_leftovers(store: &dyn Store) -> anyhow::Result<()> {
    let stale_after = match store.engine() {
        crew_store::Engine::Sqlite => std::time::Duration::ZERO,
        crew_store::Engine::Postgres => STALE_AFTER,
    };
    let done = store
        .interrupt_running(
            stale_after,
            Box::new(|d| {
                NewEvent::new(
                    Actor::system(),
                    "deploy.interrupted",
                    &format!("{}/{}", d.app, d.environment),
                    format!(
                        "deploy #{} of {} to {} was interrupted: the crew server stopped",
                        d.id, d.app, d.environment
                    ),
                )
                .with_data(json!({"deploy": d.id}))
                .with_link("deploy", &format!("/deploys/{}", d.id))
            }),
        )
        .await?;
    for d in done {
        tracing::warn!(deploy = d.id, environment = %d.environment, "marked an unfinished deploy interrupted");
    }
    Ok(())
}

/// On PostgreSQL, keeps looking for deploys whose replica died, until shutdown.
pub async fn sweep(st: AppState) {
    if st.store.engine() != crew_store::Engine::Postgres {
        return;
    }
    loop {
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
        if let Err(e) = interrupt_leftovers(&*st.store).await {
            tracing::error!(error = %e, "looking for interrupted deploys failed");
        }
    }
}
