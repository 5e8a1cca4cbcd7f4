//! `crew demo`: a newcomer's first command. A server on a fresh temporary data folder with the embedded
//! database, a few real events recorded through its API, and what to try next. Serves until Ctrl-C.

use crate::cli::{DemoArgs, LogFormat};
use crate::client::Client;
use crate::serve::{init_logs, start_error};
use anyhow::{Context, Result};
use crew_server::{App, Overrides, Settings, StartError};
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

pub async fn run(args: DemoArgs) -> Result<()> {
    init_logs(LogFormat::Text, "warn");
    let dir = tempfile::Builder::new().prefix("crew-demo-").tempdir().context("a temporary folder for the demo")?;
    let data_dir = dir.path().join(".crew");
    let repo = sample_repository(dir.path()).await?;
    let config = repo.join("crew.toml");
    let settings = |listen: &str| {
        Settings::resolve(Overrides {
            config: Some(config.clone()),
            data_dir: Some(data_dir.clone()),
            listen: Some(listen.to_string()),
            // A port of its own, so the demo never takes (or fails on) a real server's 8125.
            statsd: Some("127.0.0.1:0".into()),
            database: None,
        })
        .expect("the demo's crew.toml is valid")
    };
    let app = match App::build(settings(&args.listen)).await {
        Ok(app) => app,
        Err(StartError::Listen { addr, .. }) => {
            eprintln!("{addr} is taken; using a free port instead");
            App::build(settings("127.0.0.1:0")).await.map_err(start_error)?
        }
        Err(e) => return Err(start_error(e)),
    };
    let url = format!("http://{}", app.local_addr());
    // An hour of the sample app's traffic behind it, so the dashboard has history from the first look.
    let state = app.state().clone();
    let now = chrono::Utc::now().timestamp_millis();
    let flush_ms = state.metrics.live.config.flush.as_millis() as i64;
    let mut traffic = Traffic::new();
    let mut t = (now / flush_ms - 3_600_000 / flush_ms) * flush_ms;
    while t < now - flush_ms {
        let points = traffic.interval(t, flush_ms);
        crew_server::metrics::store_points(&state.platform.store, &state.metrics.live, t, points).await?;
        t += flush_ms;
    }
    let statsd_addr = *state.metrics.live.addr.lock().expect("not poisoned");
    let admin_token = std::fs::read_to_string(data_dir.join("admin.token")).context("the demo's admin token")?;
    let admin_token = admin_token.trim().to_string();
    let shutdown = CancellationToken::new();
    crew_server::cancel_on_signal(shutdown.clone());
    let server = tokio::spawn(app.run(shutdown.clone()));
    let burst = std::sync::Arc::new(tokio::sync::Notify::new());
    if let Some(addr) = statsd_addr {
        tokio::spawn(send_traffic(addr, dir.path().join("hosts"), burst.clone(), shutdown.clone()));
    }

    // Real events, through the API, as a team would make them.
    let admin = Client::with_token(&url, &admin_token);
    let alice = admin.json(Method::POST, "/api/v1/tokens", Some(&json!({"name": "alice", "role": "member"}))).await?;
    admin.json(Method::POST, "/api/v1/tokens", Some(&json!({"name": "bob", "role": "viewer"}))).await?;
    let alice = Client::with_token(&url, alice["token"].as_str().unwrap_or_default());
    let notes = [
        ("note", "www/staging", "alice: staging looks good, shipping the login fix next"),
        ("note", "www/production", "alice: watching the login error rate after the fix"),
        ("note", "ops", "alice planned a fire drill: database failover, Thursday 15:00"),
    ];
    for (kind, subject, summary) in notes {
        let body = json!({"kind": kind, "subject": subject, "summary": summary, "links": [{"rel": "timeline", "href": format!("/timeline?subject={subject}")}]});
        alice.json(Method::POST, "/api/v1/events", Some(&body)).await?;
    }

    // Real deploys of the sample app: staging, then production (two hosts); a second commit shipped the same
    // way; a third left pending.
    for env in ["staging", "production"] {
        deploy(&alice, env, "first version").await?;
    }
    commit(&repo, "index.html", "<h1>crew demo</h1>\n<p>now with a login page</p>\n", "Add the login page").await?;
    for env in ["staging", "production"] {
        deploy(&alice, env, "login page").await?;
    }
    commit(&repo, "about.html", "<p>about us</p>\n", "Add an about page").await?;

    // Flags in each of Flickr's shapes, and a contingency switch flipped.
    let knobs = [
        (
            "new-checkout",
            json!({"knob": "beta", "users": ["alice"], "groups": ["staff"], "reason": "private beta for staff"}),
        ),
        ("search-v2", json!({"knob": "rollout", "percent": 10, "reason": "ramping the new search"})),
        ("recommendations", json!({"knob": "dark", "percent": 20, "reason": "dark launch: measure the load"})),
        ("button-color", json!({"knob": "split", "split": "control=50,blue=50", "reason": "bucket test"})),
        ("video-uploads", json!({"knob": "on", "reason": "launched"})),
        ("video-uploads", json!({"knob": "off", "reason": "storage is slow: contingency switch"})),
    ];
    for (key, body) in knobs {
        alice.json(Method::POST, &format!("/api/v1/flags/{key}/knob"), Some(&body)).await?;
    }
    bucket_test(&alice, "button-color").await?;

    // The hosts' machine state, converged from their roles; then someone edits web2 by hand, and a check finds it.
    let infra = |mode| {
        let args = crate::cli::InfraArgs {
            target: "all".into(),
            config: config.clone(),
            local: false,
            root: None,
            forks: 2,
            no_record: false,
            quiet: true,
        };
        let alice = alice.clone();
        async move { crate::infra::run(&args, mode, false, move || Ok(alice.clone())).await }
    };
    infra(crate::infra::Mode::Apply).await?;
    let hand_edited = dir.path().join("hosts/web2/etc/www/app.conf");
    tokio::fs::write(&hand_edited, "listen 8081\nname web2\nworkers 64   # tuned by hand during the incident\n")
        .await?;
    infra(crate::infra::Mode::Check).await?;

    // The error burst pages the person on call (the incident lists the deploys just before it, each with its
    // undo); alice, on call this week, acknowledges it. The burst ends, the alert resolves the incident and its
    // postmortem is drafted; then a fire drill rehearses a page, which alice acknowledges too.
    burst.notify_one();
    {
        let alice = alice.clone();
        let repo_dir = repo.clone();
        tokio::spawn(async move {
            let wait_triggered = || async {
                for _ in 0..120 {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let Ok(v) = alice.json(Method::GET, "/api/v1/incidents?status=open", None).await else { continue };
                    let open = v["incidents"].as_array().cloned().unwrap_or_default();
                    if let Some(id) = open.iter().find(|i| i["status"] == "triggered").and_then(|i| i["id"].as_i64()) {
                        return Some(id);
                    }
                }
                None
            };
            let Some(id) = wait_triggered().await else { return };
            tokio::time::sleep(std::time::Duration::from_secs(8)).await;
            let _ = alice.json(Method::POST, &format!("/api/v1/incidents/{id}/ack"), None).await;
            for _ in 0..120 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let Ok(v) = alice.json(Method::GET, "/api/v1/incidents?status=open", None).await else { continue };
                if v["incidents"].as_array().is_some_and(|l| l.is_empty()) {
                    break;
                }
            }
            // The drill is refused while an incident is open (a slow-pages ticket, say): it tries again for a while.
            let mut drilled = false;
            for _ in 0..30 {
                if alice.json(Method::POST, "/api/v1/drills/search-dark/run", None).await.is_ok() {
                    drilled = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            if !drilled {
                return;
            }
            if let Some(id) = wait_triggered().await {
                tokio::time::sleep(std::time::Duration::from_secs(4)).await;
                let _ = alice.json(Method::POST, &format!("/api/v1/incidents/{id}/ack"), None).await;
                let _ = alice
                    .json(
                        Method::POST,
                        &format!("/api/v1/incidents/{id}/resolve"),
                        Some(&json!({"note": "practice over"})),
                    )
                    .await;
            }
            // A release whose search cache makes pages slower: staging takes it (nothing watches staging), then
            // production's canary web1 gets it, the judge compares web1's p99 with web2's, fails it, and switches
            // web1 back by itself; alice, who deployed, is paged and acknowledges.
            if commit(&repo_dir, "SLOW", "search cache: every page looks it up first\n", "Cache search results")
                .await
                .is_err()
            {
                return;
            }
            if deploy(&alice, "staging", "search cache").await.is_err() {
                return;
            }
            let _ = deploy(&alice, "production", "search cache").await;
            if let Some(id) = wait_triggered().await {
                tokio::time::sleep(std::time::Duration::from_secs(4)).await;
                let _ = alice.json(Method::POST, &format!("/api/v1/incidents/{id}/ack"), None).await;
            }
        });
    }

    // `cargo run -- demo` leaves no `crew` on PATH: say how to call this very binary.
    let on_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("crew").is_file()));
    let alias = match std::env::current_exe() {
        Ok(exe) if !on_path => format!("    alias crew={}\n", exe.display()),
        _ => String::new(),
    };
    let statsd = statsd_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    println!(
        "\ncrew demo is running at {url}\n\n\
         Sign in: open {url}/signin and paste the admin token:\n    {admin_token}\n\n\
         Then try, in another terminal:\n{alias}    \
         export CREW_SERVER={url} CREW_TOKEN={admin_token}\n    \
         crew events --follow                      # the timeline, live\n    \
         crew token create carol --role viewer     # appears on the timeline at once\n    \
         crew events --search login                # search the timeline\n    \
         crew log                                  # the deploy log\n    \
         crew pending production                   # what trunk has that production lacks\n    \
         crew deploy staging -m \"about page\"      # ship it to staging first ...\n    \
         crew deploy production -m \"about page\"   # ... production requires it\n    \
         crew rollback production                  # back to the previous release in seconds\n    \
         crew flags                                # the flags, in words\n    \
         crew flag video-uploads on -r \"storage ok\"   # flip the contingency switch back\n    \
         crew flag eval search-v2 --user bob       # what bob gets, and why\n    \
         crew experiment button-color              # the bucket test: blue converts better (and its interval)\n    \
         crew infra plan web2                      # web2 drifted: the hand edit, as a diff\n    \
         crew infra apply web2                     # and back to its role\n    \
         crew graph www.requests --since 1h        # the traffic, deploys marked under it\n    \
         crew oncall                               # who is on call now and next\n    \
         crew incident list                        # the error burst paged alice (she acks it)\n    \
         crew incident open \"test page\" --escalation www   # page the on-call yourself\n    \
         crew incident ack ID                      # ... and acknowledge it: nobody else is paged\n    \
         crew incident show 1                      # the deploys just before it, and their undo\n    \
         crew postmortem 1                         # the blameless postmortem, drafted at resolve\n    \
         crew drill list                           # the fire drill the demo ran after it\n    \
         crew events --kind deploy.judged          # then a slower canary, switched back by the judge itself\n    \
         crew status\n\n\
         The Metrics page ({url}/graphs) has the sample app's dashboard; StatsD is on udp://{statsd}.\n\
         Prometheus scrapes {url}/metrics (a viewer token; OpenMetrics when it asks), and Grafana draws the deploys\n\
         and flag changes from {url}/api/v1/annotations (docs/grafana/crew.json is a dashboard to import).\n\
         The sample app's repository is {}; its hosts are folders under {}.\n\
         Data lives in {} until you stop the demo with Ctrl-C.",
        repo.display(),
        dir.path().join("hosts").display(),
        dir.path().display()
    );
    server.await.context("demo server")??;
    Ok(())
}

/// Runs git in the sample repository.
async fn git(repo: &Path, args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Alice Demo", "-c", "user.email=alice@example.com"])
        .args(args)
        .output()
        .await
        .context("running git (the demo needs git installed)")?;
    anyhow::ensure!(out.status.success(), "git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

async fn commit(repo: &Path, file: &str, text: &str, subject: &str) -> Result<()> {
    tokio::fs::write(repo.join(file), text).await?;
    git(repo, &["add", "-A"]).await?;
    git(repo, &["commit", "-q", "-m", subject]).await
}

/// A small web app's repository with a crew.toml: staging on one host folder, production on two (one canary),
/// production requiring what staging runs.
async fn sample_repository(root: &Path) -> Result<PathBuf> {
    let repo = root.join("www");
    let hosts = root.join("hosts");
    tokio::fs::create_dir_all(&repo).await?;
    let toml = format!(
        r#"# The sample app crew demo deploys. Hosts are local folders; real ones are ssh://user@host/path.
[app]
name = "www"
repo = "."
branch = "main"

[build]
command = "mkdir -p dist && cp *.html dist/ && if [ -e SLOW ]; then cp SLOW dist/; fi && echo $CREW_REVISION > dist/REVISION"
artifact = "dist"

[environments.staging]
hosts = ["local:{h}/staging"]

[environments.production]
hosts = ["local:{h}/web1", "local:{h}/web2"]
canary = 1
requires = "staging"
restart = "echo restarted >> ../../restarts.log"

# The judge watches the canary (web1) against the baseline (web2) on each host's p99 latency (the app tags its
# timings with `host:web1`): every 4 s for 30 s; a slower canary is switched back by itself and its deployer paged.
[environments.production.watch]
window = "30s"
interval = "4s"
on_fail = "rollback"
series = [{{ name = "www.latency", stat = "p99", direction = "increase" }}]

# The same machines' own state, kept in roles (roles/web.toml); the server checks them for drift hourly.
[[hosts]]
name = "web1"
address = "local"
roles = ["web"]
root = "{h}/web1"
vars = {{ port = 8080 }}

[[hosts]]
name = "web2"
address = "local"
roles = ["web"]
root = "{h}/web2"
vars = {{ port = 8081 }}

[infra]
check = "1h"

[metrics]
flush = "2s"

[[dashboards]]
name = "www"
panels = [
  {{ title = "Requests a second", series = "www.requests", stat = "rate" }},
  {{ title = "Latency p99 (ms)", series = "www.latency", stat = "p99" }},
  {{ title = "Errors", series = "www.errors", stat = "count" }},
  {{ title = "Signed-in users", series = "www.users", stat = "distinct" }},
]

[[alerts]]
name = "slow pages"
series = "www.latency"
stat = "p99"
op = ">"
threshold = 900
for = "1m"
severity = "ticket"
summary = "www p99 latency over 900 ms"
runbook = "runbooks/www-latency.md"

# Who is on call, and how an incident pages them. Add [smtp] (server, tls, from) to get the pages by email.
[people.alice]
email = "alice@example.com"
notify = ["email"]

[people.bob]
email = "bob@example.com"
notify = ["email"]

[[schedules]]
name = "ops"
zone = "Europe/Berlin"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
rotation = "weekly"
start = "{start}T00:00"   # today: alice is on call this week, then bob

[[escalations]]
name = "www"
steps = [
  {{ notify = ["schedule:ops"], wait = "5m" }},
  {{ notify = ["user:bob"], wait = "10m" }},
]

[[alerts]]
name = "login errors"
series = "www.errors"
stat = "count"
op = ">"
threshold = 50
severity = "page"
escalation = "www"
summary = "www errors are high"
runbook = "runbooks/www-errors.md"
"#,
        h = hosts.display(),
        start = chrono::Utc::now().date_naive()
    );
    tokio::fs::write(repo.join("crew.toml"), toml).await?;
    tokio::fs::create_dir_all(repo.join("roles")).await?;
    tokio::fs::create_dir_all(repo.join("templates")).await?;
    tokio::fs::write(
        repo.join("roles/web.toml"),
        "[[directory]]\npath = \"/etc/www\"\n\n[[file]]\npath = \"/etc/www/app.conf\"\ntemplate = \"templates/app.conf\"\nmode = \"0644\"\n",
    )
    .await?;
    tokio::fs::write(repo.join("templates/app.conf"), "listen {{ port }}\nname {{ facts.hostname }}\n").await?;
    tokio::fs::write(repo.join("index.html"), "<h1>crew demo</h1>\n").await?;
    // The runbooks the alerts name: crew refuses to start on an alert whose runbook the repository lacks.
    tokio::fs::create_dir_all(repo.join("runbooks")).await?;
    tokio::fs::write(repo.join("runbooks/www-latency.md"), WWW_LATENCY).await?;
    tokio::fs::write(repo.join("runbooks/www-errors.md"), WWW_ERRORS).await?;
    tokio::fs::create_dir_all(repo.join("drills")).await?;
    tokio::fs::write(repo.join("drills/search-dark.toml"), SEARCH_DARK).await?;
    git(&repo, &["init", "-q", "-b", "main"]).await?;
    git(&repo, &["add", "-A"]).await?;
    git(&repo, &["commit", "-q", "-m", "First page"]).await?;
    Ok(repo)
}

/// The demo's runbook, with the four sections every runbook has.
const WWW_LATENCY: &str = "# www latency\n\n\
## Meaning\nThe 99th percentile of www's page times is over 900 ms for a minute.\n\n\
## Impact\nOne visitor in a hundred waits about a second or more for a page.\n\n\
## Diagnosis\n- Look at [latency and requests](/graphs?q=www.latency) next to the deploys on the graph.\n\
- Check what went out last: `crew pending production`, `crew events --kind deploy`.\n\n\
## Mitigation\n1. If a deploy preceded it, roll back: `!rollback production`.\n\
2. If a flag was ramped, switch it off: `!flag NAME off`.\n\
3. Otherwise look for slow queries and tell #ops what you see.\n";

/// The demo's fire drill: the new search goes dark, the on-call is paged for practice, and it comes back.
const SEARCH_DARK: &str = "title = \"The new search goes dark\"\n\
description = \"Switch search-v2 off as its contingency would, and page the on-call through the real escalation.\"\n\n\
[steady-state-hypothesis]\ntitle = \"www keeps answering\"\n\
[[steady-state-hypothesis.probes]]\nname = \"errors stay low\"\nseries = \"www.errors\"\nstat = \"count\"\nmax = 20\n\n\
[[method]]\nname = \"switch search-v2 off\"\nflag = \"search-v2\"\nstate = \"off\"\n\n\
[[method]]\nname = \"page the on-call\"\npage = \"www\"\n\n\
[[method]]\nname = \"give them a minute\"\nwait = \"15s\"\n\n\
[[rollbacks]]\nname = \"search-v2 back as it was\"\nflag = \"search-v2\"\nstate = \"before\"\n";

/// The runbook of the demo's page alert.
const WWW_ERRORS: &str = "# www errors\n\n\
## Meaning\nwww answered more than 50 errors in two seconds.\n\n\
## Impact\nVisitors see error pages; logins may fail.\n\n\
## Diagnosis\n- Look at [errors](/graphs?q=www.errors) next to the deploys and flag changes on the graph.\n\
- `crew incident show ID` lists what happened around it.\n\n\
## Mitigation\n1. If a deploy preceded it, roll back: `!rollback production`.\n\
2. If a flag was switched on, switch it off: `!flag NAME off`.\n\
3. Acknowledge the page (`!ack`) so nobody else is woken, and say in #ops what you see.\n";

/// Deploys through the API and waits for the end.
async fn deploy(client: &Client, environment: &str, message: &str) -> Result<()> {
    let d = client
        .json(Method::POST, "/api/v1/deploys", Some(&json!({"environment": environment, "message": message})))
        .await?;
    let id = d["id"].as_i64().unwrap_or(0);
    loop {
        let d = client.json(Method::GET, &format!("/api/v1/deploys/{id}"), None).await?;
        match d["status"].as_str() {
            Some("running") => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Some("succeeded") => return Ok(()),
            Some("rolled_back") if d["error"].as_str().is_some_and(|e| e.contains("judge")) => return Ok(()),
            other => anyhow::bail!("the demo's deploy #{id} to {environment} ended {other:?}: {}", d["error"]),
        }
    }
}

/// The sample app's traffic: requests on three routes, latencies (mostly fast, a slow tail), a few errors, a
/// queue that drifts, signed-in users. Deterministic per interval, so the history looks like a day at work.
struct Traffic {
    rng: rand::rngs::StdRng,
    queue: f64,
}

impl Traffic {
    fn new() -> Traffic {
        use rand::SeedableRng;
        Traffic { rng: rand::rngs::StdRng::seed_from_u64(7), queue: 12.0 }
    }

    /// One interval's points, as the aggregator would have made them from the traffic.
    fn interval(
        &mut self,
        t: i64,
        flush_ms: i64,
    ) -> Vec<(std::sync::Arc<str>, crew_metrics::Kind, crew_metrics::Point)> {
        use crew_metrics::{Kind, Point};
        use rand::Rng;
        let secs = flush_ms as f64 / 1000.0;
        // A slow wave through the hour, and noise.
        let wave = 1.0 + 0.3 * ((t as f64 / 600_000.0).sin());
        let mut out = vec![];
        for (route, base) in [("/", 40.0), ("/login", 12.0), ("/search", 20.0)] {
            let n = (base * wave * secs * self.rng.random_range(0.85..1.15)).round();
            out.push((
                format!("www.requests{{route={route}}}").into(),
                Kind::Counter,
                Point { sum: n, count: n, ..Point::default() },
            ));
        }
        for host in ["web1", "web2"] {
            let mut lat: Vec<f64> = (0..100)
                .map(|_| {
                    let x: f64 = self.rng.random_range(0.0..1.0);
                    if x < 0.97 {
                        40.0 + 80.0 * x
                    } else {
                        300.0 + 1200.0 * (x - 0.97) / 0.03 * self.rng.random_range(0.3..1.0)
                    }
                })
                .collect();
            lat.sort_by(f64::total_cmp);
            let q = |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
            out.push((
                format!("www.latency{{host={host}}}").into(),
                Kind::Timer,
                Point {
                    count: lat.len() as f64,
                    sum: lat.iter().sum(),
                    min: lat[0],
                    max: lat[lat.len() - 1],
                    p50: q(0.5),
                    p90: q(0.9),
                    p99: q(0.99),
                    last: 0.0,
                },
            ));
        }
        let errors =
            if self.rng.random_range(0.0..1.0) < 0.2 { self.rng.random_range(1.0..4.0_f64).round() } else { 0.0 };
        out.push(("www.errors".into(), Kind::Counter, Point { sum: errors, count: errors, ..Point::default() }));
        self.queue = (self.queue + self.rng.random_range(-2.0..2.0)).clamp(0.0, 60.0);
        let q = self.queue.round();
        out.push((
            "www.queue".into(),
            Kind::Gauge,
            Point { last: q, min: q, max: q, sum: q, count: 1.0, ..Point::default() },
        ));
        let users = (30.0 * wave + self.rng.random_range(-3.0..3.0)).round();
        out.push(("www.users".into(), Kind::Set, Point { last: users, ..Point::default() }));
        out
    }
}

async fn lines_spike(sock: &tokio::net::UdpSocket, addr: std::net::SocketAddr) {
    let _ = sock.send_to(b"www.errors:5|c\n", addr).await;
}

/// Live traffic to the demo's own StatsD port, as the sample app would send it, until the demo stops.
async fn send_traffic(
    addr: std::net::SocketAddr,
    hosts: PathBuf,
    burst: std::sync::Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    use rand::{Rng, SeedableRng};
    let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // The same shape as the history: about 72 requests a second, 40 : 12 : 20 over the routes, and some thirty
    // signed-in people. Once the demo is set up, 20 seconds of errors come (the login fix was not one): the alert
    // "login errors" fires and pages whoever is on call.
    // The burst starts once the demo is set up (its judged deploy takes a window), so alice is there to answer.
    let mut tick = 0u32;
    let mut bursting = false;
    loop {
        if !bursting && futures_util::FutureExt::now_or_never(burst.notified()).is_some() {
            bursting = true;
        }
        if bursting {
            tick += 1;
            if tick <= 200 {
                lines_spike(&sock, addr).await;
            }
        }
        // A host whose live release carries SLOW (the demo's "search cache" commit) answers three times slower.
        let slow = |host: &str| hosts.join(host).join("current/SLOW").exists();
        let slower = [("web1", if slow("web1") { 3 } else { 1 }), ("web2", if slow("web2") { 3 } else { 1 })];
        let mut lines = String::new();
        for i in 0..14 {
            let pick = rng.random_range(0..72);
            let route = if pick < 40 {
                "/"
            } else if pick < 52 {
                "/login"
            } else {
                "/search"
            };
            let ms =
                if rng.random_range(0.0..1.0) < 0.97 { rng.random_range(40..120) } else { rng.random_range(300..1400) };
            let (host, factor) = slower[i % 2];
            if i % 2 == 0 {
                lines.push_str(&format!("www.requests:1|c|#route:{route}\n"));
            }
            lines.push_str(&format!("www.latency:{}|ms|#host:{host}\n", ms * factor));
        }
        if rng.random_range(0.0..1.0) < 0.005 {
            lines.push_str("www.errors:1|c\n");
        }
        for _ in 0..3 {
            lines.push_str(&format!("www.users:user{}|s\n", rng.random_range(0..32)));
        }
        lines.push_str(&format!("www.queue:{}|g\n", rng.random_range(5..30)));
        let _ = sock.send_to(lines.as_bytes(), addr).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
        }
    }
}

/// The bucket test's traffic: 4,000 visitors bucketed by crew's own split (evaluated here, as the SDK does,
/// and reported as one batch of exposures), of whom 8% of `control` and 13% of `blue` buy (OpenFeature tracking
/// events), so the Results page (`/flags/KEY/results`) shows `blue` winning.
async fn bucket_test(client: &Client, key: &str) -> Result<()> {
    let flag = client.json(Method::GET, &crate::client::path(&["api", "v1", "flags", key]), None).await?;
    let set = crew_flags::FlagSet::from_value(&json!({"flags": {key: flag["definition"]}}))?;
    let mut exposures = vec![];
    let mut buyers = vec![];
    for i in 0..4000u64 {
        let user = format!("visitor-{i}");
        let r = set.evaluate(key, &json!({"targetingKey": user}), 0);
        let Some(variant) = r.variant else { continue };
        // A fixed scatter of buyers: the same demo every time.
        let rate = if variant == "blue" { 13 } else { 8 };
        if (i * 7919 + 13) % 100 < rate {
            buyers.push(user.clone());
        }
        exposures.push(json!({"key": key, "targetingKey": user, "variant": variant}));
    }
    client.json(Method::POST, "/api/v1/exposures", Some(&json!({"exposures": exposures}))).await?;
    // Each conversion is stamped when crew takes it, after its visitor's exposure: attributed.
    for user in buyers {
        let body = json!({"key": key, "context": {"targetingKey": user}});
        client.json(Method::POST, "/api/v1/track", Some(&body)).await?;
    }
    Ok(())
}
