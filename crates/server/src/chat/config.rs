//! `[chat]` of crew.toml: the IRC connection, who is speaking (`[[chat.users]]`), and IM webhooks, checked
//! when the config loads.

use crew_chat::mask;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[chat]` of crew.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSection {
    pub irc: Option<IrcSection>,
    /// Who is speaking: crew users and their chat identities.
    #[serde(default)]
    pub users: Vec<ChatUser>,
    /// IM webhooks (Slack, Mattermost, generic JSON) that hear the timeline.
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
}

/// `[[chat.webhooks]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub kind: crew_chat::webhook::Kind,
    /// The environment variable holding the URL (it is a secret), or the URL itself.
    pub url_env: Option<String>,
    pub url: Option<String>,
    /// Mattermost: post to this channel instead of the webhook's own.
    pub channel: Option<String>,
    /// The event kinds it hears (dotted prefixes, `*` for all); deploy, lock, flag, alert and incident if not given.
    #[serde(default)]
    pub announce: Vec<String>,
}

/// `[chat.irc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrcSection {
    pub server: String,
    /// 6697 with TLS, 6667 without, when not given.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: bool,
    /// Extra CA certificates (PEM) for a server with a private certificate.
    pub ca_file: Option<PathBuf>,
    /// Or the server's certificate pinned: SHA-256 fingerprints (hex, colons allowed), checked instead of CAs,
    /// names and dates (a self-signed server).
    #[serde(default)]
    pub fingerprints: Vec<String>,
    /// A PEM file holding the robot's client certificate and its private key (one file, as Libera's and OFTC's
    /// CertFP guides make it), presented in TLS; the robot then logs in with SASL EXTERNAL.
    pub client_cert: Option<PathBuf>,
    #[serde(default = "default_nick")]
    pub nick: String,
    #[serde(default)]
    pub alternates: Vec<String>,
    pub channels: Vec<String>,
    pub sasl: Option<Sasl>,
    /// Per room: the event kinds announced there (dotted prefixes, `*` for all). A channel not named here
    /// hears deploys, locks, flags, alerts and incidents.
    #[serde(default)]
    pub announce: BTreeMap<String, Vec<String>>,
    /// The flood rule: `burst` lines at once, then `lines_per_second`.
    pub burst: Option<u32>,
    pub lines_per_second: Option<f64>,
}

fn default_nick() -> String {
    "crew".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    pub account: String,
    /// The environment variable that holds the password (never the password itself in the file).
    pub password_env: String,
}

/// `[[chat.users]]`: a crew user (a token's name, whose role applies) and the chat identity that speaks as it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatUser {
    pub name: String,
    /// A hostmask pattern (`alice!*@*.example.com`) or `account:alice` for a services account.
    pub irc: Option<String>,
}

impl ChatSection {
    /// Cross-field checks, naming the key: channel names, hostmask patterns, ports.
    pub fn check(&self) -> Result<(), String> {
        if let Some(irc) = &self.irc {
            if irc.server.trim().is_empty() {
                return Err("chat.irc.server: empty".into());
            }
            if irc.channels.is_empty() {
                return Err("chat.irc.channels: name at least one channel".into());
            }
            for c in &irc.channels {
                if !c.starts_with(['#', '&']) || c.contains([' ', ',', '\x07']) {
                    return Err(format!("chat.irc.channels: `{c}` is not a channel name (#name)"));
                }
            }
            for room in irc.announce.keys() {
                if !irc.channels.iter().any(|c| c.eq_ignore_ascii_case(room)) {
                    return Err(format!("chat.irc.announce: `{room}` is not one of chat.irc.channels"));
                }
            }
            // SASL PLAIN without TLS hands the password to anyone on the path (who can also offer `sasl=PLAIN`):
            // only to a server on this machine (a bouncer, a test server).
            let loopback = matches!(irc.server.trim(), "localhost" | "::1" | "[::1]")
                || irc.server.trim().parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
            if irc.sasl.is_some() && !irc.tls && !loopback {
                return Err(
                    "chat.irc.sasl: needs tls = true (without it the password crosses the network in clear)".into()
                );
            }
            if irc.client_cert.is_some() && !irc.tls {
                return Err("chat.irc.client_cert: needs tls = true (the certificate is presented in TLS)".into());
            }
            if irc.client_cert.is_some() && irc.sasl.is_some() {
                return Err("chat.irc.client_cert: the robot logs in with the certificate (SASL EXTERNAL); \
                            remove chat.irc.sasl, whose password would never be used"
                    .into());
            }
            if !irc.fingerprints.is_empty() && !irc.tls {
                return Err("chat.irc.fingerprints: needs tls = true".into());
            }
            if !irc.fingerprints.is_empty() && irc.ca_file.is_some() {
                return Err("chat.irc.fingerprints: give ca_file or fingerprints, not both".into());
            }
            for (i, f) in irc.fingerprints.iter().enumerate() {
                if crew_chat::irc::parse_fingerprint(f).is_none() {
                    return Err(format!(
                        "chat.irc.fingerprints[{i}]: `{f}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                    ));
                }
            }
            if irc.lines_per_second.is_some_and(|r| !(r > 0.0 && r <= 100.0)) {
                return Err("chat.irc.lines_per_second: between 0 and 100".into());
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            match (&w.url, &w.url_env) {
                (Some(_), Some(_)) => return Err(format!("chat.webhooks[{i}]: give url or url_env, not both")),
                (None, None) => return Err(format!("chat.webhooks[{i}]: url_env (or url) is missing")),
                (Some(u), None) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return Err(format!("chat.webhooks[{i}].url: not an http(s) URL"))
                }
                _ => {}
            }
            if w.channel.is_some() && w.kind != crew_chat::webhook::Kind::Mattermost {
                return Err(format!("chat.webhooks[{i}].channel: only Mattermost webhooks take a channel"));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if let Some(p) = &u.irc {
                mask::check_pattern(p).map_err(|e| format!("chat.users[{i}].irc: {e}"))?;
            }
        }
        Ok(())
    }
}
