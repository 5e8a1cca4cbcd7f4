//! Who is speaking: a chat identity matched against `[[chat.users]]` patterns. IRC hostmask globs
//! (`alice!*@*.example.com`, `*` and `?`) or `account:NAME` for a services account; never the bare nick.

/// An IRC sender as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub nick: String,
    pub user: String,
    pub host: String,
    /// The services account (IRCv3 `account-tag`), when the server says.
    pub account: Option<String>,
}

impl Sender {
    pub fn mask(&self) -> String {
        format!("{}!{}@{}", self.nick, self.user, self.host)
    }
}

/// Whether `pattern` (a hostmask glob or `account:NAME`) names this sender. A pattern without `!` and `@` is
/// refused by config validation, so a bare nick can never match here.
pub fn matches(pattern: &str, who: &Sender) -> bool {
    if let Some(account) = pattern.strip_prefix("account:") {
        return who.account.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(account));
    }
    glob(pattern.as_bytes(), who.mask().as_bytes())
}

/// Checks a pattern as config is loaded: a hostmask must have a nick, a user and a host part.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if let Some(account) = pattern.strip_prefix("account:") {
        return if account.is_empty() { Err("`account:` needs an account name".into()) } else { Ok(()) };
    }
    match pattern.split_once('!').and_then(|(n, rest)| rest.split_once('@').map(|(u, h)| (n, u, h))) {
        // A host of wildcards alone (`alice!*@*`) matches anyone who takes the nick: a bare nick in effect.
        Some((_, _, h)) if !h.is_empty() && h.bytes().all(|b| matches!(b, b'*' | b'?' | b'.')) => Err(format!(
            "`{pattern}` matches any host, so anyone who takes the nick: name the host (alice!*@*.example.com) or use account:NAME"
        )),
        Some((n, u, h)) if !n.is_empty() && !u.is_empty() && !h.is_empty() => Ok(()),
        _ => Err(format!(
            "`{pattern}` is not a hostmask (nick!user@host, with * and ?) or account:NAME; a bare nick is never trusted"
        )),
    }
}

/// Glob match, ASCII case-insensitive (IRC's `CASEMAPPING=ascii`), `*` any run and `?` one byte. Iterative
/// with one backtrack point, so a pattern of many stars cannot take exponential time.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&s[si])) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(nick: &str, user: &str, host: &str, account: Option<&str>) -> Sender {
        Sender { nick: nick.into(), user: user.into(), host: host.into(), account: account.map(String::from) }
    }

    #[test]
    fn hostmasks_and_accounts() {
        let alice = who("Alice", "al", "laptop.example.com", None);
        for (pattern, expected) in [
            ("alice!*@*.example.com", true),
            ("alice!*@*.example.org", false),
            ("*!al@laptop.example.com", true),
            ("al?ce!*@*", true),
            ("bob!*@*", false),
            ("alice!*@*", true),
            ("account:alice", false),
            ("**!**@**", true),
        ] {
            assert_eq!(matches(pattern, &alice), expected, "{pattern}");
        }
        let signed_in = who("whatever", "u", "h", Some("alice"));
        assert!(matches("account:Alice", &signed_in));
        assert!(!matches("account:bob", &signed_in));
    }

    #[test]
    fn a_bare_nick_is_not_a_pattern() {
        assert!(check_pattern("alice").is_err());
        assert!(check_pattern("alice!*").is_err());
        assert!(check_pattern("account:").is_err());
        for any_host in ["alice!*@*", "alice!alice@*", "alice!*@*.*", "alice!*@?*"] {
            let e = check_pattern(any_host).unwrap_err();
            assert!(e.contains("matches any host"), "{any_host}: {e}");
        }
        assert!(check_pattern("alice!*@*.example.com").is_ok());
        assert!(check_pattern("account:alice").is_ok());
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let p = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b!*@*";
        let s = who(&"a".repeat(200), "u", "h", None);
        assert!(!matches(p, &s));
    }
}
