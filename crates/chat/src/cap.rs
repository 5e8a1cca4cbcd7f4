//! Capability negotiation and SASL at registration as a state machine: the server's `CAP`, `AUTHENTICATE` and
//! 900–908 lines in, the lines to answer and the login's outcome out. It does no IO, so every hostile or odd
//! server is a row in its table tests.
//!
//! The mechanism is chosen once from the config: EXTERNAL when a client certificate is set (the certificate,
//! presented in TLS, is the credential), else PLAIN when an account and password are. When the server's
//! `sasl=` list (CAP LS 302) or its 908 lacks that mechanism the robot does not try it: it ends CAP and says why.
//! Nothing here loops on the server's say-so: each step answers once, and any unexpected step ends
//! negotiation.

use base64::Engine;
use irc_proto::{CapSubCommand, Command, Response};
use std::collections::BTreeMap;

/// The capabilities the robot asks for when offered, besides `sasl`.
const WANTED: [&str; 2] = ["account-tag", "message-tags"];
/// A server's capability list is bounded: past this many names (over any number of `CAP LS` lines) the rest
/// are ignored.
const MAX_CAPS: usize = 256;
/// And so is a mechanism list.
const MAX_MECHANISMS: usize = 32;

/// A SASL mechanism the robot can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    External,
}

impl Mechanism {
    /// Its name on the wire (`AUTHENTICATE PLAIN`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::External => "EXTERNAL",
        }
    }
}

/// How the robot logs in to its services account.
#[derive(Clone, PartialEq, Eq)]
pub enum Login {
    /// SASL PLAIN with an account and password.
    Plain { account: String, password: String },
    /// SASL EXTERNAL: the TLS client certificate is the credential; the account is the one the network
    /// has bound to its fingerprint (`AUTHENTICATE +`, no authorisation identity).
    External,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Login::Plain { account, .. } => write!(f, "Plain {{ account: {account:?}, password: *** }}"),
            Login::External => f.write_str("External"),
        }
    }
}

impl Login {
    pub fn mechanism(&self) -> Mechanism {
        match self {
            Login::Plain { .. } => Mechanism::Plain,
            Login::External => Mechanism::External,
        }
    }
}

/// What became of the login, as the status page says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStatus {
    /// 903, with the account 900 named.
    LoggedIn { mechanism: Mechanism, account: Option<String> },
    /// The server offers no `sasl` capability, or answered no `CAP LS` at all.
    NoSasl { mechanism: Mechanism },
    /// The server's mechanisms (its `sasl=` list or its 908) lack ours, so it was not tried.
    NotOffered { mechanism: Mechanism, offered: Vec<String> },
    /// The server refused to enable `sasl` (CAP NAK).
    Refused { mechanism: Mechanism },
    /// The server said no (902, 904–907), in its words.
    Failed { mechanism: Mechanism, reason: String },
}

impl std::fmt::Display for SaslStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaslStatus::LoggedIn { mechanism, account: Some(a) } => {
                write!(f, "logged in as {a} (SASL {})", mechanism.name())
            }
            SaslStatus::LoggedIn { mechanism, account: None } => write!(f, "logged in (SASL {})", mechanism.name()),
            SaslStatus::NoSasl { mechanism: Mechanism::External } => f.write_str(
                "not logged in: the server offers no SASL (where the network asks for the client certificate in \
                 TLS, it may still know the robot by it: CertFP)",
            ),
            SaslStatus::NoSasl { .. } => f.write_str("not logged in: the server offers no SASL"),
            SaslStatus::NotOffered { mechanism, offered } if offered.is_empty() => {
                write!(f, "not logged in: SASL {} not offered by the server", mechanism.name())
            }
            SaslStatus::NotOffered { mechanism, offered } => write!(
                f,
                "not logged in: SASL {} not offered by the server (it offers {})",
                mechanism.name(),
                offered.join(", ")
            ),
            SaslStatus::Refused { mechanism } => {
                write!(f, "not logged in: the server refused the sasl capability (SASL {})", mechanism.name())
            }
            SaslStatus::Failed { mechanism, reason } => write!(f, "failed: SASL {}: {reason}", mechanism.name()),
        }
    }
}

impl serde::Serialize for SaslStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where negotiation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `CAP LS 302` sent; reading the server's list (one or more lines).
    Listing,
    /// `CAP REQ` sent; waiting for ACK or NAK.
    Requested,
    /// `AUTHENTICATE <mechanism>` sent; `answered` once our one response has gone out.
    Authenticating { answered: bool, aborted: bool },
    /// `CAP END` sent (or the server registered us without CAP): nothing more to negotiate.
    Ended,
}

/// One registration's negotiation.
#[derive(Debug)]
pub struct Negotiation {
    login: Option<Login>,
    phase: Phase,
    /// The server's capabilities and their values (`sasl` → `PLAIN,EXTERNAL`), from every `CAP LS` line.
    offered: BTreeMap<String, Option<String>>,
    requested: Vec<&'static str>,
    /// The mechanisms a 908 listed, for the 904 that follows it.
    listed: Option<Vec<String>>,
    /// The account a 900 named.
    account: Option<String>,
    status: Option<SaslStatus>,
    /// Whether `account-tag` was acknowledged.
    pub account_tag: bool,
}

impl Negotiation {
    pub fn new(login: Option<Login>) -> Negotiation {
        Negotiation {
            login,
            phase: Phase::Listing,
            offered: BTreeMap::new(),
            requested: Vec::new(),
            listed: None,
            account: None,
            status: None,
            account_tag: false,
        }
    }

    /// Whether `CAP END` has gone out (the outbox may send the rest of registration).
    pub fn ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// The login's outcome so far (`None` without a login, or while it is under way).
    pub fn status(&self) -> Option<&SaslStatus> {
        self.status.as_ref()
    }

    /// Feeds one message from the server; returns the lines to send at once, in order.
    pub fn on(&mut self, command: &Command) -> Vec<String> {
        if self.phase == Phase::Ended {
            return Vec::new();
        }
        match command {
            Command::CAP(_, CapSubCommand::LS, a, b) if self.phase == Phase::Listing => {
                // `CAP * LS * :caps` continues on the next line; the last line has no `*`.
                let (more, caps) = match (a.as_deref(), b.as_deref()) {
                    (Some("*"), Some(c)) => (true, c),
                    (Some(c), _) => (false, c),
                    _ => (false, ""),
                };
                for cap in caps.split_whitespace() {
                    if self.offered.len() >= MAX_CAPS {
                        break;
                    }
                    let (name, value) = match cap.split_once('=') {
                        Some((n, v)) => (n, Some(v.to_string())),
                        None => (cap, None),
                    };
                    self.offered.insert(name.to_ascii_lowercase(), value);
                }
                if more {
                    return Vec::new();
                }
                self.request()
            }
            Command::CAP(_, CapSubCommand::ACK, a, b) if self.phase == Phase::Requested => {
                let acked = b.as_deref().or(a.as_deref()).unwrap_or_default();
                let acked: Vec<String> = acked.split_whitespace().map(|c| c.to_ascii_lowercase()).collect();
                let is = |name: &str| acked.iter().any(|c| c == name) && self.requested.contains(&name);
                self.account_tag = is("account-tag");
                match &self.login {
                    Some(login) if is("sasl") => {
                        let mechanism = login.mechanism();
                        // A `sasl` acknowledged while its list lacks our mechanism (irctest's
                        // testPlainNotAvailable, Limnoria's behaviour) is not tried.
                        match self.mechanisms() {
                            Some(offered) if !offered.iter().any(|m| m == mechanism.name()) => {
                                self.status = Some(SaslStatus::NotOffered { mechanism, offered });
                                self.end()
                            }
                            _ => {
                                self.phase = Phase::Authenticating { answered: false, aborted: false };
                                vec![format!("AUTHENTICATE {}", mechanism.name())]
                            }
                        }
                    }
                    Some(login) => {
                        self.status = Some(SaslStatus::Refused { mechanism: login.mechanism() });
                        self.end()
                    }
                    None => self.end(),
                }
            }
            Command::CAP(_, CapSubCommand::NAK, _, _) if self.phase == Phase::Requested => {
                if let Some(login) = &self.login {
                    self.status = Some(SaslStatus::Refused { mechanism: login.mechanism() });
                }
                self.end()
            }
            Command::AUTHENTICATE(arg) => match (self.phase, &self.login) {
                (Phase::Authenticating { answered: false, aborted: false }, Some(login)) if arg == "+" => {
                    self.phase = Phase::Authenticating { answered: true, aborted: false };
                    respond(login)
                }
                // A challenge neither mechanism has, or a second one: abort (the server answers 906).
                (Phase::Authenticating { answered, aborted: false }, _) => {
                    self.phase = Phase::Authenticating { answered, aborted: true };
                    vec!["AUTHENTICATE *".into()]
                }
                _ => Vec::new(),
            },
            Command::Response(Response::RPL_SASLMECHS, args) => {
                // `<me> PLAIN,EXTERNAL :are available SASL mechanisms`
                if let Some(list) = args.get(1) {
                    self.listed = Some(mechanism_list(list));
                }
                Vec::new()
            }
            Command::Response(Response::RPL_LOGGEDIN, args) => {
                // `<me> <nick!user@host> <account> :You are now logged in as <account>`
                if args.len() >= 4 {
                    self.account = Some(said(&args[2], 100));
                }
                Vec::new()
            }
            Command::Response(Response::RPL_SASLSUCCESS, _) if self.authenticating() => {
                if let Some(login) = &self.login {
                    let account = self.account.clone().or_else(|| match login {
                        Login::Plain { account, .. } => Some(account.clone()),
                        Login::External => None,
                    });
                    self.status = Some(SaslStatus::LoggedIn { mechanism: login.mechanism(), account });
                }
                self.end()
            }
            Command::Response(
                Response::ERR_SASLFAIL
                | Response::ERR_SASLTOOLONG
                | Response::ERR_SASLABORT
                | Response::ERR_SASLALREADY
                | Response::ERR_NICKLOCKED,
                args,
            ) if self.authenticating() => {
                if let Some(login) = &self.login {
                    let mechanism = login.mechanism();
                    self.status = Some(match self.listed.take() {
                        Some(offered) if !offered.iter().any(|m| m == mechanism.name()) => {
                            SaslStatus::NotOffered { mechanism, offered }
                        }
                        _ => {
                            let reason = args.last().map(|r| said(r, 200)).unwrap_or_default();
                            SaslStatus::Failed { mechanism, reason }
                        }
                    });
                }
                self.end()
            }
            // The server registered us without (or before finishing) CAP: there is nothing left to negotiate.
            Command::Response(Response::RPL_WELCOME, _) => {
                if let (Some(login), None) = (&self.login, &self.status) {
                    let mechanism = login.mechanism();
                    self.status = Some(match self.phase {
                        Phase::Listing => SaslStatus::NoSasl { mechanism },
                        _ => SaslStatus::Failed {
                            mechanism,
                            reason: "the server registered us before SASL ended".into(),
                        },
                    });
                }
                self.phase = Phase::Ended;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn authenticating(&self) -> bool {
        matches!(self.phase, Phase::Authenticating { .. })
    }

    /// The mechanisms the server's `sasl=` value lists; `None` when it lists none (a 301-style bare `sasl`).
    fn mechanisms(&self) -> Option<Vec<String>> {
        match self.offered.get("sasl") {
            Some(Some(v)) if !v.is_empty() => Some(mechanism_list(v)),
            _ => None,
        }
    }

    /// After the whole `CAP LS`: asks for what is wanted and offered, or ends.
    fn request(&mut self) -> Vec<String> {
        self.requested = WANTED.into_iter().filter(|c| self.offered.contains_key(*c)).collect();
        if let Some(login) = &self.login {
            if self.offered.contains_key("sasl") {
                self.requested.push("sasl");
            } else {
                self.status = Some(SaslStatus::NoSasl { mechanism: login.mechanism() });
            }
        }
        if self.requested.is_empty() {
            return self.end();
        }
        self.phase = Phase::Requested;
        vec![format!("CAP REQ :{}", self.requested.join(" "))]
    }

    fn end(&mut self) -> Vec<String> {
        self.phase = Phase::Ended;
        vec!["CAP END".into()]
    }
}

/// `PLAIN,EXTERNAL` → `["PLAIN", "EXTERNAL"]`, upper case, bounded.
fn mechanism_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .take(MAX_MECHANISMS)
        .map(|m| said(m, 40).to_ascii_uppercase())
        .collect()
}

/// The server's words as the status may show them: no control characters (a terminal's escapes in
/// `crew chat status`), bounded.
/// A server's words as crew shows them: without control characters, nor the bidi overrides and zero-width
/// characters that would make a status line read as something else, and at most `max` bytes.
pub(crate) fn said(text: &str, max: usize) -> String {
    let format =
        |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let clean: String = text.chars().filter(|c| !c.is_control() && !format(*c)).collect();
    crate::text::truncate(&clean, max)
}

/// Our one response to the server's `AUTHENTICATE +`.
fn respond(login: &Login) -> Vec<String> {
    match login {
        Login::Plain { account, password } => {
            let plain = format!("{account}\0{account}\0{password}");
            let b64 = base64::engine::general_purpose::STANDARD.encode(plain);
            // AUTHENTICATE carries at most 400 bytes per line; a last full chunk is followed by "+".
            let mut lines: Vec<String> = b64
                .as_bytes()
                .chunks(400)
                .map(|c| format!("AUTHENTICATE {}", std::str::from_utf8(c).expect("base64 is ASCII")))
                .collect();
            if b64.len() % 400 == 0 {
                lines.push("AUTHENTICATE +".into());
            }
            lines
        }
        // No authorisation identity: the network logs us in to the account the certificate is bound to.
        Login::External => vec!["AUTHENTICATE +".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_words_lose_control_and_format_characters() {
        assert_eq!(said("ok\u{202E}gnp.exe\u{200B} \x07bell\r\n", 100), "okgnp.exe bell");
        assert!(said(&"é".repeat(100), 11).len() <= 11);
    }

    fn plain() -> Option<Login> {
        Some(Login::Plain { account: "crewbot".into(), password: "s3cret".into() })
    }

    /// Plays `script` (a server line, the lines the robot must answer with) and returns the outcome, asserting
    /// that negotiation ended.
    fn check(login: Option<Login>, script: &[(&str, &[&str])]) -> Option<String> {
        let mut n = Negotiation::new(login);
        for (server, want) in script {
            let msg = crate::irc::parse_line(server.as_bytes()).expect("a line").expect("parses");
            assert_eq!(n.on(&msg.command), *want, "after {server}");
        }
        assert!(n.ended(), "negotiation ended");
        n.status().map(|s| s.to_string())
    }

    const PLAIN_B64: &str = "AUTHENTICATE Y3Jld2JvdABjcmV3Ym90AHMzY3JldA==";

    #[test]
    fn plain_logs_in_when_offered() {
        let status = check(
            plain(),
            &[
                (":s CAP * LS :multi-prefix sasl=PLAIN,EXTERNAL account-tag", &["CAP REQ :account-tag sasl"]),
                (":s CAP * ACK :account-tag sasl", &["AUTHENTICATE PLAIN"]),
                ("AUTHENTICATE +", &[PLAIN_B64]),
                (":s 900 crew crew!c@h crewbot :You are now logged in as crewbot", &[]),
                // A 900 without its account is not taken for one.
                (":s 900 crew :You are now logged in", &[]),
                (":s 903 crew :SASL authentication successful", &["CAP END"]),
            ],
        );
        assert_eq!(status.as_deref(), Some("logged in as crewbot (SASL PLAIN)"));
    }

    #[test]
    fn a_bare_sasl_or_an_empty_list_is_tried() {
        for ls in [":s CAP * LS :sasl", ":s CAP * LS :sasl="] {
            let status = check(
                plain(),
                &[
                    (ls, &["CAP REQ :sasl"]),
                    (":s CAP * ACK :sasl", &["AUTHENTICATE PLAIN"]),
                    ("AUTHENTICATE +", &[PLAIN_B64]),
                    (":s 903 crew :SASL authentication successful", &["CAP END"]),
                ],
            );
            assert_eq!(status.as_deref(), Some("logged in as crewbot (SASL PLAIN)"), "{ls}");
        }
    }

    #[test]
    fn a_list_without_plain_ends_cap_and_says_why() {
        let status = check(
            plain(),
            &[
                (":s CAP * LS :sasl=EXTERNAL,SCRAM-SHA-256", &["CAP REQ :sasl"]),
                (":s CAP * ACK :sasl", &["CAP END"]),
                // Whatever the server says next, the password never goes out.
                ("AUTHENTICATE +", &[]),
            ],
        );
        assert_eq!(
            status.as_deref(),
            Some("not logged in: SASL PLAIN not offered by the server (it offers EXTERNAL, SCRAM-SHA-256)")
        );
    }

    #[test]
    fn external_answers_with_an_empty_identity() {
        let status = check(
            Some(Login::External),
            &[
                (":s CAP * LS * :multi-prefix", &[]),
                (":s CAP * LS :sasl=plain,external", &["CAP REQ :sasl"]),
                (":s CAP * ACK sasl", &["AUTHENTICATE EXTERNAL"]),
                ("AUTHENTICATE +", &["AUTHENTICATE +"]),
                (":s 900 crew crew!c@h crew-robot :You are now logged in as crew-robot", &[]),
                (":s 903 crew :SASL authentication successful", &["CAP END"]),
            ],
        );
        assert_eq!(status.as_deref(), Some("logged in as crew-robot (SASL EXTERNAL)"));
        let status = check(
            Some(Login::External),
            &[(":s CAP * LS :sasl=PLAIN", &["CAP REQ :sasl"]), (":s CAP * ACK :sasl", &["CAP END"])],
        );
        assert_eq!(status.as_deref(), Some("not logged in: SASL EXTERNAL not offered by the server (it offers PLAIN)"));
    }

    #[test]
    fn a_908_before_the_904_names_what_the_server_offers() {
        let status = check(
            Some(Login::External),
            &[
                (":s CAP * LS :sasl", &["CAP REQ :sasl"]),
                (":s CAP * ACK :sasl", &["AUTHENTICATE EXTERNAL"]),
                (":s 908 crew PLAIN,SCRAM-SHA-256 :are available SASL mechanisms", &[]),
                (":s 904 crew :SASL authentication failed", &["CAP END"]),
            ],
        );
        assert_eq!(
            status.as_deref(),
            Some("not logged in: SASL EXTERNAL not offered by the server (it offers PLAIN, SCRAM-SHA-256)")
        );
    }

    #[test]
    fn refusals_end_cap_once_with_the_servers_words() {
        for (code, words) in [
            ("904", "SASL authentication failed"),
            ("905", "SASL message too long"),
            ("906", "SASL authentication aborted"),
            ("907", "You have already authenticated"),
            ("902", "You must use a nick assigned to you"),
        ] {
            let status = check(
                plain(),
                &[
                    (":s CAP * LS :sasl=PLAIN", &["CAP REQ :sasl"]),
                    (":s CAP * ACK :sasl", &["AUTHENTICATE PLAIN"]),
                    ("AUTHENTICATE +", &[PLAIN_B64]),
                    (&format!(":s {code} crew :{words}"), &["CAP END"]),
                    (&format!(":s {code} crew :{words}"), &[]),
                ],
            );
            assert_eq!(status, Some(format!("failed: SASL PLAIN: {words}")), "{code}");
        }
    }

    #[test]
    fn no_sasl_no_cap_and_a_refused_request_are_said() {
        let status = check(plain(), &[(":s CAP * LS :multi-prefix", &["CAP END"])]);
        assert_eq!(status.as_deref(), Some("not logged in: the server offers no SASL"));
        let status = check(Some(Login::External), &[(":s CAP * LS :", &["CAP END"])]);
        assert!(status.unwrap().contains("it may still know the robot by it: CertFP"));
        // A server that knows no CAP registers the robot at once.
        let status = check(plain(), &[(":s 001 crew :Welcome", &[])]);
        assert_eq!(status.as_deref(), Some("not logged in: the server offers no SASL"));
        let status = check(
            plain(),
            &[
                (":s CAP * LS :sasl account-tag", &["CAP REQ :account-tag sasl"]),
                (":s CAP * NAK :account-tag sasl", &["CAP END"]),
            ],
        );
        assert_eq!(status.as_deref(), Some("not logged in: the server refused the sasl capability (SASL PLAIN)"));
        // Without a login nothing is said, and sasl is not asked for.
        assert_eq!(check(None, &[(":s CAP * LS :sasl=PLAIN", &["CAP END"])]), None);
    }

    #[test]
    fn a_hostile_server_gets_one_answer_and_an_abort() {
        // An AUTHENTICATE before we asked is ignored; a second `+` or a challenge aborts, once.
        let status = check(
            plain(),
            &[
                ("AUTHENTICATE +", &[]),
                (":s CAP * LS :sasl", &["CAP REQ :sasl"]),
                (":s CAP * ACK :sasl", &["AUTHENTICATE PLAIN"]),
                ("AUTHENTICATE +", &[PLAIN_B64]),
                ("AUTHENTICATE +", &["AUTHENTICATE *"]),
                ("AUTHENTICATE Zm9v", &[]),
                (":s 906 crew :SASL authentication aborted", &["CAP END"]),
            ],
        );
        assert_eq!(status.as_deref(), Some("failed: SASL PLAIN: SASL authentication aborted"));
        // The server's words reach the status without a terminal's escapes.
        let status = check(
            plain(),
            &[
                (":s CAP * LS :sasl", &["CAP REQ :sasl"]),
                (":s CAP * ACK :sasl", &["AUTHENTICATE PLAIN"]),
                (":s 904 crew :\x1b[2Jno\x07", &["CAP END"]),
            ],
        );
        assert_eq!(status.as_deref(), Some("failed: SASL PLAIN: [2Jno"));
        // A 903 or 904 out of turn ends nothing; an ACK of what was never asked for enables nothing.
        let mut n = Negotiation::new(plain());
        for line in [":s 903 crew :ok", ":s 904 crew :no", ":s CAP * ACK :sasl account-tag"] {
            let msg = crate::irc::parse_line(line.as_bytes()).unwrap().unwrap();
            assert!(n.on(&msg.command).is_empty(), "{line}");
        }
        assert!(!n.ended() && !n.account_tag && n.status().is_none());
    }

    #[test]
    fn a_huge_capability_list_is_bounded() {
        let mut n = Negotiation::new(plain());
        let line = format!(":s CAP * LS * :{}", (0..400).map(|i| format!("c{i}")).collect::<Vec<_>>().join(" "));
        for _ in 0..100 {
            let msg = crate::irc::parse_line(line.as_bytes()).unwrap().unwrap();
            assert!(n.on(&msg.command).is_empty());
        }
        assert_eq!(n.offered.len(), MAX_CAPS);
        let list = (0..100).map(|i| format!("M{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(mechanism_list(&list).len(), MAX_MECHANISMS);
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        assert!(!format!("{:?}", plain()).contains("s3cret"));
    }
}
