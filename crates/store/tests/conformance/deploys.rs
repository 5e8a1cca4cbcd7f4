//! Deploys: records, logs, manual and deploy locks, heartbeats and interrupted deploys.

use crate::Engine;
use crew_core::{Actor, NewEvent, Via};
use crew_store::StoreError;

conformance!(deploys_and_locks,);

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
    assert_eq!(s.deploy_log(d.id, 1, 10).await.unwrap(), ["web1: switched", "done"]);
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
