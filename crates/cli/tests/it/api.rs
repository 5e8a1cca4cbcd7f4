//! The HTTP API against a real `crew serve`: health, roles, the timeline's filters, search and paging, bad
//! input, live streams, durability, replicas on one PostgreSQL.

use crate::harness::{eventually, Server};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn health_needs_no_token() {
    let s = Server::start().await;
    let v: Value = reqwest::get(format!("{}/api/v1/health", s.url)).await.unwrap().json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn writes_are_events_naming_the_actor() {
    let s = Server::start().await;
    let alice = s.token("alice", "member").await;
    // Used once first, so the server has it at hand when it is revoked.
    assert_eq!(s.req(Method::GET, "/api/v1/events", &alice).send().await.unwrap().status(), 200);
    let res = s.req(Method::DELETE, "/api/v1/tokens/alice", &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = s.req(Method::GET, "/api/v1/events", &alice).send().await.unwrap();
    assert_eq!(res.status(), 401, "a revoked token stops working at once");
    let v = s.get_json("/api/v1/events?kind=token", &s.admin).await;
    let lines: Vec<(String, String, String)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["actor"]["name"].as_str().unwrap().into(),
                e["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("token.revoked", "admin", "token:alice"),
        ("token.created", "admin", "token:alice"),
        ("token.created", "crew", "token:admin"),
    ];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(lines, want);
    let e = &v["events"][0];
    assert_eq!(e["actor"]["via"], "api");
    assert!(e["at"].as_str().unwrap().ends_with('Z'));
    // Recording an event: the caller is the actor, whatever the body says.
    let mo = s.token("mo", "member").await;
    let res = s
        .req(Method::POST, "/api/v1/events", &mo)
        .json(&json!({"kind": "note", "summary": "hi", "actor": "someone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "unknown fields are refused");
    let e = s.record(&mo, json!({"kind": "note", "subject": "www", "summary": "hi", "data": {"n": 1}, "links": [{"rel": "doc", "href": "/timeline"}]})).await;
    assert_eq!(e["actor"], json!({"name": "mo", "via": "api"}));
    let again = s.get_json(&format!("/api/v1/events/{}", e["id"].as_str().unwrap()), &mo).await;
    assert_eq!(again, e);
}

#[tokio::test]
async fn timeline_filters_search_and_pages() {
    let s = Server::start().await;
    let m = s.token("mo", "member").await;
    for i in 0..30 {
        let (kind, subject) = match i % 3 {
            0 => ("release.started", "www/production"),
            1 => ("release.finished", "www/staging"),
            _ => ("toggle.changed", "flag:video"),
        };
        s.record(&m, json!({"kind": kind, "subject": subject, "summary": format!("step {i} of the Login fix")})).await;
    }
    let count = |v: &Value| v["events"].as_array().unwrap().len();
    assert_eq!(count(&s.get_json("/api/v1/events?kind=release&limit=100", &m).await), 20);
    assert_eq!(count(&s.get_json("/api/v1/events?kind=release.started&limit=100", &m).await), 10);
    assert_eq!(count(&s.get_json("/api/v1/events?subject=flag%3Avideo&limit=100", &m).await), 10);
    assert_eq!(count(&s.get_json("/api/v1/events?actor=mo&limit=100", &m).await), 30);
    let v = s.get_json("/api/v1/events?q=LOGIN+step+7", &m).await;
    assert_eq!(v["events"][0]["summary"], "step 7 of the Login fix");
    assert_eq!(count(&v), 1);
    assert_eq!(count(&s.get_json("/api/v1/events?q=video&kind=toggle", &m).await), 10);
    assert_eq!(count(&s.get_json("/api/v1/events?since=1h", &m).await), 32, "default limit 50; 30 + two token events");
    assert_eq!(count(&s.get_json("/api/v1/events?until=2020-01-01T00:00:00Z", &m).await), 0);
    // Paging: 32 events in pages of 12 with no overlap and no gap.
    let mut seen = Vec::new();
    let mut path = "/api/v1/events?limit=12".to_string();
    loop {
        let v = s.get_json(&path, &m).await;
        seen.extend(v["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/events?limit=12&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 32);
    seen.dedup();
    assert_eq!(seen.len(), 32);
}

#[tokio::test]
async fn bad_input_gets_400_with_the_envelope() {
    let s = Server::start().await;
    let m = s.token("mo", "member").await;
    let cases: Vec<(Method, &str, Option<&str>, &str)> = vec![
        (Method::GET, "/api/v1/events?colour=red", None, "unknown filter `colour`"),
        (Method::GET, "/api/v1/events?since=yesterday", None, "bad time `yesterday`"),
        (Method::GET, "/api/v1/events?since=100000000d", None, "bad time `100000000d`"),
        (Method::GET, "/api/v1/events?subject=a%00b", None, "control character"),
        (Method::GET, "/api/v1/events/stream?after=x", None, "filter `after`"),
        (
            Method::POST,
            "/api/v1/events",
            Some("{\"kind\": \"note\", \"summary\": \"bell\\u0007\"}"),
            "control character",
        ),
        (
            Method::POST,
            "/api/v1/events",
            Some("{\"kind\": \"note\", \"summary\": \"x\", \"data\": {\"a\": \"\\u0000\"}}"),
            "control character",
        ),
        (Method::GET, "/api/v1/events?limit=0", None, "bad limit 0"),
        (Method::GET, "/api/v1/events?limit=ten", None, "`ten` is not a number"),
        (Method::GET, "/api/v1/events?cursor=abc", None, "bad cursor `abc`"),
        (Method::GET, "/api/v1/events?kind=Deploy!", None, "bad kind filter `Deploy!`"),
        (Method::GET, "/api/v1/events/stream?limit=5", None, "unknown filter `limit`"),
        (Method::POST, "/api/v1/events", Some("{\"kind\": \"note\", "), "malformed JSON body"),
        (Method::POST, "/api/v1/events", Some("[1,2]"), "malformed JSON body"),
        (Method::POST, "/api/v1/events", Some("{\"kind\": 5, \"summary\": \"x\"}"), "at `kind`"),
        (Method::POST, "/api/v1/events", Some("{\"kind\": \"Not Valid\", \"summary\": \"x\"}"), "kind `Not Valid`"),
        (Method::POST, "/api/v1/events", Some("{\"kind\": \"note\", \"summary\": \"\"}"), "summary is empty"),
        (
            Method::POST,
            "/api/v1/events",
            Some("{\"kind\": \"note\", \"summary\": \"x\", \"data\": [1]}"),
            "data must be a JSON object",
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            Some("{\"name\": \"Bad Name\", \"role\": \"viewer\"}"),
            "bad token name `Bad Name`",
        ),
        (Method::POST, "/api/v1/tokens", Some("{\"name\": \"ok\", \"role\": \"root\"}"), "unknown role `root`"),
    ];
    let before = s.get_json("/api/v1/status", &s.admin).await["counts"].clone();
    for (method, path, body, needle) in cases {
        let tok = if path.contains("tokens") { &s.admin } else { &m };
        let mut req = s.req(method.clone(), path, tok);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 400, "{method} {path} {body:?}");
        let v: Value = res.json().await.unwrap();
        let detail = v["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{method} {path}: {detail:?} lacks {needle:?}");
    }
    let after = s.get_json("/api/v1/status", &s.admin).await["counts"].clone();
    assert_eq!(before, after, "nothing stored by bad input");
    let res = s.req(Method::GET, "/api/v1/nowhere", &m).send().await.unwrap();
    assert_eq!(res.status(), 404);
    for (method, path) in [(Method::GET, "/api/v1/events/%00"), (Method::DELETE, "/api/v1/tokens/%00")] {
        let res = s.req(method.clone(), path, &s.admin).send().await.unwrap();
        assert_eq!(res.status(), 404, "{method} {path}");
    }
    let dup = s
        .req(Method::POST, "/api/v1/tokens", &s.admin)
        .json(&json!({"name": "mo", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
}

/// Opens a live stream; returns the SSE message stream.
async fn stream(
    s: &Server,
    token: &str,
    query: &str,
    last_id: Option<&str>,
) -> impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin {
    let mut req = s.req(Method::GET, &format!("/api/v1/events/stream?{query}"), token);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Box::pin(res.bytes_stream().eventsource().filter_map(|m| async move { m.ok().filter(|m| !m.data.is_empty()) }))
}

async fn next_event(st: &mut (impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin)) -> (String, Value) {
    let m = tokio::time::timeout(Duration::from_secs(2), st.next())
        .await
        .expect("an event within 2 s")
        .expect("stream open");
    (m.id, serde_json::from_str(&m.data).unwrap())
}

#[tokio::test]
async fn live_stream_delivers_filtered_events_and_resumes() {
    let s = Server::start().await;
    let m = s.token("mo", "member").await;
    let v = s.token("vera", "viewer").await;
    let mut deploys = stream(&s, &v, "kind=release", None).await;
    let mut searched = stream(&s, &v, "q=checkout", None).await;
    s.record(&m, json!({"kind": "note", "summary": "not a release"})).await;
    s.record(
        &m,
        json!({"kind": "release.started", "subject": "www/production", "summary": "mo deploying the checkout fix"}),
    )
    .await;
    s.record(&m, json!({"kind": "release.finished", "subject": "www/production", "summary": "done"})).await;
    let (id1, e1) = next_event(&mut deploys).await;
    assert_eq!(e1["summary"], "mo deploying the checkout fix");
    let (_, e2) = next_event(&mut deploys).await;
    assert_eq!(e2["kind"], "release.finished");
    let (_, e3) = next_event(&mut searched).await;
    assert_eq!(e3["summary"], "mo deploying the checkout fix");
    // A client that reconnects with Last-Event-ID gets what it missed, then live events.
    drop(deploys);
    s.record(&m, json!({"kind": "release.failed", "subject": "www/production", "summary": "missed while away"})).await;
    let mut again = stream(&s, &v, "kind=release", Some(&id1)).await;
    assert_eq!(next_event(&mut again).await.1["kind"], "release.finished");
    assert_eq!(next_event(&mut again).await.1["summary"], "missed while away");
    s.record(&m, json!({"kind": "release.started", "summary": "live again"})).await;
    assert_eq!(next_event(&mut again).await.1["summary"], "live again");
}

#[tokio::test]
async fn a_page_resumes_after_the_newest_event_it_shows_and_revocation_ends_streams() {
    let s = Server::start().await;
    let m = s.token("mo", "member").await;
    let v = s.token("vera", "viewer").await;
    let shown = s.record(&m, json!({"kind": "note", "summary": "on the page"})).await;
    s.record(&m, json!({"kind": "note", "summary": "while the page loaded"})).await;
    // The page knows its newest event's stream id from a stream it reads; here, from a replay of everything.
    let mut all = stream(&s, &v, "kind=note", Some("1")).await;
    let (id, first) = next_event(&mut all).await;
    assert_eq!(first["id"], shown["id"]);
    let mut from_page = stream(&s, &v, &format!("kind=note&after={id}"), None).await;
    assert_eq!(next_event(&mut from_page).await.1["summary"], "while the page loaded");
    // Revoking vera's token ends her open streams.
    let res = s.req(Method::DELETE, "/api/v1/tokens/vera", &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(2), async { while from_page.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the stream ends when its token is revoked");
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_with_open_streams() {
    let mut s = Server::start().await;
    let _open = stream(&s, &s.admin.clone(), "", None).await;
    let status = s.terminate(Duration::from_secs(5)).expect("exits within 5 s although a stream is open");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_event() {
    let mut s = Server::start().await;
    let m = s.token("mo", "member").await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            s.record(&m, json!({"kind": "note", "summary": format!("acknowledged {i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    s.stop_hard(); // SIGKILL: no shutdown code runs.
    s.restart();
    let v = s.get_json("/api/v1/events?kind=note&limit=100", &m).await;
    let mut got: Vec<String> =
        v["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    got.reverse();
    assert_eq!(got, ids);
}

#[tokio::test]
async fn replicas_on_one_postgres_see_each_others_events() {
    let a = Server::start_postgres().await;
    let b = Server::start_on(a.database.as_deref().unwrap(), Some(&a.admin)).await;
    assert!(!b.data_dir.join("admin.token").exists(), "the second replica does not mint another admin token");
    let m = a.token("mo", "member").await;
    let mut on_b = stream(&b, &b.admin, "", None).await;
    let mut on_a = stream(&a, &a.admin, "", None).await;
    let written = note(&a, &m, "written on a").await;
    // b may still be announcing the token's creation, which it learned of just before its stream opened.
    let arrived = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if next_event(&mut on_b).await.1["id"] == written["id"] {
                break;
            }
        }
    })
    .await;
    assert!(arrived.is_ok(), "an event written on one replica is on the other's stream within a second");
    note(&b, &m, "written on b").await;
    let summaries = tokio::time::timeout(Duration::from_secs(2), async {
        let mut got = Vec::new();
        while got.len() < 2 {
            let e = next_event(&mut on_a).await.1;
            if e["kind"] == "note" {
                got.push(e["summary"].as_str().unwrap().to_string());
            }
        }
        got
    })
    .await
    .unwrap();
    assert_eq!(summaries, ["written on a", "written on b"]);
    // Both read the same timeline.
    assert!(
        eventually(Duration::from_secs(2), || async {
            a.get_json("/api/v1/events?kind=note", &m).await == b.get_json("/api/v1/events?kind=note", &m).await
        })
        .await
    );
    let st = b.get_json("/api/v1/status", &m).await;
    assert_eq!(st["store"], "postgres");

    // A token revoked on one replica stops working on the other (which has just used it) within a second.
    assert_eq!(b.req(Method::GET, "/api/v1/events", &m).send().await.unwrap().status(), 200);
    assert_eq!(a.req(Method::DELETE, "/api/v1/tokens/mo", &a.admin).send().await.unwrap().status(), 200);
    assert!(
        eventually(Duration::from_secs(1), || async {
            b.req(Method::GET, "/api/v1/events", &m).send().await.unwrap().status() == 401
        })
        .await,
        "the revocation reaches the other replica"
    );
}

async fn note(s: &Server, token: &str, summary: &str) -> Value {
    s.record(token, json!({"kind": "note", "summary": summary})).await
}
