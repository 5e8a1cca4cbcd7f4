//! Times as users write them: RFC 3339, Unix seconds, or a span back from now (`90s`, `15m`, `1h`, `7d`, `-6h`,
//! and Grafana's `now` and `now-6h`).

use chrono::{DateTime, Duration, TimeZone, Utc};

/// The last second a time may name (9999-12-31T23:59:59Z): beyond it, sums of times and spans could overflow.
const LATEST: i64 = 253_402_300_799;
/// The first second a time may name (0000-01-01T00:00:00Z).
const EARLIEST: i64 = -62_167_219_200;

/// Parses a point in time between the years 0 and 9999. `now` is passed in so the rule stays pure and testable.
pub fn parse_time(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = parse_unbounded(input, now)?;
    if !(EARLIEST..=LATEST).contains(&t.timestamp()) {
        return Err(format!("bad time `{}`: out of range (years 0 to 9999)", input.trim()));
    }
    Ok(t)
}

fn parse_unbounded(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty time: expected RFC 3339, Unix seconds or a span like 1h".into());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if s == "now" {
        return Ok(now);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = s.parse().map_err(|_| format!("bad time `{s}`: number too large"))?;
        return Utc.timestamp_opt(secs, 0).single().ok_or_else(|| format!("bad time `{s}`: out of range"));
    }
    // Grafana writes a span back as `now-6h`.
    let back = s.strip_prefix("now-").or_else(|| s.strip_prefix('-')).unwrap_or(s);
    let span = parse_span(back).map_err(|e| {
        format!("bad time `{s}`: {e}; expected RFC 3339 (2026-11-26T16:03:57Z), Unix seconds or a span like 1h")
    })?;
    now.checked_sub_signed(span).ok_or_else(|| format!("bad time `{s}`: too far back"))
}

/// Parses a span like `90s`, `15m`, `1h`, `7d`, `2w`, or combined `1h30m`.
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let mut total = Duration::zero();
    let mut digits = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = match digits.parse() {
            Ok(n) => n,
            Err(_) if digits.is_empty() => return Err(format!("`{s}` has a unit without a number")),
            Err(_) => return Err(format!("`{s}` is too large")),
        };
        digits.clear();
        let unit = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            other => return Err(format!("unknown unit `{other}` (use s, m, h, d or w)")),
        };
        total = unit.and_then(|u| total.checked_add(&u)).ok_or_else(|| format!("`{s}` is too large"))?;
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(format!("`{s}` needs a unit (s, m, h, d or w)"));
    }
    Ok(total)
}

/// Formats a time the way crew prints it to people: `2026-11-26 16:03:57` (UTC).
pub fn human(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Formats a time for JSON: RFC 3339 UTC with milliseconds and `Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let table = [
            ("1h", Some("2026-11-26T11:00:00Z")),
            ("-6h", Some("2026-11-26T06:00:00Z")),
            ("now-6h", Some("2026-11-26T06:00:00Z")),
            ("now", Some("2026-11-26T12:00:00Z")),
            ("now-", None),
            ("now+1h", None),
            ("now-now-1h", None),
            ("1h30m", Some("2026-11-26T10:30:00Z")),
            ("2d", Some("2026-11-24T12:00:00Z")),
            ("2026-11-26T16:03:57Z", Some("2026-11-26T16:03:57Z")),
            ("2026-11-26T17:03:57+01:00", Some("2026-11-26T16:03:57Z")),
            ("1764172800", Some("2025-11-26T16:00:00Z")),
            ("yesterday", None),
            ("5", Some("1970-01-01T00:00:05Z")),
            ("h", None),
            ("10x", None),
            ("", None),
            ("100000000d", None),
            ("9999999999999w", None),
            ("99999999999999999999999s", None),
            ("253402300799", Some("9999-12-31T23:59:59Z")),
            ("253402300800", None),
            ("8210266876799", None),
            ("9223372036854775807", None),
            ("3000000w", None),
        ];
        for (input, want) in table {
            let got = parse_time(input, now).ok().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            assert_eq!(got.as_deref(), want, "input {input:?}");
        }
    }

    #[test]
    fn error_names_the_input() {
        let now = Utc::now();
        let e = parse_time("soon", now).unwrap_err();
        assert!(e.contains("`soon`"), "{e}");
    }
}
