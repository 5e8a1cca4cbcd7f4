//! The write-ahead and Gorilla decoders on arbitrary bytes, as a damaged store row would give them. The first
//! byte picks the kind and the column count, the next four the point count (a damaged row's column, so any
//! u32), the rest is the data.
//! Oracle: no panic and no huge allocation on any bytes; what decodes re-encodes to the same points
//! (Gorilla, bit for bit) or to the same bytes (WAL).
#![no_main]

use crew_metrics::gorilla::{decode, Encoder};
use crew_metrics::tsdb::{decode_entries, encode_entries, points_of};
use crew_metrics::Kind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = decode_entries(data) {
        assert_eq!(encode_entries(&entries), data, "WAL bytes that decode re-encode the same");
    }
    if data.len() < 5 {
        return;
    }
    let kind = Kind::from_code(data[0] & 3).unwrap();
    let columns = (data[0] >> 2) as usize % 9;
    let n = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let bytes = &data[5..];
    let _ = points_of(kind, bytes, n);
    if let Ok(points) = decode(bytes, n, columns) {
        assert_eq!(points.len() as u32, n);
        let mut e = Encoder::new(columns);
        for (t, vals) in &points {
            e.push(*t, vals);
        }
        let again = decode(e.bytes(), e.points, columns).expect("an encoded chunk decodes");
        assert_eq!(again.len(), points.len());
        for ((t1, v1), (t2, v2)) in points.iter().zip(&again) {
            assert_eq!(t1, t2);
            let b1: Vec<u64> = v1.iter().map(|v| v.to_bits()).collect();
            let b2: Vec<u64> = v2.iter().map(|v| v.to_bits()).collect();
            assert_eq!(b1, b2);
        }
    }
});
