//! Timeline benchmark: appends 1,000,000 events in batches, then measures the Timeline's queries (newest 50 of
//! a kind, a word search, the next page) on SQLite and on PostgreSQL.
//!
//!   cargo bench -p crew-store --bench timeline                       # both engines, 1,000,000 events
//!   cargo bench -p crew-store --bench timeline -- --events 200000 --engine sqlite
//!
//! PostgreSQL: a fresh database is created on CREW_BENCH_DATABASE_URL (an admin URL), else on the machine's
//! server at 127.0.0.1:5432 if one answers, else on the test harness's private cluster (which runs with
//! fsync off: its append figures flatter PostgreSQL, and the report says so).

use crew_core::{Actor, EventFilter, NewEvent, Via};
use crew_store::Store;
use std::time::{Duration, Instant};

const KINDS: [&str; 12] = [
    "deploy.started",
    "deploy.finished",
    "deploy.failed",
    "flag.changed",
    "lock.taken",
    "lock.released",
    "alert.fired",
    "alert.resolved",
    "incident.acked",
    "chat.command",
    "infra.run.finished",
    "note",
];

/// A small deterministic generator, so every run appends the same events.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn word(i: usize) -> String {
    const SYL: [&str; 16] =
        ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "do", "fe", "gu", "ho", "ji", "be"];
    format!("{}{}{}", SYL[i % 16], SYL[(i / 16) % 16], SYL[(i / 256) % 16])
}

fn events(n: usize, seed: u64) -> Vec<NewEvent> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| {
            // Kinds skewed like a real timeline: notes and chat commands common, incidents rare.
            let k = [11, 11, 9, 9, 0, 1, 3, 3, 4, 5, 6, 7, 10, 2, 8][r.below(15)];
            let subject = format!("app{}/{}", r.below(40), ["production", "staging"][r.below(2)]);
            // Zipf-like words: a few very common, many rare (out of 4096).
            let words: Vec<String> = (0..8)
                .map(|_| {
                    let spread = 1 + r.below(4096);
                    word(r.below(spread))
                })
                .collect();
            NewEvent::new(Actor::new(format!("user{}", r.below(30)), Via::Cli), KINDS[k], &subject, words.join(" "))
                .with_data(serde_json::json!({"n": r.below(1000)}))
        })
        .collect()
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn time_query(s: &dyn Store, f: &EventFilter, runs: usize) -> (Duration, Duration, usize) {
    let mut n = 0;
    for _ in 0..5 {
        n = s.query(f).await.unwrap().events.len();
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let page = s.query(f).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(page.events.len(), n);
    }
    (pct(times.clone(), 0.5), pct(times, 0.99), n)
}

async fn bench(name: &str, s: &dyn Store, total: usize, analyze: Option<&str>) {
    println!("\n== {name}: {} ==", s.url());
    let batch = 1000;
    let t = Instant::now();
    let mut done = 0;
    let mut seed = 0x9E3779B97F4A7C15;
    while done < total {
        let n = batch.min(total - done);
        seed += 1;
        s.append(events(n, seed)).await.unwrap();
        done += n;
        if done % 200_000 == 0 {
            println!("  appended {done} ({:.0}/s so far)", done as f64 / t.elapsed().as_secs_f64());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("append, batches of {batch}: {total} events in {secs:.1} s = {:.0} events/s", total as f64 / secs);

    let t = Instant::now();
    for i in 0..200 {
        s.append(vec![NewEvent::new(Actor::new("bench", Via::Api), "note", "bench", format!("single append {i}"))])
            .await
            .unwrap();
    }
    println!("append, one event per transaction: {:.2} ms each", t.elapsed().as_secs_f64() * 1000.0 / 200.0);

    if let Some(url) = analyze {
        // What autovacuum does after a bulk load; done here so the figures do not depend on its timing.
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
        let t = Instant::now();
        sqlx::query("ANALYZE").execute(&mut c).await.unwrap();
        println!("ANALYZE after the load: {:.1} s", t.elapsed().as_secs_f64());
    }
    let page1 = s.query(&EventFilter::new().kind("deploy")).await.unwrap();
    let common = word(1);
    let rare = word(3001);
    let queries: Vec<(&str, EventFilter)> = vec![
        ("newest 50, no filter", EventFilter::new()),
        ("newest 50 of kind `deploy` (prefix, ~27%)", EventFilter::new().kind("deploy")),
        ("newest 50 of kind `incident.acked` (~7%)", EventFilter::new().kind("incident.acked")),
        (
            "next page of kind `deploy` (cursor)",
            EventFilter { before: page1.next, ..EventFilter::new().kind("deploy") },
        ),
        ("search a common word", EventFilter::new().search(&common)),
        ("search a rare word", EventFilter::new().search(&rare)),
        ("search an absent word", EventFilter::new().search("absentword")),
        ("search two words", EventFilter::new().search(&format!("{} {}", word(2), word(5)))),
        ("search + kind", EventFilter::new().search(&common).kind("deploy")),
        ("subject", EventFilter { subject: Some("app7/production".into()), ..EventFilter::new() }),
    ];
    println!("{:<46} {:>9} {:>9} {:>6}", "query (200 runs)", "p50", "p99", "rows");
    for (label, f) in queries {
        let (p50, p99, n) = time_query(s, &f, 200).await;
        println!("{label:<46} {:>7.2}ms {:>7.2}ms {n:>6}", p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
    }
}

async fn postgres_admin_url() -> (String, &'static str) {
    if let Ok(url) = std::env::var("CREW_BENCH_DATABASE_URL") {
        return (url, "CREW_BENCH_DATABASE_URL");
    }
    let local = "postgres://postgres@127.0.0.1:5432/postgres";
    if sqlx::postgres::PgPool::connect(local).await.is_ok() {
        return (local.to_string(), "the machine's PostgreSQL (default settings)");
    }
    let url = crew_testkit::fresh_postgres().await;
    (url, "the test cluster (fsync off: append figures are flattering)")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let total: usize = arg("--events").map(|s| s.parse().expect("--events N")).unwrap_or(1_000_000);
    let engine = arg("--engine").unwrap_or_else(|| "both".into());
    println!(
        "timeline benchmark: {total} events; {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    if engine == "both" || engine == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("crew.db").display());
        let s = crew_store::open(&url).await.unwrap();
        bench("SQLite", &*s, total, None).await;
    }
    if engine == "both" || engine == "postgres" {
        let (admin, which) = postgres_admin_url().await;
        let name = format!("crew_bench_{}", std::process::id());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut conn).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        {
            let s = crew_store::open(url.as_str()).await.unwrap();
            println!("\n(PostgreSQL: {which})");
            bench("PostgreSQL", &*s, total, Some(url.as_str())).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if args.iter().any(|a| a == "--keep") {
            println!("kept the database: {url}");
            return;
        }
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
    }
}
