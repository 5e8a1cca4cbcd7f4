//! StatsD lines as Etsy's StatsD and DogStatsD write them: `name:value|type[|@rate][|#tag:v,flag]`, with
//! several values in one line (`k:1:2:3|ms`). Types: `c` counters, `g` gauges (a leading `+`/`-` is a delta),
//! `ms`, `h` and `d` timers, `s` sets. Names are sanitised as Etsy's StatsD does (whitespace runs → `_`, `/` →
//! `-`, other characters outside `[A-Za-z0-9_.-]` dropped); tags become labels, sorted, so a series key is
//! canonical: `name` or `name{k1=v1,k2=v2}`, label names sanitised as names are, values kept as sent (UTF-8). Parsing writes the key into a caller's buffer and allocates nothing.
//!
//! Hand-written because no crate parses StatsD without allocating per line, which the receive path needs.

use crate::Kind;

/// The longest line accepted (over TCP a longer one is cut off and counted bad).
pub const MAX_LINE: usize = 64 * 1024;

/// The longest series key (name and tags) accepted: a key is stored in the chunk table's key, and PostgreSQL
/// refuses an index entry past about 2.7 KB, which would make every chunk of that series unstorable.
pub const MAX_KEY: usize = 1024;

/// A value of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Num(f64),
    /// A gauge's `+n` / `-n`.
    Delta(f64),
    /// A set member, as written.
    Member(&'a [u8]),
}

/// Why a line was refused (counted, never fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadLine {
    #[error("no `:` after the name")]
    NoColon,
    #[error("the name is empty after sanitising")]
    EmptyName,
    #[error("no `|type`")]
    NoType,
    #[error("unknown type")]
    UnknownType,
    #[error("a value is not a finite number")]
    BadValue,
    #[error("a sample rate is not a number above 0")]
    BadRate,
    #[error("a timer's value is negative")]
    NegativeTimer,
    #[error("a field is neither a sample rate nor a DogStatsD extension (#tags, c:, T, e:)")]
    UnknownField,
    #[error("the line is longer than 64 KiB")]
    TooLong,
    #[error("the series name and tags are longer than 1 KiB")]
    KeyTooLong,
    #[error("not UTF-8 where text is needed")]
    NotText,
}

/// Parser scratch space, reused line after line.
#[derive(Default)]
pub struct Parser {
    key: String,
    tags: Vec<(usize, usize, usize, usize)>,
    label: String,
}

/// Etsy's sanitising of a name, appended to `out`.
pub fn sanitize_into(name: &[u8], out: &mut String) {
    let mut in_space = false;
    for &b in name {
        if b.is_ascii_whitespace() {
            if !in_space {
                out.push('_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        match b {
            b'/' => out.push('-'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => out.push(b as char),
            _ => {}
        }
    }
}

/// A label value as sent: any UTF-8 (a value that is not UTF-8 makes the line bad), control characters dropped
/// (a NUL cannot be stored). It cannot hold `,` (which ends a tag), so the key stays unambiguous: the name ends
/// at the first `{`, the labels at the last `}`, each label name at its first `=`.
fn label_value_into(v: &[u8], out: &mut String) -> Result<(), BadLine> {
    let v = std::str::from_utf8(v).map_err(|_| BadLine::NotText)?;
    out.extend(v.chars().filter(|c| !c.is_control()));
    Ok(())
}

fn number(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    let v: f64 = s.parse().ok()?;
    v.is_finite().then_some(v)
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Parses one line (without its newline), calling `each` for every value in it with the series key, kind,
    /// value and sample rate. Nothing is called for a bad line.
    pub fn parse<'l>(
        &mut self,
        line: &'l [u8],
        mut each: impl FnMut(&str, Kind, Value<'l>, f64),
    ) -> Result<usize, BadLine> {
        if line.len() > MAX_LINE {
            return Err(BadLine::TooLong);
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':').ok_or(BadLine::NoColon)?;
        let (name, rest) = (&line[..colon], &line[colon + 1..]);
        let pipe = rest.iter().position(|&b| b == b'|').ok_or(BadLine::NoType)?;
        let (values, opts) = (&rest[..pipe], &rest[pipe + 1..]);
        let end = opts.iter().position(|&b| b == b'|').unwrap_or(opts.len());
        let kind = match &opts[..end] {
            b"c" => Kind::Counter,
            b"g" => Kind::Gauge,
            b"ms" | b"h" | b"d" => Kind::Timer,
            b"s" => Kind::Set,
            _ => return Err(BadLine::UnknownType),
        };
        // Every `|` after the type starts a field, an empty one too (`k:1|c|` is a bad line, as in Etsy's StatsD).
        let mut fields = opts.get(end + 1..);
        let mut rate = 1.0;
        self.tags.clear();
        while let Some(opts) = fields {
            let end = opts.iter().position(|&b| b == b'|').unwrap_or(opts.len());
            let opt = &opts[..end];
            if let Some(r) = opt.strip_prefix(b"@") {
                // Above 1 is taken, as Etsy's StatsD takes it (the value then counts for less than one).
                rate = number(r).filter(|r| *r > 0.0).ok_or(BadLine::BadRate)?;
            } else if let Some(tags) = opt.strip_prefix(b"#") {
                // Offsets into `line` (tags borrow it; the key buffer is built after).
                let base = tags.as_ptr() as usize - line.as_ptr() as usize;
                let mut start = 0;
                for part in tags.split(|&b| b == b',') {
                    let at = base + start;
                    start += part.len() + 1;
                    if part.is_empty() {
                        continue;
                    }
                    match part.iter().position(|&b| b == b':') {
                        Some(c) => self.tags.push((at, at + c, at + c + 1, at + part.len())),
                        None => self.tags.push((at, at + part.len(), 0, 0)),
                    }
                }
            } else if !(opt.starts_with(b"c:")
                || opt.starts_with(b"e:")
                || opt.strip_prefix(b"T").is_some_and(|t| !t.is_empty() && t.iter().all(u8::is_ascii_digit)))
            {
                // DogStatsD's documented fields (`c:` container, `e:` external data, `T` timestamp) are taken
                // and ignored; anything else is a mistake, as Etsy's StatsD counts it.
                return Err(BadLine::UnknownField);
            }
            fields = opts.get(end + 1..);
        }
        self.key.clear();
        sanitize_into(name, &mut self.key);
        if self.key.is_empty() {
            return Err(BadLine::EmptyName);
        }
        if !self.tags.is_empty() {
            self.tags.sort_by(|a, b| line[a.0..a.1].cmp(&line[b.0..b.1]));
            self.key.push('{');
            let mut first = true;
            for &(ks, ke, vs, ve) in &self.tags {
                self.label.clear();
                sanitize_into(&line[ks..ke], &mut self.label);
                if self.label.is_empty() {
                    continue;
                }
                if !first {
                    self.key.push(',');
                }
                first = false;
                self.key.push_str(&self.label);
                self.key.push('=');
                if ve > vs {
                    label_value_into(&line[vs..ve], &mut self.key)?;
                } else {
                    // A tag without a value (`#canary`) is a label whose value is `true`.
                    self.key.push_str("true");
                }
            }
            if first {
                self.key.pop(); // every tag sanitised away: no braces
            } else {
                self.key.push('}');
            }
        }
        if self.key.len() > MAX_KEY {
            return Err(BadLine::KeyTooLong);
        }
        // Check every value before calling for any: a bad line is skipped whole.
        let mut n = 0;
        for v in values.split(|&b| b == b':') {
            match kind {
                Kind::Set => {
                    if v.is_empty() {
                        return Err(BadLine::BadValue);
                    }
                }
                Kind::Gauge => {
                    number(v.strip_prefix(b"+").unwrap_or(v)).ok_or(BadLine::BadValue)?;
                }
                Kind::Timer => {
                    if number(v).ok_or(BadLine::BadValue)? < 0.0 {
                        return Err(BadLine::NegativeTimer);
                    }
                }
                _ => {
                    number(v).ok_or(BadLine::BadValue)?;
                }
            }
            n += 1;
        }
        for v in values.split(|&b| b == b':') {
            let value = match kind {
                Kind::Set => Value::Member(v),
                Kind::Gauge if v.first().is_some_and(|&b| b == b'+' || b == b'-') => {
                    Value::Delta(number(v.strip_prefix(b"+").unwrap_or(v)).unwrap_or(0.0))
                }
                _ => Value::Num(number(v).unwrap_or(0.0)),
            };
            each(&self.key, kind, value, rate);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(line: &str) -> Result<Vec<(String, Kind, String, f64)>, BadLine> {
        let mut p = Parser::new();
        let mut out = vec![];
        p.parse(line.as_bytes(), |k, kind, v, r| {
            let v = match v {
                Value::Num(n) => format!("{n}"),
                Value::Delta(d) => format!("Δ{d}"),
                Value::Member(m) => String::from_utf8_lossy(m).into(),
            };
            out.push((k.to_string(), kind, v, r))
        })?;
        Ok(out)
    }

    #[test]
    fn every_type_and_option() {
        assert_eq!(all("a.b:1|c").unwrap(), [("a.b".into(), Kind::Counter, "1".into(), 1.0)]);
        assert_eq!(all("a:2|c|@0.5").unwrap()[0].3, 0.5);
        assert_eq!(all("a:-3|g").unwrap()[0].2, "Δ-3");
        assert_eq!(all("a:+3|g").unwrap()[0].2, "Δ3");
        assert_eq!(all("a:3|g").unwrap()[0].2, "3");
        for t in ["ms", "h", "d"] {
            assert_eq!(all(&format!("lat:12.5|{t}")).unwrap()[0].1, Kind::Timer);
        }
        assert_eq!(all("u:alice|s").unwrap()[0].2, "alice");
        let multi = all("lat:1:2:3|ms|@0.1").unwrap();
        assert_eq!(multi.iter().map(|m| m.2.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
        assert!(multi.iter().all(|m| m.3 == 0.1));
    }

    #[test]
    fn tags_become_sorted_labels() {
        let got = all("req:1|c|#route:/home,env:prod,canary").unwrap();
        assert_eq!(got[0].0, "req{canary=true,env=prod,route=/home}");
        assert_eq!(all("req:1|c|@1|#b:2,a:1").unwrap()[0].0, "req{a=1,b=2}");
        assert_eq!(all("req:1|c|#,").unwrap()[0].0, "req");
        // Values as sent: UTF-8, quotes, backslashes, `=` and braces (the key is still read back whole).
        assert_eq!(all("req:1|c|#x:a=b{c}").unwrap()[0].0, "req{x=a=b{c}}");
        assert_eq!(all("req:1|c|#city:Zürich,path:/a\"b\\c").unwrap()[0].0, "req{city=Zürich,path=/a\"b\\c}");
        assert_eq!(all("req:1|c|#sp:a b\tc\0").unwrap()[0].0, "req{sp=a bc}", "control characters dropped");
        assert_eq!(all("req:1|c|#x:\u{7f}").unwrap()[0].0, "req{x=}");
    }

    #[test]
    fn names_are_sanitised_as_etsy_does() {
        assert_eq!(all("my  app/page load!:1|c").unwrap()[0].0, "my_app-page_load");
        assert_eq!(all("ünï.côde:1|c").unwrap()[0].0, "n.cde");
    }

    #[test]
    fn bad_lines_are_refused_whole() {
        for (line, why) in [
            ("nocolon", BadLine::NoColon),
            ("a:1", BadLine::NoType),
            ("a:1|x", BadLine::UnknownType),
            ("a:NaN|c", BadLine::BadValue),
            ("a:inf|ms", BadLine::BadValue),
            ("a:1:x|ms", BadLine::BadValue),
            ("a:|c", BadLine::BadValue),
            ("a:1|c|@0", BadLine::BadRate),
            ("a:-1|ms", BadLine::NegativeTimer),
            ("a:1:-2|ms", BadLine::NegativeTimer),
            ("a:1|c|0.1", BadLine::UnknownField),
            ("a:1|c|x", BadLine::UnknownField),
            ("a:1|c|", BadLine::UnknownField),
            ("a:1|c|#t:v|", BadLine::UnknownField),
            ("a:1|c|T12a", BadLine::UnknownField),
            ("a:1|c|@-1", BadLine::BadRate),
            ("!!!:1|c", BadLine::EmptyName),
            ("a:|s", BadLine::BadValue),
        ] {
            assert_eq!(all(line), Err(why), "{line}");
        }
        // A tag value that is not UTF-8; a tag name that is not is sanitised like a name.
        let mut p = Parser::new();
        assert_eq!(p.parse(b"a:1|c|#t:\xff", |_, _, _, _| panic!("a bad line gives nothing")), Err(BadLine::NotText));
        assert_eq!(p.parse(b"a:1|c|#t\xff:v", |k, _, _, _| assert_eq!(k, "a{t=v}")), Ok(1));
        assert_eq!(all(&format!("a:1|c|#t:{}", "x".repeat(MAX_LINE))), Err(BadLine::TooLong));
        assert_eq!(all(&format!("a:1|c|#t:{}", "x".repeat(MAX_KEY))), Err(BadLine::KeyTooLong));
        assert_eq!(all(&format!("{}:1|c", "n".repeat(MAX_KEY + 1))), Err(BadLine::KeyTooLong));
        assert!(all(&format!("{}:1|c", "n".repeat(MAX_KEY))).is_ok());
    }
}
