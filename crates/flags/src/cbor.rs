//! Deterministic CBOR (RFC 8949 §4.2.1, with preferred serialisation) of a JSON value: the bytes flagd's
//! `fractional` v3 hashes, so that any value — a number, a boolean, an object — buckets the same in every
//! provider (flagd ADR "fractional-non-string-rand-units").
//!
//! The rules beyond plain CBOR, as the ADR states them: a number without a fractional part in
//! [-2^63, 2^64 - 1] is an integer (so `1.0` is `1`, and `-0.0` is `0`); any other number is the shortest float
//! (half, single, double) that keeps its value; an object's keys are sorted by their encoded bytes.

use serde_json::{Map, Value};

const UNSIGNED: u8 = 0;
const NEGATIVE: u8 = 1;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;

/// Appends the deterministic CBOR of `v` to `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                head(UNSIGNED, u, out);
            } else if let Some(i) = n.as_i64() {
                // Negative: CBOR stores -1 - n, which for an i64 always fits a u64.
                head(NEGATIVE, !(i as u64), out);
            } else if let Some(f) = n.as_f64() {
                float(f, out);
            }
        }
        Value::String(s) => text(s, out),
        Value::Array(items) => {
            head(ARRAY, items.len() as u64, out);
            for x in items {
                encode(x, out);
            }
        }
        Value::Object(m) => object(m, out),
    }
}

/// Appends a text string.
pub fn text(s: &str, out: &mut Vec<u8>) {
    head(TEXT, s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the head of an array of `len` items (its items follow).
pub fn array_head(len: u64, out: &mut Vec<u8>) {
    head(ARRAY, len, out);
}

/// A major type and its argument in the fewest bytes.
fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Keys sorted by their encoding: a text string's head grows with its length, so that order is shorter keys
/// first, then bytewise.
fn object(m: &Map<String, Value>, out: &mut Vec<u8>) {
    head(MAP, m.len() as u64, out);
    let mut keys: Vec<(&String, &Value)> = m.iter().collect();
    keys.sort_unstable_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
    for (k, v) in keys {
        text(k, out);
        encode(v, out);
    }
}

/// 2^63 and 2^64 as floats (both exact).
const TWO_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_64: f64 = 18_446_744_073_709_551_616.0;

fn float(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() && f.fract() == 0.0 && (-TWO_63..TWO_64).contains(&f) {
        // Whole: an integer. `-0.0` is not below zero, so it is the unsigned 0.
        if f < 0.0 {
            // In i128, as a double could lose the 1 at these magnitudes.
            head(NEGATIVE, (-1 - f as i128) as u64, out);
        } else {
            head(UNSIGNED, f as u64, out);
        }
    } else if let Some(h) = half(f) {
        out.push(0xf9);
        out.extend_from_slice(&h.to_be_bytes());
    } else if (f as f32) as f64 == f {
        out.push(0xfa);
        out.extend_from_slice(&(f as f32).to_bits().to_be_bytes());
    } else {
        out.push(0xfb);
        out.extend_from_slice(&f.to_bits().to_be_bytes());
    }
}

/// The IEEE 754 half-precision bits of `f` when a half holds it exactly (normal or subnormal), else `None`.
/// Multiplying by a power of two is exact in a double here, so each test is exact.
fn half(f: f64) -> Option<u16> {
    if !f.is_finite() || f == 0.0 {
        return None;
    }
    let sign = if f.is_sign_negative() { 0x8000u16 } else { 0 };
    let a = f.abs();
    if a > 65504.0 {
        return None;
    }
    const MIN_NORMAL: f64 = 1.0 / 16384.0; // 2^-14
    if a < MIN_NORMAL {
        // Subnormal: m × 2^-24 with m in 1..1024.
        let m = a * 16_777_216.0;
        return (m.fract() == 0.0 && m >= 1.0).then_some(sign | m as u16);
    }
    // Normal: 2^e × (1 + m/1024) with e in -14..=15: e is the double's own exponent.
    let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let scaled = a * 2f64.powi(10 - e);
    if scaled.fract() != 0.0 {
        return None;
    }
    let m = scaled as u16 - 1024;
    Some(sign | (((e + 15) as u16) << 10) | m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(v: Value) -> String {
        let mut out = Vec::new();
        encode(&v, &mut out);
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 8949 Appendix A's examples that JSON can express, and the ADR's normalisation of numbers.
    #[test]
    fn encodings() {
        let table = [
            (json!(0), "00"),
            (json!(23), "17"),
            (json!(24), "1818"),
            (json!(1000), "1903e8"),
            (json!(1000000), "1a000f4240"),
            (json!(1000000000000u64), "1b000000e8d4a51000"),
            (json!(u64::MAX), "1bffffffffffffffff"),
            (json!(-1), "20"),
            (json!(-1000), "3903e7"),
            (json!(i64::MIN), "3b7fffffffffffffff"),
            (json!(1.5), "f93e00"),
            (json!(65504.5), "fa477fe080"),
            (json!(5.960464477539063e-8), "f90001"),
            (json!(0.00006103515625), "f90400"),
            (json!(-4.1), "fbc010666666666666"),
            (json!(1.0e300), "fb7e37e43c8800759c"),
            (json!(3.4028234663852886e38), "fa7f7fffff"),
            (json!(1.1), "fb3ff199999999999a"),
            // Whole numbers are integers, whatever JSON wrote: 1.0 is 1, -0.0 is 0, -2.0 is -2.
            (json!(1.0), "01"),
            (json!(-0.0), "00"),
            (json!(-2.0), "21"),
            (json!(-9223372036854775808.0), "3b7fffffffffffffff"),
            (json!(65504.0), "19ffe0"),
            // Past 2^64 - 1 a whole number stays a float.
            (json!(1e20), "fb4415af1d78b58c40"),
            (json!(false), "f4"),
            (json!(true), "f5"),
            (json!(null), "f6"),
            (json!(""), "60"),
            (json!("a"), "6161"),
            (json!("ü"), "62c3bc"),
            (json!([1, [2, 3], [4, 5]]), "8301820203820405"),
            (json!({"a": 1, "b": [2, 3]}), "a26161016162820203"),
            // Shorter keys first, then bytewise: "z" before "aa".
            (json!({"aa": 2, "z": 1}), "a2617a0162616102"),
        ];
        for (v, want) in table {
            assert_eq!(hex(v.clone()), want, "{v}");
        }
    }
}
