//! A deploy in the background: its log written to the store in batches, a heartbeat while it runs, the deploy
//! engine's outcome recorded with its event; and the sweep that marks deploys whose server stopped.

use super::range;
use crew_core::{kind, Actor, DeployAction, DeployStatus, NewEvent};
use crew_deploy::run::{Outcome, Status};
use crew_deploy::{git, DeployConfig, Journal};
use crew_store::{Deploy, Store, StoreError};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The log waiting for the store, at most (bytes, counting each line's overhead as [`LINE_OVERHEAD`]): a deploy
/// printing faster than the database writes loses lines (and says how many) rather than the server's memory.
const PENDING_BYTES: usize = 8 << 20;
const LINE_OVERHEAD: usize = 64;

/// Sends log lines to the store in batches, from a task, so a deploy never waits on the database.
struct StoreJournal {
    lines: mpsc::UnboundedSender<String>,
    /// What the channel holds, in bytes: the bound on it.
    pending: Arc<AtomicUsize>,
    /// Lines dropped because the channel was full, not yet said in the log.
    dropped: AtomicU64,
    /// Set when the heartbeat finds the deploy no longer running: the engine stops before the next host.
    stopped: Arc<OnceLock<String>>,
}

impl StoreJournal {
    /// Queues a line unless the queue is full; whether it was queued.
    fn send(&self, text: String) -> bool {
        let size = text.len() + LINE_OVERHEAD;
        let queued = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| (p + size <= PENDING_BYTES).then_some(p + size));
        queued.is_ok() && self.lines.send(text).is_ok()
    }
}

impl Journal for StoreJournal {
    fn line(&self, text: String) {
        let text = crew_deploy::cut_line(text);
        tracing::debug!(line = %text, "deploy");
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note =
                format!("[{dropped} lines were dropped here: the deploy printed faster than its log is written]");
            if !self.send(note) {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        if !self.send(text) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stopped(&self) -> Option<String> {
        self.stopped.get().cloned()
    }
}

fn journal(store: Arc<dyn Store>, id: i64) -> (StoreJournal, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let pending = Arc::new(AtomicUsize::new(0));
    let queued = pending.clone();
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let size: usize = batch.iter().map(|l| l.len() + LINE_OVERHEAD).sum();
            queued.fetch_sub(size, Ordering::AcqRel);
            if let Err(e) = store.log_deploy(id, batch).await {
                tracing::error!(error = %e, deploy = id, "writing a deploy's log failed");
            }
        }
    });
    let journal = StoreJournal { lines: tx, pending, dropped: AtomicU64::new(0), stopped: Arc::new(OnceLock::new()) };
    (journal, task)
}

pub(super) async fn run(
    store: Arc<dyn Store>,
    cfg: Arc<DeployConfig>,
    builds: PathBuf,
    d: Deploy,
    shutdown: CancellationToken,
    gate: super::judged::Judged,
) {
    let (journal, flusher) = journal(store.clone(), d.id);
    let beat = {
        let (store, id, stopped) = (store.clone(), d.id, journal.stopped.clone());
        tokio::spawn(async move {
            loop {
                match store.deploy_heartbeat(id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = stopped.set(format!(
                            "deploy #{id} was marked interrupted meanwhile (its heartbeat was taken for a stopped \
                             server's) and its environment may be another deploy's now"
                        ));
                        tracing::warn!(deploy = id, "a running deploy was marked interrupted; stopping it");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, deploy = id, "a deploy's heartbeat failed"),
                }
                tokio::time::sleep(HEARTBEAT).await;
            }
        })
    };
    let started = std::time::Instant::now();
    let outcome: Outcome = if d.action == DeployAction::Rollback {
        journal.line(format!("rollback: switching every host of {} to {}", d.environment, d.release));
        crew_deploy::run::rollback(&cfg, &d.environment, &d.release, &journal).await
    } else {
        journal.line(format!("deploy #{}: {} {} to {}", d.id, cfg.app.name, git::short(&d.revision), d.environment));
        crew_deploy::run::deploy(&cfg, &d.environment, &d.revision, &d.release, &builds, &journal, &gate).await
    };
    let secs = started.elapsed().as_secs_f64();
    let (status, kind, error) = match &outcome.status {
        Status::Succeeded if d.action == DeployAction::Rollback => {
            (DeployStatus::Succeeded, kind::DEPLOY_ROLLED_BACK, None)
        }
        Status::Succeeded => (DeployStatus::Succeeded, kind::DEPLOY_FINISHED, None),
        Status::Failed(e) => (DeployStatus::Failed, kind::DEPLOY_FAILED, Some(e.clone())),
        Status::RolledBack(e) => (DeployStatus::RolledBack, kind::DEPLOY_ROLLED_BACK, Some(e.clone())),
        Status::Stopped(why) => {
            // Not this server's deploy any more: it is recorded as interrupted already, and its end is not ours
            // to record.
            journal.line(format!("stopped after {secs:.1}s: {why}"));
            drop(journal);
            let _ = flusher.await;
            beat.abort();
            return;
        }
    };
    journal.line(match &error {
        None => format!("{status} in {secs:.1}s"),
        Some(e) => format!("{status} after {secs:.1}s: {e}"),
    });
    let actor = Actor::new(d.actor.clone(), d.via.parse().unwrap_or(crew_core::Via::Api));
    let what = range(d.previous.as_deref(), &d.revision, d.commits);
    let summary = match (d.action, status) {
        (DeployAction::Rollback, DeployStatus::Succeeded) => {
            format!("{} rolled back {} {} to {} (#{})", d.actor, d.app, d.environment, git::short(&d.revision), d.id)
        }
        (DeployAction::Rollback, _) => format!(
            "{}'s rollback of {} {} failed: {}",
            d.actor,
            d.app,
            d.environment,
            error.clone().unwrap_or_default()
        ),
        (_, DeployStatus::Succeeded) => {
            format!("{} deployed {} to {}: {what} in {secs:.0}s", d.actor, d.app, d.environment)
        }
        (_, DeployStatus::RolledBack) => format!(
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
    // Every line is stored before the end is: a reader that sees the deploy finished has read its whole log.
    drop(journal);
    let _ = flusher.await;
    let hosts = serde_json::to_value(&outcome.hosts).unwrap_or_default();
    // Until the end is recorded the environment stays locked: a failure (a full disk) is retried, with the
    // heartbeat still beating, until it lands, the deploy turns out interrupted, or the server stops.
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match store.finish_deploy(d.id, status, hosts.clone(), error.clone(), event.clone()).await {
            Ok(_) => break,
            Err(StoreError::Conflict(why)) => {
                tracing::warn!(deploy = d.id, %why, "a deploy ended after it was marked interrupted");
                let _ = store.log_deploy(d.id, vec![format!("its end was not recorded: {why}")]).await;
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, deploy = d.id, retry_in = ?wait, "recording the end of a deploy failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(FINISH_RETRY_MAX);
            }
        }
    }
    beat.abort();
}

/// The longest wait between two attempts to record a deploy's end.
const FINISH_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(10);

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
                    kind::DEPLOY_INTERRUPTED,
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
pub async fn sweep(store: Arc<dyn Store>, shutdown: CancellationToken) {
    if store.engine() != crew_store::Engine::Postgres {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
        if let Err(e) = interrupt_leftovers(&*store).await {
            tracing::error!(error = %e, "looking for interrupted deploys failed");
        }
    }
}
