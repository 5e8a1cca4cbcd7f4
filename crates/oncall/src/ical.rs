//! The final schedule as an iCalendar feed (RFC 5545), for people's calendar apps.
//!
//! Written by hand rather than with a crate: the part of the format a feed of timed events needs is small and
//! fully specified (a few properties, UTC times, TEXT escaping, CRLF line ends, folding at 75 octets), and no
//! iCalendar crate is in the workspace.
//!
//! One VEVENT per segment that has a user (gaps are left out), DTSTART/DTEND in UTC, SUMMARY
//! `On call: USER (CALENDAR)`, and a UID made of the prefix and the start, so a segment keeps its UID from one
//! fetch of the feed to the next.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::schedule::Segment;

/// The feed of `segments` named `calendar_name`; `stamp` is the DTSTAMP of every event (when the feed was made).
pub fn feed(calendar_name: &str, segments: &[Segment], uid_prefix: &str, stamp: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |s: &str| push_line(&mut out, s);
    line("BEGIN:VCALENDAR");
    line("VERSION:2.0");
    line("PRODID:-//crew//on-call//EN");
    line("CALSCALE:GREGORIAN");
    line("METHOD:PUBLISH");
    line(&format!("X-WR-CALNAME:{}", escape_text(calendar_name)));
    for seg in segments {
        let Some(user) = &seg.user else { continue };
        line("BEGIN:VEVENT");
        line(&format!("UID:{}", escape_text(&format!("{uid_prefix}{}", utc(seg.from)))));
        line(&format!("DTSTAMP:{}", utc(stamp)));
        line(&format!("DTSTART:{}", utc(seg.from)));
        line(&format!("DTEND:{}", utc(seg.until)));
        line(&format!("SUMMARY:{}", escape_text(&format!("On call: {user} ({calendar_name})"))));
        line("TRANSP:TRANSPARENT");
        line("END:VEVENT");
    }
    line("END:VCALENDAR");
    out
}

/// A DATE-TIME in UTC, `20261130T080000Z`.
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 5545 §3.3.11 TEXT: backslash, semicolon and comma escaped, a line break as `\n`.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("\\n");
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A content line, folded (RFC 5545 §3.1) so no line is longer than 75 octets without its CRLF: a longer line
/// goes on after CRLF and a space, cut only between characters.
fn push_line(out: &mut String, line: &str) {
    let mut rest = line;
    let mut limit = 75;
    loop {
        if rest.len() <= limit {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = write!(out, "{}\r\n ", &rest[..cut]);
        rest = &rest[cut..];
        limit = 74;
    }
}
