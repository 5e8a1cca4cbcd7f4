//! Metrics end to end: a published StatsD client (`cadence`) sends every type over UDP (and a line over TCP),
//! the query API returns the right aggregates after a flush, `/metrics` exposes them and a real Prometheus
//! (Debian's package) scrapes them; a crash loses at most one flush; bad input is counted or refused.

use crate::harness::{eventually, Server};
use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, StatsdClient};
use serde_json::{json, Value};
use std::io::Write;
use std::net::UdpSocket;
use std::time::Duration;

fn config(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("crew.toml");
    std::fs::write(&p, format!("[metrics]\nflush = \"1s\"\n{extra}")).unwrap();
    (d, p)
}

fn statsd(s: &Server) -> String {
    s.statsd.clone().expect("a StatsD address")
}

/// The sum of a stat's points over the last two minutes, per series labels.
async fn total(s: &Server, name: &str, stat: &str) -> f64 {
    let v = s.get_json(&format!("/api/v1/metrics/query?name={name}&stat={stat}&from=-2m"), &s.admin).await;
    v["series"]
        .as_array()
        .map(|a| {
            a.iter()
                .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
                .map(|p| p[1].as_f64().unwrap())
                .sum()
        })
        .unwrap_or(0.0)
}

/// The one point of a series that is not empty (everything was sent in one datagram, so in one interval).
async fn point(s: &Server, name: &str, stat: &str) -> f64 {
    let v = s.get_json(&format!("/api/v1/metrics/query?name={name}&stat={stat}&from=-2m"), &s.admin).await;
    let pts = v["series"][0]["points"].as_array().cloned().unwrap_or_default();
    assert_eq!(pts.len(), 1, "{name} {stat}: {v}");
    pts[0][1].as_f64().unwrap()
}

/// The first result of a PromQL query to Prometheus or VictoriaMetrics on `port`, if any.
async fn prom_query(http: &reqwest::Client, port: u16, query: &str) -> Option<Value> {
    let v: Value = http
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["data"]["result"].as_array().and_then(|r| r.first()).cloned()
}

async fn wait_for(s: &Server, name: &str, stat: &str, want: f64) {
    let ok = eventually(Duration::from_secs(20), || async { total(s, name, stat).await == want }).await;
    assert!(ok, "{name} {stat} reached {want}: it is {}", total(s, name, stat).await);
}

#[tokio::test]
async fn every_statsd_type_from_a_real_client_is_aggregated_and_queryable() {
    let (_d, cfg) = config("");
    let s = Server::start_with_statsd(&cfg).await;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Buffered: every metric below goes out in one datagram, several lines in it, so one interval holds them.
    let sink = BufferedUdpMetricSink::with_capacity(statsd(&s), socket, 60_000).unwrap();
    let client = StatsdClient::from_sink("app", sink);
    client.count("hits", 3).unwrap();
    client.incr("hits").unwrap();
    client.count_with_tags("req", 1).with_tag("route", "/home").with_tag("env", "prod").send();
    client.count_with_tags("req", 2).with_tag("route", "/about").send();
    client.gauge("queue", 5).unwrap();
    for v in 1..=100u64 {
        client.time("lat", v).unwrap();
    }
    client.histogram("size", 7u64).unwrap();
    client.distribution("size", 9u64).unwrap();
    for u in [1i64, 2, 1, 3, 2] {
        client.set("users", u).unwrap();
    }
    client.flush().unwrap();
    // What cadence does not write: sample rates, gauge deltas, several values in one line; and bad lines.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"app.sampled:1|c|@0.1\napp.queue:+3|g\napp.queue:-1|g\napp.multi:1:2:3|ms\ngarbage\napp.nan:NaN|c\napp.odd name/x:1|c\n", statsd(&s))
        .unwrap();
    let mut tcp = std::net::TcpStream::connect(statsd(&s)).unwrap();
    tcp.write_all(b"app.tcp:5|c\napp.tcp:6|c\n").unwrap();
    drop(tcp);

    wait_for(&s, "app.hits", "count", 4.0).await;
    wait_for(&s, "app.tcp", "count", 11.0).await;
    assert_eq!(total(&s, "app.sampled", "count").await, 10.0, "1 at a sample rate of 0.1");
    assert_eq!(point(&s, "app.queue", "value").await, 7.0, "5, then +3, then -1");
    assert_eq!(point(&s, "app.queue", "max").await, 8.0);
    for (stat, want) in [
        ("count", 100.0),
        ("sum", 5050.0),
        ("mean", 50.5),
        ("min", 1.0),
        ("max", 100.0),
        ("p50", 50.0),
        ("p90", 90.0),
        ("p99", 99.0),
    ] {
        assert_eq!(point(&s, "app.lat", stat).await, want, "lat {stat}");
    }
    assert_eq!(point(&s, "app.size", "count").await, 2.0, "h and d are timers too");
    assert_eq!(point(&s, "app.multi", "sum").await, 6.0);
    assert_eq!(point(&s, "app.users", "distinct").await, 3.0);
    assert_eq!(point(&s, "app.odd_name-x", "count").await, 1.0, "sanitised as Etsy does");
    // Tags are labels; a label filter picks series.
    let v = s.get_json("/api/v1/metrics/query?name=app.req&stat=count&from=-2m&labels=route=/home", &s.admin).await;
    assert_eq!(v["series"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["series"][0]["labels"], serde_json::json!({"env": "prod", "route": "/home"}));
    let list = s.get_json("/api/v1/metrics?name=app.req", &s.admin).await;
    assert_eq!(list["series"].as_array().unwrap().len(), 2, "{list}");
    // The two bad lines were counted, and the rest of their datagram kept.
    let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
    assert_eq!(status["bad_lines"], 2, "{status}");
    assert_eq!(status["kernel_drops"], 0, "{status}");
    // A stat that does not apply is refused, naming the ones that do.
    let r = s.req(reqwest::Method::GET, "/api/v1/metrics/query?name=app.hits&stat=p99", &s.admin).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("use count, rate, sum"));

    // The same figures for Prometheus.
    let text = s.req(reqwest::Method::GET, "/metrics", &s.admin).send().await.unwrap().text().await.unwrap();
    for line in [
        "# TYPE app_hits_total counter",
        "app_hits_total 4",
        "app_req_total{env=\"prod\",route=\"/home\"} 1",
        "# TYPE app_lat summary",
        "app_lat{quantile=\"0.99\"} 99",
        "app_lat_count 100",
        "app_lat_sum 5050",
        "# TYPE app_queue gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

/// Etsy StatsD's own cases of `is_valid_packet` (statsd/statsd's test/helpers_tests.js), line → valid?, the
/// table `crates/metrics/tests/etsy.rs` checks the parser with.
fn etsy_cases() -> Vec<(bool, &'static str)> {
    include_str!("../../../metrics/tests/etsy/is_valid_packet.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (v, line) = l.split_once('\t').expect("`valid` or `bad`, a tab, the line");
            (v == "valid", line)
        })
        .collect()
}

#[tokio::test]
async fn a_running_crew_counts_the_lines_etsy_statsd_refuses() {
    let (_d, cfg) = config("");
    let s = Server::start_with_statsd(&cfg).await;
    let cases = etsy_cases();
    let etsy_bad = cases.iter().filter(|(valid, _)| !valid).count() as u64;
    assert!(etsy_bad >= 15 && cases.len() >= 40, "the table is read");
    // Every case in its own datagram, as a client sends them, each line under its own name.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, (_, line)) in cases.iter().enumerate() {
        let line = line.replacen("foo:", &format!("etsy.case{i}:"), 1);
        raw.send_to(line.as_bytes(), statsd(&s)).unwrap();
    }
    let want = cases.len() as u64;
    let all_in = eventually(Duration::from_secs(20), || async {
        s.get_json("/api/v1/metrics/status", &s.admin).await["lines"].as_u64() == Some(want)
    })
    .await;
    let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
    assert!(all_in, "every line arrived: {status}");
    assert_eq!(status["bad_lines"].as_u64(), Some(etsy_bad), "crew's bad lines are Etsy's: {status}");
    // And each valid case is a series of its own; no refused one is.
    let ok = eventually(Duration::from_secs(20), || async {
        let list = s.get_json("/api/v1/metrics?name=etsy.case", &s.admin).await;
        list["series"].as_array().map(|a| a.len() as u64) == Some(want - etsy_bad)
    })
    .await;
    let list = s.get_json("/api/v1/metrics?name=etsy.case", &s.admin).await;
    assert!(ok, "{list}");
    for (i, (valid, line)) in cases.iter().enumerate() {
        let listed = list["series"].as_array().unwrap().iter().any(|x| x["name"] == format!("etsy.case{i}"));
        assert_eq!(listed, *valid, "{line}: {list}");
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_crew() {
    let (_d, cfg) = config("");
    let s = Server::start_with_statsd(&cfg).await;
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"shop.orders:7|c|#region:eu\nshop.latency:12|ms\n", statsd(&s)).unwrap();
    wait_for(&s, "shop.orders", "count", 7.0).await;
    let viewer = s.token("prometheus", "viewer").await;
    let url = url::Url::parse(&s.url).unwrap();
    let scrape = format!(
        "scrape_configs:\n  - job_name: crew\n    authorization:\n      credentials: {viewer}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        url.port().unwrap()
    );
    let prom = crew_testkit::Prometheus::start_with(&scrape, &[]).unwrap();
    let port = prom.port;
    let http = reqwest::Client::new();
    let q = |query: &'static str| prom_query(&http, port, query);
    let got = eventually(Duration::from_secs(60), || async { q("shop_orders_total").await.is_some() }).await;
    let orders = q("shop_orders_total").await;
    let latency = q("shop_latency_count").await;
    drop(prom);
    assert!(got, "Prometheus scraped crew's counter");
    let orders = orders.unwrap();
    assert_eq!(orders["metric"]["region"], "eu", "{orders}");
    assert_eq!(orders["value"][1], "7", "{orders}");
    assert_eq!(latency.expect("the timer's count")["value"][1], "1");
}

/// What a hostile DogStatsD client sends: tags named as Prometheus' reserved labels and crew's own, tags that
/// collide once sanitised or are given twice, values with UTF-8, quotes, backslashes and braces, and names that
/// fall into another family.
const HOSTILE: &str = "hostile.req:1|c|#__name__:evil,quantile:0.5,le:1,__reserved:z,city:Zürich,path:/a\"b\\c,a.b:1,a_b:2,env:a,env:b,5xx:yes,x:a=b{c}\n\
hostile.lat:5|ms|#quantile:q,le:2,__name__:n\n\
hostile.level:3|g|#__name__:x,tag___name__:y\n\
hostile.dup:1|c\nhostile.dup_total:1|g\n\
hostile.same.x:1|g\nhostile.same-x:2|g\n\
hostile.ok:1|c|#region:eu\n";

/// Every sample of an exposition file as Python's prometheus_client reads it with `module`'s
/// `text_string_to_metric_families` (the text format's parser, or the strict OpenMetrics one): name → [{type,
/// labels, value}].
fn python_reads(file: &std::path::Path, module: &str, body: &str) -> Value {
    let py = format!(
        "import json, sys\nfrom {module} import text_string_to_metric_families\nout = {{}}\n\
         for f in text_string_to_metric_families(open(sys.argv[1], encoding='utf-8').read()):\n\
         \x20   for s in f.samples:\n\
         \x20       out.setdefault(s.name, []).append({{'type': f.type, 'labels': s.labels, 'value': s.value}})\n\
         print(json.dumps(out))\n"
    );
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &py, file.to_str().unwrap()])
        .output()
        .expect("python3 with prometheus_client (Debian's python3-prometheus-client)");
    assert!(out.status.success(), "{module}: {}\n{body}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `/metrics` body while a hostile client sends tags: `promtool check metrics` (parse and lint) reports
/// nothing, Python's prometheus_client reads it with the values as sent, and a real Prometheus scraping crew
/// keeps the target up and stores the series with their renamed labels.
#[tokio::test]
async fn hostile_tags_keep_the_exposition_valid_and_prometheus_scraping() {
    let (d, cfg) = config("");
    let s = Server::start_with_statsd(&cfg).await;
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(HOSTILE.as_bytes(), statsd(&s)).unwrap();
    wait_for(&s, "hostile.ok", "count", 1.0).await;
    let body = s.req(reqwest::Method::GET, "/metrics", &s.admin).send().await.unwrap().text().await.unwrap();

    // Names, labels and values as Prometheus' rules say; crew's own in base units; renames and conflicts counted.
    for line in [
        r#"hostile_req_total{_5xx="yes",a_b="1",city="Zürich",env="a",path="/a\"b\\c",tag___name__="evil",tag___reserved="z",tag_a_b="2",tag_env="b",tag_le="1",tag_quantile="0.5",x="a=b{c}"} 1"#,
        r#"hostile_lat{quantile="0.99",tag___name__="n",tag_le="2",tag_quantile="q"} 5"#,
        r#"hostile_level{tag___name__="x",tag_tag___name__="y"} 3"#,
        "# TYPE hostile_dup_total counter",
        "hostile_dup_total 1",
        "hostile_same_x 2", // `same-x` sorts first; `same.x` is the same series, left out
        "crew_metrics_labels_renamed 11",
        "crew_metrics_exposition_conflicts 2",
        "# TYPE crew_metrics_flush_seconds gauge",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
    assert!(!body.contains("_ms"), "no unit-abbreviated name:\n{body}");
    let families: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    for f in &families {
        let name = f.split(' ').next().unwrap();
        assert!(body.lines().any(|l| l.starts_with(&format!("# HELP {name} "))), "HELP for {name}");
    }
    let file = d.path().join("metrics.txt");
    std::fs::write(&file, &body).unwrap();

    // promtool: the text format's parser and Prometheus' lint.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .expect("promtool (Debian's prometheus package)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{body}");

    // Python's prometheus_client reads every family, with the values as sent.
    let parsed = python_reads(&file, "prometheus_client.parser", &body);
    let req = &parsed["hostile_req_total"][0];
    assert_eq!(req["type"], "counter", "{parsed}");
    assert_eq!(req["labels"]["city"], "Zürich", "{parsed}");
    assert_eq!(req["labels"]["path"], "/a\"b\\c", "{parsed}");
    assert_eq!(req["labels"]["x"], "a=b{c}", "{parsed}");
    assert_eq!(req["labels"]["tag___name__"], "evil", "{parsed}");
    assert_eq!(parsed["hostile_lat"].as_array().map(|a| a.len()), Some(3), "three quantiles: {parsed}");
    assert_eq!(parsed["crew_metrics_flush_seconds"][0]["type"], "gauge", "{parsed}");

    // OpenMetrics when asked for it, as Prometheus asks: Python's strict OpenMetrics parser reads it whole.
    let om = s
        .req(reqwest::Method::GET, "/metrics", &s.admin)
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.lines().any(|l| l == "# TYPE hostile_req counter"), "a counter's family without _total:\n{om}");
    let om_file = d.path().join("metrics.om");
    std::fs::write(&om_file, &om).unwrap();
    let parsed_om = python_reads(&om_file, "prometheus_client.openmetrics.parser", &om);
    assert_eq!(parsed_om["hostile_req_total"][0]["labels"], parsed["hostile_req_total"][0]["labels"]);
    assert_eq!(parsed_om["hostile_req_total"][0]["type"], "counter");

    // A real Prometheus (2.42) scraping crew while the client goes on sending: the target stays up.
    let viewer = s.token("prometheus", "viewer").await;
    let url = url::Url::parse(&s.url).unwrap();
    let scrape = format!(
        "scrape_configs:\n  - job_name: crew\n    authorization:\n      credentials: {viewer}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        url.port().unwrap()
    );
    let prom = crew_testkit::Prometheus::start_with(&scrape, &[]).unwrap();
    let port = prom.port;
    let http = reqwest::Client::new();
    let got = eventually(Duration::from_secs(60), || async {
        raw.send_to(HOSTILE.as_bytes(), statsd(&s)).unwrap();
        prom_query(&http, port, "hostile_req_total").await.is_some()
    })
    .await;
    // Several scrapes later, still up, every one of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let up = prom_query(&http, port, r#"min_over_time(up{job="crew"}[1m])"#).await;
    let req = prom_query(&http, port, "hostile_req_total").await;
    let targets: Value =
        http.get(format!("http://127.0.0.1:{port}/api/v1/targets")).send().await.unwrap().json().await.unwrap();
    drop(prom);
    let target = &targets["data"]["activeTargets"][0];
    assert!(got, "Prometheus stored the hostile series: {target}");
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");
    assert_eq!(up.expect("up")["value"][1], "1", "the target was never down");
    let req = req.unwrap();
    assert_eq!(req["metric"]["city"], "Zürich", "{req}");
    assert_eq!(req["metric"]["path"], "/a\"b\\c", "{req}");
    assert_eq!(req["metric"]["tag___name__"], "evil", "{req}");
    assert_eq!(req["metric"]["tag_quantile"], "0.5", "{req}");
}

#[tokio::test]
async fn a_crash_loses_at_most_one_flush() {
    let (_d, cfg) = config("");
    let mut s = Server::start_with_statsd(&cfg).await;
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = statsd(&s);
    // A steady 50 lines a second; the server is killed mid-stream.
    let mut sent = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        raw.send_to(b"steady:1|c", &addr).unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop_hard();
    s.restart();
    let stored = total(&s, "steady", "count").await;
    // At most one interval (1 s ≈ 50 lines) and what was in flight was lost.
    assert!(stored >= (sent - 60) as f64 && stored <= sent as f64, "sent {sent}, stored {stored}");
    // And it carries on.
    let raw2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw2.send_to(b"steady:1000|c", statsd(&s)).unwrap();
    wait_for(&s, "steady", "count", stored + 1000.0).await;
    // A clean stop keeps everything flushed too.
    s.restart();
    assert_eq!(total(&s, "steady", "count").await, stored + 1000.0);
}

#[tokio::test]
async fn bad_input_is_counted_or_refused_and_nothing_stored_is_damaged() {
    let (_d, cfg) = config("max_series = 200\n");
    let s = Server::start_with_statsd(&cfg).await;
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"keep:5|c", statsd(&s)).unwrap();
    wait_for(&s, "keep", "count", 5.0).await;
    // Garbage datagrams, NaN and infinities, and far more names than the limit.
    raw.send_to(&[0xff, 0xfe, 0x00, b'\n', b':', b'|'], statsd(&s)).unwrap();
    raw.send_to(b"x:inf|ms\ny:-inf|g\nz:nan|c", statsd(&s)).unwrap();
    for chunk in 0..50 {
        let lines: String = (0..40).map(|i| format!("many.n{}:1|c\n", chunk * 40 + i)).collect();
        raw.send_to(lines.as_bytes(), statsd(&s)).unwrap();
    }
    // A million distinct names, over TCP so that none is lost on the way: all but the limit's worth refused.
    let mut tcp = std::net::TcpStream::connect(statsd(&s)).unwrap();
    let mut buf = String::with_capacity(1 << 20);
    for i in 0..1_000_000 {
        buf.push_str(&format!("flood.n{i}:1|c\n"));
        if buf.len() > 1 << 20 {
            tcp.write_all(buf.as_bytes()).unwrap();
            buf.clear();
        }
    }
    tcp.write_all(buf.as_bytes()).unwrap();
    drop(tcp);
    // A line over 64 KiB over TCP.
    let mut tcp = std::net::TcpStream::connect(statsd(&s)).unwrap();
    tcp.write_all(format!("long:1|c|#t:{}\nkeep:1|c\n", "x".repeat(70_000)).as_bytes()).unwrap();
    drop(tcp);
    wait_for(&s, "keep", "count", 6.0).await;
    let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
    assert!(status["bad_lines"].as_u64().unwrap() >= 5, "{status}");
    let limited = eventually(Duration::from_secs(30), || async {
        s.get_json("/api/v1/metrics/status", &s.admin).await["series_limited"].as_u64().unwrap_or(0) >= 1_000_000
    })
    .await;
    let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
    assert!(limited, "{status}");
    assert!(status["series"].as_u64().unwrap() <= 200 + 10, "{status}");
    // Queries that cannot be answered are refused with the reason.
    for (q, says) in [
        ("name=keep&colour=red", "unknown parameter `colour`"),
        ("name=keep&from=-1m&to=-2m", "`from` is after `to`"),
        ("name=keep&from=yesterday", "`from`: bad time"),
        ("name=keep&step=0", "`step`"),
        ("stat=count", "`name` is required"),
    ] {
        let r = s.req(reqwest::Method::GET, &format!("/api/v1/metrics/query?{q}"), &s.admin).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{q}: {body}");
    }
    assert_eq!(total(&s, "keep", "count").await, 6.0, "what was stored is intact");
}

/// A VictoriaMetrics (Debian's victoria-metrics) on a free port in a temporary folder; killed when dropped.
struct VictoriaMetrics {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    async fn start() -> VictoriaMetrics {
        let dir = tempfile::tempdir().unwrap();
        let port = crew_testkit::free_port();
        let child = std::process::Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.path().join("vm").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("victoria-metrics (Debian's victoria-metrics package; scripts/test installs it)");
        let http = reqwest::Client::new();
        let up = eventually(Duration::from_secs(20), || async {
            http.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "victoria-metrics started");
        VictoriaMetrics { port, child, _dir: dir }
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn remote_write_reaches_a_real_victoria_metrics() {
    let vm = VictoriaMetrics::start().await;
    let port = vm.port;
    let http = reqwest::Client::new();
    let (_d, cfg) = config(&format!("[metrics.remote_write]\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\n"));
    let s = Server::start_with_statsd(&cfg).await;
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"shop.orders:7|c|#region:eu\nshop.latency:12|ms\nshop.stock:42|g\n", statsd(&s)).unwrap();
    let q = |query: &'static str| prom_query(&http, port, query);
    let got = eventually(Duration::from_secs(40), || async {
        q("shop_orders_total").await.is_some() && q("shop_stock").await.is_some()
    })
    .await;
    let orders = q("shop_orders_total").await;
    let stock = q("shop_stock").await;
    let latency = q("shop_latency_count").await;
    drop(vm);
    assert!(got, "VictoriaMetrics answered a query for crew's series");
    let orders = orders.unwrap();
    assert_eq!(orders["metric"]["region"], "eu", "{orders}");
    assert_eq!(orders["value"][1], "7");
    assert_eq!(stock.unwrap()["value"][1], "42");
    assert_eq!(latency.unwrap()["value"][1], "1");
    let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
    assert!(status["remote_write"]["sent_samples"].as_u64().unwrap() >= 3, "{status}");
}

/// Remote write of the hostile client's series to a real Prometheus (2.42, `--web.enable-remote-write-receiver`)
/// and a real VictoriaMetrics: each takes every batch (none refused), with the labels renamed as in the
/// exposition and the series that would repeat another left out as there (sent twice, the receiver would keep
/// whichever came first: not what `/metrics` says), and a series sent after the hostile ones arrives too.
#[tokio::test]
async fn remote_write_of_hostile_tags_is_taken_by_real_prometheus_and_victoria_metrics() {
    let prom = crew_testkit::Prometheus::start_with("", &[]).unwrap();
    let vm = VictoriaMetrics::start().await;
    let vm_port = vm.port;
    let http = reqwest::Client::new();
    let mut servers = vec![];
    for (name, url) in [
        ("prometheus", format!("{}/api/v1/write", prom.url())),
        ("victoria-metrics", format!("http://127.0.0.1:{vm_port}/api/v1/write")),
    ] {
        let (d, cfg) = config(&format!("[metrics.remote_write]\nurl = \"{url}\"\n"));
        servers.push((name, d, Server::start_with_statsd(&cfg).await));
    }
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (_, _, s) in &servers {
        raw.send_to(HOSTILE.as_bytes(), statsd(s)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (_, _, s) in &servers {
        raw.send_to(b"after.hostile:3|c", statsd(s)).unwrap();
    }
    for (name, _, s) in &servers {
        let port = if *name == "prometheus" { prom.port } else { vm_port };
        let q = |query: &'static str| prom_query(&http, port, query);
        let got = eventually(Duration::from_secs(40), || async {
            q("after_hostile_total").await.is_some() && q("hostile_req_total").await.is_some()
        })
        .await;
        let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
        let rw = &status["remote_write"];
        assert!(got, "{name} has the series sent after the hostile ones: {rw}");
        assert_eq!(rw["dropped_batches"], 0, "{name} refused nothing: {rw}");
        let req = q("hostile_req_total").await.unwrap();
        assert_eq!(req["metric"]["city"], "Zürich", "{name}: {req}");
        assert_eq!(req["metric"]["path"], "/a\"b\\c", "{name}: {req}");
        assert_eq!(req["metric"]["tag___name__"], "evil", "{name}: {req}");
        assert_eq!(req["metric"]["tag_quantile"], "0.5", "{name}: {req}");
        let lat = q(r#"hostile_lat{quantile="0.99"}"#).await.expect("the summary's quantiles");
        assert_eq!(lat["metric"]["tag_quantile"], "q", "{name}: {lat}");
        // `same-x` sorts first and is sent; `same.x` is the same series and is left out, as in the exposition.
        assert_eq!(q("hostile_same_x").await.unwrap()["value"][1], "2", "{name}");
        assert_eq!(q("hostile_dup_total").await.unwrap()["value"][1], "1", "{name}: the counter, not the gauge");
    }
}

/// A receiver answering each request with the status `script` gives it (by the request's number and the time
/// since the first), 429s with `Retry-After: 1`: the faults a real store cannot be made to show on demand.
/// Returns its port and the (status, body) of every request.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u16, Vec<u8>)>>>;
async fn scripted_receiver(script: impl Fn(usize, Duration) -> u16 + Send + 'static) -> (u16, Seen) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        let first = std::time::Instant::now();
        loop {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            // Headers, then Content-Length bytes of body.
            let (head_end, len) = loop {
                let k = c.read(&mut chunk).await.unwrap_or(0);
                if k == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..k]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let k = c.read(&mut chunk).await.unwrap_or(0);
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            let status = script(n, first.elapsed());
            n += 1;
            log.lock().unwrap().push((status, buf[head_end.min(buf.len())..].to_vec()));
            let reply = match status {
                429 => {
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                }
                204 => "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string(),
                s => format!("HTTP/1.1 {s} Nope\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"),
            };
            let _ = c.write_all(reply.as_bytes()).await;
        }
    });
    (port, seen)
}

/// The series named in a remote write body.
fn names_in(body: &[u8]) -> String {
    String::from_utf8_lossy(&snap::raw::Decoder::new().decompress_vec(body).unwrap()).into_owned()
}

/// A batch the receiver refuses (400) is dropped at once and counted; one it keeps failing on (503) is retried
/// for `retry_for`, then dropped and counted, and the newer batches behind it go out.
#[tokio::test]
async fn remote_write_drops_refused_and_long_failing_batches_and_newer_data_goes_out() {
    // 400 to the first request; then 503 for four seconds; then everything is taken.
    let (port, seen) = scripted_receiver(|n, since| match (n, since.as_secs_f64()) {
        (0, _) => 400,
        (_, s) if s < 4.0 => 503,
        _ => 204,
    })
    .await;
    let (_d, cfg) =
        config(&format!("[metrics.remote_write]\nurl = \"http://127.0.0.1:{port}/write\"\nretry_for = \"2s\"\n"));
    let s = Server::start_with_statsd(&cfg).await;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"first.batch:1|c", statsd(&s)).unwrap();
    let refused = eventually(Duration::from_secs(10), || async { seen.lock().unwrap().len() >= 2 }).await;
    assert!(refused, "tried again after the 400");
    udp.send_to(b"second.batch:1|c", statsd(&s)).unwrap();
    let delivered = eventually(Duration::from_secs(30), || async {
        udp.send_to(b"later.batch:1|c", statsd(&s)).unwrap();
        seen.lock().unwrap().iter().any(|(st, b)| *st == 204 && names_in(b).contains("later_batch_total"))
    })
    .await;
    let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
    let rw = &status["remote_write"];
    let log: Vec<(u16, String)> = seen.lock().unwrap().iter().map(|(st, b)| (*st, names_in(b))).collect();
    assert!(delivered, "newer data went out: {rw} {:?}", log.iter().map(|x| x.0).collect::<Vec<_>>());
    assert!(log[0].1.contains("first_batch_total"), "{log:?}");
    let tries_of_first = log.iter().filter(|(_, b)| b.contains("first_batch_total")).count();
    assert_eq!(tries_of_first, 1, "the refused batch is not tried again: {log:?}");
    assert_eq!(rw["dropped"]["refused"], 1, "{rw}");
    assert!(rw["dropped"]["failing"].as_u64().unwrap() >= 1, "a batch failing past retry_for is dropped: {rw}");
    assert_eq!(rw["dropped"]["queue_full"], 0, "{rw}");
    assert!(rw["dropped_samples"].as_u64().unwrap() >= 2, "{rw}");
    assert!(rw["last_error"].as_str().unwrap_or("").contains("503"), "{rw}");
}

#[tokio::test]
async fn remote_write_retries_429_and_5xx_then_delivers_the_same_batch() {
    // 429 (Retry-After: 1), then 503, then accepted.
    let (port, seen) = scripted_receiver(|n, _| match n {
        0 => 429,
        1 => 503,
        _ => 204,
    })
    .await;
    let (_d, cfg) = config(&format!("[metrics.remote_write]\nurl = \"http://127.0.0.1:{port}/write\"\n"));
    let s = Server::start_with_statsd(&cfg).await;
    UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"retry.me:5|c", statsd(&s)).unwrap();
    let delivered =
        eventually(Duration::from_secs(30), || async { seen.lock().unwrap().iter().any(|(st, _)| *st == 204) }).await;
    assert!(delivered, "delivered after retries: {:?}", seen.lock().unwrap().iter().map(|x| x.0).collect::<Vec<_>>());
    let log = seen.lock().unwrap().clone();
    assert_eq!(log[0].0, 429);
    assert_eq!(log[1].0, 503);
    assert_eq!(log[0].1, log[2].1, "the batch refused first is the one delivered");
    // The body is a snappy-compressed protobuf WriteRequest naming the series.
    let raw = snap::raw::Decoder::new().decompress_vec(&log[2].1).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("__name__") && text.contains("retry_me_total"), "{text}");
    let status = s.get_json("/api/v1/metrics/status", &s.admin).await;
    assert!(status["remote_write"]["retries"].as_u64().unwrap() >= 2, "{status}");
}

#[tokio::test]
async fn an_alert_fires_after_its_for_and_resolves_with_its_runbook() {
    // The runbook it names is in the app's repository (crew refuses to start otherwise).
    let a = crate::deploy::app();
    crate::runbooks::commit_runbooks(&a);
    let cfg = a.with(
        "[metrics]\nflush = \"1s\"\n\n[[alerts]]\nname = \"checkout errors\"\nseries = \"shop.errors\"\nstat = \"count\"\nop = \">\"\nthreshold = 5\nfor = \"2s\"\nseverity = \"page\"\nsummary = \"checkout errors above 5 a second\"\nrunbook = \"runbooks/checkout.md\"\n",
    );
    let s = Server::start_with_statsd(&cfg).await;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let events = |kind: &'static str| {
        let s = &s;
        async move {
            s.get_json(&format!("/api/v1/events?kind={kind}"), &s.admin).await["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    // Ten errors a second for four seconds: over the threshold for longer than `for`.
    for _ in 0..16 {
        udp.send_to(b"shop.errors:3|c\nshop.errors:2|c\nshop.errors:5|c", statsd(&s)).unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fired = eventually(Duration::from_secs(10), || async { !events("alert.fired").await.is_empty() }).await;
    assert!(fired, "alert.fired recorded");
    let e = &events("alert.fired").await[0];
    assert_eq!(e["subject"], "alert:checkout errors");
    assert_eq!(e["actor"]["via"], "scheduler");
    assert!(
        e["summary"].as_str().unwrap().starts_with("[page] checkout errors above 5 a second: shop.errors count"),
        "{e}"
    );
    assert_eq!(e["links"][0], serde_json::json!({"rel": "runbook", "href": "/runbooks/checkout.md"}));
    // The errors stop: resolved, once.
    let resolved = eventually(Duration::from_secs(10), || async { !events("alert.resolved").await.is_empty() }).await;
    assert!(resolved, "alert.resolved recorded");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(events("alert.fired").await.len(), 1);
    assert_eq!(events("alert.resolved").await.len(), 1);
}

#[tokio::test]
async fn crew_graph_draws_a_sparkline_with_the_deploys_under_it() {
    let app = crate::deploy::app();
    let cfg = app.with("[metrics]\nflush = \"1s\"\n");
    let s = Server::start_with_statsd(&cfg).await;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for v in [1, 5, 9] {
        udp.send_to(format!("www.requests:{v}|c|#route:/").as_bytes(), statsd(&s)).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    wait_for(&s, "www.requests", "count", 15.0).await;
    crate::deploy::deploy_staging(&s, &s.admin).await;
    let out = s.cli(&s.admin).args(["graph", "www.requests", "--since", "2m", "--stat", "count"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("www.requests{route=/} count over 2m\n"), "{text}");
    assert!(text.contains('█') && text.contains("max 9"), "{text}");
    let marks = text.lines().nth(3).unwrap_or("");
    assert!(marks.trim_end().ends_with('D'), "a deploy marker at the right: {text}");
    assert!(text.contains("deployed www to staging"), "{text}");
    let missing = s.cli(&s.admin).args(["graph", "no.such"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no series `no.such`"));
}

#[tokio::test]
async fn the_robot_answers_graph_with_a_sparkline_and_the_link() {
    let (_d, cfg) = config("");
    let s = Server::start_with_statsd(&cfg).await;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for v in [2, 4, 8] {
        udp.send_to(format!("shop.orders:{v}|c").as_bytes(), statsd(&s)).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    wait_for(&s, "shop.orders", "count", 14.0).await;
    let ask = |text: &'static str| {
        let s = &s;
        async move {
            let r = s
                .req(reqwest::Method::POST, "/api/v1/chat/command", &s.admin)
                .json(&serde_json::json!({ "text": text }))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            v["reply"].as_str().unwrap_or_default().to_string()
        }
    };
    let reply = ask("!graph shop.orders 5m").await;
    let lines: Vec<&str> = reply.lines().collect();
    assert!(lines[0].starts_with("shop.orders rate: ") && lines[0].contains('█'), "{reply}");
    assert!(lines[0].contains("(min 2, max 8)"), "8 orders in a second at the top: {reply}");
    assert!(lines[1].ends_with("/graphs?q=shop.orders&range=1h"), "{reply}");
    assert_eq!(ask("!graph no.such").await, "no data for no.such over 1h");
}

/// Two replicas on one PostgreSQL both receive the same series: neither overwrites the other's chunks, and a
/// query sums them.
#[tokio::test]
async fn replicas_receiving_the_same_series_keep_both_and_a_query_sums_them() {
    let (_d, cfg) = config("");
    let url = crew_testkit::fresh_postgres().await;
    let mut a = Server::start_replica_with_statsd(&url, None, &cfg).await;
    let mut b = Server::start_replica_with_statsd(&url, Some(&a.admin), &cfg).await;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"shared.hits:5|c", statsd(&a)).unwrap();
    udp.send_to(b"shared.hits:7|c", statsd(&b)).unwrap();
    wait_for(&a, "shared.hits", "count", 5.0).await;
    wait_for(&b, "shared.hits", "count", 7.0).await;
    // Both stop cleanly, storing their open chunks (for the same series and, flushes being aligned, the same
    // times); then one comes back and finds both.
    assert!(a.terminate(Duration::from_secs(15)).is_some_and(|s| s.success()));
    assert!(b.terminate(Duration::from_secs(15)).is_some_and(|s| s.success()));
    a.restart();
    assert_eq!(total(&a, "shared.hits", "count").await, 12.0);
}

/// Grafana's ways to read crew: the JSON/SimpleJSON data sources (`POST <url>/annotations` with `{range,
/// annotation}`, and `GET <url>` as their connection test), Infinity (`GET` with `from`/`to` as `${__from}` ms or
/// `now-6h`), and `docs/grafana/crew.json`, whose every panel query a real Prometheus scraping crew answers and
/// whose annotation queries, made as Infinity makes them, show the flag change. (Grafana itself is not packaged
/// for Debian; the requests are made here as its data sources make them.)
#[tokio::test]
async fn grafana_reads_annotations_and_the_dashboard_in_docs_works_against_crew_and_prometheus() {
    let (_d, cfg) = config("");
    let s = Server::start_with_statsd(&cfg).await;
    let mo = s.token("mo", "member").await;
    let viewer = s.token("grafana", "viewer").await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let res = s
        .req(reqwest::Method::POST, "/api/v1/flags/grafana-beta/knob", &mo)
        .json(&json!({"knob": "on", "reason": "for the graphs"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let after = chrono::Utc::now() + chrono::Duration::seconds(5);

    // JSON / SimpleJSON: the connection test, then the annotation query for flags, answered with it.
    assert_eq!(s.get_json("/api/v1", &viewer).await["name"], "crew");
    let annotation = json!({"name": "Flags", "enable": true, "iconColor": "red", "query": "flag"});
    let body = json!({
        "range": {"from": before.to_rfc3339(), "to": after.to_rfc3339(), "raw": {"from": "now-5m", "to": "now"}},
        "rangeRaw": {"from": "now-5m", "to": "now"},
        "annotation": annotation,
    });
    let res = s.req(reqwest::Method::POST, "/api/v1/annotations", &viewer).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let got: Value = res.json().await.unwrap();
    let a = got.as_array().unwrap().iter().find(|a| a["tags"][1] == "flag:grafana-beta");
    let a = a.unwrap_or_else(|| panic!("the flag change in {got}"));
    assert_eq!(a["annotation"], annotation, "{a}");
    assert_eq!(a["tags"][0], "flag");
    assert!(a["time"].as_i64().unwrap() >= before.timestamp_millis(), "{a}");
    assert!(a["text"].as_str().unwrap().contains("for the graphs") || a["title"] == "flag.changed", "{a}");
    // Deploys only: the flag change is not among them.
    let mut deploys = body.clone();
    deploys["annotation"]["query"] = json!("deploy");
    let got: Value = s
        .req(reqwest::Method::POST, "/api/v1/annotations", &viewer)
        .json(&deploys)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!([]));
    // What a data source could send wrong is a 400 naming it.
    for (bad, says) in [
        (json!({"range": {"from": "yesterday", "to": "now"}, "annotation": {}}), "range.from"),
        (json!({"range": {"from": "now-1h", "to": "now"}, "annotation": {"query": "alerts"}}), "annotation.query"),
        (json!({"range": {"from": "now", "to": "now-1h"}, "annotation": {}}), "after"),
        (json!({"annotation": {}}), "range"),
        (json!({"range": {"from": "now-1h", "to": "now"}, "annotation": "x"}), "annotation"),
        (
            json!({"range": {"from": "now-1h", "to": "now"}, "annotation": {"name": "x".repeat(5000)}}),
            "at most 4096 bytes",
        ),
    ] {
        let res = s.req(reqwest::Method::POST, "/api/v1/annotations", &viewer).json(&bad).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let text = res.text().await.unwrap();
        assert!(text.contains(says), "{bad}: {text}");
    }

    // Infinity: from/to as Grafana's relative times.
    let got = s.get_json("/api/v1/annotations?from=now-1h&to=now&tags=flag", &viewer).await;
    assert!(got.to_string().contains("grafana-beta"), "{got}");

    // The dashboard in docs/: Infinity's annotation requests as it makes them, with ${__from}/${__to} in ms.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana/crew.json")).unwrap(),
    )
    .unwrap();
    let list = dash["annotations"]["list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let mut flags_seen = false;
    for a in list {
        let t = &a["target"];
        assert_eq!(a["datasource"]["type"], "yesoreyeram-infinity-datasource");
        let url = t["url"].as_str().unwrap().replace("${crew_url}", &s.url);
        let mut req = s.client().get(&url).bearer_auth(&viewer);
        for p in t["url_options"]["params"].as_array().unwrap() {
            let v = p["value"]
                .as_str()
                .unwrap()
                .replace("${__from}", &(before.timestamp_millis() - 3_600_000).to_string())
                .replace("${__to}", &after.timestamp_millis().to_string());
            req = req.query(&[(p["key"].as_str().unwrap(), v)]);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{url}");
        let rows: Value = res.json().await.unwrap();
        for c in t["columns"].as_array().unwrap() {
            for r in rows.as_array().unwrap() {
                assert!(!r[c["selector"].as_str().unwrap()].is_null(), "column {c} in {r}");
            }
        }
        flags_seen |= rows.to_string().contains("grafana-beta");
    }
    assert!(flags_seen, "the dashboard's flag annotations show the flag change");

    // Its panels, through a real Prometheus scraping crew: every query has data.
    let url = url::Url::parse(&s.url).unwrap();
    let scrape = format!(
        "scrape_configs:\n  - job_name: crew\n    authorization:\n      credentials: {viewer}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        url.port().unwrap()
    );
    let prom = crew_testkit::Prometheus::start_with(&scrape, &[]).unwrap();
    let http = reqwest::Client::new();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    assert!(exprs.len() >= 4);
    let mut missing = exprs.clone();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() && std::time::Instant::now() < end {
        udp.send_to(b"grafana.lines:1|c\nbad line\n", statsd(&s)).unwrap();
        let mut still = vec![];
        for e in missing {
            if prom_query(&http, prom.port, &e).await.is_none() {
                still.push(e);
            }
        }
        missing = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(missing.is_empty(), "Prometheus has no data for the dashboard's {missing:?}");
}
