//! The store conformance suite: every test runs on SQLite and on a real PostgreSQL, and both must agree.

use chrono::{Duration, Utc};
use crew_core::{Actor, Cursor, EventFilter, NewEvent, Role, Via};
use crew_store::{Store, StoreError, TokenInfo};
use std::sync::Arc;

struct Engine {
    store: Arc<dyn Store>,
    url: String,
    /// Keeps the SQLite folder alive for the test.
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crew.db").display());
    Engine { store: crew_store::open(&url).await.unwrap(), url, _dir: Some(dir) }
}

async fn postgres() -> Engine {
    let url = crew_testkit::fresh_postgres().await;
    Engine { store: crew_store::open(&url).await.unwrap(), url, _dir: None }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )*
        }
        mod on_postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )*
        }
    };
}

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
    tokens_lifecycle,
    sessions_lifecycle,
    bus_delivers_committed_events,
    events_after_resumes,
    survives_reopen,
    deploys_and_locks,
    flags_with_before_and_after,
    chat_links_replace_and_remove_with_events,
    a_lease_has_one_holder_until_it_expires,
    metric_chunks_and_the_write_ahead_rows,
);

fn ev(actor: &str, kind: &str, subject: &str, summary: &str) -> NewEvent {
    NewEvent::new(Actor::new(actor, Via::Cli), kind, subject, summary)
}

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

fn token(name: &str, role: Role) -> TokenInfo {
    TokenInfo { name: name.into(), role, created_at: Utc::now(), created_by: "admin".into() }
}

async fn tokens_lifecycle(e: Engine) {
    let s = &*e.store;
    let admin = Actor::new("admin", Via::Cli);
    let made = s
        .create_token(
            &token("alice", Role::Member),
            "hash-a",
            NewEvent::new(admin.clone(), "token.created", "token:alice", "created"),
        )
        .await
        .unwrap();
    assert_eq!(made.kind, "token.created");
    let dup = s
        .create_token(
            &token("alice", Role::Viewer),
            "hash-b",
            NewEvent::new(admin.clone(), "token.created", "token:alice", "again"),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    let found = s.token_by_hash("hash-a").await.unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.role), ("alice", Role::Member));
    assert_eq!(s.token_by_hash("hash-b").await.unwrap(), None);
    s.create_token(
        &token("app", Role::Evaluate),
        "hash-c",
        NewEvent::new(admin.clone(), "token.created", "token:app", "created"),
    )
    .await
    .unwrap();
    let names: Vec<_> = s.tokens().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["alice", "app"]);
    s.revoke_token("alice", NewEvent::new(admin.clone(), "token.revoked", "token:alice", "revoked")).await.unwrap();
    assert_eq!(s.token_by_hash("hash-a").await.unwrap(), None);
    let gone = s.revoke_token("alice", NewEvent::new(admin, "token.revoked", "token:alice", "again")).await;
    assert!(matches!(gone, Err(StoreError::NotFound(_))));
    // Two events recorded for the two creations that worked, one for the revocation; none for the failures.
    assert_eq!(s.counts().await.unwrap().events, 3);
}

async fn sessions_lifecycle(e: Engine) {
    let s = &*e.store;
    let admin = Actor::new("admin", Via::Cli);
    s.create_token(
        &token("bob", Role::Viewer),
        "hash-bob",
        NewEvent::new(admin.clone(), "token.created", "token:bob", "c"),
    )
    .await
    .unwrap();
    let web = Actor::new("bob", Via::Web);
    let later = Utc::now() + Duration::hours(1);
    s.create_session(
        "s1",
        "bob",
        "csrf1",
        later,
        NewEvent::new(web.clone(), "session.started", "token:bob", "signed in"),
    )
    .await
    .unwrap();
    let sess = s.session("s1").await.unwrap().unwrap();
    assert_eq!((sess.token.name.as_str(), sess.csrf.as_str()), ("bob", "csrf1"));
    let past = Utc::now() - Duration::seconds(1);
    s.create_session(
        "s2",
        "bob",
        "csrf2",
        past,
        NewEvent::new(web.clone(), "session.started", "token:bob", "signed in"),
    )
    .await
    .unwrap();
    assert_eq!(s.session("s2").await.unwrap(), None, "expired sessions are not live");
    let ended =
        s.delete_session("s1", NewEvent::new(web.clone(), "session.ended", "token:bob", "signed out")).await.unwrap();
    assert_eq!(ended.kind, "session.ended");
    assert_eq!(s.session("s1").await.unwrap(), None);
    s.create_session("s3", "bob", "csrf3", later, NewEvent::new(web, "session.started", "token:bob", "signed in"))
        .await
        .unwrap();
    s.revoke_token("bob", NewEvent::new(admin, "token.revoked", "token:bob", "r")).await.unwrap();
    assert_eq!(s.session("s3").await.unwrap(), None, "revoking a token ends its sessions");
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

fn new_deploy(env: &str, actor: &str) -> crew_store::NewDeploy {
    crew_store::NewDeploy {
        app: "www".into(),
        environment: env.into(),
        action: "deploy".into(),
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
        "succeeded",
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
    assert_eq!(s.deploy(mine.id).await.unwrap().unwrap().status, "interrupted");
    assert!(s.locks().await.unwrap().is_empty());
    s.start_deploy(new_deploy("production", "bob"), started("bob")).await.unwrap();
    let listed: Vec<i64> = s.deploys(Some("production"), 10).await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(listed.len(), 3);
    assert!(listed.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(s.deploys(None, 10).await.unwrap().len(), 4);
}

async fn flags_with_before_and_after(e: Engine) {
    let s = &*e.store;
    let ev = |before: Option<&serde_json::Value>| {
        let before = before.cloned();
        NewEvent::new(Actor::new("alice", Via::Cli), "flag.changed", "flag:video", "changed")
            .with_data(serde_json::json!({"before": before}))
    };
    let on = serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    let (before, event) = s.put_flag("video", Some(on.clone()), "alice", Box::new(ev)).await.unwrap();
    assert_eq!(before, None);
    assert_eq!(event.data["before"], serde_json::Value::Null);
    let off = serde_json::json!({"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    let (before, event) = s.put_flag("video", Some(off.clone()), "bob", Box::new(ev)).await.unwrap();
    assert_eq!(before, Some(on.clone()));
    assert_eq!(event.data["before"], on);
    let flags = s.flags().await.unwrap();
    assert_eq!((flags.len(), flags[0].definition.clone(), flags[0].updated_by.as_str()), (1, off, "bob"));
    s.put_flag("video", None, "bob", Box::new(ev)).await.unwrap();
    assert!(s.flags().await.unwrap().is_empty());
    assert!(matches!(s.put_flag("video", None, "bob", Box::new(ev)).await, Err(StoreError::NotFound(_))));
}

async fn chat_links_replace_and_remove_with_events(e: Engine) {
    let s = &*e.store;
    let ev = |kind: &str| NewEvent::new(Actor::new("root", Via::Cli), kind, "user:alice", "linked");
    let linked = s.put_chat_link("alice!*@*.example.com", Some("alice"), "root", ev("chat.linked")).await.unwrap();
    assert_eq!(linked.kind, "chat.linked");
    s.put_chat_link("alice!*@*.example.com", Some("alice2"), "root", ev("chat.linked")).await.unwrap();
    s.put_chat_link("account:bob", Some("bob"), "root", ev("chat.linked")).await.unwrap();
    let links = s.chat_links().await.unwrap();
    let pairs: Vec<(&str, &str)> = links.iter().map(|l| (l.identity.as_str(), l.user.as_str())).collect();
    assert_eq!(pairs, [("account:bob", "bob"), ("alice!*@*.example.com", "alice2")]);
    assert_eq!(links[0].created_by, "root");
    s.put_chat_link("account:bob", None, "root", ev("chat.unlinked")).await.unwrap();
    assert_eq!(s.chat_links().await.unwrap().len(), 1);
    let before = s.counts().await.unwrap().events;
    assert!(matches!(
        s.put_chat_link("account:bob", None, "root", ev("chat.unlinked")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.counts().await.unwrap().events, before, "a refused unlink records nothing");
}

async fn a_lease_has_one_holder_until_it_expires(e: Engine) {
    let s = &*e.store;
    let long = std::time::Duration::from_secs(60);
    assert!(s.try_lease("infra.check", "a", long).await.unwrap(), "free: a takes it");
    assert!(!s.try_lease("infra.check", "b", long).await.unwrap(), "held by a: b does not");
    assert!(s.try_lease("infra.check", "a", long).await.unwrap(), "a renews");
    assert!(s.try_lease("alerts", "b", long).await.unwrap(), "another lease is separate");
    // a's lease runs out (a died): b takes it, and a, back, does not.
    assert!(s.try_lease("infra.check", "a", std::time::Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(s.try_lease("infra.check", "b", long).await.unwrap(), "expired: b takes it");
    assert!(!s.try_lease("infra.check", "a", long).await.unwrap());
}

async fn metric_chunks_and_the_write_ahead_rows(e: Engine) {
    use crew_store::{MetricChunk, MetricWal};
    let s = &*e.store;
    let chunk = |source: &str, tier: i32, start: i64, end: i64| MetricChunk {
        series: "lat{route=/}".into(),
        source: source.into(),
        kind: "timer".into(),
        tier,
        start_ms: start,
        end_ms: end,
        points: 3,
        data: vec![0, 1, 2, 255],
    };
    let wal = |source: &str, tier: i32, t: i64| MetricWal {
        source: source.into(),
        tier,
        t_ms: t,
        data: vec![tier as u8, t as u8],
    };
    s.write_metrics(
        "a",
        vec![wal("a", 0, 10), wal("a", 0, 20), wal("a", 1, 20)],
        vec![chunk("a", 0, 0, 10)],
        vec![0, 0],
    )
    .await
    .unwrap();
    s.write_metrics("b", vec![wal("b", 0, 10)], vec![], vec![]).await.unwrap();
    s.write_metrics("a", vec![wal("a", 0, 30)], vec![chunk("a", 0, 20, 30), chunk("a", 1, 0, 60)], vec![20, i64::MIN])
        .await
        .unwrap();
    let rows = s.metric_wal("a").await.unwrap();
    assert_eq!(
        rows,
        vec![wal("a", 0, 20), wal("a", 1, 20), wal("a", 0, 30)],
        "a's tier 0 rows before 20 are gone, in order"
    );
    assert_eq!(s.metric_wal("b").await.unwrap(), vec![wal("b", 0, 10)], "another replica's rows are its own");
    assert_eq!(s.metric_chunks("lat{route=/}", 0, 15, 100).await.unwrap(), vec![chunk("a", 0, 20, 30)]);
    assert_eq!(s.metric_chunks("lat{route=/}", 0, 0, 100).await.unwrap().len(), 2);
    assert!(s.metric_chunks("other", 0, 0, 100).await.unwrap().is_empty());
    // A chunk written again (a partial one at shutdown, then whole) replaces itself; another replica's chunk of
    // the same series and time stands beside it.
    let mut longer = chunk("a", 0, 20, 40);
    longer.points = 5;
    s.write_metrics("a", vec![], vec![longer.clone()], vec![]).await.unwrap();
    s.write_metrics("b", vec![], vec![chunk("b", 0, 20, 40)], vec![]).await.unwrap();
    assert_eq!(s.metric_chunks("lat{route=/}", 0, 35, 100).await.unwrap(), vec![longer, chunk("b", 0, 20, 40)]);
    let series = s.metric_series().await.unwrap();
    assert_eq!(
        series,
        vec![
            ("lat{route=/}".into(), "timer".into(), 0, "a".into(), 40),
            ("lat{route=/}".into(), "timer".into(), 0, "b".into(), 40),
            ("lat{route=/}".into(), "timer".into(), 1, "a".into(), 60)
        ]
    );
    assert_eq!(s.expire_metric_chunks(0, 15).await.unwrap(), 1);
    assert_eq!(s.metric_chunks("lat{route=/}", 0, 0, 100).await.unwrap().len(), 2);
}
