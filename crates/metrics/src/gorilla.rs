//! Gorilla compression (Pelkonen et al., VLDB 2015) of a chunk: timestamps as delta-of-deltas, each value
//! column XORed with its previous value, all in one bit stream, point after point. A regular series (a flush
//! every interval, slowly moving values) costs about a bit per timestamp and a few bits per value.
//!
//! Hand-written: the Rust Gorilla crates (`tsz` and its forks) are unmaintained, single-column, and cannot be
//! appended to point by point from a saved state, which the open head of a chunk needs.

/// Bits appended to a byte buffer, most significant first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BitWriter {
    pub bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full, or there is none).
    used: u8,
}

impl BitWriter {
    fn bit(&mut self, b: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if b {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (7 - self.used);
        }
        self.used = (self.used + 1) % 8;
    }

    fn bits(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(b)
    }

    /// `n` bits (at most 64), a byte's worth at a time.
    fn bits(&mut self, n: u32) -> Option<u64> {
        if self.pos + n as usize > self.bytes.len() * 8 {
            return None;
        }
        let (mut v, mut left) = (0u64, n);
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let used = (self.pos % 8) as u32;
            let take = (8 - used).min(left);
            let part = (byte >> (8 - used - take)) as u64 & ((1u64 << take) - 1);
            v = if take == 64 { part } else { (v << take) | part };
            self.pos += take as usize;
            left -= take;
        }
        Some(v)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Column {
    prev: u64,
    leading: u32,
    trailing: u32,
}

/// An open chunk: appendable point by point; its bytes can be saved and read back at any time.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    pub w: BitWriter,
    pub points: u32,
    prev_t: i64,
    prev_delta: i64,
    cols: Vec<Column>,
}

impl Encoder {
    pub fn new(columns: usize) -> Encoder {
        Encoder { w: BitWriter::default(), points: 0, prev_t: 0, prev_delta: 0, cols: vec![Column::default(); columns] }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.w.bytes
    }

    /// Appends a point: `t` in milliseconds (after the previous point's) and one value per column.
    pub fn push(&mut self, t: i64, values: &[f64]) {
        debug_assert_eq!(values.len(), self.cols.len());
        if self.points == 0 {
            self.w.bits(t as u64, 64);
            for (c, v) in self.cols.iter_mut().zip(values) {
                c.prev = v.to_bits();
                c.leading = u32::MAX; // no window yet
                self.w.bits(c.prev, 64);
            }
            self.prev_t = t;
            self.points = 1;
            return;
        }
        // Wrapping, as the decoder adds them back: any i64 times round-trip, and none can panic.
        let delta = t.wrapping_sub(self.prev_t);
        let dod = delta.wrapping_sub(self.prev_delta);
        match dod {
            0 => self.w.bit(false),
            -63..=64 => {
                self.w.bits(0b10, 2);
                self.w.bits((dod + 63) as u64, 7);
            }
            -255..=256 => {
                self.w.bits(0b110, 3);
                self.w.bits((dod + 255) as u64, 9);
            }
            -2047..=2048 => {
                self.w.bits(0b1110, 4);
                self.w.bits((dod + 2047) as u64, 12);
            }
            _ => {
                self.w.bits(0b1111, 4);
                self.w.bits(dod as u64, 64);
            }
        }
        self.prev_delta = delta;
        self.prev_t = t;
        for (c, v) in self.cols.iter_mut().zip(values) {
            let bits = v.to_bits();
            let x = bits ^ c.prev;
            c.prev = bits;
            if x == 0 {
                self.w.bit(false);
                continue;
            }
            self.w.bit(true);
            let leading = x.leading_zeros().min(31);
            let trailing = x.trailing_zeros();
            if c.leading != u32::MAX && leading >= c.leading && trailing >= c.trailing {
                self.w.bit(false);
                self.w.bits(x >> c.trailing, 64 - c.leading - c.trailing);
            } else {
                let meaningful = 64 - leading - trailing;
                self.w.bit(true);
                self.w.bits(leading as u64, 5);
                // 64 meaningful bits are written as 0 (6 bits hold 0..=63).
                self.w.bits((meaningful % 64) as u64, 6);
                self.w.bits(x >> trailing, meaningful);
                c.leading = leading;
                c.trailing = trailing;
            }
        }
        self.points += 1;
    }
}

/// Room for the points a chunk says it holds, but no more than its bytes can hold (every point takes at least a
/// bit), so a damaged point count cannot ask for gigabytes up front.
pub fn capacity(bytes: &[u8], points: u32) -> usize {
    (points as usize).min(bytes.len() * 8 + 1)
}

/// Reads a chunk of `points` points and `columns` columns back: (t, values) in order.
pub fn decode(bytes: &[u8], points: u32, columns: usize) -> Result<Vec<(i64, Vec<f64>)>, &'static str> {
    let mut out = Vec::with_capacity(capacity(bytes, points));
    decode_each(bytes, points, columns, |t, vals| out.push((t, vals.to_vec())))?;
    Ok(out)
}

/// Reads a chunk point by point into `each` (values in a reused buffer: no allocation per point).
pub fn decode_each(
    bytes: &[u8],
    points: u32,
    columns: usize,
    mut each: impl FnMut(i64, &[f64]),
) -> Result<(), &'static str> {
    let mut r = BitReader { bytes, pos: 0 };
    let mut cols = vec![Column::default(); columns];
    let mut vals = vec![0f64; columns];
    let (mut t, mut delta) = (0i64, 0i64);
    let short = "the chunk ends early";
    let wide = "a value's bit window is out of range";
    for i in 0..points {
        if i == 0 {
            t = r.bits(64).ok_or(short)? as i64;
            for (c, v) in cols.iter_mut().zip(vals.iter_mut()) {
                c.prev = r.bits(64).ok_or(short)?;
                *v = f64::from_bits(c.prev);
            }
            each(t, &vals);
            continue;
        }
        let dod = if !r.bit().ok_or(short)? {
            0
        } else if !r.bit().ok_or(short)? {
            r.bits(7).ok_or(short)? as i64 - 63
        } else if !r.bit().ok_or(short)? {
            r.bits(9).ok_or(short)? as i64 - 255
        } else if !r.bit().ok_or(short)? {
            r.bits(12).ok_or(short)? as i64 - 2047
        } else {
            r.bits(64).ok_or(short)? as i64
        };
        delta = delta.wrapping_add(dod);
        t = t.wrapping_add(delta);
        for (c, v) in cols.iter_mut().zip(vals.iter_mut()) {
            if r.bit().ok_or(short)? {
                if r.bit().ok_or(short)? {
                    c.leading = r.bits(5).ok_or(short)? as u32;
                    let m = r.bits(6).ok_or(short)? as u32;
                    let meaningful = if m == 0 { 64 } else { m };
                    // The encoder never writes a window wider than the 64 bits (a damaged chunk may).
                    c.trailing = 64u32.checked_sub(c.leading + meaningful).ok_or(wide)?;
                }
                let meaningful = 64 - c.leading - c.trailing;
                let x = r.bits(meaningful).ok_or(short)? << c.trailing;
                c.prev ^= x;
            }
            *v = f64::from_bits(c.prev);
        }
        each(t, &vals);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_regular_series_costs_about_two_bits_a_point() {
        let mut e = Encoder::new(1);
        let n = 8640; // a day at 10 s
        for i in 0..n {
            e.push(1_700_000_000_000 + i * 10_000, &[42.0 + (i % 3) as f64]);
        }
        let per_point = e.bytes().len() as f64 / n as f64;
        assert!(per_point < 2.0, "{per_point} bytes a point");
        let back = decode(e.bytes(), e.points, 1).unwrap();
        assert_eq!(back.len(), n as usize);
        assert_eq!(back[8639], (1_700_000_000_000 + 8639 * 10_000, vec![42.0 + (8639 % 3) as f64]));
    }

    proptest! {
        #[test]
        fn what_goes_in_comes_out(
            start in -1_000_000_000_000i64..4_000_000_000_000,
            steps in proptest::collection::vec((0i64..100_000_000, proptest::collection::vec(any::<f64>(), 3)), 1..200),
        ) {
            let mut e = Encoder::new(3);
            let mut want = vec![];
            let mut t = start;
            for (dt, vals) in &steps {
                t += dt;
                e.push(t, vals);
                want.push((t, vals.clone()));
            }
            let got = decode(e.bytes(), e.points, 3).unwrap();
            prop_assert_eq!(got.len(), want.len());
            for ((gt, gv), (wt, wv)) in got.iter().zip(&want) {
                prop_assert_eq!(gt, wt);
                for (a, b) in gv.iter().zip(wv) {
                    prop_assert_eq!(a.to_bits(), b.to_bits());
                }
            }
        }
    }
}
