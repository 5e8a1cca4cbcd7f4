//! Experiments: first exposures only, the cap of users per experiment, conversions attributed after exposure.

use crate::Engine;
use crew_store::Exposure;

conformance!(experiment_exposures_conversions_and_cap);

fn x(user: &str, variant: &str, at_ms: i64) -> Exposure {
    Exposure { flag: "checkout".into(), phase: 7, user: user.into(), variant: variant.into(), at_ms }
}

async fn experiment_exposures_conversions_and_cap(e: Engine) {
    let s = &e.store;
    let r = s.record_exposures(&[x("u1", "a", 100), x("u2", "b", 200), x("u1", "b", 300)], 3).await.unwrap();
    assert_eq!((r.new, r.duplicates, r.dropped), (2, 1, 0));
    let r = s.record_exposures(&[x("u3", "a", 400), x("u4", "a", 500), x("u2", "a", 600)], 3).await.unwrap();
    assert_eq!((r.new, r.duplicates, r.dropped), (1, 1, 1));
    assert_eq!(s.experiment_users("checkout", 7).await.unwrap(), 3);
    assert_eq!(s.experiment_users("checkout", 8).await.unwrap(), 0);
    let counts = s.experiment_counts("checkout", 7).await.unwrap();
    assert_eq!(counts, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
    // A batch over two experiments, with a duplicate inside it: each experiment's size is its own.
    let mut other = x("u9", "a", 700);
    other.phase = 8;
    let r = s.record_exposures(&[other.clone(), x("u5", "b", 700), other], 3).await.unwrap();
    assert_eq!((r.new, r.duplicates, r.dropped), (1, 1, 1));
    assert_eq!(s.experiment_users("checkout", 8).await.unwrap(), 1);
    // u1 converts before and after exposure (attributed at its exposure); u2 only before (not attributed); u3 after.
    s.record_conversion("buy", "u1", 50, 1.0).await.unwrap();
    s.record_conversion("buy", "u1", 900, 2.5).await.unwrap();
    s.record_conversion("buy", "u2", 150, 1.0).await.unwrap();
    s.record_conversion("buy", "u3", 450, 1.0).await.unwrap();
    s.record_conversion("other", "u3", 450, 1.0).await.unwrap();
    let mut units = s.experiment_units("checkout", 7, "buy").await.unwrap();
    units.sort_by_key(|u| u.exposed_ms);
    let got: Vec<(&str, i64, Option<i64>)> =
        units.iter().map(|u| (u.variant.as_str(), u.exposed_ms, u.converted_ms)).collect();
    assert_eq!(got, vec![("a", 100, Some(100)), ("b", 200, None), ("a", 400, Some(450))]);
    // The tallies results read: a user converted once, at its first conversion after exposure; u1's conversion
    // before its exposure does not count, its later one does; u2 converted only before.
    let t = s.experiment_tallies("checkout", 7, "buy").await.unwrap();
    assert_eq!(t.exposed, vec![("a".to_string(), 0, 2), ("b".to_string(), 0, 1)]);
    assert_eq!(t.converted, vec![("a".to_string(), 0, 2)]);
    assert!(s.experiment_tallies("checkout", 7, "other").await.unwrap().converted.len() == 1);
    // An exposure stored after its user's conversion (an SDK's late batch) that happened before it is attributed.
    s.record_conversion("buy", "late", 120_000, 1.0).await.unwrap();
    let mut late = x("late", "b", 90_000);
    late.phase = 9;
    s.record_exposures(&[late], 3).await.unwrap();
    let t = s.experiment_tallies("checkout", 9, "buy").await.unwrap();
    assert_eq!((t.exposed, t.converted), (vec![("b".to_string(), 60_000, 1)], vec![("b".to_string(), 120_000, 1)]));
}
