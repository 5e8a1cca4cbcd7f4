//! Chat: links from chat identities to crew users, and the lines said in rooms.

use crate::Engine;
use crew_core::{Actor, NewEvent, Via};
use crew_store::{ChatLine, StoreError};

conformance!(chat_links_replace_and_remove_with_events, chat_lines_are_kept_by_room_and_bounded);

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

/// Lines come back by room (in any case), oldest first, within the range; each insert drops what is older than
/// the retention and all but the newest `keep_max`; no event is recorded.
async fn chat_lines_are_kept_by_room_and_bounded(e: Engine) {
    let s = &*e.store;
    let t0 = chrono::DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let long_ago = t0 - chrono::Duration::days(365);
    let line = |secs: i64, room: &str, who: &str, text: &str| ChatLine {
        at: at(secs),
        room: room.into(),
        who: who.into(),
        text: text.into(),
    };
    for i in 0..10 {
        s.add_chat_line(&line(i, "#Ops", "alice", &format!("line {i}")), long_ago, 1000).await.unwrap();
    }
    s.add_chat_line(&line(5, "#dev", "bob", "elsewhere"), long_ago, 1000).await.unwrap();
    let ops = s.chat_lines(Some("#ops"), at(2), at(6), 100).await.unwrap();
    let texts: Vec<&str> = ops.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["line 2", "line 3", "line 4", "line 5", "line 6"]);
    assert_eq!(ops[0].room, "#Ops", "the room as it was written");
    assert_eq!(s.chat_lines(None, at(5), at(5), 100).await.unwrap().len(), 2);
    assert_eq!(s.chat_lines(Some("#OPS"), at(0), at(9), 3).await.unwrap().len(), 3, "the limit");
    // The count bound: the newest 4 stay.
    s.add_chat_line(&line(10, "#ops", "alice", "line 10"), long_ago, 4).await.unwrap();
    let kept: Vec<String> = s.chat_lines(None, at(0), at(10), 100).await.unwrap().into_iter().map(|l| l.text).collect();
    assert_eq!(kept, ["elsewhere", "line 8", "line 9", "line 10"], "by insertion, shown by time");
    // The age bound.
    s.add_chat_line(&line(11, "#ops", "alice", "line 11"), at(9), 1000).await.unwrap();
    let kept: Vec<String> = s.chat_lines(None, at(0), at(11), 100).await.unwrap().into_iter().map(|l| l.text).collect();
    assert_eq!(kept, ["line 9", "line 10", "line 11"]);
    assert_eq!(s.counts().await.unwrap().events, 0, "lines are not events");
}
