//! The store conformance suite: every test runs on SQLite and on a real PostgreSQL, and both must agree. One
//! module per domain; this file opens the engines and holds the macro that runs a test on each.

use crew_core::{Actor, NewEvent, Via};
use crew_store::prelude::*;
use std::sync::Arc;

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub url: String,
    /// Keeps the SQLite folder alive for the test.
    pub _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crew.db").display());
    Engine { store: crew_store::open(&url).await.unwrap(), url, _dir: Some(dir) }
}

pub async fn postgres() -> Engine {
    let url = crew_testkit::fresh_postgres().await;
    Engine { store: crew_store::open(&url).await.unwrap(), url, _dir: None }
}

/// Runs each named test (an `async fn(Engine)` of the module it is invoked in) on SQLite and on PostgreSQL:
/// `<module>::on_sqlite::<name>` and `<module>::on_postgres::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::sqlite().await).await } )*
        }
        mod on_postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::postgres().await).await } )*
        }
    };
}

mod access;
mod chat;
mod deploys;
mod experiments;
mod flags;
mod incidents;
mod leases;
mod metrics;
mod oncall;
mod ramps;
mod timeline;

pub fn ev(actor: &str, kind: &str, subject: &str, summary: &str) -> NewEvent {
    NewEvent::new(Actor::new(actor, Via::Cli), kind, subject, summary)
}

conformance!(a_store_is_each_domain_store);

/// An `Arc<dyn Store>` converts to each domain's trait object (trait upcasting), and each one reaches the same
/// store.
async fn a_store_is_each_domain_store(e: Engine) {
    let timeline: Arc<dyn TimelineStore> = e.store.clone();
    let access: Arc<dyn AccessStore> = e.store.clone();
    let deploys: Arc<dyn DeployStore> = e.store.clone();
    let flags: Arc<dyn FlagStore> = e.store.clone();
    let chat: Arc<dyn ChatStore> = e.store.clone();
    let metrics: Arc<dyn MetricStore> = e.store.clone();
    let leases: Arc<dyn LeaseStore> = e.store.clone();
    assert_eq!(timeline.url(), e.store.url());
    timeline.append(vec![ev("a", "note", "x", "through the timeline")]).await.unwrap();
    assert_eq!(e.store.counts().await.unwrap().events, 1);
    assert!(access.tokens().await.unwrap().is_empty());
    assert!(deploys.locks().await.unwrap().is_empty());
    assert!(flags.flags().await.unwrap().is_empty());
    assert!(chat.chat_links().await.unwrap().is_empty());
    assert!(metrics.metric_series().await.unwrap().is_empty());
    assert!(leases.try_lease("upcast", "a", std::time::Duration::from_secs(60)).await.unwrap());
    assert!(!e.store.try_lease("upcast", "b", std::time::Duration::from_secs(60)).await.unwrap());
}
