//! Runbooks end to end: Markdown committed under `runbooks/` in the app's repository, served rendered by the API
//! and as pages (raw HTML as text, links kept inside crew), never a file outside `runbooks/`; an alert naming a
//! runbook the repository lacks stops `crew serve` naming the key; the robot answers `!runbook NAME`.

use crate::deploy::{app, App};
use crate::domains::sign_in;
use crate::harness::{Server, CREW};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

pub const CHECKOUT: &str = "# Checkout errors\n\n\
<script>alert('pwned')</script>\n\n\
## Meaning\nPayments fail at the last step. See [the database failover](db/failover.md#steps).\n\n\
## Impact\nNo orders; [click](javascript:alert(1)) nothing.\n\n\
## Diagnosis\nLook at [the errors](/graphs?q=shop.errors) and the [status page](https://status.example.com).\n\n\
## Mitigation\n1. Roll back the last deploy: `!rollback production`\n2. Switch off the new checkout: `!flag checkout off`\n\
3. Tell #ops.\n4. Not said by the robot.\n";

const FAILOVER: &str =
    "# Database failover\n\n## Meaning\nThe primary is down.\n\n## Diagnosis\nCheck replication.\n\n\
## Mitigation\nPromote the replica, then read [checkout](../checkout.md).\n";

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh").args(["-c", script]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Commits `runbooks/checkout.md` (every section) and `runbooks/db/failover.md` (no Impact) to the app's trunk.
pub fn commit_runbooks(a: &App) {
    std::fs::create_dir_all(a.repo.join("runbooks/db")).unwrap();
    std::fs::write(a.repo.join("runbooks/checkout.md"), CHECKOUT).unwrap();
    std::fs::write(a.repo.join("runbooks/db/failover.md"), FAILOVER).unwrap();
    sh(&a.repo, "git add -A && git -c user.name=A -c user.email=a@e commit -qm 'runbooks'");
}

fn alert(name: &str, runbook: &str) -> String {
    format!(
        "\n[[alerts]]\nname = \"{name}\"\nseries = \"shop.errors\"\nstat = \"count\"\nop = \">\"\n\
         threshold = 5\nsummary = \"checkout errors\"\nrunbook = \"{runbook}\"\n"
    )
}

async fn get(s: &Server, path: &str, token: &str) -> (StatusCode, String) {
    let res = s.req(Method::GET, path, token).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// A request sent byte for byte, so no client tidies `..` out of its path first.
async fn raw_get(s: &Server, path: &str, auth: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn runbooks_are_served_rendered_from_the_repository() {
    let a = app();
    commit_runbooks(&a);
    let cfg =
        a.with(&format!("{}{}", alert("checkout", "runbooks/checkout.md"), alert("db", "https://wiki.example.com/db")));
    let s = Server::start_with_config(&cfg).await;
    let vera = s.token("vera", "viewer").await;

    // The list: every runbook with its title and the sections it lacks.
    let v = s.get_json("/api/v1/runbooks", &vera).await;
    assert_eq!(
        v["runbooks"],
        json!([
            {"path": "runbooks/checkout.md", "title": "Checkout errors", "missing_sections": [], "url": "/runbooks/checkout.md"},
            {"path": "runbooks/db/failover.md", "title": "Database failover", "missing_sections": ["Impact"], "url": "/runbooks/db/failover.md"},
        ])
    );

    // One runbook, by path or short name: its Markdown and its HTML, with raw HTML shown as text.
    for name in ["checkout", "checkout.md", "runbooks/checkout.md"] {
        let v = s.get_json(&format!("/api/v1/runbooks/{name}"), &vera).await;
        assert_eq!(v["path"], "runbooks/checkout.md", "{name}");
        assert_eq!(v["title"], "Checkout errors");
        assert_eq!(v["markdown"], CHECKOUT);
        assert_eq!(v["missing_sections"], json!([]));
        assert_eq!(v["url"], "/runbooks/checkout.md");
        let html = v["html"].as_str().unwrap();
        assert!(html.contains("&lt;script&gt;alert('pwned')&lt;/script&gt;") && !html.contains("<script"), "{html}");
        assert!(html.contains("<a href=\"/runbooks/db/failover.md#steps\">the database failover</a>"), "{html}");
        assert!(
            html.contains("<a href=\"/graphs?q=shop.errors\">") && html.contains("href=\"https://status.example.com\"")
        );
        assert!(!html.contains("javascript:") && html.contains("No orders; click nothing."), "{html}");
        assert!(html.contains("<h2 id=\"mitigation\">Mitigation</h2>"), "{html}");
    }
    let v = s.get_json("/api/v1/runbooks/db/failover", &vera).await;
    assert!(v["html"].as_str().unwrap().contains("<a href=\"/runbooks/checkout.md\">checkout</a>"), "{v}");

    // A runbook the branch lacks: 404 naming it. Names that would leave runbooks/: refused, nothing read.
    let (status, body) = get(&s, "/api/v1/runbooks/nope", &vera).await;
    assert_eq!(status, 404);
    assert!(body.contains("no runbook runbooks/nope.md in"), "{body}");
    for path in [
        "/api/v1/runbooks/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/runbooks/runbooks%2F..%2Fcrew.toml",
        "/api/v1/runbooks/..%2Fcrew.toml",
        "/api/v1/runbooks/%2E%2E%2Fcrew.toml",
        "/api/v1/runbooks/db%5C..%5C..%5Ccrew.toml",
    ] {
        let (status, body) = get(&s, path, &vera).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(!body.contains("[build]") && !body.contains("root:"), "{path}: {body}");
        assert!(body.contains("is not a runbook"), "{path}: {body}");
    }
    // The same sent byte for byte, `..` and all, to the API and to the pages.
    let session = sign_in(&s, &vera).await;
    let bearer = format!("authorization: Bearer {vera}");
    let cookie = format!("cookie: {}", session.cookie);
    for (path, auth) in [
        ("/api/v1/runbooks/runbooks/../crew.toml", &bearer),
        ("/api/v1/runbooks/../../../etc/passwd", &bearer),
        ("/runbooks/../crew.toml", &cookie),
        ("/runbooks/runbooks/../../crew.toml", &cookie),
    ] {
        let res = raw_get(&s, path, auth).await;
        let status = res.split(' ').nth(1).unwrap_or_default().to_string();
        assert_eq!(status, "400", "{path}: {res}");
        assert!(res.contains("is not a runbook"), "{path}: {res}");
        assert!(!res.contains("[build]") && !res.contains("root:"), "{path}: {res}");
    }

    // The pages, in the site's layout.
    let page = |path: &str| {
        let req = reqwest::Client::new().get(format!("{}{path}", s.url)).header("cookie", &session.cookie);
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let (status, list) = page("/runbooks").await;
    assert_eq!(status, 200);
    assert!(list.contains("<a href=\"/runbooks/checkout.md\">Checkout errors</a>"), "{list}");
    assert!(list.contains("no Impact") && list.contains("<nav>"), "{list}");
    let (status, one) = page("/runbooks/checkout.md").await;
    assert_eq!(status, 200);
    assert!(one.contains("<title>Checkout errors · crew</title>"), "{one}");
    assert!(one.contains("<article class=\"runbook\"><h1 id=\"checkout-errors\">Checkout errors</h1>"), "{one}");
    assert!(one.contains("&lt;script&gt;") && !one.contains("<script>alert"), "{one}");
    let (status, failover) = page("/runbooks/db/failover.md").await;
    assert_eq!(status, 200);
    assert!(failover.contains("This runbook has no Impact section."), "{failover}");
    let (status, missing) = page("/runbooks/nope.md").await;
    assert_eq!(status, 404);
    assert!(missing.contains("no runbook runbooks/nope.md"), "{missing}");
    let (status, bad) = page("/runbooks/..%2Fcrew.toml").await;
    assert_eq!(status, 400);
    assert!(!bad.contains("[build]"), "{bad}");

    // The Status page and API warn of the runbook lacking a section.
    let v = s.get_json("/api/v1/status", &vera).await;
    assert_eq!(v["warnings"], json!(["runbooks/db/failover.md has no Impact section"]));
    let (_, status_page) = page("/status").await;
    assert!(status_page.contains("runbooks/db/failover.md has no Impact section"), "{status_page}");

    // The robot's command over HTTP: the Mitigation's first three lines and the page's link.
    let said = s.req(Method::POST, "/api/v1/chat/command", &vera).json(&json!({"text": "!runbook checkout"}));
    let said: Value = said.send().await.unwrap().json().await.unwrap();
    let want = format!(
        "Roll back the last deploy: !rollback production\nSwitch off the new checkout: !flag checkout off\nTell #ops.\n{}/runbooks/checkout.md",
        s.url
    );
    assert_eq!(said["reply"], want);
    let res = s.req(Method::POST, "/api/v1/chat/command", &vera).json(&json!({"text": "!runbook ../crew.toml"}));
    assert_eq!(res.send().await.unwrap().status(), 400);

    // A new commit on trunk is what is served next; what is not committed is never read.
    std::fs::write(a.repo.join("runbooks/db/failover.md"), "# Failover, v2\n").unwrap();
    assert_eq!(s.get_json("/api/v1/runbooks/db/failover", &vera).await["title"], "Database failover");
    sh(&a.repo, "git -c user.name=A -c user.email=a@e commit -qam 'v2'");
    assert_eq!(s.get_json("/api/v1/runbooks/db/failover", &vera).await["title"], "Failover, v2");
}

#[test]
fn an_alert_naming_a_missing_runbook_stops_the_start_naming_the_key() {
    for (runbook, says) in [
        ("runbooks/nope.md", "alerts[0].runbook: runbooks/nope.md does not exist in {repo} (branch main)"),
        ("nope", "alerts[0].runbook: runbooks/nope.md does not exist in {repo} (branch main)"),
        ("../crew.toml", "alerts[0].runbook: `../crew.toml` is not a runbook"),
    ] {
        let a = app();
        commit_runbooks(&a);
        let cfg = a.with(&alert("checkout", runbook));
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(CREW)
            .args(["serve", "--listen", "127.0.0.1:0", "--statsd", "off", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{runbook}: {err}");
        assert!(out.stdout.is_empty(), "never listened: {}", String::from_utf8_lossy(&out.stdout));
        let says = says.replace("{repo}", &a.repo.display().to_string());
        assert!(err.contains(&format!("{}: {says}", cfg.display())), "{runbook}: {err}");
    }
}

#[tokio::test]
async fn the_robot_answers_runbook_with_the_mitigation_in_the_room() {
    let irc = crew_testkit::Ngircd::start().unwrap();
    let a = app();
    commit_runbooks(&a);
    let chat = std::fs::read_to_string(crate::chat::config(a.repo.parent().unwrap(), &irc, false)).unwrap();
    let cfg = a.with(&chat);
    let s = Server::start_with_config(&cfg).await;
    assert!(crate::chat::robot_in(&s, "#ops").await, "the robot joins #ops");
    let mut eve = crate::chat::Person::join(irc.port, "eve", "#ops").await;
    // Reading a runbook needs no crew user: anyone in the room may.
    eve.say("PRIVMSG #ops :!runbook checkout").await;
    let first = eve.wait(|l| l.starts_with(":crew!") && l.contains("PRIVMSG #ops :"), "the answer").await;
    assert!(first.ends_with("PRIVMSG #ops :Roll back the last deploy: !rollback production"), "{first}");
    eve.wait(|l| l.ends_with("PRIVMSG #ops :Switch off the new checkout: !flag checkout off"), "line 2").await;
    eve.wait(|l| l.ends_with("PRIVMSG #ops :Tell #ops."), "line 3").await;
    let link = eve.wait(|l| l.contains("PRIVMSG #ops :"), "the link").await;
    assert!(link.ends_with(&format!("PRIVMSG #ops :{}/runbooks/checkout.md", s.url)), "{link}");
    eve.say("PRIVMSG #ops :!runbook nope").await;
    let r = eve.wait(|l| l.contains("PRIVMSG #ops :eve:"), "the refusal").await;
    assert!(r.contains("no runbook runbooks/nope.md"), "{r}");
}
