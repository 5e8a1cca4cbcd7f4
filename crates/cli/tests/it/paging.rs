//! Pages over IRC with a real ngircd: a person with `notify = ["chat"]` gets the robot's private message and a
//! highlight in the incident room, answers with `!ack` (the newest, or by number), and the robot's incident
//! commands (`!oncall`, `!incidents`, `!resolve`, `!page`) act as the crew user the nick maps to, via chat.
//! With IRC down the chat page is recorded as failed, with the reason. A fire drill pages through the same path
//! (and email), and an `!ack` in the channel is the responder's time to acknowledge in its journal.

use crate::harness::{eventually, Server};
use crew_testkit::Ngircd;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A person on IRC: a raw client that answers PING and keeps the lines it has read but not yet looked for,
/// so a test can wait for the private page and the highlight in either order.
struct Person {
    nick: String,
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
    backlog: Vec<String>,
}

impl Person {
    async fn join(port: u16, nick: &str, channel: &str) -> Person {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (r, w) = tcp.into_split();
        let mut p = Person { nick: nick.into(), lines: BufReader::new(r).lines(), w, backlog: vec![] };
        p.say(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {channel}")).await;
        p.wait(|l| l.contains(" 366 "), "joined").await;
        p
    }

    async fn say(&mut self, raw: &str) {
        self.w.write_all(format!("{raw}\r\n").as_bytes()).await.unwrap();
    }

    /// Says `text` in `#ops`.
    async fn command(&mut self, text: &str) {
        self.say(&format!("PRIVMSG #ops :{text}")).await;
    }

    /// The first line (kept or newly read) that matches, answering PINGs; panics after 15 s naming what did
    /// arrive.
    async fn wait(&mut self, mut pred: impl FnMut(&str) -> bool, what: &str) -> String {
        if let Some(i) = self.backlog.iter().position(|l| pred(l)) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let next = tokio::time::timeout_at(deadline, self.lines.next_line()).await;
            let line = match next {
                Ok(l) => l.unwrap().unwrap_or_else(|| panic!("{}: connection closed waiting for {what}", self.nick)),
                Err(_) => panic!("{}: no line with {what} within 15 s; read:\n{}", self.nick, self.backlog.join("\n")),
            };
            if let Some(rest) = line.strip_prefix("PING ") {
                self.say(&format!("PONG {rest}")).await;
                continue;
            }
            if pred(&line) {
                return line;
            }
            self.backlog.push(line);
        }
    }

    /// The robot's private message to this person that names incident `id`.
    async fn page(&mut self, id: i64) -> String {
        let (me, tag) = (format!("PRIVMSG {} :", self.nick), format!("#{id} "));
        self.wait(|l| l.starts_with(":crew!") && l.split_once(&me).is_some_and(|(_, t)| t.starts_with(&tag)), "a page")
            .await
    }

    /// The robot's answer in #ops that starts with `start`.
    async fn answer(&mut self, start: &str) -> String {
        let want = format!("PRIVMSG #ops :{start}");
        self.wait(|l| l.starts_with(":crew!") && l.contains(&want), start).await
    }
}

/// A crew.toml with the robot on `irc_port`, alice (reached at the nick crew.toml names) on call, and bob (reached
/// through a `crew chat link`), both paged by chat only.
fn config(dir: &std::path::Path, irc_port: u16) -> std::path::PathBuf {
    let text = format!(
        r##"
[chat.irc]
server = "127.0.0.1"
port = {irc_port}
nick = "crew"
channels = ["#ops"]
burst = 20
lines_per_second = 20

[[chat.users]]
name = "alice"
irc = "alicenick!*@127.0.0.1"

[people.alice]
notify = ["chat"]
irc = "alicenick"
[people.bob]
notify = ["chat"]
[people.carol]
notify = ["chat"]
irc = "carolnick"

[[schedules]]
name = "ops"
zone = "Europe/Berlin"
[[schedules.layers]]
name = "all-day"
users = ["alice"]
rotation = "weekly"
start = "2026-01-05T09:00"

[[escalations]]
name = "www"
steps = [{{ notify = ["schedule:ops"], wait = "10m" }}]
"##
    );
    let path = dir.join("crew.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn open(s: &Server, summary: &str) -> i64 {
    let body = json!({"summary": summary, "escalation": "www"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["incident"]["id"].as_i64().unwrap()
}

async fn notified(s: &Server) -> Vec<Value> {
    s.get_json("/api/v1/events?kind=incident.notified&limit=1000", &s.admin).await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn incident(s: &Server, id: i64) -> Value {
    s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await
}

/// The event of `kind` on incident `id`'s timeline.
fn on_timeline<'v>(inc: &'v Value, kind: &str) -> Option<&'v Value> {
    inc["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == kind)
}

#[tokio::test]
async fn a_chat_page_reaches_the_person_on_irc_who_acks_resolves_and_pages_from_the_channel() {
    let irc = Ngircd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), irc.port)).await;
    s.token("alice", "member").await;
    s.token("bob", "member").await;
    let out = s.cli(&s.admin).args(["chat", "link", "bob", "--irc", "bobnick!*@127.0.0.1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let joined = eventually(Duration::from_secs(10), || async {
        let v = s.get_json("/api/v1/chat", &s.admin).await;
        v["irc"]["connected"] == true && v["irc"]["channels"] == json!(["#ops"])
    })
    .await;
    assert!(joined, "the robot joins #ops");
    let mut alice = Person::join(irc.port, "alicenick", "#ops").await;
    let mut bob = Person::join(irc.port, "bobnick", "#ops").await;

    // Paged: a private message naming the incident, and a highlight in the room.
    let first = open(&s, "checkout is down").await;
    let pm = alice.page(first).await;
    assert!(pm.contains("checkout is down") && pm.contains(&format!("/incidents/{first}")), "{pm}");
    assert!(pm.contains(&format!("!ack {first}")), "the page says how to acknowledge: {pm}");
    let hl = alice.wait(|l| l.contains(&format!("PRIVMSG #ops :alicenick: #{first} ")), "the highlight").await;
    assert!(hl.starts_with(":crew!") && hl.contains("checkout is down"), "{hl}");
    let recorded = eventually(Duration::from_secs(5), || async {
        let n = notified(&s).await;
        let delivered = |channel: &str, to: &str| {
            n.iter().any(|e| {
                e["data"]["incident"] == first
                    && e["data"]["channel"] == channel
                    && e["data"]["person"] == "alice"
                    && e["data"]["to"] == to
                    && e["data"]["result"] == "delivered"
            })
        };
        delivered("chat", "alicenick") && delivered("room", "#ops")
    })
    .await;
    assert!(recorded, "both pages are recorded as delivered: {:?}", notified(&s).await);

    // `!ack` without a number acknowledges the newest triggered incident, as alice, via chat.
    alice.command("!ack").await;
    let a = alice.answer(&format!("#{first} acknowledged by alice")).await;
    assert!(a.contains("checkout is down"), "{a}");
    let v = incident(&s, first).await;
    assert_eq!(v["status"], "acknowledged", "{v}");
    assert_eq!(v["acked_by"], "alice");
    let acked = on_timeline(&v, "incident.acknowledged").expect("the acknowledgement is on the timeline");
    assert_eq!(acked["actor"], json!({"name": "alice", "via": "chat"}), "{acked}");

    // `!ack ID` acknowledges that one, not the newest.
    let second = open(&s, "payments are slow").await;
    alice.page(second).await;
    let third = open(&s, "search is empty").await;
    alice.page(third).await;
    alice.command(&format!("!ack {second}")).await;
    alice.answer(&format!("#{second} acknowledged by alice")).await;
    assert_eq!(incident(&s, second).await["status"], "acknowledged");
    assert_eq!(incident(&s, third).await["status"], "triggered", "the newest is left alone");
    let v = incident(&s, second).await;
    assert_eq!(on_timeline(&v, "incident.acknowledged").unwrap()["actor"], json!({"name": "alice", "via": "chat"}));
    // A second ack of the same one is refused with the reason, in the room.
    alice.command(&format!("!ack #{second}")).await;
    let again = alice.answer(&format!("alicenick: incident #{second} ")).await;
    assert!(again.contains("acknowledged already, by alice"), "{again}");

    // Who is on call.
    alice.command("!oncall").await;
    let who = alice.answer("ops: ").await;
    assert!(who.contains("ops: alice until"), "{who}");

    // The open incidents, one a line, newest first.
    alice.command("!incidents").await;
    for (id, status, summary) in [
        (third, "triggered", "search is empty"),
        (second, "acknowledged", "payments are slow"),
        (first, "acknowledged", "checkout is down"),
    ] {
        let l = alice.answer(&format!("#{id} ")).await;
        assert!(l.contains(&format!("#{id} {status} [page] {summary}")), "{l}");
    }

    // Resolved with the note.
    alice.command(&format!("!resolve {first} fixed it")).await;
    alice.answer(&format!("#{first} resolved by alice")).await;
    let v = incident(&s, first).await;
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["resolved_by"], "alice");
    let resolved = on_timeline(&v, "incident.resolved").unwrap();
    assert_eq!(resolved["data"]["note"], "fixed it", "{resolved}");
    assert_eq!(resolved["actor"], json!({"name": "alice", "via": "chat"}));
    assert!(resolved["summary"].as_str().unwrap().ends_with(": fixed it"), "{resolved}");
    // Listed again, then `!oncall` as a marker: every answer line before the marker is the list.
    alice.command("!incidents").await;
    alice.command("!oncall").await;
    let mut listed = Vec::new();
    loop {
        // (Highlights of the earlier pages may still be waiting to be read: they are not answers.)
        let l = alice
            .wait(
                |l| l.starts_with(":crew!") && l.contains("PRIVMSG #ops :") && !l.contains(":alicenick: #"),
                "answers",
            )
            .await;
        if l.contains("PRIVMSG #ops :ops: ") {
            break;
        }
        listed.push(l.split_once("PRIVMSG #ops :").unwrap().1.to_string());
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        !listed.iter().any(|l| l.starts_with(&format!("#{first} "))),
        "a resolved incident is not listed: {listed:?}"
    );

    // `!page POLICY TEXT` opens an incident that pages whoever the policy reaches.
    alice.command("!page www the site is down").await;
    let opened = alice
        .wait(|l| l.starts_with(":crew!") && l.contains("PRIVMSG #ops :#") && l.contains(" opened"), "!page's answer")
        .await;
    assert!(opened.contains("opened, paging www: the site is down"), "{opened}");
    let paged: i64 = opened.split_once("PRIVMSG #ops :#").unwrap().1.split(' ').next().unwrap().parse().unwrap();
    let pm = alice.page(paged).await;
    assert!(pm.contains("the site is down"), "{pm}");
    let v = incident(&s, paged).await;
    assert_eq!(v["source"], "person");
    assert_eq!(v["escalation"], "www");
    assert_eq!(v["opened_by"], "alice");
    assert_eq!(on_timeline(&v, "incident.triggered").unwrap()["actor"], json!({"name": "alice", "via": "chat"}));

    // `!page PERSON TEXT` pages that one person, at the nick a `crew chat link` names.
    alice.command("!page bob the disk on web1 is full").await;
    let opened = alice
        .wait(|l| l.starts_with(":crew!") && l.contains("PRIVMSG #ops :#") && l.contains(" opened"), "!page's answer")
        .await;
    assert!(opened.contains("opened, paging bob: the disk on web1 is full"), "{opened}");
    let for_bob: i64 = opened.split_once("PRIVMSG #ops :#").unwrap().1.split(' ').next().unwrap().parse().unwrap();
    let pm = bob.page(for_bob).await;
    assert!(pm.contains("the disk on web1 is full"), "{pm}");
    bob.wait(|l| l.contains(&format!("PRIVMSG #ops :bobnick: #{for_bob} ")), "bob's highlight").await;
    let bob_delivered = eventually(Duration::from_secs(5), || async {
        notified(&s).await.iter().any(|e| {
            e["data"]["incident"] == for_bob
                && e["data"]["person"] == "bob"
                && e["data"]["channel"] == "chat"
                && e["data"]["to"] == "bobnick"
                && e["data"]["result"] == "delivered"
        })
    })
    .await;
    assert!(bob_delivered, "{:?}", notified(&s).await);
    // A person whose nick is not on IRC: the server says so, and the page is refused with its reason (the
    // highlight in the room still goes out).
    alice.command("!page carol the backups failed").await;
    let opened = alice.wait(|l| l.starts_with(":crew!") && l.contains("opened, paging carol"), "!page's answer").await;
    let for_carol: i64 = opened.split_once("PRIVMSG #ops :#").unwrap().1.split(' ').next().unwrap().parse().unwrap();
    let refused = eventually(Duration::from_secs(10), || async {
        notified(&s).await.iter().any(|e| {
            e["data"]["incident"] == for_carol
                && e["data"]["channel"] == "chat"
                && e["data"]["to"] == "carolnick"
                && e["data"]["result"] == "refused"
                && e["data"]["reason"].as_str().is_some_and(|r| r.contains("carolnick") && r.contains("No such nick"))
        })
    })
    .await;
    assert!(refused, "a page to a nick nobody holds is refused: {:?}", notified(&s).await);
    // Someone without a mapping may look but not page.
    let mut eve = Person::join(irc.port, "eve", "#ops").await;
    eve.command("!page www nothing").await;
    let refused = eve.answer("eve: ").await;
    assert!(refused.contains("needs a crew user with role member"), "{refused}");
}

#[tokio::test]
async fn with_irc_down_a_chat_page_is_recorded_as_failed_with_the_reason() {
    // Nothing listens on this port: the robot cannot connect.
    let port = crew_testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), port)).await;
    let id = open(&s, "the robot is deaf").await;
    let failed = eventually(Duration::from_secs(10), || async {
        let n = notified(&s).await;
        let chat = n.iter().find(|e| {
            e["data"]["incident"] == id
                && e["data"]["channel"] == "chat"
                && e["data"]["person"] == "alice"
                && e["data"]["result"] == "failed"
        });
        chat.is_some_and(|e| {
            let reason = e["data"]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("not connected to IRC"), "{e}");
            assert!(e["summary"].as_str().unwrap().contains("not connected to IRC"), "{e}");
            true
        })
    })
    .await;
    assert!(failed, "a failed chat page is recorded with its reason: {:?}", notified(&s).await);
    // The incident itself stands, triggered, and its step is on the timeline.
    let v = incident(&s, id).await;
    assert_eq!(v["status"], "triggered");
    assert!(on_timeline(&v, "incident.escalated").is_some(), "{v}");
}

/// A fire drill through the real pager: its practice page reaches alice by email (aiosmtpd) and on IRC
/// (ngircd), both marked DRILL; she acknowledges it by saying `!ack` in the channel, and the drill's journal has
/// her time to acknowledge.
#[tokio::test]
async fn a_drill_pages_by_email_and_irc_and_an_ack_in_the_channel_is_its_tta() {
    let irc = Ngircd::start().unwrap();
    let smtp = crew_testkit::SmtpSink::start().unwrap();
    let a = crate::deploy::app();
    std::fs::create_dir_all(a.repo.join("drills")).unwrap();
    crate::deploy::commit(
        &a.repo,
        "drills/practice.toml",
        "title = \"Practice page\"\n\
         [[method]]\nname = \"page the on-call\"\npage = \"www\"\n\
         [[method]]\nname = \"give them time\"\nwait = \"6s\"\n",
        "a drill",
    );
    let dir = tempfile::tempdir().unwrap();
    let chat = std::fs::read_to_string(config(dir.path(), irc.port)).unwrap();
    let chat = chat.replace(
        "[people.alice]\nnotify = [\"chat\"]",
        "[people.alice]\nnotify = [\"chat\", \"email\"]\nemail = \"alice@example.com\"",
    );
    let smtp_section = format!("[smtp]\nserver = \"{}\"\ntls = \"none\"\nfrom = \"crew@example.com\"\n", smtp.addr());
    let path = a.with(&format!("{chat}\n{smtp_section}"));
    let s = Server::start_with_config(&path).await;
    s.token("alice", "member").await;
    let joined = eventually(Duration::from_secs(10), || async {
        s.get_json("/api/v1/chat", &s.admin).await["irc"]["connected"] == true
    })
    .await;
    assert!(joined, "the robot joins #ops");
    let mut alice = Person::join(irc.port, "alicenick", "#ops").await;

    let res = s.req(Method::POST, "/api/v1/drills/practice/run", &s.admin).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let pm = alice.wait(|l| l.starts_with(":crew!") && l.contains("PRIVMSG alicenick :"), "the practice page").await;
    assert!(pm.contains("DRILL"), "the page says it is a drill: {pm}");
    let mail = smtp.wait_for(|m| m.contains("alice@example.com") && m.contains("DRILL"), Duration::from_secs(10)).await;
    assert!(mail.contains("practice page"), "{mail}");
    alice.command("!ack").await;
    alice.answer("#").await;

    let done = eventually(Duration::from_secs(30), || async {
        let v = s.get_json("/api/v1/events?kind=drill.finished", &s.admin).await;
        !v["events"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(done, "the drill finishes");
    let j = s.get_json("/api/v1/events?kind=drill.finished", &s.admin).await["events"][0].clone();
    let r = &j["data"]["responders"][0];
    assert_eq!(r["acked_by"], "alice", "{j}");
    let tta = r["tta_seconds"].as_i64().unwrap();
    assert!((0..=10).contains(&tta), "{j}");
    assert!(j["summary"].as_str().unwrap().contains("acknowledged in"), "{j}");
}

/// Everything said in the incident's room while it was open is in its postmortem's timeline, however much: 120
/// lines (more than the 50 the status page remembers) from a person on ngircd, and the robot's own answers;
/// the robot keeps them in the store (30 days, 100,000 lines at most).
#[tokio::test]
async fn every_line_said_in_the_room_during_an_incident_is_in_its_postmortem() {
    let irc = Ngircd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), irc.port)).await;
    s.token("alice", "member").await;
    let joined = eventually(Duration::from_secs(10), || async {
        s.get_json("/api/v1/chat", &s.admin).await["irc"]["channels"] == json!(["#ops"])
    })
    .await;
    assert!(joined, "the robot joins #ops");
    let mut alice = Person::join(irc.port, "alicenick", "#ops").await;
    let id = open(&s, "search is slow").await;
    alice.page(id).await;
    for i in 0..120 {
        alice.command(&format!("tried thing {i} <b>bold</b>")).await;
    }
    // The robot reads the room in order: once it answers this, it has kept every line before it.
    alice.command("!incidents").await;
    alice.answer(&format!("#{id} ")).await;
    let res = s
        .req(Method::POST, &format!("/api/v1/incidents/{id}/resolve"), &s.admin)
        .json(&json!({"note": "reindexed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let pm = s.get_json(&format!("/api/v1/incidents/{id}/postmortem"), &s.admin).await;
    let md = pm["markdown"].as_str().unwrap();
    let said: Vec<&str> = md.lines().filter(|l| l.contains(" #ops <alicenick> tried thing ")).collect();
    assert_eq!(said.len(), 120, "every line, not the last 50:\n{md}");
    for (i, l) in said.iter().enumerate() {
        assert!(l.ends_with(&format!("tried thing {i} <b>bold</b>")), "in the order said: {l}");
    }
    assert!(md.contains("#ops <alicenick> !incidents"), "commands too:\n{md}");
    assert!(md.contains(&format!("#ops <crew> #{id} ")), "and the robot's answers:\n{md}");
}
