//! From a canary's regression reaching crew to its switch-back starting, end to end on loopback: the release
//! `crew serve`, a real git repository, two `local:` hosts, and a StatsD stream (UDP) in which each host's
//! latency is tagged with its name and triples on a host that runs a release marked slow. The watch judges every
//! `interval = "5s"` (window 60 s, flush 1 s). Each trial commits a slow release and deploys it; the clock
//! starts when the canary's `current` switches to it (from then on crew receives the slower figures) and stops
//! when the deploy's log says `switching back`. Goal: ≤ one interval + 5 s = 10 s.
//!
//!   cargo bench -p crew --bench canary

#[allow(dead_code)]
#[path = "../tests/it/harness.rs"]
mod harness;

use harness::Server;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRIALS: usize = 5;

fn sh(dir: &Path, script: &str) {
    let out = std::process::Command::new("sh").args(["-c", script]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

fn page(hosts: &Path, host: &str) -> String {
    std::fs::read_to_string(hosts.join(host).join("current/index.html")).unwrap_or_default()
}

async fn deploy(s: &Server, token: &str) -> i64 {
    let r = s
        .req(reqwest::Method::POST, "/api/v1/deploys", token)
        .json(&json!({"environment": "production"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn wait_end(s: &Server, token: &str, id: i64) -> Value {
    loop {
        let d = s.get_json(&format!("/api/v1/deploys/{id}"), token).await;
        if d["status"] != "running" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, hosts) = (dir.path().join("repo"), dir.path().join("hosts"));
    std::fs::create_dir_all(&repo).unwrap();
    let toml = format!(
        r#"[app]
name = "www"
repo = "."

[build]
command = "mkdir -p dist && cp index.html dist/"
artifact = "dist"

[environments.production]
hosts = ["local:{h}/prod1", "local:{h}/prod2"]
canary = 1

[environments.production.watch]
window = "60s"
interval = "5s"
series = [{{ name = "www.latency", stat = "p99", direction = "increase" }}]

[metrics]
flush = "1s"
"#,
        h = hosts.display()
    );
    std::fs::write(repo.join("crew.toml"), toml).unwrap();
    std::fs::write(repo.join("index.html"), "v1\n").unwrap();
    sh(&repo, "git init -q -b main && git -c user.name=A -c user.email=a@e add -A && git -c user.name=A -c user.email=a@e commit -qm v1");
    let s = Server::start_with_statsd(&repo.join("crew.toml")).await;
    let token = s.token("alice", "member").await;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (statsd, hosts, stop) = (s.statsd.clone().unwrap(), hosts.clone(), stop.clone());
        std::thread::spawn(move || {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut lines = String::new();
                for host in ["prod1", "prod2"] {
                    let base = 40.0 + ((n * 37 + if host == "prod1" { 11 } else { 0 }) % 80) as f64;
                    let ms = if page(&hosts, host).contains("slow") { base * 3.0 } else { base };
                    lines.push_str(&format!("www.latency:{ms}|ms|#host:{host}\n"));
                }
                let _ = udp.send_to(lines.as_bytes(), &statsd);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let first = deploy(&s, &token).await;
    assert_eq!(wait_end(&s, &token, first).await["status"], "succeeded");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut took = vec![];
    for trial in 0..TRIALS {
        std::fs::write(repo.join("index.html"), format!("v{trial} slow\n")).unwrap();
        sh(&repo, "git -c user.name=A -c user.email=a@e commit -qam slow");
        let id = deploy(&s, &token).await;
        let switched = loop {
            if page(&hosts, "prod1").contains("slow") {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let back = loop {
            let log = s.get_json(&format!("/api/v1/deploys/{id}/log"), &token).await;
            if log["lines"].as_array().unwrap().iter().any(|l| l.as_str().unwrap_or("").contains("switching back")) {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let d = wait_end(&s, &token, id).await;
        assert_eq!(d["status"], "rolled_back", "{d}");
        let t = back - switched;
        println!("trial {trial}: regression to switch-back {:.2} s", t.as_secs_f64());
        took.push(t);
        // Let the baseline's points settle before the next trial.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    took.sort();
    let secs: Vec<f64> = took.iter().map(|d| d.as_secs_f64()).collect();
    println!(
        "canary switch-back: {TRIALS} trials, median {:.2} s, max {:.2} s (goal ≤ 10 s = interval 5 s + 5 s)",
        secs[TRIALS / 2],
        secs[TRIALS - 1]
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
}
