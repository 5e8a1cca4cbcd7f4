//! The robot's latency through a real ngircd on loopback: a command's round trip (`!status` sent by a person
//! to the robot until its reply arrives) and an announcement's (an event stored through the API
//! until its NOTICE arrives). 200 of each, under the flood rule (the bench sets burst 10, 20 lines a second,
//! and paces its traffic below that; ten people share the commands so none hits the per-person limit).
//!
//!   cargo bench -p crew --bench robot

#[allow(dead_code)]
#[path = "../tests/it/harness.rs"]
mod harness;

use harness::Server;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const N: usize = 200;

struct Person {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
}

impl Person {
    async fn join(port: u16, nick: &str) -> Person {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (r, w) = tcp.into_split();
        let mut p = Person { lines: BufReader::new(r).lines(), w };
        p.say(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN #ops")).await;
        p.wait(|l| l.contains(" 366 ")).await;
        p
    }
    async fn say(&mut self, raw: &str) {
        self.w.write_all(format!("{raw}\r\n").as_bytes()).await.unwrap();
    }
    async fn wait(&mut self, mut pred: impl FnMut(&str) -> bool) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
                .await
                .expect("a line within 10 s")
                .unwrap()
                .expect("open");
            if let Some(rest) = line.strip_prefix("PING ") {
                self.say(&format!("PONG {rest}")).await;
            } else if pred(&line) {
                return line;
            }
        }
    }
}

fn report(name: &str, mut took: Vec<Duration>) {
    took.sort();
    let q = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: {} samples  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        took.len(),
        ms(q(0.5)),
        ms(q(0.9)),
        ms(q(0.99)),
        ms(*took.last().unwrap())
    );
}

#[tokio::main]
async fn main() {
    let irc = crew_testkit::Ngircd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crew.toml");
    std::fs::write(
        &config,
        format!(
            "[chat.irc]\nserver = \"127.0.0.1\"\nport = {}\nchannels = [\"#ops\"]\nburst = 10\nlines_per_second = 20\n\
             [chat.irc.announce]\n\"#ops\" = [\"note\"]\n",
            irc.port
        ),
    )
    .unwrap();
    let s = Server::start_with_config(&config).await;
    let until = Instant::now() + Duration::from_secs(10);
    while s.get_json("/api/v1/chat", &s.admin).await["irc"]["channels"] != serde_json::json!(["#ops"]) {
        assert!(Instant::now() < until, "the robot joins #ops");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut people = Vec::new();
    for i in 0..10 {
        people.push(Person::join(irc.port, &format!("p{i}")).await);
    }
    let mut took = Vec::with_capacity(N);
    for i in 0..N {
        let p = &mut people[i % 10];
        let start = Instant::now();
        // Privately, so each person reads only the replies to their own commands.
        p.say("PRIVMSG crew :!status").await;
        let reply = p.wait(|l| l.starts_with(":crew!") && l.contains(&format!("PRIVMSG p{} :", i % 10))).await;
        took.push(start.elapsed());
        assert!(reply.contains("crew is up"), "{reply}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    report("command round trip (!status → reply)", took);

    let http = reqwest::Client::new();
    let listener = &mut people[0];
    let mut took = Vec::with_capacity(N);
    for i in 0..N {
        let start = Instant::now();
        let res = http
            .post(format!("{}/api/v1/events", s.url))
            .bearer_auth(&s.admin)
            .json(&serde_json::json!({"kind": "note", "subject": "bench", "summary": format!("bench note {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let want = format!("[note] bench note {i}");
        listener.wait(|l| l.starts_with(":crew!") && l.ends_with(&want)).await;
        took.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    report("announcement (event stored → NOTICE in the channel)", took);
}
