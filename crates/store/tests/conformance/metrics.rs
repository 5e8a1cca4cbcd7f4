//! Metrics: chunks and write-ahead rows, per replica.

use crate::Engine;

conformance!(metric_chunks_and_the_write_ahead_rows,);

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
    s.write_metrics("a", &[wal("a", 0, 10), wal("a", 0, 20), wal("a", 1, 20)], &[chunk("a", 0, 0, 10)], &[0, 0])
        .await
        .unwrap();
    s.write_metrics("b", &[wal("b", 0, 10)], &[], &[]).await.unwrap();
    // Rows come back in time order, whatever order they were written in (a refused flush's rows are written
    // after newer ones), and a row written again (a retried flush) is kept once.
    s.write_metrics("a", &[wal("a", 0, 30)], &[], &[]).await.unwrap();
    s.write_metrics(
        "a",
        &[wal("a", 0, 25), wal("a", 0, 30)],
        &[chunk("a", 0, 20, 30), chunk("a", 1, 0, 60)],
        &[20, i64::MIN],
    )
    .await
    .unwrap();
    let rows = s.metric_wal("a").await.unwrap();
    assert_eq!(
        rows,
        vec![wal("a", 0, 20), wal("a", 1, 20), wal("a", 0, 25), wal("a", 0, 30)],
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
    s.write_metrics("a", &[], std::slice::from_ref(&longer), &[]).await.unwrap();
    s.write_metrics("b", &[], &[chunk("b", 0, 20, 40)], &[]).await.unwrap();
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
