//! The StatsD parser and the aggregator on arbitrary datagrams (lines split at LF), then the points through
//! the time-series store and its write-ahead encoding.
//! Oracle: no panic; a good line calls back once per value it reports, with a non-empty canonical key; every
//! sample is counted once (taken, refused by the series limit, or a type conflict); a timer's percentiles are
//! ordered; WAL entries read back to the same bytes.
#![no_main]

use crew_metrics::agg::Aggregator;
use crew_metrics::statsd::Parser;
use crew_metrics::tsdb::{decode_entries, default_tiers, encode_entries, Db};
use crew_metrics::Kind;
use libfuzzer_sys::fuzz_target;

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fuzz_target!(|data: &[u8]| {
    let mut parser = Parser::new();
    let mut agg = Aggregator::new(8);
    let mut db = Db::new(default_tiers(10_000));
    let mut values = 0u64;
    let mut t = 1_700_000_000_000i64;
    for datagram in data.split(|&b| b == 0) {
        for line in datagram.split(|&b| b == b'\n') {
            let mut calls = 0;
            let r = parser.parse(line, |key, kind, value, rate| {
                calls += 1;
                assert!(!key.is_empty());
                let name = key.split('{').next().unwrap();
                assert!(!name.is_empty() && name.chars().all(name_char), "bad name in key `{key}`");
                if let Some(labels) = key.strip_prefix(name) {
                    if !labels.is_empty() {
                        assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels in `{key}`");
                    }
                }
                assert!(rate > 0.0 && rate.is_finite(), "a sample rate above 0 (above 1 is taken, as Etsy does)");
                agg.add(key, kind, value, rate);
            });
            match r {
                Ok(n) => {
                    assert_eq!(n, calls);
                    values += n as u64;
                }
                Err(_) => assert_eq!(calls, 0, "a bad line is skipped whole"),
            }
        }
        let c = agg.counts;
        assert_eq!(c.samples + c.series_limited + c.type_conflicts, values);
        let mut out = Vec::new();
        agg.flush(&mut out);
        for (key, kind, p) in &out {
            if *kind == Kind::Timer {
                assert!(p.min <= p.p50 && p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max, "{key}: {p:?}");
            }
        }
        t += 10_000;
        let w = db.append(t, &out);
        let bytes = encode_entries(&w.entries);
        let back = decode_entries(&bytes).expect("a WAL row crew wrote reads back");
        assert_eq!(back.len(), w.entries.len());
        assert_eq!(encode_entries(&back), bytes);
        for c in &w.chunks {
            let pts = c.points().expect("a chunk crew wrote decodes");
            assert_eq!(pts.len() as u32, c.points);
        }
    }
});
