//! Deploys: records, logs, manual and deploy locks, heartbeats and interrupted deploys.

use crate::Engine;
use crew_core::{Actor, NewEvent, Via};
use crew_store::StoreError;

conformance!(
    deploys_and_locks,
    a_manual_lock_and_a_deploy_racing_have_one_winner,
    a_finish_applies_only_to_a_running_deploy,
    concurrent_sweeps_record_one_interruption,
    a_deploy_log_keeps_its_tail,
);

fn new_deploy(env: &str, actor: &str) -> crew_store::NewDeploy {
    crew_store::NewDeploy {
        app: "www".into(),
        environment: env.into(),
        action: crew_core::DeployAction::Deploy,
        revision: "8e4d0b1".into(),
        previous: Some("3f2a1c9".into()),
        release: "20261126160357-8e4d0b1".into(),
        commits: 7,
        message: "fix login".into(),
        actor: Actor::new(actor, Via::Cli),
    }
}

fn started(actor: &str) -> Box<dyn FnOnce(i64) -> NewEvent + Send> {
    let actor = actor.to_string();
    Box::new(move |id| {
        NewEvent::new(Actor::new(&actor, Via::Cli), "deploy.started", "www/production", format!("deploy #{id}"))
    })
}

async fn deploys_and_locks(e: Engine) {
    let s = &*e.store;
    let (d, ev) = s.start_deploy(new_deploy("production", "alice"), started("alice")).await.unwrap();
    assert_eq!((d.status.as_str(), d.commits, ev.summary.clone()), ("running", 7, format!("deploy #{}", d.id)));
    // A second deploy of the same environment is refused while the first runs; another environment is fine.
    let err = s.start_deploy(new_deploy("production", "bob"), started("bob")).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains(&format!("#{} by alice", d.id))), "{err}");
    let (other, _) = s.start_deploy(new_deploy("staging", "bob"), started("bob")).await.unwrap();
    s.log_deploy(d.id, vec!["build: ok".into(), "web1: switched".into()]).await.unwrap();
    s.log_deploy(d.id, vec!["done".into()]).await.unwrap();
    assert_eq!(s.deploy_log(d.id, 1, 10).await.unwrap(), [(1, "web1: switched".into()), (2, "done".to_string())]);
    let hosts = serde_json::json!([{"host": "local:/a", "state": "switched"}]);
    s.finish_deploy(
        d.id,
        crew_core::DeployStatus::Succeeded,
        hosts.clone(),
        None,
        NewEvent::new(Actor::new("alice", Via::Cli), "deploy.finished", "www/production", "done"),
    )
    .await
    .unwrap();
    let got = s.deploy(d.id).await.unwrap().unwrap();
    assert_eq!((got.status.as_str(), got.hosts.clone()), ("succeeded", hosts));
    assert!(got.finished_at.is_some());
    // The manual lock: bob may not deploy while alice holds it; alice may; only alice or an admin unlocks.
    s.take_lock(
        "production",
        "alice",
        "db migration",
        NewEvent::new(Actor::new("alice", Via::Cli), "lock.taken", "www/production", "locked"),
    )
    .await
    .unwrap();
    let err = s
        .take_lock(
            "production",
            "bob",
            "mine",
            NewEvent::new(Actor::new("bob", Via::Cli), "lock.taken", "www/production", "x"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("locked by alice") && m.contains("db migration")),
        "{err}"
    );
    let err = s.start_deploy(new_deploy("production", "bob"), started("bob")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    let (mine, _) = s.start_deploy(new_deploy("production", "alice"), started("alice")).await.unwrap();
    let unlock = |who: &str| NewEvent::new(Actor::new(who, Via::Cli), "lock.released", "www/production", "unlocked");
    assert!(matches!(s.release_lock("production", "bob", false, unlock("bob")).await, Err(StoreError::Conflict(_))));
    s.release_lock("production", "carol", true, unlock("carol")).await.unwrap();
    assert!(matches!(
        s.release_lock("production", "alice", false, unlock("alice")).await,
        Err(StoreError::NotFound(_))
    ));
    // A restart interrupts what was running and frees the environments.
    // A deploy whose server is alive (a fresh heartbeat) is not interrupted by another replica's sweep.
    s.deploy_heartbeat(other.id).await.unwrap();
    let none = s
        .interrupt_running(
            std::time::Duration::from_secs(30),
            Box::new(|d| NewEvent::new(Actor::system(), "deploy.interrupted", &d.environment, "x")),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    let interrupted = s
        .interrupt_running(
            std::time::Duration::ZERO,
            Box::new(|d| {
                NewEvent::new(Actor::system(), "deploy.interrupted", &d.environment, format!("#{} interrupted", d.id))
            }),
        )
        .await
        .unwrap();
    let ids: Vec<i64> = interrupted.iter().map(|d| d.id).collect();
    assert_eq!(ids, [other.id, mine.id]);
    assert_eq!(s.deploy(mine.id).await.unwrap().unwrap().status, crew_core::DeployStatus::Interrupted);
    assert!(s.locks().await.unwrap().is_empty());
    s.start_deploy(new_deploy("production", "bob"), started("bob")).await.unwrap();
    let listed: Vec<i64> = s.deploys(Some("production"), 10).await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(listed.len(), 3);
    assert!(listed.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(s.deploys(None, 10).await.unwrap().len(), 4);
}

/// A second handle on the same database, as a second replica has. SQLite is one server's (its write turn is
/// per process), so there the second "replica" is the same handle.
async fn replica(e: &Engine) -> std::sync::Arc<dyn crew_store::Store> {
    match e.store.engine() {
        crew_store::Engine::Sqlite => e.store.clone(),
        crew_store::Engine::Postgres => crew_store::open(&e.url).await.unwrap(),
    }
}

fn event(actor: &str, kind: &str) -> NewEvent {
    NewEvent::new(Actor::new(actor, Via::Cli), kind, "www/production", "x")
}

fn interrupted() -> Box<dyn for<'d> Fn(&'d crew_store::Deploy) -> NewEvent + Send + Sync> {
    Box::new(|d| NewEvent::new(Actor::system(), crew_core::kind::DEPLOY_INTERRUPTED, &d.environment, "interrupted"))
}

/// Medium 4: a manual lock taken (on one replica) at the moment a deploy starts (on another) must not slip
/// through: each of 200 races has exactly one winner, and the loser is told why (a `Conflict`).
async fn a_manual_lock_and_a_deploy_racing_have_one_winner(e: Engine) {
    use crew_core::kind::{DEPLOY_STARTED, LOCK_TAKEN};
    let (a, b) = (e.store.clone(), replica(&e).await);
    let mut both = 0;
    for i in 0..200 {
        let env = format!("race{i}");
        let deploy = a.start_deploy(
            new_deploy(&env, "alice"),
            Box::new(|id| {
                NewEvent::new(Actor::new("alice", Via::Cli), DEPLOY_STARTED, "www/race", format!("deploy #{id}"))
            }),
        );
        let lock = b.take_lock(&env, "bob", "hands off", event("bob", LOCK_TAKEN));
        let (d, l) = tokio::join!(deploy, lock);
        match (&d, &l) {
            (Ok(_), Err(StoreError::Conflict(_))) | (Err(StoreError::Conflict(_)), Ok(_)) => {}
            (Ok(_), Ok(_)) => both += 1,
            other => panic!("race {i}: {other:?}"),
        }
    }
    assert_eq!(both, 0, "a deploy ran under someone else's lock in {both} of 200 races");
}

/// Medium 5: once a deploy is marked interrupted (its server seemed dead), its runner's finish does not
/// overwrite that, records no event and frees no other deploy's lock; its heartbeat says it lost the deploy.
async fn a_finish_applies_only_to_a_running_deploy(e: Engine) {
    use crew_core::kind::{DEPLOY_FINISHED, DEPLOY_STARTED};
    let s = &*e.store;
    let start = |who: &'static str| {
        Box::new(move |id| NewEvent::new(Actor::new(who, Via::Cli), DEPLOY_STARTED, "www/production", format!("#{id}")))
            as Box<dyn FnOnce(i64) -> NewEvent + Send>
    };
    let (first, _) = s.start_deploy(new_deploy("production", "alice"), start("alice")).await.unwrap();
    assert!(s.deploy_heartbeat(first.id).await.unwrap(), "a running deploy's heartbeat lands");
    s.interrupt_running(std::time::Duration::ZERO, interrupted()).await.unwrap();
    assert!(!s.deploy_heartbeat(first.id).await.unwrap(), "the heartbeat tells the runner it lost the deploy");
    // Another deploy now holds the environment.
    let (second, _) = s.start_deploy(new_deploy("production", "bob"), start("bob")).await.unwrap();
    let before = s.counts().await.unwrap().events;
    let err = s
        .finish_deploy(
            first.id,
            crew_core::DeployStatus::Succeeded,
            serde_json::json!([]),
            None,
            event("alice", DEPLOY_FINISHED),
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("interrupted")), "{err}");
    assert_eq!(s.deploy(first.id).await.unwrap().unwrap().status, crew_core::DeployStatus::Interrupted);
    assert_eq!(s.counts().await.unwrap().events, before, "no event for a finish that did not apply");
    let locks = s.locks().await.unwrap();
    assert_eq!(locks.iter().map(|l| l.deploy_id).collect::<Vec<_>>(), [Some(second.id)], "{locks:?}");
}

/// Medium 5: replicas sweeping at the same moment record one `deploy.interrupted` per deploy, not one each.
async fn concurrent_sweeps_record_one_interruption(e: Engine) {
    let (a, b) = (e.store.clone(), replica(&e).await);
    let mut ids = vec![];
    for i in 0..20 {
        let env = format!("sweep{i}");
        let (d, _) = a
            .start_deploy(
                new_deploy(&env, "alice"),
                Box::new(|id| {
                    NewEvent::new(
                        Actor::new("alice", Via::Cli),
                        crew_core::kind::DEPLOY_STARTED,
                        "www/x",
                        format!("#{id}"),
                    )
                }),
            )
            .await
            .unwrap();
        // The database's clock (SQLite's in floating-point days) may not yet be past the deploy's start.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let (x, y) = tokio::join!(
            a.interrupt_running(std::time::Duration::ZERO, interrupted()),
            b.interrupt_running(std::time::Duration::ZERO, interrupted())
        );
        let marked = x.unwrap().len() + y.unwrap().len();
        assert_eq!(marked, 1, "sweep {i}: deploy #{} was marked by {marked} sweeps", d.id);
        ids.push(d.id);
    }
    let filter = crew_core::EventFilter::new().kind(crew_core::kind::DEPLOY_INTERRUPTED).limit(100);
    let events = e.store.query(&filter).await.unwrap().events;
    assert_eq!(events.len(), ids.len(), "one deploy.interrupted per deploy");
}

/// Medium 9: a deploy's stored log is bounded: the tail is kept and its first line says what was cut. Line
/// numbers stay those of the whole log, so a reader paging by offset never reads a line twice.
async fn a_deploy_log_keeps_its_tail(e: Engine) {
    use crew_store::deploys::LOG_LINES_KEPT;
    let s = &*e.store;
    let (d, _) = s.start_deploy(new_deploy("production", "alice"), started("alice")).await.unwrap();
    let total = LOG_LINES_KEPT + 500;
    s.log_deploy(d.id, (0..total - 2).map(|i| format!("line {i}")).collect()).await.unwrap();
    s.log_deploy(d.id, vec![format!("line {}", total - 2), format!("line {}", total - 1)]).await.unwrap();
    assert_eq!(s.deploy_log_span(d.id).await.unwrap(), (total - LOG_LINES_KEPT, total));
    let head = s.deploy_log(d.id, 0, 3).await.unwrap();
    assert_eq!(head[0].0, total - LOG_LINES_KEPT);
    assert!(head[0].1.contains(&format!("{} earlier lines were cut", total - LOG_LINES_KEPT + 1)), "{head:?}");
    assert_eq!(head[1], (total - LOG_LINES_KEPT + 1, format!("line {}", total - LOG_LINES_KEPT + 1)));
    let tail = s.deploy_log(d.id, total - 1, 10).await.unwrap();
    assert_eq!(tail, [(total - 1, format!("line {}", total - 1))]);
    let mut n = 0;
    let mut offset = 0;
    loop {
        let page = s.deploy_log(d.id, offset, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        n += page.len() as i64;
        offset = last.0 + 1;
    }
    assert_eq!(n, LOG_LINES_KEPT);
}
