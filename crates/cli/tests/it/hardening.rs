//! The security review's findings, each reproduced as the attacker would try it against a real `crew serve`:
//! streams that outlive their token, unbounded streams, half-sent requests, StatsD TCP connections that pile
//! up, links that leave the site, search words PostgreSQL refuses, a world-readable data dir, cookies over
//! HTTPS, masks that are a bare nick in effect.

use crate::harness::{eventually, Server, CREW};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

fn config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("crew.toml");
    std::fs::write(&p, text).unwrap();
    (d, p)
}

/// Opens a server-sent events stream; the response must be 200.
async fn open(s: &Server, path: &str, token: &str) -> impl futures_util::Stream<Item = eventsource_stream::Event> {
    let res = s.req(Method::GET, path, token).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.bytes_stream().eventsource().filter_map(|e| async move { e.ok() })
}

/// Whether a stream ends (the server closes it) within `within`.
async fn ends_within(
    mut st: impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin,
    within: Duration,
) -> bool {
    tokio::time::timeout(within, async { while st.next().await.is_some() {} }).await.is_ok()
}

#[tokio::test]
async fn every_stream_ends_within_a_second_of_its_tokens_revocation() {
    let s = Server::start().await;
    let app = s.token("www-app", "evaluate").await;
    let vera = s.token("vera", "viewer").await;
    let definitions = Box::pin(open(&s, "/api/v1/flags/stream", &app).await);
    let changes = Box::pin(open(&s, "/ofrep/v1/events", &app).await);
    let timeline = Box::pin(open(&s, "/api/v1/events/stream", &vera).await);
    for name in ["www-app", "vera"] {
        let res = s.req(Method::DELETE, &format!("/api/v1/tokens/{name}"), &s.admin).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(ends_within(definitions, Duration::from_secs(1)).await, "the evaluation key's definitions stream ended");
    assert!(ends_within(changes, Duration::from_secs(1)).await, "the evaluation key's OFREP event stream ended");
    assert!(ends_within(timeline, Duration::from_secs(1)).await, "the viewer's timeline stream ended");
}

#[tokio::test]
async fn live_streams_are_bounded_per_token_and_in_all() {
    let (_d, cfg) = config("[server]\nmax_streams = 3\nmax_streams_per_token = 2\n");
    let s = Server::start_with_config(&cfg).await;
    let (a, b) = (s.token("ann", "viewer").await, s.token("bob", "viewer").await);
    let first = open(&s, "/api/v1/events/stream", &a).await;
    let _second = open(&s, "/api/v1/events/stream", &a).await;
    let third = s.req(Method::GET, "/api/v1/events/stream", &a).send().await.unwrap();
    assert_eq!(third.status(), 429, "a third stream for one token");
    let v: Value = third.json().await.unwrap();
    assert!(v["errors"][0]["detail"].as_str().unwrap().contains("`ann` has 2 live streams open"), "{v}");
    let _bobs = open(&s, "/api/v1/events/stream", &b).await;
    let over = s.req(Method::GET, "/api/v1/flags/stream", &b).send().await.unwrap();
    assert_eq!(over.status(), 429, "a fourth stream in all");
    // Closing a stream gives its place back.
    drop(first);
    let back = eventually(Duration::from_secs(5), || async {
        s.req(Method::GET, "/api/v1/events/stream", &a).send().await.unwrap().status() == 200
    })
    .await;
    assert!(back, "a closed stream's place is free again");
    // Plain requests are never counted.
    assert_eq!(s.req(Method::GET, "/api/v1/events", &a).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_half_sent_request_is_cut_off_and_the_server_keeps_answering() {
    let (_d, cfg) = config("[server]\nheader_timeout = \"1s\"\n");
    let s = Server::start_with_config(&cfg).await;
    let addr = s.url.trim_start_matches("http://").to_string();
    // Half a request's headers, nothing at all, and a sign-in whose body trickles.
    let mut slow: Vec<std::net::TcpStream> = (0..30)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            match i % 3 {
                0 => c.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n").unwrap(),
                1 => {}
                _ => c
                    .write_all(b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 2000\r\n\r\ntoken=")
                    .unwrap(),
            }
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        })
        .collect();
    // Meanwhile the server answers.
    let health = reqwest::get(format!("{}/api/v1/health", s.url)).await.unwrap();
    assert_eq!(health.status(), 200);
    for c in &mut slow {
        let mut buf = [0u8; 512];
        let closed = match c.read(&mut buf) {
            Ok(0) => true,
            // A body that stopped coming is answered 408 (and the connection closed).
            Ok(n) => String::from_utf8_lossy(&buf[..n]).contains(" 408 ") || c.read(&mut buf).map_or(true, |n| n == 0),
            Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset),
        };
        assert!(closed, "a connection that never finished its request was closed");
    }
}

#[tokio::test]
async fn statsd_tcp_connections_are_capped_and_idle_ones_closed() {
    let (_d, cfg) = config("[metrics]\nflush = \"1s\"\ntcp_connections = 5\ntcp_idle = \"1s\"\n");
    let s = Server::start_with_statsd(&cfg).await;
    let statsd = s.statsd.clone().unwrap();
    let conns: Vec<std::net::TcpStream> = (0..12).map(|_| std::net::TcpStream::connect(&statsd).unwrap()).collect();
    let refused = eventually(Duration::from_secs(5), || async {
        s.get_json("/api/v1/metrics/status", &s.admin).await["tcp_refused"].as_u64().unwrap_or(0) >= 7
    })
    .await;
    assert!(refused, "connections past the cap are refused and counted");
    assert_eq!(reqwest::get(format!("{}/api/v1/health", s.url)).await.unwrap().status(), 200);
    // The idle ones are closed after a second; then new connections are taken again, and their lines counted.
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 8];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)), "closed");
    }
    let st = s.get_json("/api/v1/metrics/status", &s.admin).await;
    assert!(st["tcp_idle_closed"].as_u64().unwrap() >= 5, "{st}");
    let mut c = std::net::TcpStream::connect(&statsd).unwrap();
    c.write_all(b"shop.orders:1|c\n").unwrap();
    drop(c);
    let counted = eventually(Duration::from_secs(10), || async {
        s.get_json("/api/v1/metrics/status", &s.admin).await["lines"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(counted, "a new connection is served once the old ones are gone");
}

/// 150 idle StatsD TCP connections against a server with 96 file descriptors: the HTTP side keeps answering.
#[tokio::test]
async fn statsd_tcp_cannot_exhaust_the_servers_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let statsd = format!("127.0.0.1:{}", crew_testkit::free_port());
    let script = format!(
        "ulimit -n 96 && exec {CREW} serve --listen 127.0.0.1:0 --statsd {statsd} --data-dir {}",
        dir.path().join("data").display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .env_remove("CREW_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("crew listening on ").unwrap().to_string();
    let conns: Vec<_> = (0..150).filter_map(|_| std::net::TcpStream::connect(&statsd).ok()).collect();
    assert!(conns.len() >= 100, "the kernel took the connections");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = reqwest::Client::new()
        .get(format!("{url}/api/v1/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.ok(), Some(200), "health answers while StatsD TCP is flooded");
}

#[tokio::test]
async fn links_stay_on_the_site_and_long_search_words_are_400s_on_both_engines() {
    for s in [Server::start().await, Server::start_postgres().await] {
        let m = s.token("mo", "member").await;
        let body = json!({"kind": "note", "summary": "x", "links": [{"rel": "x", "href": "/\\evil.example"}]});
        let res = s.req(Method::POST, "/api/v1/events", &m).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 400, "a backslash path is another site to a browser");
        let word = "a".repeat(3000);
        let res = s.req(Method::GET, &format!("/api/v1/events?q={word}"), &m).send().await.unwrap();
        assert_eq!(res.status(), 400);
        let v: Value = res.json().await.unwrap();
        assert!(v["errors"][0]["detail"].as_str().unwrap().contains("at most 100"), "{v}");
    }
}

#[tokio::test]
async fn the_data_dir_and_database_are_private_and_the_admin_token_is_on_disk() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.data_dir), 0o700, "data dir");
    assert_eq!(mode(&s.data_dir.join("crew.db")), 0o600, "crew.db");
    assert_eq!(mode(&s.data_dir.join("admin.token")), 0o600, "admin.token");
    assert!(!s.data_dir.join("admin.tmp").exists());
    // The token on disk is the one the store knows.
    assert_eq!(s.req(Method::GET, "/api/v1/tokens", &s.admin).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_crew_is_served_over_https() {
    let (_d, cfg) = config("[server]\npublic_url = \"https://crew.example.com\"\n");
    let s = Server::start_with_config(&cfg).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = http.post(format!("{}/signin", s.url)).form(&[("token", s.admin.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let plain = Server::start().await;
    let res = http.post(format!("{}/signin", plain.url)).form(&[("token", plain.admin.as_str())]).send().await.unwrap();
    assert!(!res.headers()["set-cookie"].to_str().unwrap().contains("Secure"), "plain HTTP keeps working");
    let (_d2, bad) = config("[server]\npublic_url = \"crew.example.com\"\n");
    let out = std::process::Command::new(CREW)
        .args(["serve", "--statsd", "off", "--listen", "127.0.0.1:0", "--config"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(_d2.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("public_url"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_mask_that_matches_any_host_is_refused() {
    let s = Server::start().await;
    s.token("alice", "member").await;
    for mask in ["alice!*@*", "alice!alice@*"] {
        let res = s
            .req(Method::POST, "/api/v1/chat/links", &s.admin)
            .json(&json!({"identity": mask, "user": "alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{mask}");
    }
    let ok = s
        .req(Method::POST, "/api/v1/chat/links", &s.admin)
        .json(&json!({"identity": "alice!*@*.example.com", "user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_server_that_knows_its_hosts_takes_reports_of_those_alone() {
    let (_d, cfg) = config("[[hosts]]\nname = \"web1\"\naddress = \"local\"\nroles = [\"web\"]\n");
    let s = Server::start_with_config(&cfg).await;
    let m = s.token("mo", "member").await;
    let report = |host: &str| json!({"outcome": "unreachable", "host": host, "reason": "no route", "during": "check"});
    let res = s.req(Method::POST, "/api/v1/infra/reports", &m).json(&report("made-up")).send().await.unwrap();
    assert_eq!(res.status(), 404, "a host this server does not manage");
    let res = s.req(Method::POST, "/api/v1/infra/reports", &m).json(&report("web1")).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let v = s.get_json("/api/v1/events?kind=infra", &m).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    assert_eq!(v["events"][0]["subject"], "host:web1");
}
