//! Flags' launch plans and judged ramps, end to end: the real `crew serve` receiving a real StatsD stream (UDP)
//! in which an "application" tags its latency with the variant each request got (`flag_search_v2:on|off`, as
//! `crew_sdk::Client::tags` gives them). A ramp whose variant is slower is switched off by itself and its owner
//! paged; a healthy one goes to 100% and picks up where it was after the server restarts. Plans round-trip
//! through the CLI and the API; bad plans and bad ramps are refused with the key named and nothing stored.

use crate::harness::{eventually, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FLAG: &str = "search-v2";

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("crew.toml");
    let toml = format!(
        r#"[metrics]
flush = "1s"

[people.alice]
email = "alice@example.com"
notify = ["email"]
{extra}"#
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn plan_toml(contingency: &str) -> String {
    format!(
        r#"owner = "alice"
risks = "search may be slower for long queries"
contingency = "{contingency}"
runbook = "runbooks/search.md"

[[watch]]
series = "www.latency"
stat = "p99"
direction = "increase"
"#
    )
}

/// The application: every 20 ms a request of each variant, its latency tagged with the flag's variant; three
/// times slower on `on` while `slow` is set.
fn traffic(statsd: String, slow: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let mut lines = String::new();
            for variant in ["on", "off"] {
                let base = 40.0 + ((n * 37 + if variant == "on" { 11 } else { 0 }) % 80) as f64 + (n % 7) as f64 / 7.0;
                let ms = if variant == "on" && slow.load(Ordering::Relaxed) { base * 3.0 } else { base };
                lines.push_str(&format!("www.latency:{ms:.3}|ms|#flag_search_v2:{variant}\n"));
            }
            let _ = udp.send_to(lines.as_bytes(), &statsd);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

async fn post(s: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    let res = s.req(Method::POST, path, token).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn make_flag(s: &Server, token: &str) {
    let (st, v) = post(
        s,
        token,
        &format!("/api/v1/flags/{FLAG}/knob"),
        json!({"knob": "rollout", "percent": 0, "reason": "new search"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

async fn put_plan(s: &Server, token: &str, toml: &str) -> (u16, Value) {
    let res = s
        .req(Method::PUT, &format!("/api/v1/flags/{FLAG}/plan"), token)
        .header("content-type", "text/plain")
        .body(toml.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn judged(s: &Server, token: &str) -> Vec<Value> {
    let v = s.get_json("/api/v1/events?kind=flag.judged&limit=100", token).await;
    let mut out: Vec<Value> = v["events"].as_array().unwrap().iter().map(|e| e["data"].clone()).collect();
    out.reverse();
    out
}

async fn ramp_ended(s: &Server, token: &str, within: Duration) -> Value {
    let path = format!("/api/v1/flags/{FLAG}/ramp");
    let ok = eventually(within, || async { s.get_json(&path, token).await["status"] != "running" }).await;
    let r = s.get_json(&path, token).await;
    assert!(ok, "the ramp ended: {r} {:?}", judged(s, token).await);
    r
}

fn detail(v: &Value) -> &str {
    v["errors"][0]["detail"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ramp_whose_variant_regresses_is_switched_off_and_its_owner_paged() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_statsd(&config(dir.path(), "")).await;
    let alice = s.token("alice", "member").await;
    let (slow, stop) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
    let t = traffic(s.statsd.clone().unwrap(), slow.clone(), stop.clone());
    make_flag(&s, &alice).await;
    assert_eq!(put_plan(&s, &alice, &plan_toml("off")).await.0, 200);

    // Started from the robot; the first step is live at once.
    let (st, v) = post(
        &s,
        &alice,
        "/api/v1/chat/command",
        json!({"text": "!flag search-v2 ramp 10,50,100 every 6s try the new ranking"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["reply"].as_str().unwrap().contains("at 10%"), "{v}");
    let def = s.get_json(&format!("/api/v1/flags/{FLAG}"), &alice).await;
    assert!(def["description"].as_str().unwrap().contains("10%"), "{def}");

    let r = ramp_ended(&s, &alice, Duration::from_secs(60)).await;
    assert_eq!((r["status"].as_str(), r["percent"].as_u64()), (Some("failed"), Some(10)), "{r}");
    let def = s.get_json(&format!("/api/v1/flags/{FLAG}"), &alice).await;
    assert_eq!(def["definition"]["state"], "DISABLED", "switched off: {def}");

    let v = judged(&s, &alice).await;
    let last = v.last().unwrap();
    assert_eq!((last["verdict"].as_str(), last["action"].as_str()), (Some("fail"), Some("off")), "{v:?}");
    assert_eq!(
        (last["flag"].as_str(), last["ramp"].as_i64(), last["percent"].as_u64()),
        (Some(FLAG), r["id"].as_i64(), Some(10))
    );
    assert_eq!((last["page"].as_bool(), last["owner"].as_str()), (Some(true), Some("alice")));
    assert_eq!(last["runbook"], "runbooks/search.md");
    let m = &last["metrics"][0];
    assert_eq!((m["name"].as_str(), m["classification"].as_str()), (Some("www.latency p99"), Some("high")), "{m}");
    assert!(v.iter().all(|j| j["percent"] == 10), "never went past the first step: {v:?}");

    // The owner is paged: an incident for the verdict, opened for alice.
    let key = format!("judge:flag:{FLAG}:{}", r["id"]);
    let paged = eventually(Duration::from_secs(15), || async {
        let l = s.get_json("/api/v1/incidents", &alice).await;
        l["incidents"].as_array().unwrap().iter().any(|i| i["key"] == key.as_str())
    })
    .await;
    assert!(paged, "an incident pages the plan's owner");

    // The verdict is drawn on the graphs, and the flag's page tells the story.
    let ann = s.get_json("/api/v1/annotations?tags=flag", &alice).await;
    assert!(ann.to_string().contains("flag.judged"), "{ann}");
    let session = crate::domains::sign_in(&s, &alice).await;
    let page = s.client().get(format!("{}/flags/{FLAG}", s.url)).header("cookie", &session.cookie).send().await;
    let html = page.unwrap().text().await.unwrap();
    assert!(html.contains("Launch plan") && html.contains("failed") && html.contains("switched off"), "{html}");

    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_ramp_goes_to_100_and_picks_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with_statsd(&config(dir.path(), "")).await;
    let alice = s.token("alice", "member").await;
    let (slow, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let t = traffic(s.statsd.clone().unwrap(), slow.clone(), stop.clone());
    make_flag(&s, &alice).await;
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, plan_toml("off")).unwrap();
    let out = s.cli(&alice).args(["flag", FLAG, "plan", "--file"]).arg(&plan).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out =
        s.cli(&alice).args(["flag", FLAG, "ramp", "5,25,50,100", "--every", "3s", "-r", "launch"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("running at 5%"), "{said}");

    // The first step passes; then the server stops hard and starts again on the same data.
    let moved = eventually(Duration::from_secs(30), || async {
        s.get_json(&format!("/api/v1/flags/{FLAG}/ramp"), &alice).await["percent"] != 5
    })
    .await;
    assert!(moved, "{:?}", judged(&s, &alice).await);
    s.restart();

    let r = ramp_ended(&s, &alice, Duration::from_secs(60)).await;
    assert_eq!((r["status"].as_str(), r["percent"].as_u64()), (Some("done"), Some(100)), "{r}");
    let def = s.get_json(&format!("/api/v1/flags/{FLAG}"), &alice).await;
    assert_eq!(def["definition"]["targeting"]["fractional"], json!([["on", 100], ["off", 0]]), "{def}");

    // Each step was judged until it passed, and moved on once: no step twice, none skipped.
    let v = judged(&s, &alice).await;
    let passes: Vec<(u64, &str)> = v
        .iter()
        .filter(|j| j["verdict"] == "pass")
        .map(|j| (j["percent"].as_u64().unwrap(), j["action"].as_str().unwrap()))
        .collect();
    assert_eq!(passes, [(5, "next"), (25, "next"), (50, "next"), (100, "done")], "{v:?}");
    assert!(v.iter().all(|j| j["page"] == false), "{v:?}");
    let changes = s.get_json("/api/v1/events?kind=flag.changed&limit=50", &alice).await;
    let ramped = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"].as_str().unwrap().contains("ramp"))
        .count();
    assert_eq!(ramped, 4, "one flag change per step: {changes}");

    // `crew flag KEY` shows the plan and the ramp.
    let out = s.cli(&alice).args(["flag", FLAG]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("owner alice, contingency off") && shown.contains("done at 100%"), "{shown}");

    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[tokio::test]
async fn plans_round_trip_and_bad_plans_and_ramps_name_the_key_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path(), "\n[flags]\nrequire_plan_above = 10\n")).await;
    let alice = s.token("alice", "member").await;
    let viewer = s.token("vic", "viewer").await;
    make_flag(&s, &alice).await;
    let plan_path = format!("/api/v1/flags/{FLAG}/plan");
    let ramp_path = format!("/api/v1/flags/{FLAG}/ramp");
    assert_eq!(s.req(Method::GET, &plan_path, &alice).send().await.unwrap().status(), 404);

    // Without a plan: a rollout past 10% is refused with the reason; up to 10% is fine.
    let knob = format!("/api/v1/flags/{FLAG}/knob");
    let (st, v) = post(&s, &alice, &knob, json!({"knob": "rollout", "percent": 20, "reason": "more"})).await;
    assert_eq!(st, 409, "{v}");
    assert!(detail(&v).contains("require_plan_above = 10"), "{v}");
    assert_eq!(post(&s, &alice, &knob, json!({"knob": "rollout", "percent": 10, "reason": "some"})).await.0, 200);
    // And a ramp needs a plan to be judged by.
    let (st, v) = post(&s, &alice, &ramp_path, json!({"steps": [1, 5], "every": "10s", "reason": "go"})).await;
    assert_eq!(st, 409, "{v}");
    assert!(detail(&v).contains("no launch plan"), "{v}");

    // The CLI sets a plan from its file and warns of the series crew has never received; the API reads it back.
    let file = dir.path().join("plan.toml");
    std::fs::write(&file, plan_toml("off")).unwrap();
    let out = s.cli(&alice).args(["flag", FLAG, "plan", "--file"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("owner alice, contingency off"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never received `www.latency`"));
    let v = s.get_json(&plan_path, &viewer).await;
    assert_eq!(v["plan"]["owner"], "alice");
    assert_eq!(v["plan"]["watch"], json!([{"name": "www.latency", "stat": "p99", "direction": "increase"}]));
    assert_eq!(v["updated_by"], "alice");
    let out = s.cli(&viewer).args(["flag", FLAG, "plan"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("watch: www.latency p99 (bad: increase)"));

    // Replaced as JSON: the event has before and after.
    let mut json_plan = v["plan"].clone();
    json_plan["contingency"] = json!("page");
    let res = s.req(Method::PUT, &plan_path, &alice).json(&json_plan).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let events = s.get_json("/api/v1/events?kind=flag.plan&limit=10", &alice).await;
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["data"]["before"]["contingency"], "off");
    assert_eq!(events[0]["data"]["after"]["contingency"], "page");
    assert!(events[1]["data"]["before"].is_null());
    assert_eq!(events[0]["subject"], format!("flag:{FLAG}"));

    // Bad plans: 422 naming the key, nothing stored.
    for (toml, says) in [
        (plan_toml("rollback"), "plan.contingency: `rollback` is for environments"),
        (plan_toml("off").replace("p99", "p98"), "plan.watch[0].stat"),
        (plan_toml("off").replace("increase", "upwards"), "plan.watch"),
        (format!("colour = 1\n{}", plan_toml("off")), "unknown field `colour`"),
        (plan_toml("off").replace("runbooks/search.md", "../etc/passwd"), "plan.runbook"),
    ] {
        let (st, v) = put_plan(&s, &alice, &toml).await;
        assert_eq!(st, 422, "{toml}: {v}");
        assert!(detail(&v).contains(says), "{says}: {v}");
    }
    let (st, v) = put_plan(&s, &alice, "owner = ").await;
    assert!(st == 400 || st == 422, "{v}");
    assert_eq!(s.get_json(&plan_path, &alice).await["plan"]["contingency"], "page", "unchanged");
    assert_eq!(
        s.get_json("/api/v1/events?kind=flag.plan&limit=10", &alice).await["events"].as_array().unwrap().len(),
        2
    );
    // A plan for a flag that does not exist.
    let res = s.req(Method::PUT, "/api/v1/flags/ghost/plan", &alice).json(&json_plan).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // A viewer reads, never writes.
    assert_eq!(s.req(Method::PUT, &plan_path, &viewer).json(&json_plan).send().await.unwrap().status(), 403);

    // Bad ramps: 400 naming the key, nothing stored.
    for (body, says) in [
        (json!({"steps": [0, 5], "every": "10s", "reason": "go"}), "steps[0]: `0` is not a percent from 1 to 100"),
        (json!({"steps": [5, 101], "every": "10s", "reason": "go"}), "steps[1]: `101`"),
        (json!({"steps": [5, 25, 10], "every": "10s", "reason": "go"}), "steps[2]: 10 after 25"),
        (json!({"steps": [5, 5], "every": "10s", "reason": "go"}), "steps[1]: 5 after 5"),
        (json!({"steps": "5,x", "every": "10s", "reason": "go"}), "steps: `x`"),
        (json!({"steps": [], "every": "10s", "reason": "go"}), "steps:"),
        (
            json!({"steps": [5, 50], "every": "500ms", "reason": "go"}),
            "every: 500ms is under the metrics flush interval (1s)",
        ),
        (json!({"steps": [5, 50], "every": "soon", "reason": "go"}), "every: `soon` is not a duration"),
        (json!({"steps": [5, 50], "every": "10s", "reason": ""}), "reason"),
        (json!({"steps": [5, 50], "every": "10s"}), "reason"),
    ] {
        let (st, v) = post(&s, &alice, &ramp_path, body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(detail(&v).contains(says), "{says}: {v}");
    }
    let (st, v) =
        post(&s, &alice, "/api/v1/chat/command", json!({"text": "!flag search-v2 ramp 5,1 every 10s why"})).await;
    assert_eq!(st, 400, "{v}");
    assert!(detail(&v).contains("steps[1]"), "{v}");
    let out = s.cli(&alice).args(["flag", FLAG, "ramp", "5,50", "-r", "go"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--every is needed");
    assert_eq!(s.req(Method::GET, &ramp_path, &alice).send().await.unwrap().status(), 404, "no ramp stored");
    assert_eq!(s.get_json("/api/v1/events?kind=flag.ramp&limit=10", &alice).await["events"], json!([]));

    // With a plan, the rollout past 10% goes through; a good ramp starts, one at a time, and is cancelled.
    assert_eq!(post(&s, &alice, &knob, json!({"knob": "rollout", "percent": 20, "reason": "more"})).await.0, 200);
    let (st, v) = post(&s, &alice, &ramp_path, json!({"steps": "5,50,100", "every": "1h", "reason": "go"})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["percent"].as_u64(), v["status"].as_str(), v["tag"].as_str()),
        (Some(5), Some("running"), Some("flag_search_v2"))
    );
    let (st, v) = post(&s, &alice, &ramp_path, json!({"steps": [5], "every": "1h", "reason": "again"})).await;
    assert_eq!(st, 409, "{v}");
    let res = s.req(Method::DELETE, &ramp_path, &alice).json(&json!({"reason": "enough"})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let r = s.get_json(&ramp_path, &viewer).await;
    assert_eq!((r["status"].as_str(), r["percent"].as_u64()), (Some("cancelled"), Some(5)));
    let c = s.get_json("/api/v1/events?kind=flag.ramp_cancelled&limit=10", &alice).await;
    assert_eq!(c["events"][0]["data"]["reason"], "enough");
    let res = s.req(Method::DELETE, &ramp_path, &alice).json(&json!({"reason": "again"})).send().await.unwrap();
    assert_eq!(res.status(), 404);
}
