//! StatsD ingest and storage, crew next to Etsy's StatsD in one run (run it with `scripts/bench-statsd`, which
//! installs Etsy's StatsD from npm and pins the processes).
//!
//! 1. Ingest: one load generator sends 1400-byte datagrams (about 60 lines each: counters, timers, gauges over
//!    200 names) at increasing rates, 3 s per rate, to crew and then to Etsy's StatsD (console backend). For
//!    each, the highest rate with zero loss: every line sent was counted (crew: `GET /api/v1/metrics/status`;
//!    Etsy: the `statsd.metrics_received` its console backend prints each flush).
//! 2. Storage: bytes per stored point of a day of regular series (a steady counter, a slowly moving gauge, a
//!    noisy timer), written through crew's own flush path into SQLite.
//! 3. A 24 h query of one series through the API (p50 and p99 of 50 queries).
//! 4. A flush of 10,000 series: 10,000 distinct names sent within one interval, the flush's duration as crew
//!    reports it (`last_flush_ms`: aggregation, chunks and the write-ahead row in SQLite).
//!
//!   scripts/bench-statsd                 # everything
//!   BENCH_PARTS=storage cargo bench -p crew --bench statsd   # the storage figures only
//!   STATSD_JS=path/to/stats.js cargo bench -p crew --bench statsd

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CREW: &str = env!("CARGO_BIN_EXE_crew");
const STEP: Duration = Duration::from_secs(3);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Datagrams of about 1400 bytes, each of whole lines; and the lines in each.
fn datagrams() -> Vec<(Vec<u8>, u64)> {
    let mut out = vec![];
    let mut i = 0u64;
    for _ in 0..64 {
        let mut d = Vec::with_capacity(1400);
        let mut n = 0;
        loop {
            let line = match i % 3 {
                0 => format!("bench.requests.r{}:1|c\n", i % 97),
                1 => format!("bench.latency.r{}:{}|ms\n", i % 61, 10 + i % 490),
                _ => format!("bench.queue.q{}:{}|g\n", i % 41, i % 100),
            };
            if d.len() + line.len() > 1400 {
                break;
            }
            d.extend_from_slice(line.as_bytes());
            n += 1;
            i += 1;
        }
        d.pop(); // no newline after the last line
        out.push((d, n));
    }
    out
}

/// Sends at `rate` lines a second for `STEP`, in 1 ms bursts; the lines sent.
fn blast(target: &str, rate: u64, grams: &[(Vec<u8>, u64)]) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(8 << 20);
    let start = Instant::now();
    let (mut sent, mut k) = (0u64, 0usize);
    while start.elapsed() < STEP {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let (d, n) = &grams[k % grams.len()];
            if sock.send_to(d, target).is_ok() {
                sent += n;
            }
            k += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    sent
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pin_self(cpu: usize) {
    let _ = Command::new("taskset").args(["-cp", &cpu.to_string(), &std::process::id().to_string()]).output();
}

struct Crew {
    _p: Proc,
    url: String,
    token: String,
    statsd: String,
    _dir: tempfile::TempDir,
}

fn crew(flush: &str, database: Option<&str>, dir: Option<tempfile::TempDir>) -> Crew {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("crew.toml"), format!("[metrics]\nflush = \"{flush}\"\n")).unwrap();
    let statsd = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", CREW, "serve", "--listen", "127.0.0.1:0", "--statsd", &statsd, "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(dir.path().join("crew.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let mut child = cmd.spawn().expect("crew serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("crew listening on ").expect("the listening line").to_string();
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap().trim().to_string();
    Crew { _p: Proc(child), url, token, statsd, _dir: dir }
}

/// One runtime and one HTTP client (kept-alive connections) for the whole bench.
fn http() -> &'static (tokio::runtime::Runtime, reqwest::Client) {
    static HTTP: std::sync::OnceLock<(tokio::runtime::Runtime, reqwest::Client)> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (rt, reqwest::Client::new())
    })
}

fn get(c: &Crew, path: &str) -> Value {
    let (rt, client) = http();
    rt.block_on(async {
        let r = client.get(format!("{}{path}", c.url)).bearer_auth(&c.token).send().await.ok()?;
        r.json::<Value>().await.ok()
    })
    .unwrap_or(Value::Null)
}

fn crew_lines(c: &Crew) -> (u64, u64) {
    let s = get(c, "/api/v1/metrics/status");
    (s["lines"].as_u64().unwrap_or(0), s["kernel_drops"].as_u64().unwrap_or(0))
}

fn ingest_crew(grams: &[(Vec<u8>, u64)]) -> u64 {
    let c = crew("10s", None, None);
    let mut best = 0;
    for rate in
        [250_000u64, 500_000, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000, 6_000_000, 8_000_000, 10_000_000]
    {
        let (before, _) = crew_lines(&c);
        let sent = blast(&c.statsd, rate, grams);
        std::thread::sleep(Duration::from_millis(500)); // the parser catches up; counting needs no flush
        let (after, drops) = crew_lines(&c);
        let got = after - before;
        let achieved = sent as f64 / STEP.as_secs_f64();
        println!(
            "  crew  {:>9} lines/s asked, {:>9.0} sent/s: {:>10} sent, {:>10} counted, lost {:>8} (kernel drops so far {drops})",
            rate, achieved, sent, got, sent.saturating_sub(got)
        );
        if got == sent {
            best = achieved as u64;
        } else {
            break;
        }
    }
    best
}

/// Etsy's StatsD with its console backend; the received lines are summed from what it prints each flush.
fn ingest_etsy(js: &str, grams: &[(Vec<u8>, u64)]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let backend = std::path::Path::new(js).parent().unwrap().join("backends/console");
    std::fs::write(
        dir.path().join("config.js"),
        format!(
            "{{ port: {port}, mgmt_port: {}, address: '127.0.0.1', flushInterval: 1000, backends: ['{}'], console: {{ prettyprint: false }} }}",
            free_port(),
            backend.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("taskset")
        .args(["-c", "0", "node", js])
        .arg(dir.path().join("config.js"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node (Debian's nodejs) and Etsy's statsd");
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        // The console backend prints each flush as a JavaScript object (util.inspect), one key a line; the
        // first `statsd.metrics_received` after `counters: {` is the flush's count (the second is its rate).
        let mut in_counters = false;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("counters: {") {
                in_counters = true;
            } else if in_counters && line.contains("'statsd.metrics_received':") {
                let n = line.split(':').nth(1).unwrap_or("").trim().trim_end_matches(',').parse::<f64>().unwrap_or(0.0);
                r.fetch_add(n as u64, Ordering::Relaxed);
                in_counters = false;
            }
        }
    });
    let _p = Proc(child);
    std::thread::sleep(Duration::from_secs(2));
    let target = format!("127.0.0.1:{port}");
    let mut best = 0;
    for rate in [10_000u64, 25_000, 50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000] {
        let before = received.load(Ordering::Relaxed);
        let sent = blast(&target, rate, grams);
        std::thread::sleep(Duration::from_millis(2500)); // two flushes to print everything
        let got = received.load(Ordering::Relaxed) - before;
        let achieved = sent as f64 / STEP.as_secs_f64();
        println!(
            "  etsy  {:>9} lines/s asked, {:>9.0} sent/s: {:>10} sent, {:>10} counted, lost {:>8}",
            rate,
            achieved,
            sent,
            got,
            sent.saturating_sub(got)
        );
        if got >= sent {
            best = achieved as u64;
        } else {
            break;
        }
    }
    best
}

/// A day of three regular series through crew's own flush path into a fresh SQLite store; bytes per point.
async fn storage(dir: &std::path::Path) -> String {
    use crew_metrics::{Kind, Point};
    let url = format!("sqlite://{}", dir.join("day.db").display());
    let store = crew_store::open(&url).await.unwrap();
    let m = Arc::new(crew_server::metrics::Live::new(crew_server::metrics::MetricsSection::default().check().unwrap()));
    let now = chrono::Utc::now().timestamp_millis() / 10_000 * 10_000;
    let start = now - 86_400_000;
    let mut rng = 12345u64;
    let mut noise = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 1000) as f64 / 1000.0
    };
    for i in 0..8640 {
        let t = start + i * 10_000;
        let g = 50.0 + ((i / 60) % 20) as f64; // moves a step every 10 minutes
        let lat: Vec<f64> = (0..20).map(|_| (40.0 + 100.0 * noise()).round()).collect();
        let points = vec![
            ("steady.requests".into(), Kind::Counter, Point { sum: 120.0, count: 120.0, ..Point::default() }),
            (
                "slow.gauge".into(),
                Kind::Gauge,
                Point { last: g, min: g, max: g, sum: g, count: 1.0, ..Point::default() },
            ),
            (
                "noisy.latency".into(),
                Kind::Timer,
                Point {
                    count: 20.0,
                    sum: lat.iter().sum(),
                    min: lat.iter().cloned().fold(f64::INFINITY, f64::min),
                    max: lat.iter().cloned().fold(0.0, f64::max),
                    p50: lat[10],
                    p90: lat[18],
                    p99: lat[19],
                    last: 0.0,
                },
            ),
        ];
        crew_server::metrics::store_points(&store, &m, t, points).await.unwrap();
    }
    // The heads still open are stored as they would be at a clean stop.
    let open = m.db.lock().unwrap().open_chunks();
    let chunks: Vec<crew_store::MetricChunk> = open.iter().map(|c| crew_server::metrics::stored(c, "local")).collect();
    store.write_metrics("local", &[], &chunks, &[i64::MAX; 3]).await.unwrap();
    let mut report = String::new();
    for (key, kind) in [("steady.requests", "counter"), ("slow.gauge", "gauge"), ("noisy.latency", "timer")] {
        let cs = store.metric_chunks(key, 0, 0, i64::MAX).await.unwrap();
        let bytes: usize = cs.iter().map(|c| c.data.len()).sum();
        let points: i32 = cs.iter().map(|c| c.points).sum();
        let fields = crew_metrics::Kind::parse(kind).unwrap().fields().len();
        report.push_str(&format!(
            "  {key:<16} ({kind}, {fields} figures a point): {points} points in {bytes} bytes = {:.2} bytes a point, {:.2} a figure\n",
            bytes as f64 / points as f64,
            bytes as f64 / (points as usize * fields) as f64
        ));
    }
    report
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    pin_self(1);
    // `BENCH_PARTS=storage` skips the ingest ladder.
    let parts = std::env::var("BENCH_PARTS").unwrap_or_default();
    if parts != "storage" {
        ingest(std::env::var("STATSD_JS").ok());
    }
    storage_figures();
}

fn ingest(statsd_js: Option<String>) {
    let grams = datagrams();
    let per = grams.iter().map(|g| g.1).sum::<u64>() as f64 / grams.len() as f64;
    println!(
        "StatsD ingest: datagrams of ~1400 bytes, {per:.0} lines each; server on CPU 0, load on CPU 1, {} s a rate",
        STEP.as_secs()
    );
    let crew_best = ingest_crew(&grams);
    let etsy_best = match statsd_js {
        Some(js) => ingest_etsy(&js, &grams),
        None => {
            println!("  (STATSD_JS not set: Etsy's StatsD skipped; scripts/bench-statsd installs it)");
            0
        }
    };
    println!("highest zero-loss rate: crew {crew_best} lines/s, Etsy StatsD {etsy_best} lines/s");
    if etsy_best > 0 {
        println!("crew / Etsy: {:.1}x", crew_best as f64 / etsy_best as f64);
    }
}

fn storage_figures() {
    let dir = tempfile::tempdir().unwrap();
    println!("\nStorage: a day at 10 s (8,640 points a series) through crew's flush path into SQLite");
    print!("{}", http().0.block_on(storage(dir.path())));

    // The same database served: a 24 h query of one series.
    let db = format!("sqlite://{}", dir.path().join("day.db").display());
    let c = crew("10s", Some(&db), None);
    let mut times = vec![];
    get(&c, "/api/v1/metrics/query?name=noisy.latency&stat=p99&from=-1h"); // a connection made
    let path = "/api/v1/metrics/query?name=noisy.latency&stat=p99&from=-24h&step=10s";
    for _ in 0..50 {
        // The clock stops when the whole answer has arrived (the client's own JSON parsing is not counted).
        let t = Instant::now();
        let (rt, client) = http();
        let body = rt.block_on(async {
            client.get(format!("{}{path}", c.url)).bearer_auth(&c.token).send().await.unwrap().bytes().await.unwrap()
        });
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["series"][0]["points"].as_array().map(|p| p.len() > 8000).unwrap_or(false), "{v}");
    }
    println!(
        "\n24 h query of one series at 10 s (8,640 points, over HTTP, a kept-alive connection): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut times.clone(), 0.5),
        percentile(&mut times, 0.99)
    );
    drop(c);

    // A flush of 10,000 series: all of them sent in every interval for 12 s, the flush times read as it goes.
    let c = crew("2s", None, None);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut flushes = vec![];
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(12) {
        round += 1;
        let mut d = Vec::new();
        for i in 0..10_000 {
            let line = format!("many.series.s{i}:{round}|c\n");
            if d.len() + line.len() > 1400 {
                sock.send_to(&d, &c.statsd).unwrap();
                d.clear();
                std::thread::sleep(Duration::from_micros(20));
            }
            d.extend_from_slice(line.as_bytes());
        }
        sock.send_to(&d, &c.statsd).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        if round % 5 == 0 {
            let s = get(&c, "/api/v1/metrics/status");
            if s["series"].as_u64().unwrap_or(0) >= 10_000 {
                flushes.push(s["last_flush_ms"].as_f64().unwrap_or(f64::NAN));
            }
        }
    }
    println!(
        "flush of 10,000 series (aggregate, chunk, write-ahead row in SQLite), as crew timed them: {flushes:?} ms"
    );
}
