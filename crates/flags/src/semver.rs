//! flagd's `sem_ver` operator: lenient versions (`v1.0.0`, `1.2`, `1`, numbers from the context), build
//! metadata ignored, pre-releases ordered as semver says; operators `=`, `!=`, `<`, `<=`, `>`, `>=`, `^` (same
//! major), `~` (same major and minor).

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

impl Version {
    /// `None` for anything that is not a version (`2.0.0.0`, `not-a-version`).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let s = s.split('+').next()?;
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let mut nums = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            nums[i] = p.parse().ok()?;
        }
        let pre = match pre {
            Some(p) if p.is_empty() || p.split('.').any(|x| x.is_empty()) => return None,
            Some(p) => p.split('.').map(String::from).collect(),
            None => Vec::new(),
        };
        Some(Version { major: nums[0], minor: nums[1], patch: nums[2], pre })
    }
}

impl Ord for Version {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(o.major, o.minor, o.patch)).then_with(|| {
            match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&o.pre) {
                        let ord = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if ord != Ordering::Equal {
                            return ord;
                        }
                    }
                    self.pre.len().cmp(&o.pre.len())
                }
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// `a OP b`, or `None` when the operator or a version is not understood.
pub fn compare(a: &Version, op: &str, b: &Version) -> Option<bool> {
    Some(match op {
        "=" => a == b,
        "!=" => a != b,
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        ">=" => a >= b,
        "^" => a.major == b.major,
        "~" => a.major == b.major && a.minor == b.minor,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let table = [
            ("2.0.0", "=", "2.0.0", Some(true)),
            ("2.0.0-alpha", "<", "2.0.0", Some(true)),
            ("v1.0.0", "=", "1.0.0", Some(true)),
            ("1.0.0+build", "=", "1.0.0", Some(true)),
            ("1.2", ">", "1.1", Some(true)),
            ("1", "^", "1.5.0", Some(true)),
            ("3.0.1", "~", "3.0.0", Some(true)),
            ("3.1.0", "~", "3.0.0", Some(false)),
            ("1.0.0-alpha.1", "<", "1.0.0-alpha.beta", Some(true)),
            ("1.0.0", "===", "1.0.0", None),
        ];
        for (a, op, b, want) in table {
            let got = compare(&Version::parse(a).unwrap(), op, &Version::parse(b).unwrap());
            assert_eq!(got, want, "{a} {op} {b}");
        }
        assert!(Version::parse("2.0.0.0").is_none());
        assert!(Version::parse("not-a-version").is_none());
    }
}
