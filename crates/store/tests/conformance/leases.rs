//! Leases: one holder at a time, until the lease runs out.

use crate::Engine;

conformance!(a_lease_has_one_holder_until_it_expires,);

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
