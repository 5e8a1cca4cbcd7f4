//! The `crew` command line, run as a user runs it: output, JSON, exit codes, start-up errors.

use crate::harness::{Server, CREW};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

#[test]
fn help_is_complete() {
    let (code, out, _) = run(Command::new(CREW).arg("--help"));
    assert_eq!(code, 0);
    for word in ["serve", "demo", "events", "status", "token", "--server", "--json", "Exit codes", "crew demo"] {
        assert!(out.contains(word), "crew --help lacks {word}:\n{out}");
    }
    let (_, out, _) = run(Command::new(CREW).args(["serve", "--help"]));
    for word in
        ["--config", "--listen", "--statsd", "--database", "--data-dir", "CREW_LISTEN", "CREW_DATABASE", "CREW_STATSD"]
    {
        assert!(out.contains(word), "crew serve --help lacks {word}:\n{out}");
    }
    let (_, out, _) = run(Command::new(CREW).args(["events", "--help"]));
    for word in ["--kind", "--subject", "--search", "--since", "-n", "--follow"] {
        assert!(out.contains(word), "crew events --help lacks {word}:\n{out}");
    }
}

#[tokio::test]
async fn events_status_and_tokens() {
    let s = Server::start().await;
    let (code, out, err) = run(s.cli(&s.admin).args(["token", "create", "alice", "--role", "member"]));
    assert_eq!(code, 0, "{err}");
    let alice = out.trim().to_string();
    assert!(alice.starts_with("crew_") && err.contains("only time"), "{out} {err}");
    s.record(&alice, json!({"kind": "release.started", "subject": "www/production", "summary": "alice deploying www"}))
        .await;
    s.record(&alice, json!({"kind": "note", "subject": "www", "summary": "lunch"})).await;

    let (code, out, _) = run(s.cli(&alice).args(["events", "--kind", "release"]));
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with('['), "{out}");
    assert!(lines[0].ends_with("] [alice via api] release.started www/production: alice deploying www"), "{out}");

    let (_, out, _) = run(s.cli(&alice).args(["events", "-n", "2"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].ends_with("alice deploying www") && lines[1].ends_with("lunch"),
        "oldest first, newest last:\n{out}"
    );

    let (_, out, _) = run(s.cli(&alice).args(["events", "--search", "LUNCH", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"][0]["summary"], "lunch");
    assert_eq!(v["events"].as_array().unwrap().len(), 1);

    let (code, out, _) = run(s.cli(&alice).arg("status"));
    assert_eq!(code, 0);
    assert!(out.contains("store     sqlite") && out.contains("events    4"), "{out}");
    let (_, out, _) = run(s.cli(&alice).args(["status", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["counts"]["tokens"], 2);

    // The CLI's own writes say they came through the CLI.
    let (_, out, _) = run(s.cli(&s.admin).args(["events", "--kind", "token.created", "-n", "1"]));
    assert!(out.contains("[admin via cli] token.created token:alice"), "{out}");

    let (code, out, _) = run(s.cli(&s.admin).args(["token", "list"]));
    assert_eq!(code, 0);
    assert!(out.contains("alice") && out.contains("member") && !out.contains(&alice), "{out}");

    // Refused: a member may not manage tokens (3); a bad flag (2); a bad time (2); a revoked token (3).
    let (code, _, err) = run(s.cli(&alice).args(["token", "list"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("needs admin"), "{err}");
    let (code, _, _) = run(s.cli(&alice).args(["token", "create", "x", "--role", "root"]));
    assert_eq!(code, 2);
    let (code, _, err) = run(s.cli(&alice).args(["events", "--since", "yesterday"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad time `yesterday`"), "{err}");
    let (code, _, _) = run(s.cli(&s.admin).args(["token", "revoke", "alice"]));
    assert_eq!(code, 0);
    let (code, _, err) = run(s.cli(&alice).arg("status"));
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = run(s.cli(&s.admin).args(["token", "revoke", "alice"]));
    assert_eq!(code, 2, "no such token is bad input: {err}");
}

#[tokio::test]
async fn the_admin_token_file_is_private_and_used_by_default() {
    let s = Server::start().await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir.join("admin.token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, out, err) = run(Command::new(CREW)
        .env_remove("CREW_TOKEN")
        .env("CREW_SERVER", &s.url)
        .arg("--data-dir")
        .arg(&s.data_dir)
        .arg("status"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tokens    1"), "{out}");
}

#[tokio::test]
async fn follow_prints_new_events_as_they_happen() {
    let s = Server::start().await;
    let m = s.token("mo", "member").await;
    let mut child = s.cli(&m).args(["events", "--follow", "--kind", "note"]).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // The stream is subscribed before the history is printed; give the CLI a moment to connect by waiting for a
    // first event recorded after it started, retried until one arrives.
    let mut got = None;
    for i in 0..40 {
        s.record(&m, json!({"kind": "note", "summary": format!("ping {i}")})).await;
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(250), rx.recv()).await {
            got = Some(line);
            break;
        }
    }
    assert!(got.unwrap().contains("note: ping"));
    s.record(&m, json!({"kind": "release.started", "summary": "filtered out"})).await;
    s.record(&m, json!({"kind": "note", "summary": "the one to see"})).await;
    let line = loop {
        let line = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.expect("a line within 2 s").unwrap();
        if !line.contains("ping") {
            break line;
        }
    };
    assert!(line.ends_with("[mo via api] note: the one to see"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_config_and_database_stop_the_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("crew.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:0\"\nlisen = \"oops\"\n").unwrap();
    let serve = |extra: &[&str]| {
        let mut c = Command::new(CREW);
        c.args(["serve", "--statsd", "off", "--data-dir"]).arg(dir.path().join("data")).args(extra);
        run(&mut c)
    };
    let (code, _, err) = serve(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("server.lisen") && err.contains("crew.toml"), "names the key and file: {err}");

    let (code, _, err) = serve(&["--listen", "nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad listen address `nowhere`"), "{err}");

    let (code, _, err) = serve(&["--statsd", "loud"]);
    assert_eq!(code, 2, "{err}");

    let (code, _, err) = serve(&["--config", "/no/such/crew.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/no/such/crew.toml"), "{err}");

    let port = crew_testkit::free_port();
    let url = format!("postgres://crew:s3cret@127.0.0.1:{port}/crew");
    let (code, _, err) = serve(&["--listen", "127.0.0.1:0", "--database", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("postgres://crew:***@127.0.0.1:{port}/crew")), "the URL, redacted: {err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "the cause: {err}");

    let (code, _, err) = run(Command::new(CREW).args(["events", "--colour"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn an_unreachable_server_is_exit_1() {
    let port = crew_testkit::free_port();
    let (code, _, err) = run(Command::new(CREW)
        .env("CREW_SERVER", format!("http://127.0.0.1:{port}"))
        .env("CREW_TOKEN", "x")
        .arg("status"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the crew server"), "{err}");
}

/// The README's first command: `crew demo` serves a working timeline with real events, and Ctrl-C stops it and
/// removes its temporary folder.
#[tokio::test]
async fn demo_serves_real_events_until_interrupted() {
    let mut child = Command::new(CREW)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env_remove("CREW_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut url, mut token, mut folder) = (None, None, None);
    while url.is_none() || token.is_none() || folder.is_none() {
        let line =
            tokio::time::timeout(Duration::from_secs(90), rx.recv()).await.expect("demo output").expect("demo running");
        if let Some(rest) = line.strip_prefix("crew demo is running at ") {
            url = Some(rest.trim().to_string());
        } else if line.trim().starts_with("crew_") {
            token = Some(line.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("Data lives in ") {
            folder = Some(rest.split(" until").next().unwrap().to_string());
        }
    }
    let (url, token, folder) = (url.unwrap(), token.unwrap(), folder.unwrap());
    assert!(std::path::Path::new(&folder).exists());
    let http = reqwest::Client::new();
    let v: Value = http
        .get(format!("{url}/api/v1/events?limit=100"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"token.created") && kinds.contains(&"note"), "{kinds:?}");
    assert!(v["events"].as_array().unwrap().iter().any(|e| e["actor"]["name"] == "alice"));
    // Two real deploys to each environment, production on two hosts, and one commit left pending.
    let v: Value =
        http.get(format!("{url}/api/v1/deploys")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let statuses: Vec<&str> = v["deploys"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded"; 4]);
    let p: Value = http
        .get(format!("{url}/api/v1/environments/production/pending"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["commits"].as_array().unwrap().len(), 1, "{p}");
    let f: Value =
        http.get(format!("{url}/api/v1/flags")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let keys: Vec<&str> = f["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["button-color", "new-checkout", "recommendations", "search-v2", "video-uploads"]);
    // The bucket test has traffic and conversions, and a winner.
    let mut results = Value::Null;
    for _ in 0..100 {
        let res =
            http.get(format!("{url}/api/v1/flags/button-color/results")).bearer_auth(&token).send().await.unwrap();
        results = res.json().await.unwrap();
        if results["phases"][0]["winner"] == "blue" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(results["phases"][0]["winner"], "blue", "{:#}", results["phases"][0]["variants"]);
    let switched = f["flags"].as_array().unwrap().iter().find(|f| f["key"] == "video-uploads").unwrap();
    assert_eq!(switched["definition"]["state"], "DISABLED");
    for host in ["web1", "web2"] {
        let rev =
            std::fs::read_to_string(std::path::Path::new(&folder).join("hosts").join(host).join("current/REVISION"))
                .unwrap();
        assert_eq!(rev.trim(), v["deploys"][0]["revision"].as_str().unwrap());
    }
    // The hosts were converged from their roles, and the hand edit on web2 was found as drift.
    let v: Value = http
        .get(format!("{url}/api/v1/events?kind=infra"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let infra: Vec<(&str, &str)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(infra, [("infra.drift", "host:web2"), ("infra.applied", "host:web2"), ("infra.applied", "host:web1")]);
    // An hour of the sample app's traffic is there from the start, and the live traffic reaches its StatsD.
    let q: Value = http
        .get(format!("{url}/api/v1/metrics/query?name=www.requests&stat=count&from=-1h&step=10m"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(q["series"].as_array().unwrap().len(), 3, "three routes: {q}");
    assert!(q["series"][0]["points"].as_array().unwrap().len() >= 5, "{q}");
    let live = crate::harness::eventually(Duration::from_secs(15), || async {
        let st: Value = http
            .get(format!("{url}/api/v1/metrics/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        st["lines"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert!(live, "the demo sends traffic to its StatsD port");
    // What the banner tells a newcomer to point Prometheus and Grafana at answers: OpenMetrics when asked for,
    // and the demo's deploys as annotations.
    let om = http
        .get(format!("{url}/metrics"))
        .bearer_auth(&token)
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(om.contains("# TYPE www_requests counter") && om.ends_with("# EOF\n"), "{om}");
    let ann: Value = http
        .get(format!("{url}/api/v1/annotations?from=now-2h&to=now&tags=deploy"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ann.as_array().is_some_and(|a| !a.is_empty()), "the demo's deploys: {ann}");
    // The live error burst fires the page alert: an incident pages alice (on call), and she acknowledges it.
    let acked = crate::harness::eventually(Duration::from_secs(60), || async {
        let v: Value =
            http.get(format!("{url}/api/v1/incidents")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        v["incidents"].as_array().is_some_and(|l| {
            l.iter().any(|i| i["acked_by"] == "alice" && i["source"] == "alert" && i["escalation"] == "www")
        })
    })
    .await;
    assert!(acked, "the demo's incident is paged and acknowledged");
    let v: Value = http
        .get(format!("{url}/api/v1/events?kind=incident.escalated"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["events"].as_array().unwrap().iter().any(|e| e["summary"].as_str().unwrap().contains("paging alice")),
        "{v}"
    );
    // The incident lists the demo's production deploy just before it, with its undo.
    let get = |path: String| {
        let (http, token) = (http.clone(), token.clone());
        async move { http.get(path).bearer_auth(&token).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let inc = get(format!("{url}/api/v1/incidents/1")).await;
    let changes = inc["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["kind"] == "deploy.finished" && c["undo"]["action"] == "rollback"), "{changes:?}");
    // The burst ends: the alert resolves the incident, its postmortem is drafted, then the demo's drill runs.
    let drilled = crate::harness::eventually(Duration::from_secs(90), || async {
        let v = get(format!("{url}/api/v1/events?kind=drill.started")).await;
        !v["events"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(drilled, "the demo runs its fire drill after the incident");
    let pm = get(format!("{url}/api/v1/incidents/1/postmortem")).await;
    assert_eq!(pm["state"], "draft", "{pm}");
    // Then a slower release reaches production's canary, and the judge switches it back without a person.
    let failed = |v: Value| v["events"].as_array().unwrap().iter().find(|e| e["data"]["verdict"] == "fail").cloned();
    let switched_back = crate::harness::eventually(Duration::from_secs(200), || async {
        failed(get(format!("{url}/api/v1/events?kind=deploy.judged")).await).is_some()
    })
    .await;
    let seen = get(format!("{url}/api/v1/events?limit=60")).await;
    let seen: Vec<&str> = seen["events"].as_array().unwrap().iter().filter_map(|e| e["summary"].as_str()).collect();
    assert!(switched_back, "the demo's slow canary is judged; the newest events:\n{}", seen.join("\n"));
    let judged = failed(get(format!("{url}/api/v1/events?kind=deploy.judged")).await).unwrap();
    assert_eq!(judged["data"]["action"], "switch_back", "{judged}");
    let id = judged["data"]["deploy"].as_i64().unwrap();
    let rolled = crate::harness::eventually(Duration::from_secs(30), || async {
        get(format!("{url}/api/v1/deploys/{id}")).await["status"] == "rolled_back"
    })
    .await;
    assert!(rolled, "the slow canary's deploy ends switched back");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&folder).exists(), "the demo's folder is removed");
}
