//! The timeline: appending, pages, filters and search (checked against the live matcher), the bus, resuming, reopening.

use crate::{ev, Engine};
use chrono::{Duration, Utc};
use crew_core::{Cursor, EventFilter, NewEvent};
use crew_store::{Store, StoreError};
use std::sync::Arc;

conformance!(
    append_reads_back,
    pages_newest_first,
    kind_matches_dotted_prefixes,
    subject_and_actor,
    search_words,
    search_reaches_past_the_newest_window,
    time_window,
    sql_agrees_with_live_matcher,
    bad_event_stores_nothing,
    bus_delivers_committed_events,
    events_after_resumes,
    survives_reopen,
);

async fn all(s: &dyn Store, f: EventFilter) -> Vec<crew_core::Event> {
    let mut out = Vec::new();
    let mut f = f.limit(1000);
    loop {
        let page = s.query(&f).await.unwrap();
        out.extend(page.events);
        match page.next {
            Some(c) => f.before = Some(c),
            None => return out,
        }
    }
}

fn summaries(events: &[crew_core::Event]) -> Vec<&str> {
    events.iter().map(|e| e.summary.as_str()).collect()
}

async fn append_reads_back(e: Engine) {
    let s = &*e.store;
    let before = Utc::now() - Duration::seconds(1);
    let new = ev("alice", "deploy.started", "www/production", "alice deploying www to production")
        .with_data(serde_json::json!({"from": "3f2a1c9", "to": "8e4d0b1", "nested": {"n": 7}}))
        .with_link("deploy", "/deploys/42");
    let stored = s.append(vec![new.clone()]).await.unwrap().remove(0);
    assert!(!stored.id.is_empty());
    assert!(stored.at >= before && stored.at <= Utc::now() + Duration::seconds(1));
    let page = s.query(&EventFilter::new()).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let got = &page.events[0];
    assert_eq!(got, &stored);
    assert_eq!(got.actor, new.actor);
    assert_eq!(got.data["nested"]["n"], 7);
    assert_eq!(got.links[0].href, "/deploys/42");
    assert_eq!(s.event(&stored.id).await.unwrap().as_ref(), Some(&stored));
    assert_eq!(s.event("no-such-id").await.unwrap(), None);
    assert_eq!(s.counts().await.unwrap().events, 1);
}

async fn pages_newest_first(e: Engine) {
    let s = &*e.store;
    let batch: Vec<_> = (0..120).map(|i| ev("bot", "note", "x", &format!("event {i}"))).collect();
    s.append(batch).await.unwrap();
    let mut f = EventFilter::new().limit(50);
    let p1 = s.query(&f).await.unwrap();
    assert_eq!(p1.events.len(), 50);
    assert_eq!(p1.events[0].summary, "event 119");
    f.before = p1.next;
    let p2 = s.query(&f).await.unwrap();
    assert_eq!(p2.events[0].summary, "event 69");
    f.before = p2.next;
    let p3 = s.query(&f).await.unwrap();
    assert_eq!(p3.events.len(), 20);
    assert_eq!(p3.events.last().unwrap().summary, "event 0");
    assert_eq!(p3.next, None, "the last page has no cursor");
    // Exactly a page's worth left: still no cursor pointing at an empty page.
    let exact = s.query(&EventFilter { before: p2.next, ..EventFilter::new().limit(20) }).await.unwrap();
    assert_eq!((exact.events.len(), exact.next), (20, None));
    let ordered: Vec<i64> = p1.events.iter().chain(&p2.events).chain(&p3.events).map(|e| e.seq).collect();
    assert!(ordered.windows(2).all(|w| w[0] > w[1]), "strictly newest first, no overlap");
    // A cursor survives new events arriving: the next page is unchanged.
    s.append(vec![ev("bot", "note", "x", "late")]).await.unwrap();
    let again = s.query(&EventFilter { before: p1.next, ..EventFilter::new().limit(50) }).await.unwrap();
    assert_eq!(summaries(&again.events), summaries(&p2.events));
    let _ = Cursor(1);
}

async fn kind_matches_dotted_prefixes(e: Engine) {
    let s = &*e.store;
    s.append(vec![
        ev("a", "deploy.started", "www/production", "one"),
        ev("a", "deployment.odd", "www/production", "two"),
        ev("a", "deploy.finished", "www/production", "three"),
        ev("a", "flag.changed", "flag:video", "four"),
        ev("a", "deploy", "www/staging", "five"),
    ])
    .await
    .unwrap();
    let got = all(s, EventFilter::new().kind("deploy")).await;
    assert_eq!(summaries(&got), ["five", "three", "one"]);
    let got = all(s, EventFilter::new().kind("deploy.started")).await;
    assert_eq!(summaries(&got), ["one"]);
    assert!(all(s, EventFilter::new().kind("dep")).await.is_empty());
}

async fn subject_and_actor(e: Engine) {
    let s = &*e.store;
    s.append(vec![
        ev("alice", "lock.taken", "www/production", "a"),
        ev("bob", "lock.taken", "www/production", "b"),
        ev("alice", "lock.taken", "www/staging", "c"),
    ])
    .await
    .unwrap();
    let f = EventFilter { subject: Some("www/production".into()), ..EventFilter::new() };
    assert_eq!(summaries(&all(s, f).await), ["b", "a"]);
    let f = EventFilter { actor: Some("alice".into()), ..EventFilter::new() };
    assert_eq!(summaries(&all(s, f).await), ["c", "a"]);
    let f = EventFilter { actor: Some("alice".into()), subject: Some("www/staging".into()), ..EventFilter::new() };
    assert_eq!(summaries(&all(s, f).await), ["c"]);
}

async fn search_words(e: Engine) {
    let s = &*e.store;
    s.append(vec![
        ev("a", "deploy.finished", "www/production", "Deployed WWW: fix login"),
        ev("a", "flag.changed", "flag:video", "video rollout 10% -> 50%"),
        ev("a", "note", "search", "Login page slow after deploy"),
        ev("a", "note", "other", "nothing to see"),
    ])
    .await
    .unwrap();
    let q = |words: &str| {
        let f = EventFilter::new().search(words);
        async move { summaries(&all(s, f).await).into_iter().map(String::from).collect::<Vec<_>>() }
    };
    assert_eq!(q("login").await, ["Login page slow after deploy", "Deployed WWW: fix login"]);
    assert_eq!(q("LOGIN fix").await, ["Deployed WWW: fix login"]);
    assert_eq!(q("production").await, ["Deployed WWW: fix login"], "subject words are searched");
    assert_eq!(q("vid").await, ["video rollout 10% -> 50%"], "words match from their start");
    assert_eq!(q("50").await, ["video rollout 10% -> 50%"]);
    assert!(q("ideo").await.is_empty(), "not from the middle of a word");
    assert!(q("login video").await.is_empty(), "every word must match");
    let f = EventFilter::new().search("login").kind("note");
    assert_eq!(summaries(&all(s, f).await), ["Login page slow after deploy"]);
    // Characters that mean something to FTS5 or tsquery are only separators here.
    assert_eq!(q("\"login\" OR (fix) & !x*").await.len(), 0);
    assert_eq!(q("login:* | fix").await, ["Deployed WWW: fix login"]);
    // Words beyond ASCII, any case, whatever the database's locale.
    s.append(vec![ev("a", "note", "café", "Ärger über den Straßenbau")]).await.unwrap();
    assert_eq!(q("ärger").await, ["Ärger über den Straßenbau"]);
    assert_eq!(q("ÄRGER ÜBER").await, ["Ärger über den Straßenbau"]);
    assert_eq!(q("CAFÉ").await, ["Ärger über den Straßenbau"]);
    assert_eq!(q("straß").await, ["Ärger über den Straßenbau"]);
}

/// PostgreSQL searches the newest 5,000 events one by one, then asks the GIN index for older ones: matches on
/// both sides of that boundary, and pages across it, must all be found in order.
async fn search_reaches_past_the_newest_window(e: Engine) {
    let s = &*e.store;
    let mut batch: Vec<NewEvent> = Vec::new();
    for i in 0..5_300 {
        let summary = if [5, 17, 60, 5_290, 5_299].contains(&i) { format!("needle {i}") } else { format!("hay {i}") };
        let kind = if i == 17 { "deploy.failed" } else { "note" };
        batch.push(ev("a", kind, "x", &summary));
    }
    for chunk in batch.chunks(1000) {
        s.append(chunk.to_vec()).await.unwrap();
    }
    let got = all(s, EventFilter::new().search("needle")).await;
    assert_eq!(summaries(&got), ["needle 5299", "needle 5290", "needle 60", "needle 17", "needle 5"]);
    let mut f = EventFilter::new().search("needle").limit(2);
    let mut pages = Vec::new();
    loop {
        let p = s.query(&f).await.unwrap();
        pages.push(summaries(&p.events).join(","));
        match p.next {
            Some(c) => f.before = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, ["needle 5299,needle 5290", "needle 60,needle 17", "needle 5"]);
    let got = all(s, EventFilter::new().search("needle").kind("deploy")).await;
    assert_eq!(summaries(&got), ["needle 17"]);
    assert!(all(s, EventFilter::new().search("absent")).await.is_empty());
}

async fn time_window(e: Engine) {
    let s = &*e.store;
    let first = s.append(vec![ev("a", "note", "t", "first")]).await.unwrap().remove(0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = s.append(vec![ev("a", "note", "t", "second")]).await.unwrap().remove(0);
    let f = EventFilter { since: Some(second.at), ..EventFilter::new() };
    assert_eq!(summaries(&all(s, f).await), ["second"]);
    let f = EventFilter { until: Some(second.at), ..EventFilter::new() };
    assert_eq!(summaries(&all(s, f).await), ["first"]);
    let f =
        EventFilter { since: Some(first.at), until: Some(second.at + Duration::milliseconds(1)), ..EventFilter::new() };
    assert_eq!(summaries(&all(s, f).await), ["second", "first"]);
}

/// The SQL filters and the in-memory matcher used by live streams must pick the same events.
async fn sql_agrees_with_live_matcher(e: Engine) {
    let s = &*e.store;
    let kinds = ["deploy.started", "deploy.finished", "deploy.failed", "flag.changed", "lock.taken", "note"];
    let subjects = ["www/production", "www/staging", "flag:video", "api/production"];
    let actors = ["alice", "bob", "carol"];
    let words = ["login", "checkout", "video", "slow", "Fixed", "rollout", "db"];
    let batch: Vec<_> = (0..300)
        .map(|i| {
            let summary = format!("{} {} #{i}", words[i % 7], words[(i * 3 + 1) % 7]);
            ev(actors[i % 3], kinds[(i * 7) % 6], subjects[(i * 5) % 4], &summary)
        })
        .collect();
    s.append(batch).await.unwrap();
    let everything = all(s, EventFilter::new()).await;
    assert_eq!(everything.len(), 300);
    let mut filters = vec![];
    for k in [None, Some("deploy"), Some("flag.changed"), Some("lock")] {
        for subj in [None, Some("www/production")] {
            for a in [None, Some("bob")] {
                for q in ["", "login", "fix slow", "produc", "vid rollout"] {
                    let mut f = EventFilter::new().search(q);
                    f.kind = k.map(String::from);
                    f.subject = subj.map(String::from);
                    f.actor = a.map(String::from);
                    filters.push(f);
                }
            }
        }
    }
    for f in filters {
        let want: Vec<&str> = everything.iter().filter(|e| f.matches(e)).map(|e| e.id.as_str()).collect();
        let got = all(s, f.clone()).await;
        let got: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(got, want, "filter {f:?}");
    }
}

async fn bad_event_stores_nothing(e: Engine) {
    let s = &*e.store;
    let err = s.append(vec![ev("a", "note", "x", "fine"), ev("a", "Not A Kind", "x", "bad")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("Not A Kind"), "{err}");
    assert_eq!(s.counts().await.unwrap().events, 0);
}

async fn recv(rx: &mut tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>) -> Arc<crew_core::Event> {
    tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await.expect("an event within a second").unwrap()
}

async fn bus_delivers_committed_events(e: Engine) {
    let s = &*e.store;
    let mut rx = s.subscribe();
    s.append(vec![ev("a", "note", "x", "one"), ev("a", "note", "x", "two")]).await.unwrap();
    assert_eq!(recv(&mut rx).await.summary, "one");
    assert_eq!(recv(&mut rx).await.summary, "two");
    // A failed write publishes nothing.
    let _ = s.append(vec![ev("a", "BAD", "x", "bad")]).await;
    s.append(vec![ev("a", "note", "x", "three")]).await.unwrap();
    assert_eq!(recv(&mut rx).await.summary, "three");
    if e.url.starts_with("postgres") {
        // A second replica on the same database sees this replica's events, and the other way round.
        let other = crew_store::open(&e.url).await.unwrap();
        let mut other_rx = other.subscribe();
        s.append(vec![ev("a", "note", "x", "from one")]).await.unwrap();
        assert_eq!(recv(&mut other_rx).await.summary, "from one");
        other.append(vec![ev("b", "note", "x", "from two")]).await.unwrap();
        assert_eq!(recv(&mut rx).await.summary, "from one");
        assert_eq!(recv(&mut rx).await.summary, "from two");
    }
}

async fn events_after_resumes(e: Engine) {
    let s = &*e.store;
    let stored = s
        .append(
            (0..10)
                .map(|i| ev("a", if i % 2 == 0 { "deploy.started" } else { "note" }, "x", &format!("e{i}")))
                .collect(),
        )
        .await
        .unwrap();
    let after = s.events_after(stored[3].seq, &EventFilter::new(), 100).await.unwrap();
    assert_eq!(summaries(&after), ["e4", "e5", "e6", "e7", "e8", "e9"]);
    let after = s.events_after(stored[3].seq, &EventFilter::new().kind("deploy"), 2).await.unwrap();
    assert_eq!(summaries(&after), ["e4", "e6"]);
}

async fn survives_reopen(e: Engine) {
    e.store.append(vec![ev("a", "note", "x", "kept")]).await.unwrap();
    let Engine { store, url, _dir } = e;
    drop(store);
    let again = crew_store::open(&url).await.unwrap();
    let page = again.query(&EventFilter::new()).await.unwrap();
    assert_eq!(summaries(&page.events), ["kept"]);
}
