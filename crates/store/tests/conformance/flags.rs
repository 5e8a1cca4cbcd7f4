//! Flags: definitions replaced and removed, with the definition before in the event.

use crate::Engine;
use crew_core::{Actor, NewEvent, Via};
use crew_store::StoreError;

conformance!(flags_with_before_and_after,);

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
