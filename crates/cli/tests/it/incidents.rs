//! On-call and incidents end to end with real peers: a real Alertmanager routing alerts to crew's webhook (and a
//! real Prometheus rule feeding it), a real SMTP server (aiosmtpd) receiving the pages, PagerDuty-shaped
//! events, acknowledgements that stop the paging and that time out, reopening within `[incidents] reopen`, an
//! SMTP server that is down, the schedules' API and iCal feeds, and configuration mistakes.

use crate::harness::{eventually, Server};
use crew_testkit::{Alertmanager, SmtpSink};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// A crew.toml with two people, an always-on schedule, and a two-step escalation.
fn config(dir: &std::path::Path, smtp: &str, wait: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[people.alice]
email = "alice@example.com"
notify = ["email"]
[people.bob]
email = "bob@example.com"
notify = ["email"]
[people.carol]
email = "carol@example.com"
notify = ["email"]

[smtp]
server = "{smtp}"
tls = "none"
from = "crew@example.com"

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
steps = [
  {{ notify = ["schedule:ops"], wait = "{wait}" }},
  {{ notify = ["user:bob"], wait = "{wait}" }},
]

[incidents]
ack_timeout = "1h"
"#
    );
    let path = dir.join("crew.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn events(s: &Server, token: &str, kind: &str) -> Vec<Value> {
    s.get_json(&format!("/api/v1/events?kind={kind}&limit=1000"), token).await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A real Alertmanager pages through crew: the group becomes one incident, the person on call gets the email
/// from the real SMTP server, an acknowledgement stops the paging (bob, the second step, is never emailed),
/// and Alertmanager's resolved notification resolves it.
#[tokio::test]
async fn alertmanager_pages_the_person_on_call_by_email_and_an_ack_stops_the_escalation() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &smtp.addr(), "3s")).await;
    let am_token = s.token("alertmanager", "alert").await;
    let hook = format!("{}/api/v1/integrations/alertmanager?escalation=www", s.url);
    let am = Alertmanager::start(&hook, &am_token).unwrap();
    let labels = [("severity", "page"), ("service", "checkout")];
    let notes = [("summary", "checkout errors are high"), ("runbook_url", "https://wiki.example.com/checkout")];
    am.add_alert("CheckoutErrors", &labels, &notes).await.unwrap();

    let mail = smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(20)).await;
    assert!(mail.contains("checkout errors are high"), "{mail}");
    let list = s.get_json("/api/v1/incidents", &s.admin).await;
    let incidents = list["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{list}");
    let inc = &incidents[0];
    assert_eq!(inc["status"], "triggered");
    assert_eq!(inc["source"], "alertmanager");
    assert!(inc["key"].as_str().unwrap().starts_with("alertmanager:"), "{inc}");
    let id = inc["id"].as_i64().unwrap();
    assert!(mail.contains(&format!("#{id}")), "{mail}");

    // The email page is recorded as delivered, to alice, by email.
    let notified = events(&s, &s.admin, "incident.notified").await;
    assert!(
        notified.iter().any(|e| e["data"]["person"] == "alice"
            && e["data"]["result"] == "delivered"
            && e["data"]["channel"] == "email"),
        "{notified:?}"
    );
    // Acknowledged from the CLI: nobody is paged afterwards.
    let out = s.cli(&s.admin).args(["incident", "ack", &id.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("acknowledged"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!smtp.messages().iter().any(|m| m.contains("bob@example.com")), "bob was paged after the ack");
    let again = s.cli(&s.admin).args(["incident", "ack", &id.to_string()]).output().unwrap();
    assert_eq!(again.status.code(), Some(3), "a second ack is refused (a conflict)");

    am.resolve_alert("CheckoutErrors", &labels, &notes).await.unwrap();
    let resolved = eventually(Duration::from_secs(20), || async {
        s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await["status"] == "resolved"
    })
    .await;
    assert!(resolved, "Alertmanager's resolved notification resolves the incident");
    let v = s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await;
    assert!(v["tta_seconds"].as_i64().unwrap() >= 0);
    assert!(v["ttr_seconds"].as_i64().unwrap() >= v["tta_seconds"].as_i64().unwrap());
    let kinds: Vec<&str> = v["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in
        ["incident.triggered", "incident.escalated", "incident.notified", "incident.acknowledged", "incident.resolved"]
    {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    // The alert token may send alerts and nothing else.
    let res = s.req(Method::GET, "/api/v1/events", &am_token).send().await.unwrap();
    assert_eq!(res.status(), 403);
}

/// Nobody acknowledges: the escalation moves to its next step on time (bob is emailed); a step whose schedule
/// has nobody on call moves on at once and records `oncall.gap`.
#[tokio::test]
async fn an_unacknowledged_page_escalates_to_the_next_step_on_time() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &smtp.addr(), "2s")).await;
    let body = json!({"summary": "the site is down", "escalation": "www"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let first = smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(10)).await;
    assert!(first.contains("the site is down"));
    let t0 = std::time::Instant::now();
    smtp.wait_for(|m| m.contains("bob@example.com"), Duration::from_secs(10)).await;
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(1000), "bob was paged before the step's wait: {waited:?}");
    let esc = events(&s, &s.admin, "incident.escalated").await;
    assert_eq!(esc.len(), 2, "two steps, each once: {esc:?}");
}

/// An SMTP server that is down: the page is `failed` with the reason and retried, and the escalation still
/// moves on to its next step on time.
#[tokio::test]
async fn an_smtp_server_that_is_down_fails_the_page_with_the_reason_and_the_escalation_goes_on() {
    let mut smtp = SmtpSink::start().unwrap();
    smtp.stop();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &smtp.addr(), "2s")).await;
    let body = json!({"summary": "payments failing", "escalation": "www"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let failed = eventually(Duration::from_secs(10), || async {
        events(&s, &s.admin, "incident.notified").await.iter().any(|e| {
            e["data"]["result"] == "failed" && e["data"]["person"] == "alice" && e["data"]["reason"].is_string()
        })
    })
    .await;
    assert!(failed, "a failed page is recorded with its reason");
    let moved_on = eventually(Duration::from_secs(10), || async {
        events(&s, &s.admin, "incident.escalated").await.iter().any(|e| e["data"]["step"] == 1)
    })
    .await;
    assert!(moved_on, "the escalation moves on while the mail server is down");
    // Back up: a retry gets through.
    smtp.restart().unwrap();
    smtp.wait_for(|m| m.contains("payments failing"), Duration::from_secs(20)).await;
}

/// PagerDuty's Events API v2: trigger, the same dedup_key again (one incident), acknowledge, resolve; bad
/// bodies are 400s naming the field and change nothing.
#[tokio::test]
async fn pagerduty_events_trigger_acknowledge_and_resolve_by_dedup_key() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &smtp.addr(), "30s")).await;
    let tok = s.token("monitor", "alert").await;
    let send = |body: Value| s.req(Method::POST, "/api/v1/integrations/pagerduty/enqueue", &tok).json(&body).send();
    let trigger = json!({"routing_key": "www", "event_action": "trigger", "dedup_key": "disk-web1",
        "payload": {"summary": "disk full on web1", "source": "web1", "severity": "critical"}});
    let res = send(trigger.clone()).await.unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["dedup_key"], "disk-web1");
    assert_eq!(send(trigger).await.unwrap().status(), 202);
    let list = s.get_json("/api/v1/incidents", &s.admin).await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["incidents"][0]["alerts"], 2);
    for bad in [
        json!({"event_action": "explode", "dedup_key": "x"}),
        json!({"event_action": "trigger", "payload": {"summary": "x", "source": "y"}}),
        json!([1, 2]),
    ] {
        let res = send(bad.clone()).await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let v: Value = res.json().await.unwrap();
        assert!(v["errors"][0]["detail"].as_str().unwrap().contains("JSON body"), "{v}");
    }
    let am = s.req(Method::POST, "/api/v1/integrations/alertmanager", &tok).json(&json!({"version": "3"})).send();
    let res = am.await.unwrap();
    assert_eq!(res.status(), 400);
    let ack = json!({"event_action": "acknowledge", "dedup_key": "disk-web1"});
    assert_eq!(send(ack).await.unwrap().status(), 202);
    let resolve = json!({"event_action": "resolve", "dedup_key": "disk-web1"});
    assert_eq!(send(resolve.clone()).await.unwrap().status(), 202);
    assert_eq!(send(resolve).await.unwrap().status(), 404, "nothing open any more");
    let list = s.get_json("/api/v1/incidents", &s.admin).await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(list["incidents"][0]["status"], "resolved");
    assert_eq!(list["incidents"][0]["acked_by"], "monitor");
}

/// Who is on call, overrides (an overlapping one refused), taking the shift, and the iCal feed behind its key.
#[tokio::test]
async fn schedules_overrides_and_the_ical_feed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), "127.0.0.1:1", "1m")).await;
    let out = s.cli(&s.admin).args(["oncall"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"), "{}", String::from_utf8_lossy(&out.stdout));
    let run = |args: &[&str]| s.cli(&s.admin).args(args).output().unwrap();
    let out = run(&["oncall", "override", "ops", "--user", "carol", "--from", "+1h", "--until", "+3h"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clash = run(&["oncall", "override", "ops", "--user", "bob", "--from", "+2h", "--until", "+4h"]);
    assert_eq!(clash.status.code(), Some(3), "an overlapping override is refused");
    assert!(String::from_utf8_lossy(&clash.stderr).contains("carol"), "{}", String::from_utf8_lossy(&clash.stderr));
    let unknown = s.cli(&s.admin).args(["oncall", "override", "ops", "--user", "zed", "--until", "+1h"]).output();
    assert_eq!(unknown.unwrap().status.code(), Some(2));
    let at = crew_core::time::rfc3339(chrono::Utc::now() + chrono::Duration::minutes(90));
    let later = run(&["oncall", "--at", &at]);
    assert!(String::from_utf8_lossy(&later.stdout).contains("carol"), "{}", String::from_utf8_lossy(&later.stdout));
    let sched = s.get_json("/api/v1/oncall/ops", &s.admin).await;
    let users: Vec<&str> = sched["segments"].as_array().unwrap().iter().filter_map(|g| g["user"].as_str()).collect();
    assert_eq!(users, ["alice", "carol", "alice"], "{sched}");
    assert_eq!(sched["overrides"].as_array().unwrap().len(), 1);
    let events = events(&s, &s.admin, "oncall.override").await;
    assert_eq!(events.len(), 1);

    // The feed needs its key; a rotated key replaces the old one.
    let feed = s.req(Method::POST, "/api/v1/oncall/ops/feed", &s.admin).send().await.unwrap();
    let path = feed.json::<Value>().await.unwrap()["feed"].as_str().unwrap().to_string();
    let ics = reqwest::get(format!("{}{path}", s.url)).await.unwrap();
    assert_eq!(ics.status(), 200);
    assert!(ics.headers()["content-type"].to_str().unwrap().starts_with("text/calendar"));
    let text = ics.text().await.unwrap();
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && text.contains("On call: carol"), "{text}");
    let without = reqwest::get(format!("{}/api/v1/oncall/ops/feed.ics?key=guess", s.url)).await.unwrap();
    assert_eq!(without.status(), 404);
    let feed = s.req(Method::POST, "/api/v1/oncall/ops/feed", &s.admin).send().await.unwrap();
    assert_eq!(feed.status(), 200);
    assert_eq!(reqwest::get(format!("{}{path}", s.url)).await.unwrap().status(), 404, "the old key is dead");
}

/// Mistakes in crew.toml's on-call sections stop the server with the file and key named.
#[tokio::test]
async fn on_call_configuration_mistakes_name_the_key() {
    let base = "[people.alice]\nemail = \"alice@example.com\"\nnotify = [\"email\"]\n";
    let layer = "[[schedules]]\nname = \"ops\"\nzone = \"Europe/Berlin\"\n[[schedules.layers]]\nname = \"l\"\nrotation = \"daily\"\nstart = \"2026-01-01T09:00\"\n";
    let table = [
        (format!("{base}{layer}users = [\"zed\"]\n"), "schedules[0].layers[0].users[0]: no person `zed`"),
        (format!("{base}{layer}users = []\n"), "layers[0].users"),
        (format!("{base}[[schedules]]\nname = \"ops\"\nzone = \"Mars/Olympus\"\n"), "schedules[0].zone"),
        (
            format!("{base}[[escalations]]\nname = \"www\"\nsteps = [{{ notify = [\"schedule:nope\"], wait = \"5m\" }}]\n"),
            "escalations[0].steps[0].notify[0]: no schedule `nope`",
        ),
        (
            format!("{base}[[escalations]]\nname = \"www\"\nrepeat = 3\nsteps = [{{ notify = [\"user:alice\"], wait = \"0s\" }}]\n"),
            "escalations[0]",
        ),
        (
            format!("{base}[[alerts]]\nname = \"e\"\nseries = \"x\"\nstat = \"count\"\nop = \">\"\nthreshold = 1\nsummary = \"s\"\nescalation = \"none\"\n"),
            "alerts[0].escalation: no escalation `none`",
        ),
    ];
    for (text, says) in table {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crew.toml");
        std::fs::write(&path, &text).unwrap();
        let out = crate::harness::serve_refused(&path, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}\n{err}");
        assert!(err.contains(says), "{text}\nwant {says:?} in: {err}");
        assert!(err.contains("crew.toml"), "{err}");
    }
}

/// Two replicas on one PostgreSQL: the replica that fired the first step is killed, the other sends the next
/// steps on time, and nobody gets a step twice.
#[tokio::test]
async fn a_replica_killed_mid_escalation_is_taken_over_and_nobody_is_paged_twice() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(config(dir.path(), &smtp.addr(), "3s")).unwrap().replace(
        "{ notify = [\"user:bob\"], wait = \"3s\" },",
        "{ notify = [\"user:bob\"], wait = \"3s\" },\n  { notify = [\"user:carol\"], wait = \"3s\" },",
    );
    let path = dir.path().join("crew.toml");
    std::fs::write(&path, text).unwrap();
    let database = crew_testkit::fresh_postgres().await;
    let mut a = Server::start_replica_with_statsd(&database, None, &path).await;
    let b = Server::start_replica_with_statsd(&database, Some(&a.admin), &path).await;
    let body = json!({"summary": "replicas test", "escalation": "www"});
    let res = a.req(Method::POST, "/api/v1/incidents", &a.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(10)).await;
    a.stop_hard();
    smtp.wait_for(|m| m.contains("bob@example.com"), Duration::from_secs(10)).await;
    smtp.wait_for(|m| m.contains("carol@example.com"), Duration::from_secs(10)).await;
    // Past the last step's wait: nothing more is sent (the policy has no repeat).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mails = smtp.messages();
    for who in ["alice", "bob", "carol"] {
        let n = mails.iter().filter(|m| m.contains(&format!("{who}@example.com"))).count();
        assert_eq!(n, 1, "{who} got {n} pages");
    }
    let esc = events(&b, &b.admin, "incident.escalated").await;
    let mut steps: Vec<i64> = esc.iter().map(|e| e["data"]["step"].as_i64().unwrap()).collect();
    steps.sort();
    assert_eq!(steps, [0, 1, 2], "each step fired once: {esc:?}");
}

/// The deploy gate: an environment that requires someone on call refuses a deploy while nobody is (exit 3,
/// the reason named) and takes it once someone is; a handoff less than 30 minutes away is a warning.
#[tokio::test]
async fn a_deploy_needs_someone_on_call_where_the_environment_requires_it() {
    let a = crate::deploy::app();
    let path = a.repo.join("crew.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("[environments.staging]\n", "[environments.staging]\noncall = \"ops\"\nrequire_oncall = true\n")
        .replace("canary = 1\n", "canary = 1\noncall = \"late\"\n");
    std::fs::write(&path, text).unwrap();
    let path = a.with(
        "[people.alice]\nnotify = []\n[people.bob]\nnotify = []\n\
         [[schedules]]\nname = \"ops\"\nzone = \"UTC\"\n[[schedules.layers]]\nname = \"later\"\nusers = [\"bob\"]\n\
         rotation = \"weekly\"\nstart = \"2099-01-05T09:00\"\n\
         [[schedules]]\nname = \"late\"\nzone = \"UTC\"\n[[schedules.layers]]\nname = \"later\"\nusers = [\"bob\"]\n\
         rotation = \"weekly\"\nstart = \"2099-01-05T09:00\"\n",
    );
    let s = Server::start_with_config(&path).await;
    let out = s.cli(&s.admin).args(["deploy", "staging"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("nobody is on call for ops"), "{err}");
    assert!(s.get_json("/api/v1/deploys", &s.admin).await["deploys"].as_array().unwrap().is_empty());
    let take = s.cli(&s.admin).args(["oncall", "override", "ops", "--user", "alice", "--until", "+2h"]).output();
    assert!(take.unwrap().status.success());
    let out = s.cli(&s.admin).args(["deploy", "staging"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning:"));
    // Production's schedule hands over in ten minutes: the deploy goes, with a warning.
    let soon = s.cli(&s.admin).args(["oncall", "override", "late", "--user", "alice", "--until", "+10m"]).output();
    assert!(soon.unwrap().status.success());
    let out = s.cli(&s.admin).args(["deploy", "production"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: alice's on-call shift for late ends in"), "{err}");
}

/// The email's signed link: its page acknowledges as the person it was sent to (a fetch alone changes
/// nothing); a tampered link is refused; a used one only says what became of the incident.
#[tokio::test]
async fn the_emailed_link_acknowledges_as_its_person_once() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &smtp.addr(), "1m")).await;
    let body = json!({"summary": "queue is stuck", "escalation": "www"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    let id = res.json::<Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();
    let mail = smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(10)).await;
    // Undo quoted-printable soft breaks; the link has no `=` of its own.
    let flat = mail.replace("=\r\n", "").replace("=\n", "");
    let link = flat
        .split_whitespace()
        .find(|w| w.contains("/ack/"))
        .unwrap_or_else(|| panic!("no link in {mail}"))
        .to_string();
    let http = reqwest::Client::new();
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Acknowledge as alice"));
    assert_eq!(s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await["status"], "triggered");
    let forged = format!("{}0", &link[..link.len() - 1]);
    let forged = if forged == link { format!("{}1", &link[..link.len() - 1]) } else { forged };
    assert_eq!(http.post(&forged).send().await.unwrap().status(), 404);
    assert_eq!(http.post(&link).send().await.unwrap().status(), 200);
    let v = s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await;
    assert_eq!(v["status"], "acknowledged");
    assert_eq!(v["acked_by"], "alice");
    assert_eq!(http.post(&link).send().await.unwrap().status(), 400, "a used link acknowledges nothing more");
    assert!(http.get(&link).send().await.unwrap().text().await.unwrap().contains("Nothing to do"));
}

/// An incident lists crew's own changes just before it, newest first, each with its undo; the deploy's author
/// is paged first; undoing from the incident rolls the deploy back and switches the flag back, each recorded on
/// the incident.
#[tokio::test]
async fn an_incident_lists_the_changes_before_it_and_undoes_them() {
    let smtp = SmtpSink::start().unwrap();
    let a = crate::deploy::app();
    let scratch = tempfile::tempdir().unwrap();
    let people = std::fs::read_to_string(config(scratch.path(), &smtp.addr(), "1m")).unwrap();
    let path = a.with(&format!("{people}\n[people.mo]\nemail = \"mo@example.com\"\nnotify = [\"email\"]\n"));
    let s = Server::start_with_config(&path).await;
    let mo = s.token("mo", "member").await;
    let first = crate::deploy::deploy_staging(&s, &mo).await;
    crate::deploy::commit(&a.repo, "index.html", "<h1>v2</h1>\n", "v2 of the page");
    let second = crate::deploy::deploy_staging(&s, &mo).await;
    let knob = json!({"knob": "rollout", "percent": 30, "reason": "ramp search"});
    let res = s.req(Method::POST, "/api/v1/flags/search/knob", &mo).json(&knob).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body = json!({"summary": "staging errors", "escalation": "www"});
    let res = s.req(Method::POST, "/api/v1/incidents", &mo).json(&body).send().await.unwrap();
    let id = res.json::<Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();

    // The deployer first, saying which deploy; then the on-call person.
    let mail = smtp.wait_for(|m| m.contains("mo@example.com"), Duration::from_secs(10)).await;
    assert!(mail.contains("staging errors"));
    smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(10)).await;
    let esc = events(&s, &s.admin, "incident.escalated").await;
    let deployer = esc.iter().find(|e| e["data"]["deployer"] == "mo").expect("the deployer is paged");
    assert!(deployer["summary"].as_str().unwrap().contains(&format!("deploy #{second}")), "{deployer}");

    let v = s.get_json(&format!("/api/v1/incidents/{id}"), &mo).await;
    let changes = v["changes"].as_array().unwrap();
    let kinds: Vec<&str> = changes.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["flag.changed", "deploy.finished", "deploy.finished"], "newest first: {v}");
    assert!(changes.windows(2).all(|w| w[0]["before_seconds"].as_i64() <= w[1]["before_seconds"].as_i64()));
    let deploy = &changes[1];
    assert_eq!(deploy["detail"]["deploy"], second);
    assert_eq!(deploy["detail"]["message"], "graph marker");
    assert_eq!(deploy["undo"]["action"], "rollback");
    assert_eq!(deploy["undo"]["to"], first);
    assert_eq!(deploy["undo"]["command"], format!("crew rollback staging --to {first}"));
    assert!(changes[2]["undo"].is_null(), "the first deploy has nothing before it to go back to");
    let out = s.cli(&mo).args(["incident", "show", &id.to_string()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changes before it") && text.contains(&format!("crew rollback staging --to {first}")),
        "{text}"
    );

    // Undo both from the incident.
    let undo = |event: &str| {
        s.req(Method::POST, &format!("/api/v1/incidents/{id}/undo"), &mo).json(&json!({"event": event})).send()
    };
    let res = undo(deploy["event"].as_str().unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    let rollback = res.json::<Value>().await.unwrap()["rollback"].as_i64().unwrap();
    let rolled = eventually(Duration::from_secs(30), || async {
        s.get_json(&format!("/api/v1/deploys/{rollback}"), &mo).await["status"] == "succeeded"
    })
    .await;
    assert!(rolled);
    let live = crate::deploy::live(&a.hosts.join("staging1")).unwrap().1;
    let first_rev =
        s.get_json(&format!("/api/v1/deploys/{first}"), &mo).await["revision"].as_str().unwrap().to_string();
    assert_eq!(live, first_rev, "staging runs the first deploy's commit again");
    let res = undo(changes[0]["event"].as_str().unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    let flag = s.req(Method::GET, "/api/v1/flags/search", &mo).send().await.unwrap();
    assert_eq!(flag.status(), 404, "the flag did not exist before the change: switched back, it is gone");
    assert_eq!(undo("not-a-change").await.unwrap().status(), 404);
    let undos = events(&s, &mo, "incident.undo").await;
    assert_eq!(undos.len(), 2, "{undos:?}");
    assert!(undos.iter().all(|e| e["subject"] == format!("incident:{id}")));
}

/// A `chat` page also goes to the IM webhooks with the person's mention (kept as the IM service writes it; the
/// rest escaped so a summary cannot mention anyone else), and is recorded as channel `im`.
#[tokio::test]
async fn a_chat_page_mentions_the_person_in_the_im_webhooks() {
    let (port, got) = crate::chat::receiver(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crew.toml");
    std::fs::write(
        &path,
        format!(
            "[people.alice]\nnotify = [\"chat\"]\nim = \"<@U024BE7LH>\"\n\
             [[chat.webhooks]]\nkind = \"slack\"\nurl = \"http://127.0.0.1:{port}/slack\"\nannounce = [\"deploy\"]\n\
             [[escalations]]\nname = \"www\"\nsteps = [{{ notify = [\"user:alice\"], wait = \"10m\" }}]\n"
        ),
    )
    .unwrap();
    let s = Server::start_with_config(&path).await;
    let body = json!({"summary": "checkout <!channel> is down", "escalation": "www"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let posted = eventually(Duration::from_secs(10), || async { !got.lock().unwrap().is_empty() }).await;
    assert!(posted, "the webhook got the page");
    let text = got.lock().unwrap()[0].1["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("<@U024BE7LH> "), "{text}");
    assert!(text.contains("&lt;!channel&gt;") && !text.contains("<!channel>"), "{text}");
    let im = eventually(Duration::from_secs(10), || async {
        events(&s, &s.admin, "incident.notified")
            .await
            .iter()
            .any(|e| e["data"]["channel"] == "im" && e["data"]["result"] == "delivered")
    })
    .await;
    assert!(im);
}

/// What a hostile sender or a careless member could do to silence or drown the pages: a ticket opened first
/// does not swallow the page that follows; one integration cannot resolve another's incident; a person's key
/// cannot join an integration's incident; huge details are not kept; an override can be removed.
#[tokio::test]
async fn pages_cannot_be_silenced_or_drowned() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &smtp.addr(), "1m")).await;
    let pd = s.token("monitor", "alert").await;
    let other = s.token("other-monitor", "alert").await;
    let send =
        |tok: &str, body: Value| s.req(Method::POST, "/api/v1/integrations/pagerduty/enqueue", tok).json(&body).send();
    let event = |action: &str, severity: &str| {
        json!({"routing_key": "www", "event_action": action, "dedup_key": "db-lag",
               "payload": {"summary": "replica lag", "source": "db2", "severity": severity,
                           "custom_details": {"blob": "x".repeat(100_000)}}})
    };
    assert_eq!(send(&pd, event("trigger", "warning")).await.unwrap().status(), 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(smtp.messages().is_empty(), "a ticket pages nobody");
    assert_eq!(send(&pd, event("trigger", "critical")).await.unwrap().status(), 202);
    smtp.wait_for(|m| m.contains("alice@example.com") && m.contains("replica lag"), Duration::from_secs(10)).await;
    let list = s.get_json("/api/v1/incidents", &s.admin).await;
    let inc = &list["incidents"][0];
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(inc["severity"], "page", "the page joined the ticket and made it page: {inc}");
    assert_eq!(inc["details"]["truncated"], true, "100 kB of details are not kept");
    // Another integration may not resolve it.
    let res = send(&other, json!({"event_action": "resolve", "dedup_key": "db-lag"})).await.unwrap();
    assert_eq!(res.status(), 403);
    // A person's key is their own area: it opens a new incident rather than joining the integration's.
    let key = inc["key"].as_str().unwrap();
    let body = json!({"summary": "mine", "severity": "ticket", "key": key});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["result"], "opened");
    // Overrides: too short is refused; one can be removed.
    let add = |from: &str, until: &str| {
        s.req(Method::POST, "/api/v1/oncall/ops/overrides", &s.admin)
            .json(&json!({"user": "bob", "from": from, "until": until}))
            .send()
    };
    assert_eq!(add("+1h", "+61m").await.unwrap().status(), 400);
    let o = add("+1h", "+2h").await.unwrap().json::<Value>().await.unwrap();
    let path = format!("/api/v1/oncall/ops/overrides/{}", o["id"]);
    assert_eq!(s.req(Method::DELETE, &path, &s.admin).send().await.unwrap().status(), 200);
    assert_eq!(s.req(Method::DELETE, &path, &s.admin).send().await.unwrap().status(), 404);
    assert_eq!(s.get_json("/api/v1/oncall/ops", &s.admin).await["overrides"], json!([]));
}

/// At resolve crew drafts a blameless postmortem from the timeline; people edit it, move it to review and
/// publish it (each an event); an action item crew can check closes itself when it is true.
#[tokio::test]
async fn a_resolved_incident_gets_a_blameless_postmortem_draft_that_people_finish() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(config(dir.path(), "127.0.0.1:1", "10m")).unwrap();
    let path = dir.path().join("crew.toml");
    let rule = "[[alerts]]\nname = \"errors\"\nseries = \"shop.errors\"\nstat = \"count\"\nop = \">\"\nthreshold = 5\n\
                summary = \"shop errors\"\nescalation = \"www\"\n";
    std::fs::write(&path, format!("{text}\n{rule}")).unwrap();
    let s = Server::start_with_config(&path).await;
    let body = json!({"summary": "checkout failing", "escalation": "www"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    let id = res.json::<Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();
    let pm_path = format!("/api/v1/incidents/{id}/postmortem");
    assert_eq!(s.req(Method::GET, &pm_path, &s.admin).send().await.unwrap().status(), 404, "none before resolve");
    s.req(Method::POST, &format!("/api/v1/incidents/{id}/ack"), &s.admin).send().await.unwrap();
    let res = s
        .req(Method::POST, &format!("/api/v1/incidents/{id}/resolve"), &s.admin)
        .json(&json!({"note": "restarted the payment workers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let pm = s.get_json(&pm_path, &s.admin).await;
    assert_eq!(pm["state"], "draft");
    let md = pm["markdown"].as_str().unwrap();
    for section in [
        "## Summary",
        "## Impact",
        "## Times",
        "## Changes before it",
        "## Timeline",
        "## Contributing factors",
        "## What made sense at the time",
        "## What went well",
        "## Action items",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    assert!(md.contains("Time to acknowledge") && md.contains("Time to resolve"), "{md}");
    for kind in ["incident.triggered", "incident.acknowledged", "incident.resolved"] {
        assert!(md.contains(kind), "the timeline lists {kind}:\n{md}");
    }
    assert!(md.contains("restarted the payment workers"));
    assert!(!md.to_lowercase().contains("responsible") && !md.to_lowercase().contains("root cause"), "{md}");

    // People edit it; an item crew can check closes itself.
    let edited = format!(
        "{md}- [ ] an alert rule covers shop.errors (owner: alice)\n- [ ] talk to the payments team (owner: bob)\n"
    );
    let res = s.req(Method::PUT, &pm_path, &s.admin).json(&json!({"markdown": edited})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let items = v["action_items"].as_array().unwrap();
    let covers = items.iter().find(|i| i["text"].as_str().unwrap().contains("covers shop.errors")).unwrap();
    assert_eq!(covers["done"], true, "{items:?}");
    assert_eq!(covers["owner"], "alice");
    let talk = items.iter().find(|i| i["text"].as_str().unwrap().contains("payments team")).unwrap();
    assert_eq!(talk["done"], false);
    assert_eq!(events(&s, &s.admin, "incident.action_done").await.len(), 1);
    for state in ["in_review", "published"] {
        let res = s.req(Method::PUT, &pm_path, &s.admin).json(&json!({"state": state})).send().await.unwrap();
        assert_eq!(res.status(), 200, "{state}");
    }
    let res = s.req(Method::PUT, &pm_path, &s.admin).json(&json!({"markdown": "# nothing"})).send().await.unwrap();
    assert_eq!(res.status(), 409, "a published postmortem is final");
    let states: Vec<Value> =
        events(&s, &s.admin, "incident.postmortem").await.iter().map(|e| e["data"]["state"].clone()).collect();
    assert_eq!(states, [json!("published"), json!("in_review"), json!("draft"), json!("draft")], "newest first");
    let out = s.cli(&s.admin).args(["postmortem", &id.to_string()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("# Postmortem: #{id} checkout failing")));
    let bad = s.req(Method::PUT, &pm_path, &s.admin).json(&json!({"state": "approved"})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

/// A fire drill from the repository: refused while a real incident is open; run, it switches a flag, pages the
/// on-call through the real escalation (marked DRILL, in the email too), rolls back at the end whatever
/// happened, and records its journal with the probes, the actions and the responder's time to acknowledge.
#[tokio::test]
async fn a_fire_drill_rehearses_through_the_real_pager_and_keeps_its_journal() {
    let smtp = SmtpSink::start().unwrap();
    let a = crate::deploy::app();
    std::fs::create_dir_all(a.repo.join("drills")).unwrap();
    crate::deploy::commit(
        &a.repo,
        "drills/search-off.toml",
        "title = \"Search goes dark\"\n\
         [steady-state-hypothesis]\ntitle = \"few errors\"\n\
         [[steady-state-hypothesis.probes]]\nname = \"errors\"\nseries = \"www.errors\"\nstat = \"count\"\nmax = 10\n\
         [[method]]\nname = \"switch search off\"\nflag = \"search\"\nstate = \"off\"\n\
         [[method]]\nname = \"page the on-call\"\npage = \"www\"\n\
         [[method]]\nname = \"give them time\"\nwait = \"3s\"\n\
         [[rollbacks]]\nname = \"search back\"\nflag = \"search\"\nstate = \"before\"\n",
        "a drill",
    );
    let broken = "title = \"x\"\n[[method]]\nname = \"two\"\nwait = \"1s\"\nlock = \"staging\"\n";
    crate::deploy::commit(&a.repo, "drills/broken.toml", broken, "a broken drill");
    let prod = "title = \"x\"\n[[method]]\nname = \"lock it\"\nlock = \"production\"\n";
    crate::deploy::commit(&a.repo, "drills/prod.toml", prod, "a drill on production");
    let deviates = "title = \"Errors must be negative\"\n\
         [steady-state-hypothesis]\ntitle = \"impossible\"\n\
         [[steady-state-hypothesis.probes]]\nname = \"errors\"\nseries = \"www.errors\"\nstat = \"count\"\nmax = -1\n\
         [[method]]\nname = \"search off\"\nflag = \"search\"\nstate = \"off\"\n\
         [[rollbacks]]\nname = \"search back\"\nflag = \"search\"\nstate = \"before\"\n";
    crate::deploy::commit(&a.repo, "drills/deviates.toml", deviates, "a drill that deviates");
    let scratch = tempfile::tempdir().unwrap();
    let people = std::fs::read_to_string(config(scratch.path(), &smtp.addr(), "10m")).unwrap();
    let path = a.with(&format!("{people}\n[metrics]\nflush = \"1s\"\n"));
    let s = Server::start_with_statsd(&path).await;
    // The series the probes read exists once StatsD has had a line of it.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"www.errors:1|c\n", s.statsd.as_deref().unwrap()).unwrap();
    let known = eventually(Duration::from_secs(10), || async {
        s.get_json("/api/v1/metrics", &s.admin).await.to_string().contains("www.errors")
    })
    .await;
    assert!(known);
    let knob = json!({"knob": "rollout", "percent": 25, "reason": "ramping"});
    let res = s.req(Method::POST, "/api/v1/flags/search/knob", &s.admin).json(&knob).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ramped = s.get_json("/api/v1/flags/search", &s.admin).await["definition"].clone();
    let list = s.get_json("/api/v1/drills", &s.admin).await;
    let broken = list["drills"].as_array().unwrap().iter().find(|d| d["name"] == "broken").unwrap().clone();
    let prod = list["drills"].as_array().unwrap().iter().find(|d| d["name"] == "prod").unwrap().clone();
    assert!(prod["error"].as_str().unwrap().contains("drills/prod.toml: method[0]: touches production"), "{prod}");
    assert!(
        broken["error"].as_str().unwrap().contains("drills/broken.toml: method[0]: one lever per action"),
        "{broken}"
    );

    // Refused while a real incident is open, with the reason.
    let res = s
        .req(Method::POST, "/api/v1/incidents", &s.admin)
        .json(&json!({"summary": "real one", "severity": "ticket"}))
        .send();
    let real = res.await.unwrap().json::<Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();
    let out = s.cli(&s.admin).args(["drill", "run", "search-off"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("incident #{real} is open")));
    s.req(Method::POST, &format!("/api/v1/incidents/{real}/resolve"), &s.admin).send().await.unwrap();

    // Run it; alice acknowledges the practice page from its email.
    let child =
        s.cli(&s.admin).args(["drill", "run", "search-off"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mail = smtp.wait_for(|m| m.contains("alice@example.com") && m.contains("DRILL"), Duration::from_secs(10)).await;
    assert!(mail.contains("practice page"), "{mail}");
    let flag = s.get_json("/api/v1/flags/search", &s.admin).await;
    assert_eq!(flag["definition"]["state"], "DISABLED", "the method switched it off: {flag}");
    let practice = s.get_json("/api/v1/incidents?status=open", &s.admin).await["incidents"][0].clone();
    assert_eq!(practice["drill"], true);
    let alice = s.token("alice", "member").await;
    let ack = s.req(Method::POST, &format!("/api/v1/incidents/{}/ack", practice["id"]), &alice).send().await.unwrap();
    assert_eq!(ack.status(), 200);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("DRILL search-off finished: hypothesis held; acknowledged in"), "{printed}");
    let flag = s.get_json("/api/v1/flags/search", &s.admin).await;
    assert_eq!(flag["definition"], ramped, "the rollback put the 25% ramp back");
    let runs = s.get_json("/api/v1/drills", &s.admin).await["runs"].clone();
    let j = &runs[0]["data"];
    assert_eq!(j["deviated"], false);
    assert_eq!(j["before"][0]["probe"], "errors");
    assert_eq!(j["after"][0]["ok"], true);
    assert_eq!(j["method"].as_array().unwrap().len(), 3);
    assert_eq!(j["responders"][0]["acked_by"], "alice");
    assert!(j["responders"][0]["tta_seconds"].as_i64().unwrap() >= 0);
    // A hypothesis that fails is recorded as deviated, and the rollbacks still run.
    let out = s.cli(&s.admin).args(["drill", "run", "deviates"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hypothesis deviated"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let runs = s.get_json("/api/v1/drills", &s.admin).await["runs"].clone();
    assert_eq!(runs[0]["data"]["deviated"], true);
    assert_eq!(runs[0]["data"]["rollbacks"][0]["ok"], true);
    assert_eq!(s.get_json("/api/v1/flags/search", &s.admin).await["definition"], ramped);
    let closed = s.get_json(&format!("/api/v1/incidents/{}", practice["id"]), &s.admin).await;
    assert_eq!(closed["status"], "resolved", "the drill resolves its practice incident");
    assert!(closed["timeline"][0]["summary"].as_str().unwrap().starts_with("DRILL"), "{closed}");
}

/// A real rule in a real Prometheus fires, its Alertmanager sends the group to crew's webhook, and crew opens
/// one incident and pages the person on call by email (through the real SMTP server). Prometheus resends the
/// firing alert every second; the group stays one incident.
#[tokio::test]
async fn a_prometheus_rule_fires_through_alertmanager_and_crew_pages_by_email() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), &smtp.addr(), "10m")).await;
    let am_token = s.token("alertmanager", "alert").await;
    let hook = format!("{}/api/v1/integrations/alertmanager?escalation=www", s.url);
    let am = Alertmanager::start(&hook, &am_token).unwrap();
    let rules = "groups:\n  - name: crew\n    rules:\n      - alert: SiteDown\n        expr: vector(1)\n\
                 \x20       labels:\n          severity: page\n          service: www\n\
                 \x20       annotations:\n          summary: the site is down (Prometheus says so)\n";
    let prom = crew_testkit::Prometheus::start_with(&am.prometheus_alerting(), &[rules]).unwrap();

    let mail = smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(60)).await;
    assert!(mail.contains("the site is down (Prometheus says so)"), "{mail}");
    let list = s.get_json("/api/v1/incidents", &s.admin).await;
    let incidents = list["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{list}");
    let inc = &incidents[0];
    let id = inc["id"].as_i64().unwrap();
    assert!(mail.contains(&format!("#{id}")), "{mail}");
    assert_eq!(inc["source"], "alertmanager");
    assert_eq!(inc["severity"], "page");
    assert_eq!(inc["escalation"], "www");
    assert_eq!(inc["opened_by"], "alertmanager");
    assert_eq!(inc["details"]["common_labels"]["alertname"], "SiteDown", "{inc}");
    assert_eq!(inc["details"]["common_labels"]["service"], "www", "{inc}");
    // The alert names the Prometheus that evaluated the rule.
    let generator = inc["details"]["alerts"][0]["generator_url"].as_str().unwrap();
    // (Prometheus names itself by the machine's host name.)
    assert!(generator.contains(&format!(":{}/graph?", prom.port)) && generator.contains("vector"), "{generator}");
    let notified = events(&s, &s.admin, "incident.notified").await;
    assert!(
        notified.iter().any(|e| e["data"]["incident"] == id
            && e["data"]["person"] == "alice"
            && e["data"]["channel"] == "email"
            && e["data"]["result"] == "delivered"),
        "{notified:?}"
    );
    // Prometheus keeps resending the firing alert: still one incident, one page.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let list = s.get_json("/api/v1/incidents", &s.admin).await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1, "{list}");
    let pages = smtp.messages().iter().filter(|m| m.contains("alice@example.com")).count();
    assert_eq!(pages, 1, "alice is paged once for the group");
}

/// `[incidents] reopen`: the key fires again soon after its resolution and the same incident reopens,
/// escalating from its first step again; fired after the window, it is a new incident. PagerDuty-shaped
/// events drive it.
#[tokio::test]
async fn a_key_that_fires_again_within_the_reopen_window_reopens_and_after_it_opens_a_new_incident() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &smtp.addr(), "2s");
    let text = std::fs::read_to_string(&path).unwrap().replace("ack_timeout = \"1h\"", "reopen = \"5s\"");
    std::fs::write(&path, text).unwrap();
    let s = Server::start_with_config(&path).await;
    let tok = s.token("monitor", "alert").await;
    let send = |action: &str| {
        let body = json!({"routing_key": "www", "event_action": action, "dedup_key": "db-primary",
            "payload": {"summary": "the primary database is down", "source": "db1", "severity": "critical"}});
        s.req(Method::POST, "/api/v1/integrations/pagerduty/enqueue", &tok).json(&body).send()
    };
    let pages_to = |who: &str| smtp.messages().iter().filter(|m| m.contains(&format!("{who}@example.com"))).count();
    let res = send("trigger").await.unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["incident"].as_i64().unwrap();
    smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(10)).await;
    // Nobody acknowledges: the second step pages bob.
    smtp.wait_for(|m| m.contains("bob@example.com"), Duration::from_secs(10)).await;
    assert_eq!(send("resolve").await.unwrap().status(), 202);
    assert_eq!(s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await["status"], "resolved");

    // Within the window: the same incident, reopened, paging from step 1 (alice) again, then step 2.
    let res = send("trigger").await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["incident"], id, "the same incident");
    let v = s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await;
    assert_eq!(v["status"], "triggered", "{v}");
    assert!(v["resolved_at"].is_null() && v["resolved_by"].is_null(), "{v}");
    let reopened = events(&s, &s.admin, "incident.reopened").await;
    assert_eq!(reopened.len(), 1, "{reopened:?}");
    assert_eq!(reopened[0]["data"]["incident"], id);
    assert!(
        eventually(Duration::from_secs(10), || async { pages_to("alice") == 2 }).await,
        "alice is paged again on the reopen"
    );
    assert!(eventually(Duration::from_secs(10), || async { pages_to("bob") == 2 }).await, "and bob after the wait");
    let steps: Vec<i64> = events(&s, &s.admin, "incident.escalated")
        .await
        .iter()
        .rev()
        .filter(|e| e["data"]["incident"] == id)
        .map(|e| e["data"]["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [0, 1, 0, 1], "the reopened incident escalates from its first step again");
    let triggered = events(&s, &s.admin, "incident.triggered").await;
    assert_eq!(triggered.len(), 1, "a reopen is not a new trigger: {triggered:?}");

    // After the window: a new incident with the same key.
    assert_eq!(send("resolve").await.unwrap().status(), 202);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let res = send("trigger").await.unwrap();
    let newer = res.json::<Value>().await.unwrap()["incident"].as_i64().unwrap();
    assert_ne!(newer, id, "a key fired after the reopen window opens a new incident");
    let v = s.get_json(&format!("/api/v1/incidents/{newer}"), &s.admin).await;
    assert_eq!(v["status"], "triggered");
    assert_eq!(v["key"], "pagerduty:db-primary");
    assert_eq!(s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await["status"], "resolved");
    assert_eq!(events(&s, &s.admin, "incident.triggered").await.len(), 2);
    assert_eq!(events(&s, &s.admin, "incident.reopened").await.len(), 1);
}

/// `[incidents] ack_timeout`: an acknowledgement that is not followed by a resolution in time re-arms the
/// escalation: `incident.escalated` with `rearmed`, and the first step pages again.
#[tokio::test]
async fn an_acknowledgement_that_times_out_rearms_the_escalation() {
    let smtp = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &smtp.addr(), "1m");
    let text = std::fs::read_to_string(&path).unwrap().replace("ack_timeout = \"1h\"", "ack_timeout = \"2s\"");
    std::fs::write(&path, text).unwrap();
    let s = Server::start_with_config(&path).await;
    let body = json!({"summary": "queue is backing up", "escalation": "www", "key": "queue-depth"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();
    smtp.wait_for(|m| m.contains("alice@example.com"), Duration::from_secs(10)).await;
    let res = s.req(Method::POST, &format!("/api/v1/incidents/{id}/ack"), &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let acked_at = std::time::Instant::now();

    let rearmed = eventually(Duration::from_secs(10), || async {
        events(&s, &s.admin, "incident.escalated").await.iter().any(|e| e["data"]["rearmed"] == true)
    })
    .await;
    assert!(rearmed, "the acknowledgement timed out");
    assert!(acked_at.elapsed() >= Duration::from_millis(1500), "re-armed before the timeout: {:?}", acked_at.elapsed());
    let pages = || smtp.messages().iter().filter(|m| m.contains("alice@example.com")).count();
    assert!(eventually(Duration::from_secs(10), || async { pages() == 2 }).await, "alice is paged again");
    let v = s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await;
    assert_eq!(v["status"], "triggered", "{v}");
    let esc: Vec<&Value> =
        v["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == "incident.escalated").collect();
    let shape: Vec<(bool, Option<i64>)> =
        esc.iter().map(|e| (e["data"]["rearmed"] == true, e["data"]["step"].as_i64())).collect();
    assert_eq!(shape, [(false, Some(0)), (true, None), (false, Some(0))], "{esc:?}");
    // Acknowledged again, it holds again for the timeout.
    let res = s.req(Method::POST, &format!("/api/v1/incidents/{id}/ack"), &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await["status"], "acknowledged");

    // A ticket names a policy but never pages: its acknowledgement timing out pages nobody and leaves it
    // acknowledged.
    let body = json!({"summary": "certificate expires in 20 days", "escalation": "www", "severity": "ticket"});
    let res = s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let ticket = res.json::<Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();
    let res = s.req(Method::POST, &format!("/api/v1/incidents/{ticket}/ack"), &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let v = s.get_json(&format!("/api/v1/incidents/{ticket}"), &s.admin).await;
    assert_eq!(v["status"], "acknowledged", "{v}");
    assert!(on_timeline_kind(&v, "incident.escalated").is_empty(), "a ticket never escalates: {v}");
    assert!(!smtp.messages().iter().any(|m| m.contains("certificate expires")), "a ticket never pages");
}

fn on_timeline_kind<'v>(v: &'v Value, kind: &str) -> Vec<&'v Value> {
    v["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).collect()
}

/// A drill's `command` runs on a `[[hosts]]` host (here a `local` one, in its root, with the builds' clean
/// environment and user): its output is in the journal, a failing command fails the action and stops the method while the
/// rollbacks still run, and a command naming a host crew.toml lacks is refused before anything runs.
#[tokio::test]
async fn a_drill_runs_commands_on_its_hosts_and_names_an_unknown_one() {
    let a = crate::deploy::app();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(a.repo.join("drills")).unwrap();
    crate::deploy::commit(
        &a.repo,
        "drills/restart.toml",
        "title = \"Restart the workers\"\n\
         [[method]]\nname = \"stop a worker\"\nhost = \"web1\"\ncommand = \"echo stopped > worker.state && echo worker 7 stopped\"\n\
         [[method]]\nname = \"a step that fails\"\nhost = \"web1\"\ncommand = \"echo broken >&2; exit 3\"\n\
         [[method]]\nname = \"never reached\"\nhost = \"web1\"\ncommand = \"echo reached > reached\"\n\
         [[rollbacks]]\nname = \"start it again\"\nhost = \"web1\"\ncommand = \"echo started > worker.state\"\ntimeout = \"5s\"\n",
        "a drill with commands",
    );
    crate::deploy::commit(
        &a.repo,
        "drills/nowhere.toml",
        "title = \"x\"\n[[method]]\nname = \"on a stranger\"\nhost = \"db9\"\ncommand = \"true\"\n",
        "a drill on an unknown host",
    );
    crate::deploy::commit(
        &a.repo,
        "drills/hostless.toml",
        "title = \"x\"\n[[method]]\nname = \"where?\"\ncommand = \"true\"\n",
        "a command without a host",
    );
    let hosts = format!(
        "[[hosts]]\nname = \"web1\"\naddress = \"local\"\nroles = [\"web\"]\nroot = \"{}\"\n",
        root.path().display()
    );
    let path = a.with(&hosts);
    let s = Server::start_with_config(&path).await;
    let list = s.get_json("/api/v1/drills", &s.admin).await;
    let error =
        |name: &str| list["drills"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap()["error"].clone();
    assert!(
        error("nowhere").as_str().unwrap().contains("drills/nowhere.toml: method[0].host: no host `db9`"),
        "{list}"
    );
    assert!(error("hostless").as_str().unwrap().contains("method[0].host: a command runs on a host"), "{list}");
    let res = s.req(Method::POST, "/api/v1/drills/nowhere/run", &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 422);

    let res = s.req(Method::POST, "/api/v1/drills/restart/run", &s.admin).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let done =
        eventually(Duration::from_secs(20), || async { !events(&s, &s.admin, "drill.finished").await.is_empty() })
            .await;
    assert!(done);
    let j = events(&s, &s.admin, "drill.finished").await.remove(0);
    let method = j["data"]["method"].as_array().unwrap();
    assert_eq!(method.len(), 2, "the method stops at the failing command: {method:?}");
    assert_eq!(method[0]["ok"], true);
    let said = method[0]["result"].as_str().unwrap();
    assert!(said.contains("worker 7 stopped"), "the command's output is in the journal: {said}");
    assert_eq!(method[1]["ok"], false);
    assert!(method[1]["result"].as_str().unwrap().contains("broken"), "{method:?}");
    assert_eq!(j["data"]["rollbacks"][0]["ok"], true, "{j}");
    assert_eq!(std::fs::read_to_string(root.path().join("worker.state")).unwrap(), "started\n");
    assert!(!root.path().join("reached").exists());
}

/// The page of a signed-in person: signs in with `token` (no browser) and reads `path`.
async fn page(s: &Server, token: &str, path: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = http.post(format!("{}/signin", s.url)).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let res = http.get(format!("{}{path}", s.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

/// A `ticket` alert (it pages nobody) on a series that staging's watch judges, just after mo's deploy there:
/// mo alone is emailed, saying which deploy; at resolve the postmortem carries the series as an SVG graph with
/// the deploy's marker and the threshold, and its page lets that graph through its allow-list but nothing a
/// person writes into the Markdown.
#[tokio::test]
async fn an_alert_on_a_watched_series_tells_the_deployer_and_the_postmortem_draws_the_series() {
    let smtp = SmtpSink::start().unwrap();
    let a = crate::deploy::app();
    let scratch = tempfile::tempdir().unwrap();
    let people = std::fs::read_to_string(config(scratch.path(), &smtp.addr(), "1m")).unwrap();
    let path = a.with(&format!(
        "{people}\n[people.mo]\nemail = \"mo@example.com\"\nnotify = [\"email\"]\n\n[metrics]\nflush = \"1s\"\n\n\
         [[alerts]]\nname = \"errors\"\nseries = \"shop.errors\"\nstat = \"count\"\nop = \">\"\nthreshold = 5\n\
         for = \"1s\"\nseverity = \"ticket\"\nsummary = \"shop errors <b>high</b>\"\n\n\
         [environments.staging.watch]\nwindow = \"2s\"\ninterval = \"1s\"\ndry_run = true\nseries = [{{ name = \"shop.errors\" }}]\n"
    ));
    let s = Server::start_with_statsd(&path).await;
    let mo = s.token("mo", "member").await;
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = s.statsd.clone().unwrap();
    // A quiet series, then mo's deploy, then errors over the threshold.
    for _ in 0..4 {
        udp.send_to(b"shop.errors:1|c", &statsd).unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let deploy = crate::deploy::deploy_staging(&s, &mo).await;
    for _ in 0..16 {
        udp.send_to(b"shop.errors:4|c\nshop.errors:4|c", &statsd).unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let opened = eventually(Duration::from_secs(15), || async {
        !s.get_json("/api/v1/incidents", &s.admin).await["incidents"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(opened, "the alert opened an incident");
    let inc = s.get_json("/api/v1/incidents", &s.admin).await["incidents"][0].clone();
    let id = inc["id"].as_i64().unwrap();
    assert_eq!(inc["severity"], "ticket");

    // The deployer is told, with the deploy; nobody on call is paged for a ticket.
    let mail = smtp.wait_for(|m| m.contains("mo@example.com"), Duration::from_secs(10)).await;
    assert!(mail.contains(&format!("deploy #{deploy} to staging")) && mail.contains("shop.errors"), "{mail}");
    let esc = events(&s, &s.admin, "incident.escalated").await;
    let told = esc.iter().find(|e| e["data"]["deployer"] == "mo").expect("the deployer is told");
    assert_eq!(told["data"]["deploy"], deploy);
    assert_eq!(told["data"]["watched"], "shop.errors");
    assert!(told["summary"].as_str().unwrap().contains(&format!("deploy #{deploy} to staging")), "{told}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!smtp.messages().iter().any(|m| m.contains("alice@example.com")), "a ticket pages nobody on call");

    // Resolved (by hand, or already by the alert itself once the errors stopped: a loaded machine takes longer
    // to get here): the draft draws the series over its window.
    let res = s.req(Method::POST, &format!("/api/v1/incidents/{id}/resolve"), &s.admin).send().await.unwrap();
    let status = res.status().as_u16();
    if status == 409 {
        let inc = s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await;
        assert_eq!(inc["status"], "resolved", "409 only because the alert resolved it first: {inc}");
    } else {
        assert_eq!(status, 200);
    }
    let pm_path = format!("/api/v1/incidents/{id}/postmortem");
    let drafted = eventually(Duration::from_secs(10), || async {
        s.req(Method::GET, &pm_path, &s.admin).send().await.unwrap().status() == 200
    })
    .await;
    assert!(drafted, "a postmortem is drafted at resolve");
    let md = s.get_json(&pm_path, &s.admin).await["markdown"].as_str().unwrap().to_string();
    let svg = md.split("\n<svg").nth(1).map(|r| format!("<svg{}", r.split("</svg>").next().unwrap())).expect(&md);
    let points = svg.split("<polyline").nth(1).and_then(|p| p.split("points=\"").nth(1)).expect(&svg);
    let n = points.split('"').next().unwrap().split(' ').count();
    // Each point of the line is a circle whose title is its value: the series' own figures, as the metrics API
    // gives them over the same window (the incident's context, 30 minutes by default, so the same buckets).
    let drawn: Vec<f64> = svg
        .split("<circle")
        .skip(1)
        .filter_map(|c| c.split("<title>").nth(1)?.split(" at ").next()?.parse().ok())
        .collect();
    let stored = s.get_json("/api/v1/metrics/query?name=shop.errors&stat=count&from=-30m", &s.admin).await;
    let real: Vec<f64> =
        stored["series"][0]["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert_eq!(drawn.len(), n, "a circle for each point of the line: {svg}");
    assert!(n >= 4 && n <= real.len(), "{n} points drawn, {} stored: {svg}", real.len());
    let max = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(max(&drawn), max(&real), "the peak is the series' own: {drawn:?} {real:?}");
    assert!(max(&drawn) > 5.0);
    assert!(svg.contains("class=\"marker deploy\"") && svg.contains(&format!("href=\"/deploys/{deploy}\"")), "{svg}");
    assert!(svg.contains("class=\"threshold\""), "{svg}");

    // The page shows the graph as markup, and what people write into the Markdown as text.
    let html = page(&s, &s.admin, &format!("/incidents/{id}/postmortem")).await;
    let shown = html.split("class=\"markdown postmortem\"").nth(1).unwrap();
    assert!(shown.contains("<svg ") && shown.contains("class=\"graph\"") && shown.contains("<polyline"), "{shown}");
    let edited = format!(
        "{md}\n<svg onload=\"alert(1)\">\n<text>hi</text></svg>\n\n<svg class=\"graph\">\n<title>&lt;script&gt;x</title><a href=\"javascript:alert(2)\"></a></svg>\n\n<script>alert(3)</script>\n"
    );
    let res = s.req(Method::PUT, &pm_path, &s.admin).json(&json!({"markdown": edited})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = page(&s, &s.admin, &format!("/incidents/{id}/postmortem")).await;
    let shown = html.split("class=\"markdown postmortem\"").nth(1).unwrap().split("<form").next().unwrap();
    assert!(shown.contains("<polyline"), "crew's graph still shows");
    for bad in ["<svg onload", "<script", "<a href=\"javascript:"] {
        assert!(!shown.contains(bad), "{bad} reached the page: {shown}");
    }
    assert!(shown.contains("&lt;svg onload=") && shown.contains("&lt;script&gt;alert(3)"), "shown as text: {shown}");
    assert!(!html.contains("<b>high</b>"), "the alert's summary is text everywhere");
}
