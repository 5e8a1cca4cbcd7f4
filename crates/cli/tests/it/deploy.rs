//! Deploys end to end: a real git repository, the real `crew serve`, `local:` hosts in temporary folders,
//! rsync, and a real HTTP health endpoint.

use crate::harness::Server;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A health endpoint that answers 200 while `healthy` exists, 503 otherwise.
fn health_server(healthy: PathBuf) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let status = if healthy.exists() { "200 OK" } else { "503 Service Unavailable" };
            let _ =
                s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
        }
    });
    port
}

pub struct App {
    pub repo: PathBuf,
    pub hosts: PathBuf,
    healthy: PathBuf,
    _dir: tempfile::TempDir,
}

/// A git repository with crew.toml: staging (one host) and production (two hosts, a canary, requires staging,
/// a restart command and a health check).
pub fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let hosts = dir.path().join("hosts");
    let healthy = dir.path().join("healthy");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(&healthy, "").unwrap();
    let port = health_server(healthy.clone());
    let toml = format!(
        r#"[app]
name = "www"
repo = "."
branch = "main"

[build]
command = "mkdir -p dist && cp index.html dist/ && echo $CREW_REVISION > dist/REVISION && echo built $CREW_APP for $CREW_ENVIRONMENT"
artifact = "dist"

[environments.staging]
hosts = ["local:{h}/staging1"]

[environments.production]
hosts = ["local:{h}/prod1", "local:{h}/prod2"]
canary = 1
requires = "staging"
keep_releases = 3
restart = "echo restarted > ../../restarted"
health = {{ url = "http://127.0.0.1:{port}/up", timeout = "2s" }}
"#,
        h = hosts.display()
    );
    std::fs::write(repo.join("crew.toml"), toml).unwrap();
    std::fs::write(repo.join("index.html"), "<h1>v1</h1>\n").unwrap();
    sh(&repo, "git init -q -b main && git -c user.name=Alice -c user.email=a@example.com add -A && git -c user.name=Alice -c user.email=a@example.com commit -qm 'first page'");
    App { repo, hosts, healthy, _dir: dir }
}

impl App {
    /// The app's crew.toml with more sections after it (metrics, dashboards), for a test that needs real deploys
    /// on its graphs.
    pub fn with(&self, extra: &str) -> PathBuf {
        let path = self.repo.join("crew.toml");
        let mut toml = std::fs::read_to_string(&path).unwrap();
        toml.push('\n');
        toml.push_str(extra);
        std::fs::write(&path, toml).unwrap();
        sh(&self.repo, "git -c user.name=A -c user.email=a@e commit -qam 'more config'");
        path
    }
}

/// Deploys trunk to staging through the API and waits until it succeeded; the deploy's number.
pub async fn deploy_staging(s: &Server, token: &str) -> i64 {
    let res = s
        .req(reqwest::Method::POST, "/api/v1/deploys", token)
        .json(&serde_json::json!({"environment": "staging", "message": "graph marker"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let done = crate::harness::eventually(Duration::from_secs(30), || async {
        s.get_json(&format!("/api/v1/deploys/{id}"), token).await["status"] == "succeeded"
    })
    .await;
    assert!(done, "deploy #{id} succeeded");
    id
}

fn commit(repo: &Path, file: &str, text: &str, subject: &str) -> String {
    std::fs::write(repo.join(file), text).unwrap();
    sh(repo, &format!("git add -A && git -c user.name=Bob -c user.email=b@example.com commit -qm '{subject}' && git rev-parse HEAD"))
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

/// The release `current` points to on a host folder, and the revision it holds.
pub fn live(host: &Path) -> Option<(String, String)> {
    let target = std::fs::read_link(host.join("current")).ok()?;
    let rev = std::fs::read_to_string(host.join("current/REVISION")).ok()?;
    Some((target.display().to_string(), rev.trim().to_string()))
}

#[tokio::test]
async fn deploy_log_pending_requires_and_rollback() {
    let a = app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let alice = s.token("alice", "member").await;
    let first = sh(&a.repo, "git rev-parse HEAD");

    // production requires staging: refused until the commit is live there.
    let (code, _, err) = run(s.cli(&alice).args(["deploy", "production"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("requires staging"), "{err}");
    assert!(!a.hosts.join("prod1").exists(), "nothing on any host changed");

    let (code, out, err) = run(s.cli(&alice).args(["deploy", "staging", "-m", "first"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("built www for staging"), "the build's output is in the log: {out}");
    assert_eq!(live(&a.hosts.join("staging1")).unwrap().1, first);
    assert!(a.hosts.join("staging1/shared").is_dir() && a.hosts.join("staging1/current/shared").exists());

    let (code, out, err) = run(s.cli(&alice).args(["deploy", "production", "-m", "first"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("reusing the build"), "built once per commit: {out}");
    assert!(out.contains("canary"), "{out}");
    for h in ["prod1", "prod2"] {
        assert_eq!(live(&a.hosts.join(h)).unwrap().1, first, "{h}");
        assert!(a.hosts.join(h).join("restarted").exists(), "restart ran on {h}");
    }
    let (release1, _) = live(&a.hosts.join("prod1")).unwrap();

    // Two new commits: pending, then shipped.
    commit(&a.repo, "index.html", "<h1>v2</h1>\n", "second page");
    let second = commit(&a.repo, "about.html", "about\n", "about page");
    let (code, out, _) = run(s.cli(&alice).args(["pending", "production"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("2 commit(s)") && out.contains("Bob") && out.contains("about page") && out.contains(&second[..7]),
        "{out}"
    );
    assert!(out.contains("staging runs"), "what staging has that production lacks: {out}");
    run(s.cli(&alice).args(["deploy", "staging", "-m", "about"]));
    let (code, out, err) = run(s.cli(&alice).args(["deploy", "production", "-m", "about page"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(live(&a.hosts.join("prod2")).unwrap().1, second);
    assert_eq!(std::fs::read_to_string(a.hosts.join("prod2/current/index.html")).unwrap(), "<h1>v2</h1>\n");

    // The deploy log, the Flickr way, newest first.
    let (_, out, _) = run(s.cli(&alice).args(["log", "production"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let want =
        format!("] [alice] www deployed to production: {}..{} (2 commits) \"about page\"", &first[..7], &second[..7]);
    assert!(lines[0].starts_with('[') && lines[0].ends_with(&want), "{}\nwant …{want}", lines[0]);
    assert!(
        lines[1].ends_with(&format!("] [alice] www deployed to production: {} (first deploy) \"first\"", &first[..7])),
        "{}",
        lines[1]
    );

    // Rollback: back to the previous release, no build, fast.
    let started = std::time::Instant::now();
    let (code, out, err) = run(s.cli(&alice).args(["rollback", "production"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!out.contains("build"), "{out}");
    for h in ["prod1", "prod2"] {
        assert_eq!(live(&a.hosts.join(h)).unwrap(), (release1.clone(), first.clone()), "{h}");
    }
    let (_, out, _) = run(s.cli(&alice).args(["log", "production", "-n", "1"]));
    assert!(out.contains(&format!("www rolled back production to {}", &first[..7])), "{out}");
    // A second rollback goes further back, never forward again: here there is nothing older.
    let (code, _, err) = run(s.cli(&alice).args(["rollback", "production"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no earlier release"), "{err}");

    // A deploy's log is also a stream of server-sent events, ending with the status.
    let v = s.get_json("/api/v1/deploys?environment=production&limit=1", &alice).await;
    let id = v["deploys"][0]["id"].as_i64().unwrap();
    let res = s.req(reqwest::Method::GET, &format!("/api/v1/deploys/{id}/log/stream"), &alice).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let events: Vec<_> =
        tokio::time::timeout(Duration::from_secs(5), res.bytes_stream().eventsource().collect::<Vec<_>>())
            .await
            .unwrap();
    let events: Vec<_> = events.into_iter().map(|e| e.unwrap()).collect();
    let end = events.last().unwrap();
    assert_eq!((end.event.as_str(), end.data.as_str()), ("end", "succeeded"));
    assert!(events.iter().any(|e| e.data.contains("switched to")));

    // Everything is on the timeline.
    let v = s.get_json("/api/v1/events?kind=deploy&limit=100", &alice).await;
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "deploy.finished").count(), 4, "{kinds:?}");
    assert_eq!(kinds[0], "deploy.rolled_back");
    let (_, out, _) = run(s.cli(&alice).arg("status"));
    assert!(out.contains("production") && out.contains(&first[..7]), "{out}");
}

/// The same deploy flow with the store on PostgreSQL, and `--json` for scripts.
#[tokio::test]
async fn deploys_on_postgres_with_json_output() {
    let a = app();
    let s = Server::start_postgres_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let first = sh(&a.repo, "git rev-parse HEAD");
    for env in ["staging", "production"] {
        let (code, out, err) = run(s.cli(&m).args(["deploy", env, "-m", "on pg", "--json"]));
        assert_eq!(code, 0, "{out}\n{err}");
        let d: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(
            (d["status"].as_str(), d["revision"].as_str(), d["environment"].as_str()),
            (Some("succeeded"), Some(first.as_str()), Some(env))
        );
        assert_eq!(
            d["hosts"].as_array().unwrap().iter().filter(|h| h["state"] == "switched").count(),
            if env == "staging" { 1 } else { 2 }
        );
    }
    let (code, out, _) = run(s.cli(&m).args(["log", "--json"]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deploys"].as_array().unwrap().len(), 2);
    let (code, _, err) = run(s.cli(&m).args(["lock", "production", "-m", "pg lock"]));
    assert_eq!(code, 0, "{err}");
    let env = s.get_json("/api/v1/environments", &m).await;
    let prod = env["environments"].as_array().unwrap().iter().find(|e| e["name"] == "production").unwrap().clone();
    assert_eq!(prod["locks"][0]["holder"], "mo");
    assert_eq!(prod["live"]["revision"], first.as_str());
}

#[tokio::test]
async fn a_failed_health_check_switches_every_switched_host_back() {
    let a = app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let first = sh(&a.repo, "git rev-parse HEAD");
    for env in ["staging", "production"] {
        let (code, out, err) = run(s.cli(&m).args(["deploy", env]));
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let before = live(&a.hosts.join("prod1")).unwrap();
    let second = commit(&a.repo, "index.html", "<h1>broken</h1>\n", "break it");
    run(s.cli(&m).args(["deploy", "staging"]));
    std::fs::remove_file(&a.healthy).unwrap();
    let (code, out, err) = run(s.cli(&m).args(["deploy", "production"]));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("rolled_back") && err.contains("health check"), "{err}");
    assert_eq!(live(&a.hosts.join("prod1")).unwrap(), before, "the canary is switched back");
    assert_eq!(live(&a.hosts.join("prod2")).unwrap(), before, "the rest never switched");
    assert!(out.contains("switched back"), "{out}");
    let v = s.get_json("/api/v1/deploys?environment=production", &m).await;
    let d = &v["deploys"][0];
    assert_eq!(d["status"], "rolled_back");
    assert_eq!(d["revision"], second.as_str());
    assert_eq!(d["hosts"][1]["state"], "untouched");
    assert_eq!(live(&a.hosts.join("prod2")).unwrap().1, first);
}

#[tokio::test]
async fn an_unreachable_host_stops_the_deploy_before_any_host_switches() {
    let a = app();
    let port = crew_testkit::free_port();
    let toml = std::fs::read_to_string(a.repo.join("crew.toml")).unwrap().replace(
        &format!("\"local:{}/prod2\"]", a.hosts.display()),
        &format!("\"local:{}/prod2\", \"ssh://nobody@127.0.0.1:{port}/srv/www\"]", a.hosts.display()),
    );
    assert!(toml.contains("nobody@"), "{toml}");
    std::fs::write(a.repo.join("crew.toml"), toml).unwrap();
    sh(&a.repo, "git -c user.name=A -c user.email=a@e commit -qam 'third host'");
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let (code, _, err) = run(s.cli(&m).args(["deploy", "staging"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(s.cli(&m).args(["deploy", "production"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "the error names the host: {err}");
    for h in ["prod1", "prod2"] {
        assert!(live(&a.hosts.join(h)).is_none(), "{h} was not switched");
        let releases = std::fs::read_dir(a.hosts.join(h).join("releases")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(releases, 0, "{h}: the release shipped before the failure was removed");
    }
    let d = &s.get_json("/api/v1/deploys?environment=production", &m).await["deploys"][0];
    assert_eq!(d["status"], "failed");
}

#[tokio::test]
async fn a_hung_restart_is_stopped_and_switched_back() {
    let a = app();
    let toml = std::fs::read_to_string(a.repo.join("crew.toml")).unwrap().replace(
        "[environments.staging]\n",
        "[environments.staging]\nrestart = \"sleep 30\"\nrestart_timeout = \"1s\"\n",
    );
    std::fs::write(a.repo.join("crew.toml"), toml).unwrap();
    sh(&a.repo, "git -c user.name=A -c user.email=a@e commit -qam 'hung restart'");
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let started = std::time::Instant::now();
    let (code, _, err) = run(s.cli(&m).args(["deploy", "staging"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not finish in 1s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "stopped, not waited for");
    assert!(live(&a.hosts.join("staging1")).is_none(), "the first release was switched back to nothing");
}

#[tokio::test]
async fn locks_refuse_others_and_only_one_deploy_runs() {
    let a = app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let alice = s.token("alice", "member").await;
    let bob = s.token("bob", "member").await;
    let (code, out, _) = run(s.cli(&alice).args(["lock", "staging", "-m", "db migration"]));
    assert_eq!(code, 0);
    assert!(out.contains("locked by alice"), "{out}");
    let (code, _, err) = run(s.cli(&bob).args(["deploy", "staging"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("locked by alice") && err.contains("db migration"), "{err}");
    let (code, _, err) = run(s.cli(&bob).args(["unlock", "staging"]));
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = run(s.cli(&alice).args(["deploy", "staging"]));
    assert_eq!(code, 0, "the holder may deploy: {err}");
    let (code, _, _) = run(s.cli(&alice).args(["unlock", "staging"]));
    assert_eq!(code, 0);

    // Two deploys at once: exactly one starts.
    let start = |tok: String| {
        let url = s.url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/api/v1/deploys"))
                .bearer_auth(tok)
                .json(&serde_json::json!({"environment": "staging"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (x, y) = tokio::join!(start(alice.clone()), start(bob.clone()));
    let mut codes = [x, y];
    codes.sort();
    assert_eq!(codes, [202, 409]);
    let v = s.get_json("/api/v1/events?kind=lock", &alice).await;
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["lock.released", "lock.taken"]);
}

#[tokio::test]
async fn bad_deploys_say_what_is_wrong_and_touch_no_host() {
    let a = app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let (code, _, err) = run(s.cli(&m).args(["deploy", "qa"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no environment `qa`") && err.contains("production, staging"), "{err}");
    sh(&a.repo, "git checkout -q -b side && git -c user.name=X -c user.email=x@e commit -q --allow-empty -m side && git checkout -q main");
    let (code, _, err) = run(s.cli(&m).args(["deploy", "staging", "--rev", "side"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not on branch `main`"), "{err}");
    let (code, _, err) = run(s.cli(&m).args(["deploy", "staging", "--rev", "nosuchrev"]));
    assert_eq!(code, 2, "{err}");
    // A build that does not produce its artifact fails before any host is touched.
    let toml = std::fs::read_to_string(a.repo.join("crew.toml"))
        .unwrap()
        .replace("artifact = \"dist\"", "artifact = \"build\"");
    std::fs::write(a.repo.join("crew.toml"), &toml).unwrap();
    drop(s);
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let (code, _, err) = run(s.cli(&m).args(["deploy", "staging"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("artifact folder `build`"), "{err}");
    assert!(!a.hosts.join("staging1/current").exists());
    // A failing `before` hook stops the deploy before any host is touched.
    let hooked = toml
        .replace("artifact = \"build\"", "artifact = \"dist\"")
        .replace("hosts = [\"local:", "hooks = { before = [\"echo checking migrations; exit 3\"] }\nhosts = [\"local:");
    std::fs::write(a.repo.join("crew.toml"), &hooked).unwrap();
    drop(s);
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let (code, out, err) = run(s.cli(&m).args(["deploy", "staging"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("before hook stopped the deploy") && out.contains("hook: checking migrations"),
        "{out}\n{err}"
    );
    assert!(!a.hosts.join("staging1/current").exists());
    drop(s);
    // An unknown key in the deploy config stops the server's start, naming it.
    std::fs::write(a.repo.join("crew.toml"), toml.replace("canary = 1", "canary = 1\ncanaries = 2")).unwrap();
    let (code, _, err) = run(Command::new(crate::harness::CREW)
        .args(["serve", "--listen", "127.0.0.1:0", "--statsd", "off", "--config"])
        .arg(a.repo.join("crew.toml"))
        .arg("--data-dir")
        .arg(a.hosts.join("d")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("environments.production.canaries"), "{err}");
    let _: Option<Value> = None;
}

/// A repository whose production is two SSH hosts (each its own sshd and folder), canary 1.
fn ssh_app(sshds: &[&crew_testkit::Sshd], restart: &str) -> App {
    let a = app();
    for d in &sshds[1..] {
        d.authorize(sshds[0]).unwrap();
    }
    let user = crew_testkit::whoami();
    let hosts: Vec<String> = sshds
        .iter()
        .enumerate()
        .map(|(i, d)| format!("\"ssh://{user}@127.0.0.1:{}{}/web{}\"", d.port, a.hosts.display(), i + 1))
        .collect();
    let opts: Vec<String> = sshds[0].options().iter().map(|o| format!("{o:?}")).collect();
    let toml = format!(
        r#"[app]
name = "www"
repo = "."

[build]
command = "mkdir -p dist/assets && cp index.html dist/ && echo $CREW_REVISION > dist/REVISION && yes crew | head -c 100000 > dist/assets/blob"
artifact = "dist"

[environments.production]
hosts = [{}]
canary = 1
restart = "{restart}"
ssh_options = [{}]
"#,
        hosts.join(", "),
        opts.join(", ")
    );
    std::fs::write(a.repo.join("crew.toml"), toml).unwrap();
    sh(&a.repo, "git -c user.name=Alice -c user.email=a@example.com commit -qam 'ssh hosts'");
    a
}

#[tokio::test]
async fn two_ssh_hosts_deploy_and_roll_back() {
    let (d1, d2) = (crew_testkit::Sshd::start().unwrap(), crew_testkit::Sshd::start().unwrap());
    let a = ssh_app(&[&d1, &d2], "echo restarted > ../../restarted");
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let first = sh(&a.repo, "git rev-parse HEAD");
    let (code, out, err) = run(s.cli(&m).args(["deploy", "production"]));
    assert_eq!(code, 0, "{out}\n{err}");
    for h in ["web1", "web2"] {
        assert_eq!(live(&a.hosts.join(h)).unwrap().1, first, "{h}");
        assert!(a.hosts.join(h).join("restarted").exists());
        assert!(out.contains(&format!("ssh://{}@127.0.0.1", crew_testkit::whoami())), "{out}");
    }
    let (release1, _) = live(&a.hosts.join("web1")).unwrap();
    let second = commit(&a.repo, "index.html", "<h1>v2</h1>\n", "v2");
    let (code, out, err) = run(s.cli(&m).args(["deploy", "production"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(live(&a.hosts.join("web2")).unwrap().1, second);
    // Unchanged files are hard links to the previous release's (rsync --link-dest): no second copy on disk.
    let (release2, _) = live(&a.hosts.join("web2")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let ino = |r: &str| std::fs::metadata(a.hosts.join("web2").join(r).join("assets/blob")).unwrap().ino();
    assert_eq!(ino(&release1), ino(&release2));
    let (code, out, err) = run(s.cli(&m).args(["rollback", "production"]));
    assert_eq!(code, 0, "{out}\n{err}");
    for h in ["web1", "web2"] {
        assert_eq!(live(&a.hosts.join(h)).unwrap(), (release1.clone(), first.clone()), "{h}");
    }
}

#[tokio::test]
async fn a_failing_canary_stops_before_the_other_hosts() {
    let (d1, d2) = (crew_testkit::Sshd::start().unwrap(), crew_testkit::Sshd::start().unwrap());
    let a = ssh_app(&[&d1, &d2], "test ! -e ../../broken || { echo canary is broken >&2; exit 1; }");
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let (code, _, err) = run(s.cli(&m).args(["deploy", "production"]));
    assert_eq!(code, 0, "{err}");
    let before: Vec<_> = ["web1", "web2"].iter().map(|h| live(&a.hosts.join(h)).unwrap()).collect();
    commit(&a.repo, "index.html", "<h1>v2</h1>\n", "v2");
    std::fs::write(a.hosts.join("web1/broken"), "").unwrap();
    let (code, out, err) = run(s.cli(&m).args(["deploy", "production"]));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("canary is broken"), "the failing host's output is shown: {err}");
    assert_eq!(live(&a.hosts.join("web1")).unwrap(), before[0], "the canary is switched back");
    assert_eq!(live(&a.hosts.join("web2")).unwrap(), before[1], "the other host was never touched");
    let releases = std::fs::read_dir(a.hosts.join("web2/releases")).unwrap().count();
    assert_eq!(releases, 1, "nothing was even shipped to the other host");
}

#[tokio::test]
async fn a_server_killed_mid_deploy_marks_it_interrupted_and_leaves_hosts_whole() {
    let a = app();
    // Production's restart hangs on the second host, so the kill lands mid-deploy.
    let toml = std::fs::read_to_string(a.repo.join("crew.toml")).unwrap().replace(
        "restart = \"echo restarted > ../../restarted\"",
        "restart = \"case $PWD in *prod2*) sleep 30;; esac; echo restarted > ../../restarted\"",
    );
    std::fs::write(a.repo.join("crew.toml"), toml).unwrap();
    sh(&a.repo, "git -c user.name=A -c user.email=a@e commit -qam 'slow restart'");
    let mut s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let (code, _, err) = run(s.cli(&m).args(["deploy", "staging"]));
    assert_eq!(code, 0, "{err}");
    let res = s
        .req(reqwest::Method::POST, "/api/v1/deploys", &m)
        .json(&serde_json::json!({"environment": "production"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let switched =
        crate::harness::eventually(Duration::from_secs(20), || async { a.hosts.join("prod1/restarted").exists() })
            .await;
    assert!(switched, "the canary was deployed");
    // The second host switches, then its restart hangs: the kill lands there.
    let second = crate::harness::eventually(Duration::from_secs(20), || async {
        std::fs::symlink_metadata(a.hosts.join("prod2/current")).is_ok()
    })
    .await;
    assert!(second, "the second host switched");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop_hard();
    s.restart();
    let d = s.get_json(&format!("/api/v1/deploys/{id}"), &m).await;
    assert_eq!(d["status"], "interrupted");
    let v = s.get_json("/api/v1/events?kind=deploy.interrupted", &m).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    // Every host has a complete current; the environment is free again.
    for h in ["prod1", "prod2"] {
        let target =
            std::fs::read_link(a.hosts.join(h).join("current")).unwrap_or_else(|e| panic!("{h}: current: {e}"));
        assert!(a.hosts.join(h).join(&target).join("REVISION").exists(), "{h}: current is a complete release");
    }
    assert!(s.get_json("/api/v1/environments", &m).await["environments"].as_array().unwrap().iter().all(|e| e
        ["locks"]
        .as_array()
        .unwrap()
        .is_empty()));
}
