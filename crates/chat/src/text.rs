//! Fitting text into IRC lines: one line per message, split on UTF-8 boundaries (at a space when one is near)
//! so that the relayed line, with the server's prefix added, stays within 512 bytes.

/// What the server adds in front of our text when it relays it (`:nick!user@host PRIVMSG #room :`) is not known
/// exactly (the host as others see it), so a message is cut to leave room for a long prefix.
pub const RELAY_OVERHEAD: usize = 512 - 2 - 100; // the line's CRLF, and a 100-byte prefix allowance

/// The most text bytes in one message to `target` with `command` (PRIVMSG or NOTICE).
pub fn budget(command: &str, target: &str) -> usize {
    // ":<prefix> " is inside the allowance; "<command> <target> :" is ours.
    RELAY_OVERHEAD.saturating_sub(command.len() + 1 + target.len() + 2).max(16)
}

/// Splits `text` into pieces of at most `max` bytes: line breaks start a new piece, a long line is cut at the
/// last space before the limit (or, in a word longer than the limit, at a character boundary). Control
/// characters that would end or corrupt an IRC line (CR, LF, NUL) never reach a piece.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4); // room for any one UTF-8 character
    let mut out = Vec::new();
    for line in text.split(['\n', '\r']) {
        let line: String = line.chars().filter(|c| *c != '\0').collect();
        let mut rest = line.trim_end();
        if rest.is_empty() {
            continue;
        }
        while rest.len() > max {
            let mut cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            // Prefer a space in the last third of the piece, so words stay whole.
            if let Some(space) = rest[..cut].rfind(' ').filter(|&s| s >= cut * 2 / 3) {
                cut = space;
            }
            // A line that starts with spaces may cut to nothing but them: never an empty message.
            let piece = rest[..cut].trim_end();
            if !piece.is_empty() {
                out.push(piece.to_string());
            }
            rest = rest[cut..].trim_start();
        }
        if !rest.is_empty() {
            out.push(rest.to_string());
        }
    }
    out
}

/// Shortens `text` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_fit_and_join_back_to_the_text() {
        let words: Vec<String> = (0..300).map(|i| format!("wörd{i}")).collect();
        let text = words.join(" ");
        for max in [20, 100, 400] {
            let pieces = split(&text, max);
            assert!(pieces.iter().all(|p| p.len() <= max), "{max}");
            assert_eq!(pieces.join(" "), text, "{max}");
        }
    }

    #[test]
    fn long_words_are_cut_on_character_boundaries() {
        let text = "é".repeat(100); // 200 bytes, no spaces
        let pieces = split(&text, 33);
        assert!(pieces.iter().all(|p| p.len() <= 33));
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn line_breaks_and_nul_never_reach_a_line() {
        assert_eq!(split("a\r\nb\n\nc\0d", 100), ["a", "b", "cd"]);
        assert!(split("  \n ", 10).is_empty());
    }

    #[test]
    fn the_budget_leaves_room_for_the_relay_prefix() {
        let b = budget("NOTICE", "#deploys");
        assert!(b + "NOTICE #deploys :".len() + 100 + 2 <= 512);
        assert_eq!(truncate("abcdef", 4), "a…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
