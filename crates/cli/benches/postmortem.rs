//! Incidents at size, through a real `crew serve` on loopback: the postmortem of an incident with 10,000 events
//! in its window drafted after resolve (goal ≤ 2 s), and an incident's page with 500 changes in its context
//! (goal ≤ 100 ms), each the median and worst of 5.
//!
//!   cargo bench -p crew --bench postmortem

#[allow(dead_code)]
#[path = "../tests/it/harness.rs"]
mod harness;

use harness::Server;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn fill(s: &Server, n: usize) {
    // Ten writers at once, people's notes: every one is in the window.
    let per = n / 10;
    let mut tasks = Vec::new();
    for w in 0..10 {
        let (url, token) = (s.url.clone(), s.admin.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..per {
                let body = json!({"kind": "note", "subject": "load", "summary": format!("note {w}-{i}")});
                let res =
                    http.post(format!("{url}/api/v1/events")).bearer_auth(&token).json(&body).send().await.unwrap();
                assert_eq!(res.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn report(what: &str, mut ms: Vec<f64>, goal: f64) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (median, worst) = (ms[ms.len() / 2], ms[ms.len() - 1]);
    println!(
        "{what}: median {median:.1} ms, worst {worst:.1} ms (goal ≤ {goal} ms) {}",
        if worst <= goal { "ok" } else { "MISSED" }
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crew.toml");
    std::fs::write(&path, "[incidents]\ncontext = \"2h\"\n").unwrap();
    let s = Server::start_with_config(&path).await;
    let http = reqwest::Client::new();
    let t = Instant::now();
    fill(&s, 10_000).await;
    println!("10,000 events recorded in {:.1} s", t.elapsed().as_secs_f64());
    let mut draft = Vec::new();
    for round in 0..5 {
        let body = json!({"summary": format!("bench {round}"), "severity": "ticket"});
        let v: Value =
            s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap().json().await.unwrap();
        let id = v["incident"]["id"].as_i64().unwrap();
        let t = Instant::now();
        let res = s.req(Method::POST, &format!("/api/v1/incidents/{id}/resolve"), &s.admin).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let pm: Value = s.get_json(&format!("/api/v1/incidents/{id}/postmortem"), &s.admin).await;
        draft.push(t.elapsed().as_secs_f64() * 1000.0);
        let lines = pm["markdown"].as_str().unwrap().lines().filter(|l| l.contains("`note`")).count();
        assert!(lines >= 10_000, "the draft lists every event of the window: {lines}");
    }
    report("postmortem of 10,000 events, resolve → draft", draft, 2000.0);

    // 500 flag changes in the context of one incident.
    for i in 0..500 {
        let body = json!({"knob": "rollout", "percent": i % 100, "reason": "bench"});
        let res =
            s.req(Method::POST, &format!("/api/v1/flags/f{}/knob", i % 50), &s.admin).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let body = json!({"summary": "many changes", "severity": "ticket"});
    let v: Value =
        s.req(Method::POST, "/api/v1/incidents", &s.admin).json(&body).send().await.unwrap().json().await.unwrap();
    let id = v["incident"]["id"].as_i64().unwrap();
    let view = s.get_json(&format!("/api/v1/incidents/{id}"), &s.admin).await;
    assert_eq!(view["changes"].as_array().unwrap().len(), 500);
    // The page, signed in.
    let res = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let signin = res.post(format!("{}/signin", s.url)).form(&[("token", s.admin.as_str())]).send().await.unwrap();
    let cookie = signin.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let mut page = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = http.get(format!("{}/incidents/{id}", s.url)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        page.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(text.matches("button class=\"undo\"").count() >= 500);
    }
    report("incident page with 500 changes", page, 100.0);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
