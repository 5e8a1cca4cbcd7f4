//! Judged deploys end to end: a real git repository, the real `crew serve` receiving a real StatsD stream
//! (UDP), `local:` hosts. Each host's latency goes to crew tagged with its name (`host:prod1`), as an
//! application behind the host would send it; the "application" here reads which release the host runs and is
//! slower on a release whose page says so. The judge must let a healthy canary through, switch a slow one back
//! by itself and page its deployer, hold a slow one for a person when `on_fail = "pause"`, and say so.

use crate::harness::{eventually, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn sh(dir: &Path, script: &str) {
    let out = std::process::Command::new("sh").args(["-c", script]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

fn commit(repo: &Path, page: &str, subject: &str) {
    std::fs::write(repo.join("index.html"), page).unwrap();
    sh(repo, &format!("git -c user.name=Alice -c user.email=a@example.com commit -qam '{subject}'"));
}

struct App {
    repo: PathBuf,
    hosts: PathBuf,
    _dir: tempfile::TempDir,
}

/// Production on two hosts, the first a canary, watched on its p99 latency every 2 s for 8 s.
fn app(on_fail: &str) -> App {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let hosts = dir.path().join("hosts");
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
window = "8s"
interval = "2s"
on_fail = "{on_fail}"
series = [{{ name = "www.latency", stat = "p99", direction = "increase" }}]

[metrics]
flush = "1s"

[people.alice]
email = "alice@example.com"
notify = ["email"]
"#,
        h = hosts.display()
    );
    std::fs::write(repo.join("crew.toml"), toml).unwrap();
    std::fs::write(repo.join("index.html"), "<h1>v1</h1>\n").unwrap();
    sh(&repo, "git init -q -b main && git -c user.name=Alice -c user.email=a@example.com add -A && git -c user.name=Alice -c user.email=a@example.com commit -qm 'first page'");
    App { repo, hosts, _dir: dir }
}

/// The hosts' application: every 20 ms a request per host, its latency tagged with the host; three times
/// slower on a host whose live release's page says `slow`.
fn traffic(statsd: String, hosts: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let mut lines = String::new();
            for host in ["prod1", "prod2"] {
                let slow = std::fs::read_to_string(hosts.join(host).join("current/index.html"))
                    .is_ok_and(|p| p.contains("slow"));
                // 40–120 ms, a different value each time (a deterministic spread, no ties to speak of).
                let base = 40.0 + ((n * 37 + if host == "prod1" { 11 } else { 0 }) % 80) as f64 + (n % 7) as f64 / 7.0;
                let ms = if slow { base * 3.0 } else { base };
                lines.push_str(&format!("www.latency:{ms:.3}|ms|#host:{host}\n"));
            }
            let _ = udp.send_to(lines.as_bytes(), &statsd);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

async fn deploy(s: &Server, token: &str, message: &str) -> i64 {
    let res = s
        .req(reqwest::Method::POST, "/api/v1/deploys", token)
        .json(&json!({"environment": "production", "message": message}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn ended(s: &Server, token: &str, id: i64) -> Value {
    let done = eventually(Duration::from_secs(60), || async {
        s.get_json(&format!("/api/v1/deploys/{id}"), token).await["status"] != "running"
    })
    .await;
    let last = s.get_json(&format!("/api/v1/deploys/{id}"), token).await;
    assert!(done, "deploy #{id} ended: {last}");
    last
}

async fn verdicts(s: &Server, token: &str, id: i64) -> Vec<Value> {
    let v = s.get_json("/api/v1/events?kind=deploy.judged&limit=50", token).await;
    let mut out: Vec<Value> =
        v["events"].as_array().unwrap().iter().filter(|e| e["data"]["deploy"] == id).cloned().collect();
    out.reverse();
    out
}

fn live_page(hosts: &Path, host: &str) -> String {
    std::fs::read_to_string(hosts.join(host).join("current/index.html")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_judge_lets_a_healthy_canary_through_and_switches_a_slow_one_back_by_itself() {
    let a = app("rollback");
    let s = Server::start_with_statsd(&a.repo.join("crew.toml")).await;
    let alice = s.token("alice", "member").await;
    let stop = Arc::new(AtomicBool::new(false));
    let t = traffic(s.statsd.clone().unwrap(), a.hosts.clone(), stop.clone());

    // The first deploy has no baseline release: not judged, and it says so.
    let first = deploy(&s, &alice, "first").await;
    assert_eq!(ended(&s, &alice, first).await["status"], "succeeded");
    let v = verdicts(&s, &alice, first).await;
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0]["data"]["why"].as_str().unwrap().contains("first deploy"), "{v:?}");

    // A healthy release: the judge watches the whole window, passes it, the rest switch.
    commit(&a.repo, "<h1>v2</h1>\n", "v2");
    let healthy = deploy(&s, &alice, "v2").await;
    let d = ended(&s, &alice, healthy).await;
    assert_eq!(d["status"], "succeeded", "{d}");
    let v = verdicts(&s, &alice, healthy).await;
    assert_eq!(v.last().unwrap()["data"]["verdict"], "pass", "{v:?}");
    assert_eq!(v.last().unwrap()["data"]["action"], "proceed");
    assert!(live_page(&a.hosts, "prod2").contains("v2"));

    // A slow release: the canary's p99 triples; the judge fails it and every switched host goes back, without
    // a person.
    commit(&a.repo, "<h1>v3 slow</h1>\n", "v3 (slow)");
    let slow = deploy(&s, &alice, "v3").await;
    let d = ended(&s, &alice, slow).await;
    assert_eq!(d["status"], "rolled_back", "{d}");
    assert!(d["error"].as_str().unwrap().contains("the judge failed the canary"), "{d}");
    assert!(live_page(&a.hosts, "prod1").contains("v2"), "the canary is back on v2");
    assert!(live_page(&a.hosts, "prod2").contains("v2"), "the rest never switched");
    let v = verdicts(&s, &alice, slow).await;
    let last = &v.last().unwrap()["data"];
    assert_eq!(last["verdict"], "fail", "{v:?}");
    assert_eq!(last["action"], "switch_back");
    let m = &last["metrics"][0];
    assert_eq!(m["name"], "www.latency p99");
    assert_eq!(m["classification"], "high", "{m}");
    assert!(m["test"]["p_value"].as_f64().unwrap() < 0.02, "{m}");
    assert!(m["canary"]["median"].as_f64().unwrap() > 2.0 * m["baseline"]["median"].as_f64().unwrap(), "{m}");

    // The deployer is paged: an incident for the verdict, opened for alice.
    let key = format!("judge:deploy:{slow}");
    let paged = eventually(Duration::from_secs(15), || async {
        let l = s.get_json("/api/v1/incidents", &alice).await;
        l["incidents"].as_array().unwrap().iter().any(|i| i["key"] == key.as_str())
    })
    .await;
    assert!(paged, "an incident pages the deployer");

    // The verdicts are drawn on the graphs.
    let ann = s.get_json("/api/v1/annotations?tags=deploy", &alice).await;
    assert!(ann.as_array().unwrap().iter().any(|a| a["title"] == "deploy.judged"), "{ann}");
    // And the deploy's page explains the verdict metric by metric.
    let session = crate::domains::sign_in(&s, &alice).await;
    let page = s.client().get(format!("{}/deploys/{slow}", s.url)).header("cookie", &session.cookie).send().await;
    let html = page.unwrap().text().await.unwrap();
    assert!(html.contains("Verdict: fail") && html.contains("www.latency p99"), "{html}");

    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_canary_waits_for_a_person_and_goes_on_when_told() {
    let a = app("pause");
    let s = Server::start_with_statsd(&a.repo.join("crew.toml")).await;
    let alice = s.token("alice", "member").await;
    let viewer = s.token("bob", "viewer").await;
    let stop = Arc::new(AtomicBool::new(false));
    let t = traffic(s.statsd.clone().unwrap(), a.hosts.clone(), stop.clone());
    let first = deploy(&s, &alice, "first").await;
    assert_eq!(ended(&s, &alice, first).await["status"], "succeeded");

    commit(&a.repo, "<h1>v2 slow</h1>\n", "v2 (slow)");
    let slow = deploy(&s, &alice, "v2").await;
    let held = eventually(Duration::from_secs(40), || async {
        verdicts(&s, &alice, slow).await.last().is_some_and(|v| v["data"]["action"] == "hold")
    })
    .await;
    assert!(held, "the failing canary is held");
    let d = s.get_json(&format!("/api/v1/deploys/{slow}"), &alice).await;
    assert_eq!(d["status"], "running", "held, not switched back");
    assert!(live_page(&a.hosts, "prod1").contains("v2"), "the canary stays on the new release while held");

    // Deciding needs a member; nonsense is refused with the field named.
    let decide = |token: &str, body: Value| {
        s.req(reqwest::Method::POST, &format!("/api/v1/deploys/{slow}/decision"), token).json(&body).send()
    };
    assert_eq!(decide(&viewer, json!({"decision": "proceed"})).await.unwrap().status(), 403);
    let r = decide(&alice, json!({"decision": "maybe"})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("decision"));
    let r = decide(&alice, json!({"decision": "proceed", "reason": "known slow path, accepted"})).await.unwrap();
    assert_eq!(r.status(), 202);

    let d = ended(&s, &alice, slow).await;
    assert_eq!(d["status"], "succeeded", "{d}");
    assert!(live_page(&a.hosts, "prod2").contains("v2"), "the rest switched after the decision");
    // A finished deploy has nothing to decide.
    let r = decide(&alice, json!({"decision": "switch_back"})).await.unwrap();
    assert_eq!(r.status(), 409);

    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}
