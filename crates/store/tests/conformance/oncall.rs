//! On-call: overrides added after their check (a refused one stores and records nothing, two at once are checked
//! one after the other), listed by schedule and end, removed; the feeds' key hashes put, replaced and read; every
//! write's event on the timeline.

use crate::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use crew_core::{Actor, EventFilter, NewEvent, Via};
use crew_store::{StoreError, StoredOverride};
use std::sync::{Arc, Mutex};

conformance!(
    overrides_are_checked_listed_and_removed,
    two_overlapping_overrides_at_once_one_is_refused,
    feed_keys_are_put_replaced_and_read,
);

fn at(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::hours(h)
}

fn event(kind: &str, subject: &str, summary: &str) -> NewEvent {
    NewEvent::new(Actor::new("alice", Via::Cli), kind, subject, summary)
}

type Check = Box<dyn for<'o> FnOnce(&'o [StoredOverride]) -> Result<NewEvent, String> + Send>;

/// The check the on-call service makes: no overlap with the schedule's others (touching is fine); the event
/// names the new override. What the check was shown goes to `seen`.
fn no_overlap(
    schedule: &str,
    user: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    seen: Arc<Mutex<Vec<i64>>>,
) -> Check {
    let (schedule, user) = (schedule.to_string(), user.to_string());
    Box::new(move |existing| {
        *seen.lock().unwrap() = existing.iter().map(|o| o.id).collect();
        if let Some(o) = existing.iter().find(|o| o.from < until && from < o.until) {
            return Err(format!("overlaps the override for {} (#{})", o.user, o.id));
        }
        Ok(event("oncall.override", &format!("schedule:{schedule}"), &format!("{user} is on call for {schedule}")))
    })
}

async fn overrides_are_checked_listed_and_removed(e: Engine) {
    let s = &*e.store;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let add = |schedule: &'static str, user: &'static str, from: i64, until: i64| {
        let check = no_overlap(schedule, user, at(from), at(until), seen.clone());
        s.add_override(schedule, user, at(from), at(until), "alice", check)
    };
    let (a, ev) = add("ops", "carol", 10, 12).await.unwrap();
    assert_eq!((a.schedule.as_str(), a.user.as_str(), a.from, a.until), ("ops", "carol", at(10), at(12)));
    assert_eq!(a.created_by, "alice");
    assert_eq!((ev.kind.as_str(), ev.subject.as_str()), ("oncall.override", "schedule:ops"));
    let (c, _) = add("ops", "dave", 20, 30).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), Vec::<i64>::new(), "a ended before c starts");
    let (b, _) = add("ops", "bob", 12, 14).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [c.id], "the check sees the overrides ending after the new start: not a's");
    let (db, _) = add("db", "erin", 11, 13).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), Vec::<i64>::new(), "another schedule's overrides are not shown");

    // Overlapping: refused as a Conflict with the check's message, nothing stored, nothing recorded.
    let before = (s.counts().await.unwrap().events, s.overrides(None, at(0)).await.unwrap());
    for (from, until) in [(11, 13), (13, 21), (9, 31), (25, 26)] {
        let err = add("ops", "frank", from, until).await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.starts_with("overlaps the override for")), "{err}");
    }
    assert_eq!((s.counts().await.unwrap().events, s.overrides(None, at(0)).await.unwrap()), before);
    // Millisecond times come back as they went in.
    let odd = at(40) + Duration::milliseconds(250);
    let check = no_overlap("ops", "frank", odd, odd + Duration::minutes(7), seen.clone());
    let (d, _) = s.add_override("ops", "frank", odd, odd + Duration::minutes(7), "bob", check).await.unwrap();

    // Listing: by schedule, then start; only those ending after the time asked (ending at it is past).
    let ids = |v: Vec<StoredOverride>| v.iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(s.overrides(Some("ops"), at(0)).await.unwrap()), [a.id, b.id, c.id, d.id]);
    assert_eq!(ids(s.overrides(Some("ops"), at(12)).await.unwrap()), [b.id, c.id, d.id]);
    assert_eq!(ids(s.overrides(Some("ops"), at(13)).await.unwrap()), [b.id, c.id, d.id]);
    assert_eq!(ids(s.overrides(Some("ops"), at(30)).await.unwrap()), [d.id]);
    assert_eq!(ids(s.overrides(None, at(0)).await.unwrap()), [db.id, a.id, b.id, c.id, d.id]);
    assert!(s.overrides(Some("none"), at(0)).await.unwrap().is_empty());
    let got = s.overrides(Some("ops"), at(39)).await.unwrap().remove(0);
    assert_eq!((got.from, got.until, got.created_by.as_str()), (odd, odd + Duration::minutes(7), "bob"));
    assert_eq!(got, d);

    // Removing: it returns what it removed; a second time there is nothing to remove and nothing is recorded.
    let (gone, ev) =
        s.remove_override(b.id, event("oncall.override_removed", "schedule:ops", "bob's removed")).await.unwrap();
    assert_eq!((gone, ev.kind.as_str()), (b.clone(), "oncall.override_removed"));
    assert_eq!(ids(s.overrides(Some("ops"), at(0)).await.unwrap()), [a.id, c.id, d.id]);
    let count = s.counts().await.unwrap().events;
    let err = s.remove_override(b.id, event("oncall.override_removed", "schedule:ops", "again")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(s.counts().await.unwrap().events, count);
    // Its time is free again.
    add("ops", "frank", 12, 14).await.unwrap();

    let events = s.query(&EventFilter::new().kind("oncall").limit(100)).await.unwrap().events;
    let kinds: Vec<&str> = events.iter().rev().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "oncall.override",
            "oncall.override",
            "oncall.override",
            "oncall.override",
            "oncall.override",
            "oncall.override_removed",
            "oncall.override"
        ]
    );
}

async fn two_overlapping_overrides_at_once_one_is_refused(e: Engine) {
    let s = e.store.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for round in 0..5 {
        let (from, until) = (at(10 * round), at(10 * round + 4));
        let (later_from, later_until) = (at(10 * round + 2), at(10 * round + 6));
        let (x, y) = tokio::join!(
            s.add_override("ops", "carol", from, until, "alice", no_overlap("ops", "carol", from, until, seen.clone())),
            s.add_override(
                "ops",
                "bob",
                later_from,
                later_until,
                "bob",
                no_overlap("ops", "bob", later_from, later_until, seen.clone())
            ),
        );
        let ok = [x.is_ok(), y.is_ok()];
        assert_eq!(ok.iter().filter(|o| **o).count(), 1, "round {round}: one of two overlapping wins: {x:?} {y:?}");
        let refused = match (x, y) {
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
            _ => unreachable!(),
        };
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused}");
    }
    assert_eq!(s.overrides(Some("ops"), at(0)).await.unwrap().len(), 5);
    let events = s.query(&EventFilter::new().kind("oncall.override").limit(100)).await.unwrap().events;
    assert_eq!(events.len(), 5, "one event per override stored");
}

async fn feed_keys_are_put_replaced_and_read(e: Engine) {
    let s = &*e.store;
    assert_eq!(s.feed_key("schedule:ops").await.unwrap(), None);
    let rotated = |feed: &str| event("oncall.feed_rotated", feed, "a new key");
    let ev = s.put_feed_key("schedule:ops", "hash-1", rotated("schedule:ops")).await.unwrap();
    assert_eq!((ev.kind.as_str(), ev.subject.as_str()), ("oncall.feed_rotated", "schedule:ops"));
    s.put_feed_key("person:alice", "hash-a", rotated("person:alice")).await.unwrap();
    assert_eq!(s.feed_key("schedule:ops").await.unwrap().as_deref(), Some("hash-1"));
    s.put_feed_key("schedule:ops", "hash-2", rotated("schedule:ops")).await.unwrap();
    assert_eq!(s.feed_key("schedule:ops").await.unwrap().as_deref(), Some("hash-2"), "replaced");
    assert_eq!(s.feed_key("person:alice").await.unwrap().as_deref(), Some("hash-a"), "another feed is its own");
    assert_eq!(s.feed_key("person:bob").await.unwrap(), None);
    let events = s.query(&EventFilter::new().kind("oncall.feed_rotated").limit(100)).await.unwrap().events;
    let subjects: Vec<&str> = events.iter().rev().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, ["schedule:ops", "person:alice", "schedule:ops"]);
}
