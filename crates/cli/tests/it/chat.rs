//! The robot in a real IRC server (Debian's ngircd, plain and TLS): it joins, announces the timeline, runs
//! commands as the crew user a hostmask maps to, refuses people it does not know, splits long lines, and comes
//! back after the server restarts.

use crate::harness::{eventually, Server};
use crew_testkit::Ngircd;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A person in the channel: a raw IRC client that answers PING and reads lines until one matches.
pub(crate) struct Person {
    nick: String,
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
}

impl Person {
    pub(crate) async fn join(port: u16, nick: &str, channel: &str) -> Person {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (r, w) = tcp.into_split();
        let mut p = Person { nick: nick.into(), lines: BufReader::new(r).lines(), w };
        p.say(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {channel}")).await;
        p.wait(|l| l.contains(" 366 "), "joined").await;
        p
    }

    pub(crate) async fn say(&mut self, raw: &str) {
        self.w.write_all(format!("{raw}\r\n").as_bytes()).await.unwrap();
    }

    /// Reads until a line matches (answering PINGs); panics after 10 s.
    pub(crate) async fn wait(&mut self, mut pred: impl FnMut(&str) -> bool, what: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{}: no line with {what} within 10 s", self.nick))
                .unwrap()
                .unwrap_or_else(|| panic!("{}: connection closed waiting for {what}", self.nick));
            if let Some(rest) = line.strip_prefix("PING ") {
                self.say(&format!("PONG {rest}")).await;
                continue;
            }
            if pred(&line) {
                return line;
            }
        }
    }
}

pub(crate) fn config(dir: &std::path::Path, irc: &Ngircd, tls: bool) -> std::path::PathBuf {
    let (port, extra) = if tls {
        (irc.tls_port, format!("tls = true\nca_file = \"{}\"\n", irc.cert.display()))
    } else {
        (irc.port, String::new())
    };
    let path = dir.join("crew.toml");
    std::fs::write(
        &path,
        format!(
            "[chat.irc]\nserver = \"{host}\"\nport = {port}\n{extra}nick = \"crew\"\nalternates = [\"crew_\"]\n\
             channels = [\"#ops\"]\nburst = 20\nlines_per_second = 20\n\
             [chat.irc.announce]\n\"#ops\" = [\"flag\", \"note\"]\n\n\
             [[chat.users]]\nname = \"mo\"\nirc = \"mo!*@127.0.0.1\"\n",
            host = if tls { "localhost" } else { "127.0.0.1" },
        ),
    )
    .unwrap();
    path
}

pub(crate) async fn robot_in(s: &Server, channel: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        let v = s.get_json("/api/v1/chat", &s.admin).await;
        v["irc"]["connected"] == true && v["irc"]["channels"].as_array().is_some_and(|c| c.contains(&json!(channel)))
    })
    .await
}

#[tokio::test]
async fn the_robot_announces_and_takes_commands_in_ngircd() {
    let irc = Ngircd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &irc, false)).await;
    let mo = s.token("mo", "member").await;
    let knob = |body: Value| s.req(Method::POST, "/api/v1/flags/video/knob", &mo).json(&body).send();
    assert_eq!(knob(json!({"knob": "on", "reason": "launch"})).await.unwrap().status(), 200);
    assert!(robot_in(&s, "#ops").await, "the robot joins #ops");
    let mut mo_irc = Person::join(irc.port, "mo", "#ops").await;

    // An event on the timeline arrives in the channel as a NOTICE, one line with its link.
    assert_eq!(knob(json!({"knob": "rollout", "percent": 10, "reason": "ramp"})).await.unwrap().status(), 200);
    let line =
        mo_irc.wait(|l| l.starts_with(":crew!") && l.contains("NOTICE #ops :[flag]"), "the flag announcement").await;
    assert!(line.contains("mo changed flag video") && line.contains("/api/v1/flags/video"), "{line}");

    // A mapped user runs a command with their role; it is on the timeline as mo via chat.
    mo_irc.say("PRIVMSG #ops :!flag video off").await;
    let reply = mo_irc.wait(|l| l.contains("PRIVMSG #ops :video:"), "the !flag reply").await;
    assert!(reply.contains("off"), "{reply}");
    let v = s.get_json("/api/v1/events?kind=flag.changed&limit=1", &mo).await;
    assert_eq!(v["events"][0]["actor"], json!({"name": "mo", "via": "chat"}));
    assert!(v["events"][0]["summary"].as_str().unwrap().contains("from #ops"), "{v}");

    // Someone the robot does not know may read, not act; a NOTICE is never answered; mistakes get a short reply.
    let mut eve = Person::join(irc.port, "eve", "#ops").await;
    eve.say("PRIVMSG #ops :!flag video on").await;
    let refused = eve.wait(|l| l.contains("PRIVMSG #ops :eve:"), "the refusal").await;
    assert!(refused.contains("needs a crew user with role member"), "{refused}");
    assert_eq!(s.get_json("/api/v1/flags/video", &mo).await["definition"]["state"], "DISABLED");

    // An admin links eve's identity to a crew user: from then on she acts as that user (and a bare nick or an
    // unknown user is refused).
    let link = |args: &[&str]| s.cli(&s.admin).args(["chat"]).args(args).output().unwrap();
    let out = link(&["link", "eve", "--irc", "eve"]);
    assert_eq!(out.status.code(), Some(2), "a bare nick is never trusted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("a bare nick is never trusted"));
    let out = link(&["link", "eve", "--irc", "eve!*@127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2), "no crew user eve yet: {}", String::from_utf8_lossy(&out.stderr));
    s.token("eve", "member").await;
    let out = link(&["link", "eve", "--irc", "eve!*@127.0.0.1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&link(&["links"]).stdout).to_string();
    assert!(listed.contains("mo!*@127.0.0.1") && listed.contains("eve!*@127.0.0.1"), "{listed}");
    eve.say("PRIVMSG #ops :!flag video on").await;
    eve.wait(|l| l.contains("PRIVMSG #ops :video:"), "eve's change").await;
    let v = s.get_json("/api/v1/events?kind=chat&limit=1", &mo).await;
    assert_eq!(v["events"][0]["kind"], "chat.linked");
    assert!(link(&["unlink", "--irc", "eve!*@127.0.0.1"]).status.success());
    eve.say("PRIVMSG #ops :!flag video off").await;
    eve.wait(|l| l.contains("PRIVMSG #ops :eve:") && l.contains("needs a crew user"), "refused again").await;
    assert_eq!(s.get_json("/api/v1/flags/video", &mo).await["definition"]["state"], "ENABLED");
    eve.say("NOTICE #ops :!status").await;
    eve.say("PRIVMSG #ops :!nope").await;
    let first = eve.wait(|l| l.contains("PRIVMSG #ops :"), "a reply").await;
    assert!(first.contains("unknown command !nope"), "the NOTICE got no answer: {first}");
    eve.say("PRIVMSG #ops :!status").await;
    let status = eve.wait(|l| l.contains("PRIVMSG #ops :"), "the !status reply").await;
    assert!(status.contains("crew is up; 1 flags"), "{status}");

    // A long announcement (500 two-byte characters: 1000 bytes) arrives split under 512 bytes a line, and whole.
    let long: String = (0..100).map(|i| format!("é{i:03}é")).collect::<Vec<_>>().join("");
    let summary: String = long.chars().take(500).collect();
    s.record(&mo, json!({"kind": "note", "subject": "chat", "summary": summary})).await;
    let mut got = String::new();
    while got.chars().count() < "[note] ".len() + 500 {
        // Announcements of the earlier changes may still be arriving: the note starts with its tag.
        let first = got.is_empty();
        let l = mo_irc
            .wait(
                |l| l.starts_with(":crew!") && l.contains(if first { "NOTICE #ops :[note] " } else { "NOTICE #ops :" }),
                "the pieces",
            )
            .await;
        assert!(l.len() + 2 <= 512, "a line of {} bytes", l.len());
        let text = l.split_once("NOTICE #ops :").unwrap().1;
        got.push_str(text);
    }
    assert_eq!(got, format!("[note] {summary}"));

    // `crew chat status` and the status API show the connection and what was said.
    let out = s.cli(&mo).args(["chat", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("connected to 127.0.0.1:{} as crew in #ops", irc.port)), "{text}");
    assert!(text.contains("<eve> !flag video off"), "{text}");
    // The status page shows the robot too (signed in with the cookie a browser would get).
    let web = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = web.post(format!("{}/signin", s.url)).form(&[("token", mo.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page =
        web.get(format!("{}/status", s.url)).header("cookie", cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("connected to 127.0.0.1:") && page.contains("#ops"), "{page}");
    assert!(page.contains("!flag video off"), "recent lines are listed");
    let v = s.get_json("/api/v1/chat", &mo).await;
    assert_eq!(v["irc"]["nick"], "crew");
    assert!(v["recent"].as_array().unwrap().iter().any(|m| m["text"] == "!flag video off"), "{v}");
}

#[tokio::test]
async fn the_robot_comes_back_after_the_server_restarts_and_speaks_tls() {
    let mut irc = Ngircd::start().unwrap();
    // Someone already holds the nick: the robot takes its alternate.
    let squatter = Person::join(irc.port, "crew", "#elsewhere").await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &irc, true)).await;
    assert!(robot_in(&s, "#ops").await, "the robot joins over TLS: {}", s.get_json("/api/v1/chat", &s.admin).await);
    assert_eq!(s.get_json("/api/v1/chat", &s.admin).await["irc"]["nick"], "crew_");
    // The server goes away and comes back: the robot reconnects (its own nick is free again) and rejoins.
    drop(squatter);
    irc.restart().unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            let v = s.get_json("/api/v1/chat", &s.admin).await;
            v["irc"]["connected"] == true && v["irc"]["nick"] == "crew" && v["irc"]["reconnects"].as_u64() >= Some(1)
        })
        .await,
        "reconnected as crew: {}",
        s.get_json("/api/v1/chat", &s.admin).await
    );
    assert!(robot_in(&s, "#ops").await, "and rejoined #ops");
    let mo = s.token("mo", "member").await;
    let mut mo_irc = Person::join(irc.port, "mo", "#ops").await;
    s.record(&mo, json!({"kind": "note", "subject": "chat", "summary": "after the restart"})).await;
    mo_irc.wait(|l| l.contains("NOTICE #ops :[note] after the restart"), "an announcement after the restart").await;
}

/// A robot with a client certificate (SASL EXTERNAL) in ngircd over TLS: the handshake with a real TLS stack
/// takes it, and as ngircd has no SASL the robot joins without an account and its status says why. (The EXTERNAL
/// exchange itself is in crew-chat's fake server and irctest: ngircd has no SASL.)
#[tokio::test]
async fn a_robot_with_a_client_certificate_joins_ngircd_and_says_it_has_no_sasl() {
    use std::os::unix::fs::PermissionsExt;
    let irc = Ngircd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("robot.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=crew-robot", "-keyout"])
        .arg(&pem)
        .arg("-out")
        .arg(&pem)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = config(dir.path(), &irc, true);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("nick = \"crew\"\n", &format!("client_cert = \"{}\"\nnick = \"crew\"\n", pem.display())),
    )
    .unwrap();
    let s = Server::start_with_config(&path).await;
    assert!(robot_in(&s, "#ops").await, "the robot joins over TLS: {}", s.get_json("/api/v1/chat", &s.admin).await);
    let sasl = s.get_json("/api/v1/chat", &s.admin).await["irc"]["sasl"].as_str().unwrap_or_default().to_string();
    assert!(sasl.starts_with("not logged in: the server offers no SASL"), "{sasl}");
    let session = crate::domains::sign_in(&s, &s.admin).await;
    let res = s.client().get(format!("{}/status", s.url)).header("cookie", &session.cookie).send().await.unwrap();
    let page = res.text().await.unwrap();
    assert!(page.contains("not logged in: the server offers no SASL"), "the status page says why: {page}");
}

#[tokio::test]
async fn a_mapped_user_deploys_from_the_channel_and_hears_the_outcome() {
    let irc = Ngircd::start().unwrap();
    let a = crate::deploy::app();
    let toml = a.repo.join("crew.toml");
    let chat = std::fs::read_to_string(config(a.repo.parent().unwrap(), &irc, false)).unwrap();
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&chat.replace("\"#ops\" = [\"flag\", \"note\"]", "\"#ops\" = [\"deploy\", \"lock\"]"));
    std::fs::write(&toml, text).unwrap();
    let s = Server::start_with_config(&toml).await;
    s.token("mo", "member").await;
    assert!(robot_in(&s, "#ops").await);
    let mut mo = Person::join(irc.port, "mo", "#ops").await;
    let from_crew = |l: &str| l.starts_with(":crew!");

    // A mistake gets a short reply naming it; nothing is deployed.
    mo.say("PRIVMSG #ops :!deploy nowhere").await;
    let r = mo.wait(|l| from_crew(l) && l.contains("PRIVMSG #ops :mo:"), "the refusal").await;
    assert!(r.contains("nowhere"), "{r}");

    // Answered at once with the deploy's number, announced, then the outcome reported in the room.
    mo.say("PRIVMSG #ops :!deploy staging").await;
    // The answer and the deploy.started announcement, in either order.
    let (mut answer, mut started) = (None, false);
    while answer.is_none() || !started {
        let l = mo
            .wait(
                |l| from_crew(l) && (l.contains("PRIVMSG #ops :deploying") || l.contains("NOTICE #ops :[deploy]")),
                "the answer",
            )
            .await;
        if l.contains("PRIVMSG") {
            answer = Some(l);
        } else {
            assert!(l.contains("NOTICE #ops :[deploy] mo deploying www to staging"), "{l}");
            started = true;
        }
    }
    assert!(answer.unwrap().contains("deploying www to staging, #"));
    let done = mo
        .wait(|l| from_crew(l) && l.contains("PRIVMSG #ops :[deploy] mo deployed www to staging"), "the outcome")
        .await;
    assert!(done.contains("/deploys/"), "{done}");
    assert!(crate::deploy::live(&a.hosts.join("staging1")).is_some(), "staging runs the release");
    let v = s.get_json("/api/v1/deploys?environment=staging", &s.admin).await;
    assert_eq!(v["deploys"][0]["via"], "chat", "{v}");

    // A lock taken in the channel holds off everyone else's deploys.
    mo.say("PRIVMSG #ops :!lock staging db migration").await;
    mo.wait(|l| from_crew(l) && l.contains("staging locked by mo: db migration"), "the lock").await;
    let v = s.get_json("/api/v1/environments", &s.admin).await;
    assert_eq!(v["environments"][1]["locks"][0]["holder"], "mo", "{v}");
}

/// A local HTTP receiver for webhooks: records each request (path, body, when) and answers from a script of
/// statuses per path (the last one repeats).
pub(crate) async fn receiver(
    script: &'static [(&'static str, &'static [&'static str])],
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<(String, Value, std::time::Instant)>>>) {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        let mut served: std::collections::HashMap<String, usize> = Default::default();
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = c.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = c.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break (head, buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let path = head.split_whitespace().nth(1).unwrap().to_string();
            g.lock().unwrap().push((path.clone(), serde_json::from_slice(&body).unwrap(), std::time::Instant::now()));
            let statuses = script.iter().find(|(p, _)| *p == path).map(|(_, s)| *s).unwrap_or(&["200 OK"]);
            let n = served.entry(path).or_default();
            let status = statuses[(*n).min(statuses.len() - 1)];
            *n += 1;
            let extra = if status.starts_with("429") { "Retry-After: 1\r\n" } else { "" };
            let _ = c
                .write_all(
                    format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                )
                .await;
        }
    });
    (port, got)
}

#[tokio::test]
async fn webhooks_hear_the_timeline_and_wait_out_429_and_5xx() {
    let (port, got) = receiver(&[
        ("/slack", &["429 Too Many Requests", "200 OK"]),
        ("/json", &["503 Service Unavailable", "200 OK"]),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crew.toml");
    std::fs::write(
        &config,
        format!(
            "[[chat.webhooks]]\nkind = \"slack\"\nurl = \"http://127.0.0.1:{port}/slack\"\nannounce = [\"flag\"]\n\n\
             [[chat.webhooks]]\nkind = \"mattermost\"\nurl = \"http://127.0.0.1:{port}/mm\"\nchannel = \"town-square\"\n\n\
             [[chat.webhooks]]\nkind = \"json\"\nurl = \"http://127.0.0.1:{port}/json\"\nannounce = [\"*\"]\n"
        ),
    )
    .unwrap();
    let s = Server::start_with_config(&config).await;
    let mo = s.token("mo", "member").await;
    let res = s
        .req(Method::POST, "/api/v1/flags/video/knob", &mo)
        .json(&json!({"knob": "on", "reason": "launch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let g = got.lock().unwrap();
            g.iter().filter(|r| r.0 == "/slack").count() == 2 && g.iter().filter(|r| r.0 == "/json").count() >= 2
        })
        .await,
        "{:?}",
        got.lock().unwrap()
    );
    let g = got.lock().unwrap().clone();
    let slack: Vec<_> = g.iter().filter(|r| r.0 == "/slack").collect();
    assert_eq!(slack[0].1, slack[1].1, "the same message again after the 429");
    assert!(slack[1].2 - slack[0].2 >= Duration::from_millis(950), "Retry-After: 1 was honoured");
    assert!(slack[0].1["text"].as_str().unwrap().starts_with("[flag] mo changed flag video"), "{:?}", slack[0].1);
    let mm = g.iter().find(|r| r.0 == "/mm").expect("mattermost hears flags by default");
    assert_eq!((mm.1["channel"].as_str(), mm.1["username"].as_str()), (Some("town-square"), Some("crew")));
    let json_hooks: Vec<_> = g.iter().filter(|r| r.0 == "/json").collect();
    assert_eq!(json_hooks[0].1, json_hooks[1].1, "retried after the 503");
    // `*`: the generic hook hears everything, including the token created above, with the whole event.
    let kinds: Vec<&str> = json_hooks.iter().filter_map(|r| r.1["event"]["kind"].as_str()).collect();
    assert!(kinds.contains(&"flag.changed"), "{kinds:?}");
    // The status names each webhook and counts what it delivered; its URL (a secret) is never shown.
    let v = s.get_json("/api/v1/chat", &mo).await;
    assert_eq!(v["webhooks"][0]["name"], "webhook 1 (slack)");
    assert_eq!(v["webhooks"][0]["sent"], 1);
    assert!(!v.to_string().contains("127.0.0.1"), "{v}");
}

#[tokio::test]
async fn chat_config_mistakes_are_named_before_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, says) in [
        ("[[chat.users]]\nname = \"mo\"\nirc = \"mo\"\n", "chat.users[0].irc: `mo` is not a hostmask"),
        ("[chat.irc]\nserver = \"irc\"\nchannels = [\"ops\"]\n", "`ops` is not a channel name"),
        (
            "[chat.irc]\nserver = \"irc\"\nchannels = [\"#ops\"]\n[chat.irc.announce]\n\"#dev\" = [\"*\"]\n",
            "`#dev` is not one of chat.irc.channels",
        ),
        ("[chat.irc]\nserver = \"irc\"\nchannels = [\"#ops\"]\nnickname = \"x\"\n", "unknown field `nickname`"),
        (
            "[chat.irc]\nserver = \"irc\"\nchannels = [\"#ops\"]\nclient_cert = \"crew.pem\"\n",
            "chat.irc.client_cert: needs tls = true",
        ),
        (
            "[chat.irc]\nserver = \"irc\"\nchannels = [\"#ops\"]\ntls = true\nclient_cert = \"crew.pem\"\n\
             sasl = { account = \"crew\", password_env = \"X\" }\n",
            "remove chat.irc.sasl",
        ),
        (
            "[chat.irc]\nserver = \"irc.example.com\"\nchannels = [\"#ops\"]\n\
             sasl = { account = \"crew\", password_env = \"X\" }\n",
            "chat.irc.sasl: needs tls = true",
        ),
        (
            "[chat.irc]\nserver = \"irc\"\nchannels = [\"#ops\"]\ntls = true\nfingerprints = [\"E1:EE\"]\n",
            "chat.irc.fingerprints[0]: `E1:EE` is not a SHA-256 fingerprint",
        ),
        ("[[chat.webhooks]]\nkind = \"slack\"\n", "chat.webhooks[0]: url_env (or url) is missing"),
        ("[[chat.webhooks]]\nkind = \"teams\"\nurl = \"http://x\"\n", "unknown variant `teams`"),
    ] {
        let path = dir.path().join("crew.toml");
        std::fs::write(&path, toml).unwrap();
        let out = crate::harness::serve_refused(&path, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(says), "{toml}: {err}");
    }
}

/// The robot's client certificate holds its private key: one that others may read, or a file without its
/// certificate, stops the server before it starts, naming the field and the file.
#[tokio::test]
async fn a_client_cert_others_may_read_or_without_a_certificate_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("crew.pem");
    std::fs::write(&pem, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let path = dir.path().join("crew.toml");
    std::fs::write(
        &path,
        format!(
            "[chat.irc]\nserver = \"127.0.0.1\"\nport = 1\ntls = true\nchannels = [\"#ops\"]\nclient_cert = \"{}\"\n",
            pem.display()
        ),
    )
    .unwrap();
    for (mode, says) in [(0o644, "others may read it (mode 644); chmod 600 it"), (0o600, "no certificate in the file")]
    {
        std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = crate::harness::serve_refused(&path, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("chat.irc.client_cert") && err.contains(says), "{mode:o}: {err}");
    }
}

#[tokio::test]
async fn the_same_commands_over_http_run_with_the_callers_role() {
    let s = Server::start().await;
    let (vic, mo) = (s.token("vic", "viewer").await, s.token("mo", "member").await);
    let cmd = |token: &str, text: &str| {
        s.req(Method::POST, "/api/v1/chat/command", token).json(&json!({ "text": text })).send()
    };
    let res = cmd(&vic, "!status").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["reply"], "crew is up; 0 flags; no app configured");
    assert_eq!(cmd(&vic, "!flag video on").await.unwrap().status(), 403, "a viewer may not switch flags");
    let res = cmd(&mo, "!flag video on").await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.json::<Value>().await.unwrap()["errors"][0]["detail"].as_str().unwrap().contains("no flag `video`"));
    for bad in ["status", "!nope", "!deploy"] {
        assert_eq!(cmd(&mo, bad).await.unwrap().status(), 400, "{bad}");
    }
    let help = cmd(&vic, "!help lock").await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(help["reply"], "!lock ENV REASON: stop deploys to ENV until unlocked (needs member)");
}

#[tokio::test]
async fn a_stranger_cannot_make_the_robot_flood_the_room_or_starve_its_announcements() {
    let irc = Ngircd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &irc, false)).await;
    let mo = s.token("mo", "member").await;
    assert!(robot_in(&s, "#ops").await, "the robot joins #ops");
    let mut watcher = Person::join(irc.port, "watcher", "#ops").await;
    let mut mallory = Person::join(irc.port, "mallory", "#ops").await;
    // Twenty refused commands and twenty unknown ones as fast as the network takes them.
    for i in 0..20 {
        mallory.say("PRIVMSG #ops :!deploy production").await;
        mallory.say(&format!("PRIVMSG #ops :!nope{i}")).await;
    }
    // Then something happens on the timeline: its announcement must not wait behind replies.
    s.record(&mo, json!({"kind": "note", "summary": "after the flood"})).await;
    // Count what the robot says to mallory: at most its error budget.
    let mut answers = 0;
    let count = |l: &str, answers: &mut usize| {
        if l.contains("PRIVMSG #ops :mallory:") {
            *answers += 1;
        }
    };
    watcher
        .wait(
            |l| {
                count(l, &mut answers);
                l.contains("NOTICE #ops :[note] after the flood")
            },
            "the announcement",
        )
        .await;
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(2), watcher.lines.next_line()).await {
        if line.contains("PRIVMSG #ops :mallory:") {
            answers += 1;
        }
    }
    let v = s.get_json("/api/v1/chat", &s.admin).await;
    let said_to_mallory = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["who"] == "crew" && m["text"].as_str().unwrap_or("").starts_with("mallory:"))
        .count();
    assert!(
        answers <= 5 && said_to_mallory <= 5,
        "the robot answered mallory {answers} times ({said_to_mallory} recorded)"
    );
}
