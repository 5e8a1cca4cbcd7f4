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
struct Person {
    nick: String,
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
}

impl Person {
    async fn join(port: u16, nick: &str, channel: &str) -> Person {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (r, w) = tcp.into_split();
        let mut p = Person { nick: nick.into(), lines: BufReader::new(r).lines(), w };
        p.say(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {channel}")).await;
        p.wait(|l| l.contains(" 366 "), "joined").await;
        p
    }

    async fn say(&mut self, raw: &str) {
        self.w.write_all(format!("{raw}\r\n").as_bytes()).await.unwrap();
    }

    /// Reads until a line matches (answering PINGs); panics after 10 s.
    async fn wait(&mut self, mut pred: impl FnMut(&str) -> bool, what: &str) -> String {
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

fn config(dir: &std::path::Path, irc: &Ngircd, tls: bool) -> std::path::PathBuf {
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

async fn robot_in(s: &Server, channel: &str) -> bool {
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
        let l = mo_irc.wait(|l| l.starts_with(":crew!") && l.contains("NOTICE #ops :"), "the pieces").await;
        assert!(l.len() + 2 <= 512, "a line of {} bytes", l.len());
        let text = l.split_once("NOTICE #ops :").unwrap().1;
        got.push_str(text);
    }
    assert_eq!(got, format!("[note] {summary}"));

    // `crew chat status` and the status API show the connection and what was said.
    let out = s.cli(&mo).args(["chat", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("connected to 127.0.0.1:{} as crew in #ops", irc.port)), "{text}");
    assert!(text.contains("<mo> !flag video off"), "{text}");
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
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &irc, true)).await;
    assert!(robot_in(&s, "#ops").await, "the robot joins over TLS: {}", s.get_json("/api/v1/chat", &s.admin).await);
    // Someone already holds the nick: the robot takes its alternate after the restart, and rejoins.
    irc.restart().unwrap();
    let _squatter = Person::join(irc.port, "crew", "#elsewhere").await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            let v = s.get_json("/api/v1/chat", &s.admin).await;
            v["irc"]["connected"] == true && v["irc"]["nick"] == "crew_" && v["irc"]["reconnects"].as_u64() >= Some(1)
        })
        .await,
        "reconnected as crew_: {}",
        s.get_json("/api/v1/chat", &s.admin).await
    );
    assert!(robot_in(&s, "#ops").await, "and rejoined #ops");
    let mo = s.token("mo", "member").await;
    let mut mo_irc = Person::join(irc.port, "mo", "#ops").await;
    s.record(&mo, json!({"kind": "note", "subject": "chat", "summary": "after the restart"})).await;
    mo_irc.wait(|l| l.contains("NOTICE #ops :[note] after the restart"), "an announcement after the restart").await;
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
    let r = mo.wait(|l| from_crew(l) && l.contains("PRIVMSG #ops :deploying"), "the answer").await;
    assert!(r.contains("deploying www to staging, #"), "{r}");
    mo.wait(|l| from_crew(l) && l.contains("NOTICE #ops :[deploy] mo deploying www to staging"), "deploy.started")
        .await;
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
