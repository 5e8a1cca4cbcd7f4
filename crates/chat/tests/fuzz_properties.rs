//! The irc fuzz target's properties (fuzz/fuzz_targets/irc.rs) as proptest tests, a few seconds each, so CI
//! catches a regression without nightly tools; and the inputs the fuzzer found, as a table.

use crew_chat::irc::parse_line;
use crew_chat::text::{budget, split, truncate};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Every piece is non-empty, has no CR, LF or NUL, fits `max` (and so 512 bytes), and the pieces hold all of
/// the text but its whitespace.
fn split_holds(text: &str, max: usize) -> Result<(), TestCaseError> {
    let pieces = split(text, max);
    for p in &pieces {
        prop_assert!(!p.is_empty(), "an empty piece of {:?} at {}", text, max);
        prop_assert!(!p.contains(['\r', '\n', '\0']), "{:?}", p);
        prop_assert!(p.len() <= max.max(4) && p.len() <= 512, "{} bytes > {}", p.len(), max);
    }
    let keep = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '\0').collect::<String>();
    prop_assert_eq!(keep(&pieces.concat()), keep(text), "split loses or adds text");
    prop_assert!(truncate(text, max).len() <= max.max('…'.len_utf8()));
    Ok(())
}

/// Parsing any line does not panic, and a parsed message prints to a line that parses again.
fn parse_holds(bytes: &[u8]) {
    if let Some(Ok(msg)) = parse_line(bytes) {
        let _ = parse_line(msg.to_string().as_bytes());
    }
}

/// Text a chat message might hold: words, runs of spaces, line breaks, NUL, tabs, multi-byte characters.
fn chatty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z]{1,12}",
        Just(" ".to_string()),
        Just("   ".to_string()),
        Just("\r\n".to_string()),
        Just("\n".to_string()),
        Just("\0".to_string()),
        Just("\t".to_string()),
        Just("é".to_string()),
        Just("\u{3000}".to_string()),
        Just("🚀".to_string()),
        "\\PC{1,8}",
    ];
    proptest::collection::vec(piece, 0..120).prop_map(|v| v.concat())
}

/// Lines an IRC server might send: tags, a prefix, a command, parameters, a trailing part.
fn irc_line() -> impl Strategy<Value = String> {
    let tags = prop_oneof![Just(String::new()), "@[a-z=;/\\\\ -]{0,20} "];
    let prefix = prop_oneof![Just(String::new()), ":[a-z!@.*]{0,16} "];
    let command = prop_oneof![
        Just("PRIVMSG"),
        Just("NOTICE"),
        Just("PING"),
        Just("CAP"),
        Just("AUTHENTICATE"),
        Just("001"),
        Just("433"),
        Just("900"),
        Just("903"),
        Just("904"),
        Just("908"),
        Just("JOIN"),
        Just("KICK"),
        Just("NICK"),
        Just("ERROR"),
        Just(""),
    ];
    let params = "[#a-z* ]{0,20}";
    let trailing = prop_oneof![Just(String::new()), " :\\PC{0,20}"];
    (tags, prefix, command, params, trailing).prop_map(|(t, p, c, a, r)| format!("{t}{p}{c} {a}{r}\r\n"))
}

/// Inputs the fuzzer found (fuzz/fuzz_targets/irc.rs, minimised).
#[test]
fn inputs_the_fuzzer_found() {
    // (text, max): a line starting with spaces was cut at its first space, and an empty piece came out (an
    // empty PRIVMSG, which servers answer with ERR_NOTEXTTOSEND). From the bytes 00 00 20 20 9b 20 20 9b.
    let table: [(&str, usize); 2] = [("  \u{FFFD}  \u{FFFD}", 0), ("  \u{FFFD}  \u{FFFD}", 4)];
    for (text, max) in table {
        split_holds(text, max).unwrap_or_else(|e| panic!("{text:?} at {max}: {e}"));
    }
    assert_eq!(split("  \u{FFFD}  \u{FFFD}", 4), ["\u{FFFD}", "\u{FFFD}"]);
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn split_on_chat_text(text in chatty(), max in 0usize..600) {
        split_holds(&text, max)?;
    }

    #[test]
    fn split_on_any_text_within_the_budget(text in "\\PC{0,1200}", target in "#[a-z]{0,60}") {
        split_holds(&text, budget("PRIVMSG", &target))?;
    }

}

proptest! {
    #![proptest_config(config(10000))]

    #[test]
    fn lines_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        parse_holds(&bytes);
    }

    #[test]
    fn lines_like_a_server_sends(line in irc_line()) {
        parse_holds(line.as_bytes());
    }
}

/// CAP and SASL negotiation on whatever a server sends: no panic, a few lines per server line at most, the
/// password only ever in answer to our own `AUTHENTICATE PLAIN`, and `CAP END` at most once.
fn negotiation_holds(lines: &[String], external: bool) -> Result<(), TestCaseError> {
    use crew_chat::cap::{Login, Negotiation};
    let login =
        if external { Login::External } else { Login::Plain { account: "crewbot".into(), password: "s3cret".into() } };
    let mut n = Negotiation::new(Some(login));
    let (mut ends, mut asked_plain) = (0, false);
    for line in lines {
        let Some(Ok(msg)) = parse_line(line.as_bytes()) else { continue };
        let out = n.on(&msg.command);
        prop_assert!(out.len() <= 4, "{} lines after {:?}", out.len(), line);
        for l in &out {
            asked_plain |= l == "AUTHENTICATE PLAIN";
            ends += usize::from(l == "CAP END");
            if l.starts_with("AUTHENTICATE ")
                && !["AUTHENTICATE PLAIN", "AUTHENTICATE EXTERNAL", "AUTHENTICATE +", "AUTHENTICATE *"]
                    .contains(&l.as_str())
            {
                prop_assert!(asked_plain && !external, "a payload without asking for PLAIN: {:?}", l);
            }
        }
    }
    prop_assert!(ends <= 1, "CAP END {} times", ends);
    Ok(())
}

/// Registration lines, mostly the ones negotiation reacts to.
fn registration_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":s CAP * LS :sasl account-tag".to_string()),
        Just(":s CAP * LS * :sasl=PLAIN,EXTERNAL".to_string()),
        Just(":s CAP * LS :sasl=SCRAM-SHA-256".to_string()),
        Just(":s CAP * ACK :sasl".to_string()),
        Just(":s CAP * NAK :sasl".to_string()),
        Just("AUTHENTICATE +".to_string()),
        Just("AUTHENTICATE Zm9v".to_string()),
        Just(":s 900 crew crew!c@h acct :logged in".to_string()),
        Just(":s 903 crew :ok".to_string()),
        Just(":s 904 crew :failed".to_string()),
        Just(":s 908 crew EXTERNAL :mechs".to_string()),
        Just(":s 001 crew :welcome".to_string()),
        irc_line(),
    ]
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn negotiation_on_what_any_server_sends(lines in proptest::collection::vec(registration_line(), 0..24), external in any::<bool>()) {
        negotiation_holds(&lines, external)?;
    }
}
