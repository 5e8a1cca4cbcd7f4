//! Bucket tests at volume, end to end on loopback against the real `crew serve` (embedded SQLite):
//! 1. the Rust SDK evaluating a split for 300,000 distinct users, its exposures sent in batches: the rate the
//!    server takes them at (goal ≥ 100,000 a second) and the rate the store writes them at;
//! 2. `GET /api/v1/flags/{key}/results` over 3,000,000 stored exposures with 10% conversions: the median of 5
//!    (goal ≤ 100 ms).
//!
//!   cargo bench -p crew --bench experiments

#[allow(dead_code)]
#[path = "../tests/it/harness.rs"]
mod harness;

use harness::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn receiving(s: &Server, flag: &str) -> Value {
    s.get_json(&format!("/api/v1/flags/{flag}/results"), &s.admin).await["receiving"].clone()
}

async fn split(s: &Server, token: &str, flag: &str) {
    let r = s
        .req(reqwest::Method::POST, &format!("/api/v1/flags/{flag}/knob"), token)
        .json(&json!({"knob": "split", "split": "control=50,blue=50", "reason": "bench"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crew.toml");
    std::fs::write(&config, "[experiments]\nmax_users = 5000000\n").unwrap();
    let s = Server::start_with_config(&config).await;
    let member = s.token("ann", "member").await;
    let app = s.token("www", "evaluate").await;

    // 1. The SDK's batches.
    split(&s, &member, "sdk").await;
    let sdk = crew_sdk::Client::builder(&s.url, &app).start();
    assert!(sdk.ready(Duration::from_secs(10)).await);
    const N: u64 = 300_000;
    let before = receiving(&s, "sdk").await;
    let t = Instant::now();
    for i in 0..N {
        sdk.variant("sdk", &json!({"targetingKey": format!("user-{i}")})).unwrap();
    }
    let evaluated = t.elapsed();
    sdk.flush().await;
    let got = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let (mut taken, mut stored) = (None, None);
    while stored.is_none() {
        let r = receiving(&s, "sdk").await;
        if taken.is_none() && got(&r, "exposures_received") - got(&before, "exposures_received") >= N {
            taken = Some(t.elapsed());
        }
        if got(&r, "exposures_stored") - got(&before, "exposures_stored") >= N {
            stored = Some(t.elapsed());
        }
        assert!(t.elapsed() < Duration::from_secs(300), "stuck: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "SDK: {N} users evaluated in {:.2} s ({:.0}/s); taken by crew after {:.2} s ({:.0}/s); stored after {:.2} s ({:.0}/s); dropped {:?}",
        evaluated.as_secs_f64(),
        rate(evaluated),
        taken.unwrap().as_secs_f64(),
        rate(taken.unwrap()),
        stored.unwrap().as_secs_f64(),
        rate(stored.unwrap()),
        sdk.exposures_reported().1
    );

    // 2. Results over 3,000,000 exposures.
    split(&s, &member, "big").await;
    const USERS: usize = 3_000_000;
    let t = Instant::now();
    let http = reqwest::Client::new();
    for start in (0..USERS).step_by(10_000) {
        let batch: Vec<Value> = (start..start + 10_000)
            .map(|i| json!({"key": "big", "targetingKey": format!("u{i}"), "variant": if i % 2 == 0 { "control" } else { "blue" }}))
            .collect();
        let r = http
            .post(format!("{}/api/v1/exposures", s.url))
            .bearer_auth(&app)
            .json(&json!({"exposures": batch}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        // Keep the server's queue short: it is bounded, and this is a load, not a flood.
        loop {
            let pending = receiving(&s, "big").await["pending"].as_u64().unwrap_or(0);
            if pending < 200_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // One user in ten converts: 300,000 tracking events, 64 at a time.
    let conversions: Vec<usize> = (0..USERS).step_by(10).collect();
    let mut k = 0;
    for chunk in conversions.chunks(64) {
        let mut tasks = vec![];
        for &i in chunk {
            let (http, url, app) = (http.clone(), s.url.clone(), app.clone());
            tasks.push(tokio::spawn(async move {
                http.post(format!("{url}/api/v1/track"))
                    .bearer_auth(&app)
                    .json(&json!({"key": "big", "context": {"targetingKey": format!("u{i}")}}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 202);
        }
        k += chunk.len();
    }
    while s.get_json("/api/v1/flags/big/results", &s.admin).await["phases"][0]["users"].as_u64() != Some(USERS as u64) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("loaded {USERS} exposures and {k} conversions in {:.1} s", t.elapsed().as_secs_f64());
    let mut times = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        let r = s.get_json("/api/v1/flags/big/results", &s.admin).await;
        times.push(t.elapsed());
        assert_eq!(r["phases"][0]["users"], USERS as u64);
    }
    times.sort();
    println!(
        "results over {USERS} exposures: median {:.1} ms (min {:.1}, max {:.1})",
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3
    );
}
