//! Incidents: triggers that open, join, are duplicates, reopen within the window and open anew after it;
//! acknowledgements and resolutions refused when they no longer apply; due steps claimed once (also by two
//! claims at once); every write's event on the timeline.

use crate::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use crew_core::{Actor, EventFilter, IncidentStatus, NewEvent, Severity, Via};
use crew_store::{Advance, Incident, NewIncident, Store, StoreError, Triggered};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

conformance!(
    a_trigger_opens_joins_is_a_duplicate_reopens_and_opens_anew,
    acks_and_resolutions_apply_once,
    a_due_incident_is_claimed_once_until_it_is_due_again,
    two_claims_at_once_never_share_an_incident,
    triggers_at_once_open_one_incident,
);

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
}

fn new(key: &str, source_id: Option<&str>, severity: Severity) -> NewIncident {
    NewIncident {
        key: key.into(),
        severity,
        summary: format!("{key} is failing"),
        source: "alert".into(),
        escalation: Some("www".into()),
        policy: Some(serde_json::json!({"steps": [{"notify": ["schedule:ops"], "wait": "5m"}], "repeat": 0})),
        runbook: Some("checkout".into()),
        details: serde_json::json!({"labels": {"service": key}}),
        opened_by: "crew".into(),
        source_id: source_id.map(str::to_string),
        drill: false,
    }
}

fn event(kind: &str, subject: &str, summary: String) -> NewEvent {
    NewEvent::new(Actor::new("crew", Via::Scheduler), kind, subject, summary)
}

/// The event a trigger records: its kind says what the trigger did.
type OnTrigger = Box<dyn for<'i> FnOnce(&'i Incident, Triggered) -> Vec<NewEvent> + Send>;

fn on_trigger() -> OnTrigger {
    Box::new(|i, what| {
        let kind = match what {
            Triggered::Opened => "incident.triggered",
            Triggered::Joined => "incident.joined",
            Triggered::Reopened => "incident.reopened",
            Triggered::Duplicate => "incident.duplicate",
        };
        vec![event(kind, &format!("incident:{}", i.id), format!("#{} {kind} ({} alerts)", i.id, i.alerts))]
    })
}

fn on(kind: &'static str, who: &'static str) -> Box<dyn for<'i> FnOnce(&'i Incident) -> NewEvent + Send> {
    Box::new(move |i| event(kind, &format!("incident:{}", i.id), format!("#{} {kind} by {who}", i.id)))
}

/// The incident events on the timeline, oldest first, as `kind subject`.
async fn timeline(s: &dyn Store) -> Vec<String> {
    let page = s.query(&EventFilter::new().kind("incident").limit(1000)).await.unwrap();
    page.events.iter().rev().map(|e| format!("{} {}", e.kind, e.subject)).collect()
}

async fn a_trigger_opens_joins_is_a_duplicate_reopens_and_opens_anew(e: Engine) {
    let s = &*e.store;
    let t = t0();
    let (a, what, events) =
        s.trigger_incident(new("checkout", Some("a1"), Severity::Page), t, HOUR, on_trigger()).await.unwrap();
    assert_eq!(what, Triggered::Opened);
    assert_eq!((a.status, a.step, a.due_at, a.alerts, a.triggered_at), (IncidentStatus::Triggered, 0, Some(t), 1, t));
    assert_eq!((a.key.as_str(), a.source.as_str(), a.runbook.as_deref()), ("checkout", "alert", Some("checkout")));
    assert_eq!(a.policy.as_ref().unwrap()["steps"][0]["wait"], "5m", "the policy is kept as it was");
    assert_eq!(events.len(), 1);
    let id = a.id;

    // The same key while open: the alert joins it.
    let later = t + Duration::minutes(2);
    let (b, what, _) =
        s.trigger_incident(new("checkout", Some("a2"), Severity::Page), later, HOUR, on_trigger()).await.unwrap();
    assert_eq!((what, b.id, b.alerts, b.triggered_at), (Triggered::Joined, id, 2, t));
    // A source heard already: nothing changes, nothing is recorded (the closure is not even asked).
    let before = s.counts().await.unwrap().events;
    let (c, what, events) =
        s.trigger_incident(new("checkout", Some("a2"), Severity::Page), later, HOUR, on_trigger()).await.unwrap();
    assert_eq!((what, c.id, c.alerts, events.len()), (Triggered::Duplicate, id, 2, 0));
    assert_eq!(s.counts().await.unwrap().events, before);
    // Another key is another incident.
    let (other, what, _) =
        s.trigger_incident(new("search", None, Severity::Ticket), later, HOUR, on_trigger()).await.unwrap();
    assert_eq!(what, Triggered::Opened);
    assert_ne!(other.id, id);
    assert_eq!(other.due_at, None, "a ticket does not page: nothing is due");

    // Resolved, then firing again within the window: the same incident, open again, escalating from the start.
    s.ack_incident(id, "alice", later, Some(later + Duration::hours(1)), on("incident.acknowledged", "alice"))
        .await
        .unwrap();
    let resolved_at = t + Duration::minutes(10);
    s.resolve_incident(id, "alice", resolved_at, on("incident.resolved", "alice")).await.unwrap();
    let again = resolved_at + Duration::minutes(59);
    let (r, what, _) =
        s.trigger_incident(new("checkout", Some("a3"), Severity::Page), again, HOUR, on_trigger()).await.unwrap();
    assert_eq!(what, Triggered::Reopened);
    assert_eq!((r.id, r.status, r.step, r.due_at, r.alerts), (id, IncidentStatus::Triggered, 0, Some(again), 3));
    assert_eq!((r.acked_at, r.acked_by.as_deref(), r.resolved_at, r.resolved_by.as_deref()), (None, None, None, None));
    assert_eq!(s.incident(id).await.unwrap().as_ref(), Some(&r));

    // Resolved, then firing after the window: a new incident with the same key.
    let resolved_at = again + Duration::minutes(5);
    s.resolve_incident(id, "bob", resolved_at, on("incident.resolved", "bob")).await.unwrap();
    let after = resolved_at + Duration::minutes(61);
    let (n, what, _) =
        s.trigger_incident(new("checkout", Some("a4"), Severity::Page), after, HOUR, on_trigger()).await.unwrap();
    assert_eq!(what, Triggered::Opened);
    assert!(n.id != id && n.id != other.id);
    assert_eq!((n.alerts, n.triggered_at, n.status), (1, after, IncidentStatus::Triggered));
    assert_eq!(s.incident_by_key("checkout").await.unwrap().map(|i| i.id), Some(n.id), "the newest with the key");
    assert_eq!(s.incident(id).await.unwrap().unwrap().status, IncidentStatus::Resolved, "the old one stays resolved");
    assert_eq!(s.incident_by_key("nothing").await.unwrap(), None);
    // A repeated source stays a duplicate of the incident it reached, even after that was resolved.
    let (d, what, _) =
        s.trigger_incident(new("checkout", Some("a1"), Severity::Page), after, HOUR, on_trigger()).await.unwrap();
    assert_eq!((what, d.id), (Triggered::Duplicate, id));

    let open: Vec<i64> = s.incidents(true, 10).await.unwrap().iter().map(|i| i.id).collect();
    assert_eq!(open, [n.id, other.id], "open ones, newest first");
    let all: Vec<i64> = s.incidents(false, 10).await.unwrap().iter().map(|i| i.id).collect();
    assert_eq!(all, [n.id, other.id, id], "open first, then the resolved");
    assert_eq!(s.incidents(false, 1).await.unwrap().len(), 1);

    let sub = |k: &str, i: i64| format!("{k} incident:{i}");
    assert_eq!(
        timeline(s).await,
        [
            sub("incident.triggered", id),
            sub("incident.joined", id),
            sub("incident.triggered", other.id),
            sub("incident.acknowledged", id),
            sub("incident.resolved", id),
            sub("incident.reopened", id),
            sub("incident.resolved", id),
            sub("incident.triggered", n.id),
        ]
    );
}

async fn acks_and_resolutions_apply_once(e: Engine) {
    let s = &*e.store;
    let t = t0();
    let (i, _, _) = s.trigger_incident(new("disk", None, Severity::Page), t, HOUR, on_trigger()).await.unwrap();
    let ack_until = t + Duration::minutes(30);
    let (a, ev) = s
        .ack_incident(i.id, "alice", t + Duration::minutes(1), Some(ack_until), on("incident.acknowledged", "alice"))
        .await
        .unwrap();
    assert_eq!(
        (a.status, a.acked_by.as_deref(), a.acked_at),
        (IncidentStatus::Acknowledged, Some("alice"), Some(t + Duration::minutes(1)))
    );
    assert_eq!((a.due_at, a.step), (Some(ack_until), 0), "due again when the acknowledgement times out");
    assert_eq!((ev.kind.as_str(), ev.subject.clone()), ("incident.acknowledged", format!("incident:{}", i.id)));

    let before = s.counts().await.unwrap().events;
    let err = s
        .ack_incident(i.id, "bob", t + Duration::minutes(2), None, on("incident.acknowledged", "bob"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("acknowledged already") && m.contains("alice")),
        "{err}"
    );
    assert_eq!(
        s.incident(i.id).await.unwrap().unwrap().acked_by.as_deref(),
        Some("alice"),
        "the second ack changed nothing"
    );

    let resolved_at = t + Duration::minutes(3);
    let (r, ev) = s.resolve_incident(i.id, "bob", resolved_at, on("incident.resolved", "bob")).await.unwrap();
    assert_eq!(
        (r.status, r.resolved_by.as_deref(), r.resolved_at, r.due_at),
        (IncidentStatus::Resolved, Some("bob"), Some(resolved_at), None)
    );
    assert_eq!(ev.kind, "incident.resolved");
    let after_resolve = s.counts().await.unwrap().events;
    assert_eq!(after_resolve, before + 1, "the refused ack recorded nothing");

    let err = s
        .ack_incident(i.id, "carol", t + Duration::minutes(4), None, on("incident.acknowledged", "carol"))
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("resolved")), "{err}");
    let err = s
        .resolve_incident(i.id, "carol", t + Duration::minutes(4), on("incident.resolved", "carol"))
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(_)), "{err}");
    assert_eq!(s.incident(i.id).await.unwrap().unwrap().resolved_by.as_deref(), Some("bob"));
    assert_eq!(s.counts().await.unwrap().events, after_resolve, "refusals record nothing");

    // A resolved incident may still get notes; one that does not exist gets nothing.
    let note = s
        .note_incident(i.id, event("incident.note", &format!("incident:{}", i.id), "disk cleaned".into()))
        .await
        .unwrap();
    assert_eq!(note.summary, "disk cleaned");
    let missing = 9_999;
    assert!(matches!(
        s.ack_incident(missing, "a", t, None, on("incident.acknowledged", "a")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.resolve_incident(missing, "a", t, on("incident.resolved", "a")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.note_incident(missing, event("incident.note", "incident:9999", "x".into())).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.incident(missing).await.unwrap(), None);

    // An incident resolved without an ack.
    let (j, _, _) = s.trigger_incident(new("cpu", None, Severity::Page), t, HOUR, on_trigger()).await.unwrap();
    let (j, _) =
        s.resolve_incident(j.id, "dave", t + Duration::minutes(5), on("incident.resolved", "dave")).await.unwrap();
    assert_eq!((j.acked_at, j.status), (None, IncidentStatus::Resolved));
    let subj = |k: &str, id: i64| format!("{k} incident:{id}");
    assert_eq!(
        timeline(s).await,
        [
            subj("incident.triggered", i.id),
            subj("incident.acknowledged", i.id),
            subj("incident.resolved", i.id),
            subj("incident.note", i.id),
            subj("incident.triggered", j.id),
            subj("incident.resolved", j.id),
        ]
    );
}

/// What the escalation worker does with a due incident: the next step, due five minutes on, and its event.
fn next_step(
    now: DateTime<Utc>,
    calls: Arc<AtomicUsize>,
) -> Box<dyn for<'i> Fn(&'i Incident) -> Advance + Send + Sync> {
    Box::new(move |i| {
        calls.fetch_add(1, Ordering::SeqCst);
        Advance {
            status: i.status,
            step: i.step + 1,
            due_at: Some(now + Duration::minutes(5)),
            events: vec![event(
                "incident.escalated",
                &format!("incident:{}", i.id),
                format!("#{} step {}", i.id, i.step),
            )],
        }
    })
}

async fn a_due_incident_is_claimed_once_until_it_is_due_again(e: Engine) {
    let s = &*e.store;
    let t = t0();
    let calls = Arc::new(AtomicUsize::new(0));
    let (i, _, _) = s.trigger_incident(new("checkout", None, Severity::Page), t, HOUR, on_trigger()).await.unwrap();
    let (ticket, _, _) =
        s.trigger_incident(new("search", None, Severity::Ticket), t, HOUR, on_trigger()).await.unwrap();
    assert!(
        s.claim_due(t - Duration::seconds(1), 10, next_step(t, calls.clone())).await.unwrap().is_empty(),
        "not due yet"
    );

    let claimed = s.claim_due(t, 10, next_step(t, calls.clone())).await.unwrap();
    assert_eq!(claimed.len(), 1, "the ticket is never due");
    let (was, adv, events) = &claimed[0];
    assert_eq!((was.id, was.step, adv.step), (i.id, 0, 1), "the incident as claimed, and what it became");
    assert_eq!((events.len(), events[0].kind.as_str()), (1, "incident.escalated"));
    let now = s.incident(i.id).await.unwrap().unwrap();
    assert_eq!((now.step, now.due_at, now.status), (1, Some(t + Duration::minutes(5)), IncidentStatus::Triggered));

    // Claimed: not again before its new due time, however often asked.
    for m in [0, 1, 4] {
        let at = t + Duration::minutes(m) + Duration::seconds(59);
        assert!(s.claim_due(at, 10, next_step(at, calls.clone())).await.unwrap().is_empty(), "at +{m}m59s");
    }
    let at = t + Duration::minutes(5);
    let again = s.claim_due(at, 10, next_step(at, calls.clone())).await.unwrap();
    assert_eq!(again.iter().map(|(i, _, _)| (i.id, i.step)).collect::<Vec<_>>(), [(i.id, 1)]);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "decided once per claim");

    // Acknowledged: due when the acknowledgement times out; resolved: never.
    let ack_until = at + Duration::minutes(30);
    s.ack_incident(i.id, "alice", at, Some(ack_until), on("incident.acknowledged", "alice")).await.unwrap();
    assert!(s.claim_due(ack_until - Duration::seconds(1), 10, next_step(at, calls.clone())).await.unwrap().is_empty());
    let timed_out = s.claim_due(ack_until, 10, next_step(ack_until, calls.clone())).await.unwrap();
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].0.status, IncidentStatus::Acknowledged);
    s.resolve_incident(i.id, "alice", ack_until, on("incident.resolved", "alice")).await.unwrap();
    let far = ack_until + Duration::days(1);
    assert!(s.claim_due(far, 10, next_step(far, calls.clone())).await.unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // The limit: of three due, two now (the earliest due first), the third next time.
    let mut ids = Vec::new();
    for (k, m) in [("c", 3), ("a", 1), ("b", 2)] {
        let (n, _, _) = s
            .trigger_incident(new(k, None, Severity::Page), far + Duration::minutes(m), HOUR, on_trigger())
            .await
            .unwrap();
        ids.push((m, n.id));
    }
    ids.sort();
    let later = far + Duration::minutes(10);
    let first: Vec<i64> =
        s.claim_due(later, 2, next_step(later, calls.clone())).await.unwrap().iter().map(|c| c.0.id).collect();
    assert_eq!(first, [ids[0].1, ids[1].1]);
    let rest: Vec<i64> =
        s.claim_due(later, 2, next_step(later, calls.clone())).await.unwrap().iter().map(|c| c.0.id).collect();
    assert_eq!(rest, [ids[2].1]);

    let escalated = s.query(&EventFilter::new().kind("incident.escalated").limit(100)).await.unwrap().events;
    assert_eq!(escalated.len(), 6, "one event per claim");
    assert_eq!(s.incident(ticket.id).await.unwrap().unwrap().step, 0, "the ticket was never claimed");
}

async fn two_claims_at_once_never_share_an_incident(e: Engine) {
    let s: Arc<dyn Store> = e.store.clone();
    let t = t0();
    let mut ids = Vec::new();
    for k in 0..12 {
        let (i, _, _) =
            s.trigger_incident(new(&format!("k{k}"), None, Severity::Page), t, HOUR, on_trigger()).await.unwrap();
        ids.push(i.id);
    }
    let calls = Arc::new(AtomicUsize::new(0));
    // Each round makes every incident due again (the claims set it five minutes on); two replicas claim at once.
    for round in 0..6 {
        let at = t + Duration::minutes(5 * round);
        let (a, b) = tokio::join!(
            s.claim_due(at, 100, next_step(at, calls.clone())),
            s.claim_due(at, 100, next_step(at, calls.clone())),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut got: Vec<i64> = a.iter().chain(&b).map(|(i, _, _)| i.id).collect();
        got.sort();
        assert_eq!(got, ids, "round {round}: every due incident claimed by exactly one ({} and {})", a.len(), b.len());
        for id in &ids {
            assert_eq!(s.incident(*id).await.unwrap().unwrap().step, round + 1, "round {round}: one step each");
        }
    }
    let escalated = s.query(&EventFilter::new().kind("incident.escalated").limit(1000)).await.unwrap().events;
    assert_eq!(escalated.len(), 6 * ids.len(), "one event per step");
}

async fn triggers_at_once_open_one_incident(e: Engine) {
    let s: Arc<dyn Store> = e.store.clone();
    let t = t0();
    // Two replicas hear the same alert (one source), and two alerts of one key arrive together.
    let (a, b) = tokio::join!(
        s.trigger_incident(new("checkout", Some("fired:1"), Severity::Page), t, HOUR, on_trigger()),
        s.trigger_incident(new("checkout", Some("fired:1"), Severity::Page), t, HOUR, on_trigger()),
    );
    let mut what = [a.as_ref().unwrap().1, b.as_ref().unwrap().1];
    what.sort_by_key(|w| format!("{w:?}"));
    assert_eq!(what, [Triggered::Duplicate, Triggered::Opened]);
    assert_eq!(a.unwrap().0.id, b.unwrap().0.id);
    let (c, d) = tokio::join!(
        s.trigger_incident(new("search", Some("fired:2"), Severity::Page), t, HOUR, on_trigger()),
        s.trigger_incident(new("search", Some("fired:3"), Severity::Page), t, HOUR, on_trigger()),
    );
    let (c, d) = (c.unwrap(), d.unwrap());
    let mut what = [c.1, d.1];
    what.sort_by_key(|w| format!("{w:?}"));
    assert_eq!(what, [Triggered::Joined, Triggered::Opened]);
    assert_eq!(c.0.id, d.0.id);
    assert_eq!(s.incident(c.0.id).await.unwrap().unwrap().alerts, 2);
    assert_eq!(s.incidents(false, 10).await.unwrap().len(), 2);
}
