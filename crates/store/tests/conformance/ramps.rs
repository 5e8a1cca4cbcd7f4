//! Flags' launch plans and ramps: a plan replaced with its before in the event; one running ramp per flag; a
//! due ramp claimed once however many claim at once, advanced only under its latest claim; cancelled.

use crate::Engine;
use chrono::{Duration, TimeZone, Utc};
use crew_core::{Actor, EventFilter, NewEvent, Via};
use crew_store::{NewRamp, RampAdvance, RampStatus, Store, StoreError};
use serde_json::json;
use std::sync::Arc;

conformance!(plans_with_before_and_after, ramps_are_claimed_once_and_advance_under_their_claim,);

fn ev(kind: &'static str) -> impl Fn(Option<&serde_json::Value>) -> NewEvent {
    move |before| {
        NewEvent::new(Actor::new("alice", Via::Cli), kind, "flag:search", "plan")
            .with_data(json!({"before": before.cloned()}))
    }
}

async fn plans_with_before_and_after(e: Engine) {
    let s = &*e.store;
    assert_eq!(s.flag_plan("search").await.unwrap(), None);
    let p1 = json!({"owner": "alice", "contingency": "off"});
    let (before, event) =
        s.put_flag_plan("search", Some(p1.clone()), "alice", Box::new(ev("flag.plan"))).await.unwrap();
    assert_eq!((before, event.data["before"].clone()), (None, serde_json::Value::Null));
    let p2 = json!({"owner": "bob", "contingency": "page"});
    let (before, event) = s.put_flag_plan("search", Some(p2.clone()), "bob", Box::new(ev("flag.plan"))).await.unwrap();
    assert_eq!((before, event.data["before"].clone()), (Some(p1.clone()), p1));
    let got = s.flag_plan("search").await.unwrap().unwrap();
    assert_eq!((got.plan, got.updated_by.as_str()), (p2, "bob"));
    s.put_flag_plan("search", None, "bob", Box::new(ev("flag.plan"))).await.unwrap();
    assert_eq!(s.flag_plan("search").await.unwrap(), None);
    let gone = s.put_flag_plan("search", None, "bob", Box::new(ev("flag.plan"))).await;
    assert!(matches!(gone, Err(StoreError::NotFound(_))));
    let n = s.query(&EventFilter::new().kind("flag.plan").limit(10)).await.unwrap().events.len();
    assert_eq!(n, 3, "one event per change, none for the refused removal");
}

fn started(r: &crew_store::Ramp) -> NewEvent {
    NewEvent::new(Actor::new("alice", Via::Cli), "flag.ramp", &format!("flag:{}", r.flag), "ramp")
        .with_data(json!({"ramp": r.id}))
}

async fn ramps_are_claimed_once_and_advance_under_their_claim(e: Engine) {
    let s: Arc<dyn Store> = e.store.clone();
    let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let new = |flag: &str| NewRamp {
        flag: flag.into(),
        steps: vec![1, 5, 100],
        every_ms: 60_000,
        reason: "launch".into(),
        started_by: "alice".into(),
        now: t,
    };
    let (r, event) = s.start_ramp(new("search"), Box::new(started)).await.unwrap();
    assert_eq!((r.step, r.percent(), r.status, r.due_at), (0, 1, RampStatus::Running, Some(t + Duration::minutes(1))));
    assert_eq!(event.data["ramp"], r.id);
    let again = s.start_ramp(new("search"), Box::new(started)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "one running ramp per flag");

    // Not due before its time; due: claimed by exactly one of two claims at once, the lease keeps it.
    assert!(s.claim_due_ramps(t, std::time::Duration::from_secs(30), 10).await.unwrap().is_empty());
    let at = t + Duration::minutes(1);
    let lease = std::time::Duration::from_secs(30);
    let (a, b) = tokio::join!(s.claim_due_ramps(at, lease, 10), s.claim_due_ramps(at, lease, 10));
    let claimed: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(claimed.len(), 1, "claimed once");
    assert_eq!(claimed[0].claim, 1);
    assert!(s.claim_due_ramps(at + Duration::seconds(29), lease, 10).await.unwrap().is_empty(), "leased");

    // The lease ran out (the claimer died): claimed again, and the first claim can no longer record anything.
    let retaken = s.claim_due_ramps(at + Duration::seconds(30), lease, 10).await.unwrap();
    assert_eq!(retaken.iter().map(|r| r.claim).collect::<Vec<_>>(), [2]);
    let advance = |step: i64, status| RampAdvance {
        step,
        status,
        step_at: at,
        due_at: (status == RampStatus::Running).then_some(at + Duration::minutes(1)),
        last: Some(json!({"verdict": "pass"})),
        events: vec![NewEvent::new(Actor::system(), "flag.judged", "flag:search", "pass")],
    };
    let stale = s.advance_ramp(r.id, 1, advance(1, RampStatus::Running)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "a stale claim records nothing");
    let (now, events) = s.advance_ramp(r.id, 2, advance(1, RampStatus::Running)).await.unwrap();
    assert_eq!((now.step, now.percent(), now.due_at, events.len()), (1, 5, Some(at + Duration::minutes(1)), 1));
    assert_eq!(now.last, Some(json!({"verdict": "pass"})));

    // Ended: never due again, and the flag may ramp anew.
    let c = s.claim_due_ramps(at + Duration::minutes(1), lease, 10).await.unwrap();
    let (done, _) = s.advance_ramp(r.id, c[0].claim, advance(2, RampStatus::Done)).await.unwrap();
    assert_eq!((done.status, done.due_at, done.percent()), (RampStatus::Done, None, 100));
    assert!(done.ended_at.is_some());
    assert!(s.claim_due_ramps(at + Duration::days(1), lease, 10).await.unwrap().is_empty());
    let (r2, _) = s.start_ramp(new("search"), Box::new(started)).await.unwrap();
    let (cancelled, event) = s
        .cancel_ramp(
            "search",
            Box::new(|r| {
                NewEvent::new(Actor::system(), crew_core::kind::FLAG_RAMP_CANCELLED, "flag:search", format!("{}", r.id))
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        (cancelled.id, cancelled.status, event.summary.clone()),
        (r2.id, RampStatus::Cancelled, r2.id.to_string())
    );
    let none = s
        .cancel_ramp("search", Box::new(|_| NewEvent::new(Actor::system(), "flag.ramp_cancelled", "flag:search", "x")))
        .await;
    assert!(matches!(none, Err(StoreError::NotFound(_))));
    let all = s.ramps("search", 10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(r2.id, RampStatus::Cancelled), (r.id, RampStatus::Done)]
    );
    assert_eq!(s.ramp(r.id).await.unwrap().unwrap().status, RampStatus::Done);
}
