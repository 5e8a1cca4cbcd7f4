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

pub fn commit(repo: &Path, file: &str, text: &str, subject: &str) -> String {
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

/// Rewrites the app's crew.toml with `edit` and commits it (with any other files written before).
fn reconfigure(a: &App, edit: impl Fn(String) -> String) {
    let path = a.repo.join("crew.toml");
    std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
    sh(&a.repo, "git add -A && git -c user.name=A -c user.email=a@e commit -qm 'config'");
}

/// Starts a deploy through the API and waits until it is no longer running; the deploy.
async fn deploy_and_wait(s: &Server, token: &str, env: &str) -> Value {
    let res = s
        .req(reqwest::Method::POST, "/api/v1/deploys", token)
        .json(&serde_json::json!({"environment": env}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.get_json(&format!("/api/v1/deploys/{id}"), token).await;
        if d["status"] != "running" {
            return d;
        }
        assert!(std::time::Instant::now() < end, "deploy #{id} ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every stored line of a deploy's log, paging through the API as the CLI does.
async fn whole_log(s: &Server, token: &str, id: i64) -> Vec<String> {
    let (mut lines, mut offset) = (vec![], 0);
    loop {
        let v = s.get_json(&format!("/api/v1/deploys/{id}/log?offset={offset}"), token).await;
        let page = v["lines"].as_array().unwrap();
        if page.is_empty() {
            return lines;
        }
        lines.extend(page.iter().map(|l| l.as_str().unwrap().to_string()));
        offset = v["next_offset"].as_i64().unwrap();
    }
}

/// High 3 (a): a trunk committer's build makes its artifact folder, or a file in it, a symlink to the server's
/// data dir (admin.token, crew.db): crew refuses to ship it, naming the link, and nothing reaches a host. The build
/// runs in `<data-dir>/builds/www/<sha>.building-*/src`, so `../../../..` from there is the data dir.
#[tokio::test]
async fn an_artifact_linking_out_of_the_build_is_refused_and_named() {
    let a = app();
    std::fs::write(a.repo.join("build.sh"), "mkdir -p dist && cp index.html dist/\n").unwrap();
    std::fs::write(a.repo.join("hook.sh"), "true\n").unwrap();
    reconfigure(&a, |t| {
        t.replace("command = \"mkdir -p dist", "command = \"sh ./build.sh; mkdir -p dist")
            .replace("[environments.staging]\n", "[environments.staging]\nhooks = { before = [\"sh ./hook.sh\"] }\n")
    });
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let shipped = || std::fs::read_dir(a.hosts.join("staging1/releases")).map(|d| d.count()).unwrap_or(0);

    // The artifact folder itself is a link to the data dir.
    commit(&a.repo, "build.sh", "ln -s ../../../.. dist\n", "dist is the data dir");
    let d = deploy_and_wait(&s, &m, "staging").await;
    assert_eq!(d["status"], "failed", "{d}");
    let err = d["error"].as_str().unwrap();
    assert!(err.contains("`dist`") && err.contains("symlink"), "{err}");
    assert_eq!(shipped(), 0, "nothing was shipped");
    assert!(!a.hosts.join("staging1/current/admin.token").exists());

    // A link inside the artifact leads out of the build: refused, named; a link within it is fine.
    commit(
        &a.repo,
        "build.sh",
        "mkdir -p dist && cp index.html dist/ && ln -s index.html dist/home.html && ln -s ../../../../../admin.token dist/token\n",
        "a link to the token",
    );
    let d = deploy_and_wait(&s, &m, "staging").await;
    assert_eq!(d["status"], "failed", "{d}");
    let err = d["error"].as_str().unwrap();
    assert!(err.contains("`dist/token`") && err.contains("outside the build"), "{err}");
    assert_eq!(shipped(), 0, "nothing was shipped");

    commit(&a.repo, "build.sh", "mkdir -p dist && cp index.html dist/ && ln -s index.html dist/home.html\n", "ok");
    let d = deploy_and_wait(&s, &m, "staging").await;
    assert_eq!(d["status"], "succeeded", "{d}");
    assert_eq!(std::fs::read_to_string(a.hosts.join("staging1/current/home.html")).unwrap(), "<h1>v1</h1>\n");

    // A `before` hook (the committer's script) swaps the built artifact for a link after the build's check.
    commit(&a.repo, "hook.sh", "rm -rf dist && ln -s ../../../.. dist\n", "swap it");
    let d = deploy_and_wait(&s, &m, "staging").await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(d["error"].as_str().unwrap().contains("`dist`"), "{d}");
    assert_eq!(shipped(), 1, "only the good release is on the host");
}

/// High 3 (b): builds and hooks do not inherit the server's environment (its passwords, webhook URLs, database
/// URL): only PATH, HOME, LANG, crew's CREW_* build variables, and what `[build] env` names.
#[tokio::test]
async fn builds_and_hooks_get_a_clean_environment() {
    // Set in this test's own process (nextest runs each test in one), so the server it starts inherits them.
    std::env::set_var("CREW_IRC_SASL_PASSWORD", "sasl-hunter2");
    std::env::set_var("CREW_WEBHOOK_URL", "https://hooks.example/T0/secret-webhook");
    std::env::set_var("DATABASE_URL", "postgres://crew:db-hunter2@db/crew");
    std::env::set_var("PASSED_ON", "by-name");
    let a = app();
    std::fs::create_dir_all(&a.hosts).unwrap();
    let hook_env = a.hosts.join("hook.env");
    reconfigure(&a, |t| {
        t.replace("command = \"mkdir -p dist", "command = \"mkdir -p dist && env > dist/ENV; mkdir -p dist").replace(
            "[environments.staging]\n",
            &format!("[environments.staging]\nhooks = {{ before = [\"env > {}\"] }}\n", hook_env.display()),
        )
    });
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let d = deploy_and_wait(&s, &m, "staging").await;
    assert_eq!(d["status"], "succeeded", "{d}");
    let build = std::fs::read_to_string(a.hosts.join("staging1/current/ENV")).unwrap();
    let hook = std::fs::read_to_string(&hook_env).unwrap();
    for (what, env) in [("build", &build), ("hook", &hook)] {
        for secret in ["sasl-hunter2", "secret-webhook", "db-hunter2", "by-name", "CREW_TEST_PG_DIR"] {
            assert!(!env.contains(secret), "the {what} saw `{secret}`:\n{env}");
        }
        for var in ["PATH=", "HOME=", "CREW_REVISION=", "CREW_APP=www", "CREW_ENVIRONMENT=staging"] {
            assert!(env.lines().any(|l| l.starts_with(var)), "the {what} lacks {var}:\n{env}");
        }
    }
    drop(s);
    // `[build] env` passes variables by name (strictly: a bad name is refused at start, naming the key).
    let toml = std::fs::read_to_string(a.repo.join("crew.toml")).unwrap();
    std::fs::write(
        a.repo.join("crew.toml"),
        toml.replace("artifact = \"dist\"", "artifact = \"dist\"\nenv = [\"NOT A NAME\"]"),
    )
    .unwrap();
    let (code, _, err) = run(Command::new(crate::harness::CREW)
        .args(["serve", "--listen", "127.0.0.1:0", "--statsd", "off", "--config"])
        .arg(a.repo.join("crew.toml"))
        .arg("--data-dir")
        .arg(a.hosts.join("d")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("build.env") && err.contains("NOT A NAME"), "{err}");
    reconfigure(&a, |_| {
        toml.replace("artifact = \"dist\"", "artifact = \"dist\"\nenv = [\"PASSED_ON\", \"UNSET_HERE\"]")
    });
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let d = deploy_and_wait(&s, &m, "staging").await;
    assert_eq!(d["status"], "succeeded", "{d}");
    let build = std::fs::read_to_string(a.hosts.join("staging1/current/ENV")).unwrap();
    assert!(build.lines().any(|l| l == "PASSED_ON=by-name"), "{build}");
    assert!(!build.contains("sasl-hunter2") && !build.contains("UNSET_HERE"), "{build}");
    assert!(std::fs::read_to_string(&hook_env).unwrap().lines().any(|l| l == "PASSED_ON=by-name"));
}

/// High 3 (c): with `[build] user`, builds and hooks run as that user (crew runs as root here), which cannot read
/// the data dir's admin token or database.
#[tokio::test]
async fn a_build_user_runs_builds_and_hooks_and_cannot_read_the_data_dir() {
    let a = app();
    let steal = "id -un; for f in ../../../../admin.token ../../../../crew.db; do if cat $f >/dev/null 2>&1; then echo \"read $f\"; fi; done";
    // The build user's checkout has its own history: the server's repository is not readable by that user here.
    let build = format!("mkdir -p dist && cp index.html dist/ && git rev-parse HEAD > dist/REV && {steal}\n");
    std::fs::write(a.repo.join("build.sh"), build).unwrap();
    std::fs::write(a.repo.join("hook.sh"), format!("{steal}\n")).unwrap();
    reconfigure(&a, |t| {
        t.replace(
            "command = \"mkdir -p dist && cp index.html dist/ && echo $CREW_REVISION > dist/REVISION",
            "command = \"sh ./build.sh && echo $CREW_REVISION > dist/REVISION",
        )
        .replace("artifact = \"dist\"", "artifact = \"dist\"\nuser = \"nobody\"")
        .replace("[environments.staging]\n", "[environments.staging]\nhooks = { before = [\"sh ./hook.sh\"] }\n")
    });
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    // The test's temporary folder is the root's alone; a real data dir's parents are usually open to traverse.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.data_dir.parent().unwrap(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let m = s.token("mo", "member").await;
    let d = deploy_and_wait(&s, &m, "staging").await;
    let id = d["id"].as_i64().unwrap();
    let log = whole_log(&s, &m, id).await.join("\n");
    assert_eq!(d["status"], "succeeded", "{d}\n{log}");
    assert!(log.contains("build: nobody") && log.contains("hook: nobody"), "{log}");
    assert!(!log.contains("read ../"), "the build or a hook read the data dir:\n{log}");
    let head = sh(&a.repo, "git rev-parse HEAD");
    assert_eq!(live(&a.hosts.join("staging1")).unwrap().1, head);
    assert_eq!(std::fs::read_to_string(a.hosts.join("staging1/current/REV")).unwrap().trim(), head, "{log}");
}

/// Interop: the build runs in a clean checkout of the deployed commit with `.git`, so `git rev-parse` and
/// `git describe` work (a version stamped by git). It is made from the repository's history only: the app
/// repository's dirty working tree and index stay exactly as they were, and what is uncommitted (a changed file,
/// a staged new file) never reaches the build.
#[tokio::test]
async fn builds_see_git_in_a_checkout_of_the_commit_and_the_working_tree_is_left_alone() {
    let a = app();
    reconfigure(&a, |t| {
        t.replace(
            "echo $CREW_REVISION > dist/REVISION",
            "echo $CREW_REVISION > dist/REVISION && git rev-parse HEAD > dist/REV && git describe --always > dist/DESC \
             && if test -e notes.txt; then cp notes.txt dist/; fi",
        )
    });
    sh(&a.repo, "git -c user.name=A -c user.email=a@e tag -a v1.0 -m 'first release'");
    let sha = sh(&a.repo, "git rev-parse HEAD");
    std::fs::write(a.repo.join("index.html"), "<h1>not committed</h1>\n").unwrap();
    std::fs::write(a.repo.join("notes.txt"), "staged, not committed\n").unwrap();
    sh(&a.repo, "git add notes.txt");
    let state =
        || sh(&a.repo, "git status --porcelain=v1 --untracked-files=all && git ls-files --stage && git worktree list");
    let before = state();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let d = deploy_and_wait(&s, &m, "staging").await;
    let log = whole_log(&s, &m, d["id"].as_i64().unwrap()).await.join("\n");
    assert_eq!(d["status"], "succeeded", "{d}\n{log}");
    let current = a.hosts.join("staging1/current");
    assert_eq!(std::fs::read_to_string(current.join("REV")).unwrap().trim(), sha);
    assert_eq!(std::fs::read_to_string(current.join("DESC")).unwrap().trim(), "v1.0");
    assert_eq!(std::fs::read_to_string(current.join("index.html")).unwrap(), "<h1>v1</h1>\n", "the committed file");
    assert!(!current.join("notes.txt").exists(), "a staged, uncommitted file reached the build");
    assert_eq!(state(), before, "the repository's working tree and index are untouched");
    assert_eq!(std::fs::read_to_string(a.repo.join("index.html")).unwrap(), "<h1>not committed</h1>\n");
    assert!(!a.repo.join(".git/worktrees").exists(), "no worktree was added to the repository");
}

/// Medium 5: a second server on the same database takes the running deploy for one whose server died and marks
/// it interrupted (the environment is free again). The first server's runner learns it from its heartbeat and
/// stops before touching another host, saying so; the deploy stays interrupted with one event.
#[tokio::test]
async fn a_deploy_marked_interrupted_stops_before_the_next_host() {
    let a = app();
    // The canary's restart takes 10 s: longer than a heartbeat (5 s) after the second server starts.
    reconfigure(&a, |t| {
        t.replace(
            "restart = \"echo restarted > ../../restarted\"",
            "restart = \"case $PWD in *prod1*) sleep 10;; esac; echo restarted > ../../restarted\"",
        )
    });
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
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
    let canary = crate::harness::eventually(Duration::from_secs(20), || async {
        std::fs::symlink_metadata(a.hosts.join("prod1/current")).is_ok()
    })
    .await;
    assert!(canary, "the canary switched");
    let db = format!("sqlite://{}", s.data_dir.join("crew.db").display());
    let _other = Server::start_on(&db, Some(&s.admin)).await;
    assert_eq!(s.get_json(&format!("/api/v1/deploys/{id}"), &m).await["status"], "interrupted");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = whole_log(&s, &m, id).await.join("\n");
        if log.contains("stopped") {
            break log;
        }
        assert!(std::time::Instant::now() < end, "the runner says it stopped:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(log.contains("interrupted"), "{log}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(std::fs::symlink_metadata(a.hosts.join("prod2/current")).is_err(), "the second host was not touched");
    let d = s.get_json(&format!("/api/v1/deploys/{id}"), &m).await;
    assert_eq!(d["status"], "interrupted", "{d}");
    let v = s.get_json("/api/v1/events?kind=deploy&limit=100", &m).await;
    let about: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["deploy"] == id)
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(about, ["deploy.interrupted", "deploy.started"], "{about:?}");
}

/// Medium 9: a build printing a 3,000,007-character line and more lines than a deploy keeps: the line is cut
/// (and says so), the stored log is the tail (and says what was cut), and the deploy's page shows one page of it
/// with a link to earlier lines.
#[tokio::test]
async fn long_lines_are_cut_and_a_deploy_log_is_bounded_and_paged() {
    let a = app();
    reconfigure(&a, |t| {
        t.replace(
            "command = \"mkdir -p dist",
            "command = \"seq 1 12000; head -c 3000007 /dev/zero | tr '\\\\0' x; echo; mkdir -p dist",
        )
    });
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let d = deploy_and_wait(&s, &m, "staging").await;
    assert_eq!(d["status"], "succeeded", "{d}");
    let id = d["id"].as_i64().unwrap();
    let lines = whole_log(&s, &m, id).await;
    assert!(lines.len() <= 10_000, "{} lines stored", lines.len());
    assert!(lines[0].contains("earlier lines were cut"), "{}", lines[0]);
    let longest = lines.iter().map(|l| l.len()).max().unwrap();
    assert!(longest <= 16 * 1024 + 100, "a {longest}-byte line was stored");
    let long = lines.iter().find(|l| l.starts_with("build: xxxx")).expect("the long line's start is kept");
    assert!(long.contains("cut"), "the cut is said: …{}", &long[long.len() - 80..]);
    assert!(lines.iter().any(|l| l == "build: 12000"), "the tail is kept");
    assert!(lines.last().unwrap().contains("succeeded"), "{:?}", lines.last());

    // The page shows the last 1,000 lines and links to the earlier ones.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = http.post(format!("{}/signin", s.url)).form(&[("token", m.as_str())]).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = |q: String| {
        let (http, cookie, url) = (http.clone(), cookie.clone(), s.url.clone());
        async move {
            let res = http.get(format!("{url}/deploys/{id}{q}")).header("cookie", cookie).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        }
    };
    let html = page(String::new()).await;
    let log = html.split("id=\"deploy-log\"").nth(1).unwrap().split("</pre>").next().unwrap();
    assert!(log.lines().count() <= 1001, "{} lines on the page", log.lines().count());
    assert!(log.contains("succeeded"), "the newest lines are shown");
    assert!(html.len() < 100 * 16 * 1024, "the page is {} bytes", html.len());
    let earlier = html.split(&format!("href=\"/deploys/{id}?offset=")).nth(1).expect("a link to earlier lines");
    let offset: String = earlier.chars().take_while(char::is_ascii_digit).collect();
    let html = page(format!("?offset={offset}")).await;
    assert!(!html.contains("build: 12000\n"), "an earlier page");
    let html = page("?offset=0".into()).await;
    assert!(html.contains("earlier lines were cut"), "the first page says what was cut");
}

/// Low: ending a deploy fails while the database cannot write (a full disk). crew retries until it lands, so the
/// environment is free as soon as the database can write again. The fault is real, made in the server's own
/// SQLite database: a trigger refuses every update that ends a deploy, as a full disk would, until it is dropped.
#[tokio::test]
async fn a_finish_that_fails_is_retried_until_it_lands() {
    let a = app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let m = s.token("mo", "member").await;
    let db = s.data_dir.join("crew.db");
    let sqlite = |sql: &str| {
        let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sqlite(
        "CREATE TRIGGER full_disk BEFORE UPDATE OF status ON deploys WHEN NEW.status <> 'running' \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    );
    let res = s
        .req(reqwest::Method::POST, "/api/v1/deploys", &m)
        .json(&serde_json::json!({"environment": "staging"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let ran =
        crate::harness::eventually(Duration::from_secs(30), || async { live(&a.hosts.join("staging1")).is_some() })
            .await;
    assert!(ran, "the deploy ran");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let locked =
        |v: Value| v["environments"].as_array().unwrap().iter().any(|e| !e["locks"].as_array().unwrap().is_empty());
    assert_eq!(s.get_json(&format!("/api/v1/deploys/{id}"), &m).await["status"], "running");
    assert!(locked(s.get_json("/api/v1/environments", &m).await), "still held while the finish cannot land");
    sqlite("DROP TRIGGER full_disk;");
    let landed = crate::harness::eventually(Duration::from_secs(30), || async {
        s.get_json(&format!("/api/v1/deploys/{id}"), &m).await["status"] == "succeeded"
    })
    .await;
    assert!(landed, "the finish landed once the database could write");
    assert!(!locked(s.get_json("/api/v1/environments", &m).await), "the environment is free");
    let v = s.get_json("/api/v1/events?kind=deploy.finished", &m).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
}
