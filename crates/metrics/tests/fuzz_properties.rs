//! The fuzz targets' properties (fuzz/fuzz_targets/statsd.rs and metrics_decode.rs) as proptest tests, a few
//! seconds each, so CI catches a regression without nightly tools; and the inputs the fuzzer found, as a table.

use crew_metrics::agg::Aggregator;
use crew_metrics::gorilla::{decode, Encoder};
use crew_metrics::statsd::Parser;
use crew_metrics::tsdb::{decode_entries, default_tiers, encode_entries, points_of, Db};
use crew_metrics::Kind;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Lines that are StatsD more often than not: a name, values, a type, options, in pieces a mutation might make.
fn statsd_line() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![Just("hits".to_string()), "[a-z /.é_-]{0,12}"];
    let value = prop_oneof![
        Just("1".to_string()),
        Just("+3".to_string()),
        Just("-2.5".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        "[a-z0-9.+-]{0,6}"
    ];
    let kind = prop_oneof![Just("c"), Just("g"), Just("ms"), Just("h"), Just("d"), Just("s"), Just("x"), Just("")];
    let opt = prop_oneof![Just("@0.5".to_string()), Just("@0".to_string()), "#[a-z:,]{0,10}", "[a-zT:0-9]{0,4}"];
    (name, proptest::collection::vec(value, 0..4), kind, proptest::collection::vec(opt, 0..3)).prop_map(
        |(n, vs, k, opts)| {
            let mut line = format!("{n}:{}|{k}", vs.join(":"));
            for o in opts {
                line.push('|');
                line.push_str(&o);
            }
            line.into_bytes()
        },
    )
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// What the statsd target checks, one interval per batch of lines.
fn parse_aggregate_store(batches: &[Vec<Vec<u8>>]) -> Result<(), TestCaseError> {
    let mut parser = Parser::new();
    let mut agg = Aggregator::new(8);
    let mut db = Db::new(default_tiers(10_000));
    let mut values = 0u64;
    let mut t = 1_700_000_000_000i64;
    for lines in batches {
        for line in lines {
            let mut calls = 0;
            let mut bad_key = None;
            let r = parser.parse(line, |key, kind, value, rate| {
                calls += 1;
                let name = key.split('{').next().unwrap_or("");
                if name.is_empty() || !name.chars().all(name_char) || !(rate > 0.0 && rate.is_finite()) {
                    bad_key = Some(key.to_string());
                }
                agg.add(key, kind, value, rate);
            });
            prop_assert_eq!(bad_key, None);
            match r {
                Ok(n) => {
                    prop_assert_eq!(n, calls);
                    values += n as u64;
                }
                Err(_) => prop_assert_eq!(calls, 0, "a bad line is skipped whole"),
            }
        }
        let c = agg.counts;
        prop_assert_eq!(c.samples + c.series_limited + c.type_conflicts, values);
        let mut out = Vec::new();
        agg.flush(&mut out);
        for (_, kind, p) in &out {
            if *kind == Kind::Timer {
                prop_assert!(p.min <= p.p50 && p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max, "{:?}", p);
            }
        }
        t += 10_000;
        let w = db.append(t, &out);
        let bytes = encode_entries(&w.entries);
        let back = decode_entries(&bytes).expect("a WAL row crew wrote reads back");
        prop_assert_eq!(encode_entries(&back), bytes);
        for ch in &w.chunks {
            prop_assert_eq!(ch.points().expect("a chunk crew wrote decodes").len() as u32, ch.points);
        }
    }
    Ok(())
}

/// What the metrics_decode target checks: the first byte picks kind and columns, the next four the point
/// count, the rest is chunk data; the whole input is also read as WAL rows.
fn decode_anything(data: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(entries) = decode_entries(data) {
        prop_assert_eq!(encode_entries(&entries), data);
    }
    if data.len() < 5 {
        return Ok(());
    }
    let kind = Kind::from_code(data[0] & 3).unwrap();
    let columns = (data[0] >> 2) as usize % 9;
    let n = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let bytes = &data[5..];
    let _ = points_of(kind, bytes, n);
    if let Ok(points) = decode(bytes, n, columns) {
        prop_assert_eq!(points.len() as u32, n);
        let mut e = Encoder::new(columns);
        for (t, vals) in &points {
            e.push(*t, vals);
        }
        let again = decode(e.bytes(), e.points, columns).expect("an encoded chunk decodes");
        let bits = |p: &[(i64, Vec<f64>)]| -> Vec<(i64, Vec<u64>)> {
            p.iter().map(|(t, v)| (*t, v.iter().map(|x| x.to_bits()).collect())).collect()
        };
        prop_assert_eq!(bits(&again), bits(&points));
    }
    Ok(())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Inputs the fuzzer found (fuzz/fuzz_targets/metrics_decode.rs, minimised), each once a panic or an abort.
#[test]
fn inputs_the_fuzzer_found() {
    let table: [(&str, &str); 3] = [
        // A damaged point count (2^32 - 1) made `points_of` reserve ~300 GB before reading a bit.
        ("ffffffffff0000", "the point count is trusted only as far as the bytes go"),
        // Times near i64::MIN: the delta-of-delta sum overflowed (a panic with overflow checks).
        ("000e00000080000000000000018301", "times wrap as the encoder's differences do"),
        // A value window of 31 leading and 64 meaningful bits: `64 - leading - meaningful` underflowed.
        ("ff00ff29290000ff0058e3ffff00ff58004a0000ff1900", "a window wider than 64 bits is an error"),
    ];
    for (input, why) in table {
        let data = hex(input);
        decode_anything(&data).unwrap_or_else(|e| panic!("{input} ({why}): {e}"));
    }
    // The window case is refused, not read as something else.
    let data = hex("ff00ff29290000ff0058e3ffff00ff58004a0000ff1900");
    let n = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    assert_eq!(points_of(Kind::Set, &data[5..], n).unwrap_err(), "a value's bit window is out of range");
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn statsd_lines_parse_aggregate_and_store(
        batches in proptest::collection::vec(proptest::collection::vec(statsd_line(), 0..12), 1..4),
    ) {
        parse_aggregate_store(&batches)?;
    }

    #[test]
    fn statsd_on_arbitrary_bytes(
        batches in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            1..3,
        ),
    ) {
        parse_aggregate_store(&batches)?;
    }
}

proptest! {
    #![proptest_config(config(10000))]

    #[test]
    fn decoders_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        decode_anything(&data)?;
    }

    /// Chunks the encoder wrote, then damaged: a changed byte or a wrong point count never panics.
    #[test]
    fn damaged_chunks(
        start in any::<i64>(),
        steps in proptest::collection::vec((any::<i64>(), any::<f64>()), 1..20),
        flip in any::<(usize, u8)>(),
        n in any::<u32>(),
    ) {
        let mut e = Encoder::new(1);
        let mut t = start;
        for (dt, v) in &steps {
            t = t.wrapping_add(*dt);
            e.push(t, &[*v]);
        }
        let back = decode(e.bytes(), e.points, 1).expect("what the encoder wrote decodes");
        prop_assert_eq!(back.len(), steps.len());
        prop_assert!(back.iter().zip(&steps).all(|((_, v), (_, want))| v[0].to_bits() == want.to_bits()));
        let mut bytes = e.bytes().to_vec();
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1;
        // Kind counter, one column, the damaged count and bytes.
        let mut data = vec![1u8 << 2];
        data.extend_from_slice(&n.to_le_bytes());
        data.extend_from_slice(&bytes);
        decode_anything(&data)?;
    }
}
