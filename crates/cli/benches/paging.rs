//! Paging latency and alert throughput on loopback, with real peers: ngircd (the robot and the people),
//! aiosmtpd (the mail sink) and an IM webhook receiver in this process. Three parts:
//!
//! 1. 200 incidents, one at a time, each an Alertmanager-shaped webhook POST (its own groupKey) to crew's
//!    `/api/v1/integrations/alertmanager?escalation=www`; from just before the POST until (a) the page's mail
//!    file lands in the sink's Maildir, (b) the private message reaches the on-call person's IRC client,
//!    (c) the incident's announcement reaches the `[[chat.webhooks]]` receiver.
//! 2. `!ack ID` said in the channel until `incident.acknowledged` arrives on the timeline's SSE stream, for
//!    each of those 200 incidents (twenty people share the acks, under the robot's per-person limit).
//! 3. Open-loop load: 1,000 Alertmanager events a second for 5 s (500 groupKeys, each sent 10 times: three
//!    distinct alert sets, the rest exact re-sends), severity `warning` (tickets: nobody is paged 500 times);
//!    then the incidents must be exactly the 500 groups, each with its 3 distinct notifications joined.
//!
//!   cargo bench -p crew --bench paging
//!
//! The crew server is the release binary on the SQLite default; p50/p90/p99/max are printed.

#[allow(dead_code)]
#[path = "../tests/it/harness.rs"]
mod harness;

use crew_core::kind;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use harness::Server;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const N: usize = 200;
const ACKERS: usize = 20;
const LOAD_RATE: usize = 1000;
const LOAD_SECONDS: usize = 5;
const GROUPS: usize = 500;

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

/// An IRC client in its own task: every line it reads is timestamped and handed over; what it is told to say
/// is written. It answers PING itself.
struct Irc {
    say: mpsc::UnboundedSender<String>,
    heard: mpsc::UnboundedReceiver<(Instant, String)>,
}

async fn irc(port: u16, nick: &str) -> Irc {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (r, mut w) = tcp.into_split();
    let (say, mut said) = mpsc::unbounded_channel::<String>();
    let (hear, heard) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        loop {
            tokio::select! {
                l = lines.next_line() => {
                    let Ok(Some(l)) = l else { return };
                    let at = Instant::now();
                    if let Some(rest) = l.strip_prefix("PING ") {
                        let _ = w.write_all(format!("PONG {rest}\r\n").as_bytes()).await;
                        continue;
                    }
                    let _ = hear.send((at, l));
                }
                s = said.recv() => {
                    let Some(s) = s else { return };
                    let _ = w.write_all(format!("{s}\r\n").as_bytes()).await;
                }
            }
        }
    });
    let mut c = Irc { say, heard };
    c.say.send(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN #ops")).unwrap();
    c.until(|l| l.contains(" 366 ")).await;
    c
}

impl Irc {
    async fn until(&mut self, mut pred: impl FnMut(&str) -> bool) -> (Instant, String) {
        loop {
            let (at, l) = tokio::time::timeout(Duration::from_secs(30), self.heard.recv())
                .await
                .expect("a line within 30 s")
                .expect("open");
            if pred(&l) {
                return (at, l);
            }
        }
    }
}

/// The IM webhook receiver: each body's text with when it arrived.
async fn webhook_receiver() -> (u16, mpsc::UnboundedReceiver<(Instant, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let at = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let _ = tx.send((at, v["text"].as_str().unwrap_or_default().to_string()));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, rx)
}

/// An Alertmanager webhook body (version 4) for group `key` with `alerts` firing alerts.
fn am_body(key: &str, name: &str, summary: &str, severity: &str, alerts: &[String]) -> Value {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|fp| {
            json!({"status": "firing", "labels": {"alertname": name, "instance": fp, "severity": severity},
                   "annotations": {"summary": summary}, "startsAt": "2026-12-01T10:00:00Z",
                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://bench/", "fingerprint": fp})
        })
        .collect();
    json!({
        "version": "4", "groupKey": key, "status": "firing", "receiver": "crew", "truncatedAlerts": 0,
        "groupLabels": {"alertname": name}, "commonLabels": {"alertname": name, "severity": severity},
        "commonAnnotations": {"summary": summary}, "externalURL": "http://alertmanager.bench", "alerts": alerts,
    })
}

fn maildir_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("new")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let ngircd = crew_testkit::Ngircd::start().unwrap();
    let smtp = crew_testkit::SmtpSink::start().unwrap();
    let (hook_port, mut hook) = webhook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crew.toml");
    let ackers: String =
        (0..ACKERS).map(|i| format!("[[chat.users]]\nname = \"ack{i}\"\nirc = \"ack{i}!*@127.0.0.1\"\n")).collect();
    std::fs::write(
        &config,
        format!(
            r##"
[chat.irc]
server = "127.0.0.1"
port = {irc}
channels = ["#ops"]
burst = 100
lines_per_second = 100
[chat.irc.announce]
"#ops" = ["{triggered}", "{acknowledged}"]
[[chat.webhooks]]
kind = "json"
url = "http://127.0.0.1:{hook_port}/hook"
announce = ["{triggered}"]
{ackers}
[people.alice]
email = "alice@example.com"
notify = ["chat", "email"]
irc = "alicenick"

[smtp]
server = "{smtp}"
tls = "none"
from = "crew@example.com"

[[schedules]]
name = "ops"
zone = "UTC"
[[schedules.layers]]
name = "all-day"
users = ["alice"]
rotation = "weekly"
start = "2026-01-05T09:00"

[[escalations]]
name = "www"
steps = [{{ notify = ["schedule:ops"], wait = "1h" }}]

[incidents]
ack_timeout = "0s"
"##,
            irc = ngircd.port,
            smtp = smtp.addr(),
            triggered = kind::INCIDENT_TRIGGERED,
            acknowledged = kind::INCIDENT_ACKNOWLEDGED,
        ),
    )
    .unwrap();
    let s = Server::start_with_config(&config).await;
    let am = s.token("alertmanager", "alert").await;
    for i in 0..ACKERS {
        s.token(&format!("ack{i}"), "member").await;
    }
    let until = Instant::now() + Duration::from_secs(15);
    while s.get_json("/api/v1/chat", &s.admin).await["irc"]["channels"] != json!(["#ops"]) {
        assert!(Instant::now() < until, "the robot joins #ops");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut alice = irc(ngircd.port, "alicenick").await;
    let mut people = Vec::new();
    for i in 0..ACKERS {
        people.push(irc(ngircd.port, &format!("ack{i}")).await);
    }
    // People's own lines are read and dropped by the acks' phase; alice's and the webhook's by phase 1.
    let http = reqwest::Client::new();
    let endpoint = format!("{}/api/v1/integrations/alertmanager?escalation=www", s.url);

    // The mail sink's Maildir, watched every millisecond: when its count grows, and to what.
    let maildir = smtp.maildir();
    let mails: Arc<Mutex<Vec<Instant>>> = Arc::default();
    {
        let (mails, maildir) = (mails.clone(), maildir.clone());
        std::thread::spawn(move || loop {
            let n = maildir_count(&maildir);
            let mut m = mails.lock().unwrap();
            while m.len() < n {
                m.push(Instant::now());
            }
            drop(m);
            std::thread::sleep(Duration::from_millis(1));
        });
    }

    // 1. Webhook in → page out, three ways.
    let (mut to_mail, mut to_irc, mut to_hook) = (vec![], vec![], vec![]);
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let summary = format!("bench alert {i} is firing");
        let body = am_body(
            &format!("{{}}:{{alertname=\"Bench{i}\"}}"),
            &format!("Bench{i}"),
            &summary,
            "page",
            &[format!("fp{i}")],
        );
        let start = Instant::now();
        let res = http.post(&endpoint).bearer_auth(&am).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 202);
        let v: Value = res.json().await.unwrap();
        let id = v["incident"].as_i64().unwrap();
        ids.push(id);
        let tag = format!("PRIVMSG alicenick :#{id} ");
        let (at, _) = alice.until(|l| l.contains(&tag)).await;
        to_irc.push(at - start);
        let hooked = loop {
            let (at, text) = tokio::time::timeout(Duration::from_secs(30), hook.recv()).await.unwrap().unwrap();
            if text.contains(&summary) {
                break at;
            }
        };
        to_hook.push(hooked - start);
        let mailed = loop {
            if let Some(at) = mails.lock().unwrap().get(i).copied() {
                break at;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "mail {i} never arrived");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        to_mail.push(mailed - start);
        // Under the robot's flood rule with room to spare (each page is four lines and an announcement).
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    report("alertmanager POST → mail in the SMTP sink's Maildir", to_mail);
    report("alertmanager POST → private message at the person's IRC client", to_irc);
    report("alertmanager POST → announcement at the IM webhook receiver", to_hook);

    // 2. `!ack ID` in the channel → incident.acknowledged on the timeline (SSE).
    let res = http
        .get(format!("{}/api/v1/events/stream?kind={}", s.url, kind::INCIDENT_ACKNOWLEDGED))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (acked_tx, mut acked) = mpsc::unbounded_channel::<(Instant, i64)>();
    tokio::spawn(async move {
        let mut events = res.bytes_stream().eventsource();
        while let Some(Ok(e)) = events.next().await {
            let at = Instant::now();
            if let Ok(v) = serde_json::from_str::<Value>(&e.data) {
                let _ = acked_tx.send((at, v["data"]["incident"].as_i64().unwrap_or_default()));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut took = Vec::with_capacity(N);
    for (i, id) in ids.iter().enumerate() {
        let p = &mut people[i % ACKERS];
        while p.heard.try_recv().is_ok() {}
        let start = Instant::now();
        p.say.send(format!("PRIVMSG #ops :!ack {id}")).unwrap();
        let at = loop {
            let (at, got) = tokio::time::timeout(Duration::from_secs(30), acked.recv()).await.unwrap().unwrap();
            if got == *id {
                break at;
            }
        };
        took.push(at - start);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    report("!ack ID in the channel → incident.acknowledged on the timeline (SSE)", took);
    let open = s.get_json("/api/v1/incidents?status=open&limit=1000", &s.admin).await;
    let acked_all = open["incidents"].as_array().unwrap().iter().all(|i| i["status"] == "acknowledged");
    assert!(acked_all, "every incident was acknowledged");
    drop(people);

    // 3. 1,000 Alertmanager events a second.
    let total = LOAD_RATE * LOAD_SECONDS;
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for k in 0..total {
        let at = start + Duration::from_secs_f64(k as f64 / LOAD_RATE as f64);
        tokio::time::sleep_until(at.into()).await;
        let g = k % GROUPS;
        let round = k / GROUPS; // 0..10
                                // Three distinct alert sets per group (rounds 0, 1 and 2 add an alert each), then exact re-sends.
        let n = round.min(2) + 1;
        let alerts: Vec<String> = (0..n).map(|j| format!("load{g}-{j}")).collect();
        let body = am_body(&format!("load:{g}"), &format!("Load{g}"), &format!("load group {g}"), "warning", &alerts);
        let (http, endpoint, am, permit) = (http.clone(), endpoint.clone(), am.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _p = permit.acquire_owned().await.unwrap();
            let res = http.post(&endpoint).bearer_auth(&am).json(&body).send().await;
            let ok = res.as_ref().is_ok_and(|r| r.status() == 202);
            // Latency from when the event was due (an open loop: queueing behind slow answers counts).
            (ok, at.elapsed(), res.map(|r| r.status().as_u16()).unwrap_or(0))
        }));
    }
    let sent_in = start.elapsed();
    let mut took = Vec::with_capacity(total);
    let mut failed = Vec::new();
    for t in tasks {
        let (ok, d, code) = t.await.unwrap();
        took.push(d);
        if !ok {
            failed.push(code);
        }
    }
    let all_in = start.elapsed();
    println!(
        "load: {total} events due over {LOAD_SECONDS} s; sent in {:.2} s, all answered in {:.2} s ({:.0} events/s answered); {} not 202 {:?}",
        sent_in.as_secs_f64(),
        all_in.as_secs_f64(),
        total as f64 / all_in.as_secs_f64(),
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    report("load: event due → crew's answer", took);
    let list = s.get_json("/api/v1/incidents?limit=1000", &s.admin).await;
    let load: Vec<&Value> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["key"].as_str().unwrap_or_default().starts_with("alertmanager:load:"))
        .collect();
    let alerts: i64 = load.iter().map(|i| i["alerts"].as_i64().unwrap()).sum();
    let wrong: Vec<&&Value> = load.iter().filter(|i| i["alerts"] != 3).take(3).collect();
    println!(
        "load dedup: {} incidents for {GROUPS} groups; {alerts} notifications joined for {} distinct; {}",
        load.len(),
        GROUPS * 3,
        if load.len() == GROUPS && alerts == (GROUPS * 3) as i64 {
            "nothing lost, nothing doubled"
        } else {
            "MISMATCH"
        }
    );
    assert!(wrong.is_empty(), "groups with other than 3 notifications: {wrong:?}");
    assert_eq!(load.len(), GROUPS);
}
