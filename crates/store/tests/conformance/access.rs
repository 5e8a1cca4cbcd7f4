//! Access: tokens and browser sessions.

use crate::Engine;
use chrono::{Duration, Utc};
use crew_core::{Actor, NewEvent, Role, Via};
use crew_store::{StoreError, TokenInfo};

conformance!(tokens_lifecycle, sessions_lifecycle,);

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
