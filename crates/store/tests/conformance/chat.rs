//! Chat: links from chat identities to crew users.

use crate::Engine;
use crew_core::{Actor, NewEvent, Via};
use crew_store::StoreError;

conformance!(chat_links_replace_and_remove_with_events,);

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
