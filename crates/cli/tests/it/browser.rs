//! The web UI in a real headless Chromium (Debian's chromium and chromium-driver), driven over WebDriver.

use crate::harness::{eventually, Server};
use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> (Driver, fantoccini::Client) {
    let port = crew_testkit::free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver package; scripts/test installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let profile = tempfile::tempdir().unwrap();
    let d = Driver { child, url, _profile: profile };
    let ready = eventually(Duration::from_secs(20), || async {
        reqwest::get(format!("{}/status", d.url)).await.map(|r| r.status().is_success()).unwrap_or(false)
    })
    .await;
    assert!(ready, "chromedriver did not start");
    let mut caps = serde_json::Map::new();
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(format!("--user-data-dir={}", d._profile.path().display())))
    .collect::<Vec<_>>();
    caps.insert("goog:chromeOptions".into(), json!({"args": args, "binary": "/usr/bin/chromium"}));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a WebDriver session");
    (d, client)
}

#[tokio::test]
async fn sign_in_and_watch_the_timeline_update_live() {
    let s = Server::start().await;
    let member = s.token("mo", "member").await;
    let viewer = s.token("vera", "viewer").await;
    s.record(&member, json!({"kind": "note", "subject": "www", "summary": "<b>not bold</b> before sign-in"})).await;
    let (_driver, c) = driver().await;

    // A page needs a session: it redirects to the sign-in form.
    c.goto(&format!("{}/timeline", s.url)).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/signin"));

    // A wrong token is refused with a message.
    // A click that submits a form does not wait for the next page: wait for what the next page shows.
    let wait = |c: &fantoccini::Client, css: &'static str| {
        let c = c.clone();
        async move { c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap() }
    };
    wait(&c, "#token").await.send_keys("crew_wrong").await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let msg = wait(&c, ".error").await.text().await.unwrap();
    assert!(msg.contains("not recognised"), "{msg}");

    wait(&c, "#token").await.send_keys(&viewer).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let who = wait(&c, "form.who span").await.text().await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/timeline");
    assert_eq!(who, "vera · viewer");
    // The session cookie is HttpOnly: page scripts cannot read it.
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies, json!(""));
    // Event text is shown as text, never as markup.
    let rows = c.find(Locator::Css("#events")).await.unwrap().text().await.unwrap();
    assert!(rows.contains("<b>not bold</b> before sign-in"), "{rows}");

    // Wait until the page's live stream is open, then record an event through the API.
    let live = eventually(Duration::from_secs(10), || async {
        c.find(Locator::Css("#live-status")).await.unwrap().text().await.unwrap().starts_with("Live")
    })
    .await;
    assert!(live);
    // Mark the document so a reload would be noticed.
    c.execute("window.__crew_marker = 42", vec![]).await.unwrap();
    s.record(
        &member,
        json!({"kind": "release.note", "subject": "www/production", "summary": "mo shipped the login fix"}),
    )
    .await;
    let appeared = eventually(Duration::from_secs(5), || async {
        match c.find(Locator::Css("#events tr:first-child td.summary")).await {
            Ok(td) => td.text().await.unwrap_or_default().contains("mo shipped the login fix"),
            Err(_) => false,
        }
    })
    .await;
    assert!(appeared, "the new event appears at the top without reload");
    assert_eq!(c.execute("return window.__crew_marker", vec![]).await.unwrap(), json!(42), "no reload happened");

    // Filters: the page filters by kind, and the search form narrows the list.
    c.goto(&format!("{}/timeline?kind=note", s.url)).await.unwrap();
    wait(&c, "#events").await;
    let rows = c.find_all(Locator::Css("#events tr")).await.unwrap();
    assert_eq!(rows.len(), 1);

    // The sign-in was recorded on the timeline, via web.
    let v = s.get_json("/api/v1/events?kind=session.started", &s.admin).await;
    assert_eq!(v["events"][0]["actor"], json!({"name": "vera", "via": "web"}));

    // Signing out ends the session.
    c.find(Locator::Css("form.who button")).await.unwrap().click().await.unwrap();
    wait(&c, "#token").await;
    c.goto(&format!("{}/timeline", s.url)).await.unwrap();
    wait(&c, "#token").await;
    assert!(c.current_url().await.unwrap().path().starts_with("/signin"));
    let v = s.get_json("/api/v1/events?kind=session", &s.admin).await;
    assert_eq!(v["events"][0]["summary"], "vera signed out of the web UI");
    c.close().await.unwrap();
}

#[tokio::test]
async fn session_writes_need_the_csrf_token() {
    // Without a browser: the API refuses a cookie-authenticated write that lacks the page's CSRF header, and a
    // sign-in posted from another origin.
    let s = Server::start().await;
    let m = s.token("mo", "member").await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = http
        .post(format!("{}/signin", s.url))
        .header("origin", "https://evil.example")
        .form(&[("token", m.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = http.post(format!("{}/signin", s.url)).form(&[("token", m.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let page =
        http.get(format!("{}/timeline", s.url)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let body = json!({"kind": "note", "summary": "from the page"});
    let res = http.post(format!("{}/api/v1/events", s.url)).header("cookie", &cookie).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = http
        .post(format!("{}/api/v1/events", s.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let e: serde_json::Value = res.json().await.unwrap();
    assert_eq!(e["actor"], json!({"name": "mo", "via": "web"}));
}

#[tokio::test]
async fn a_member_deploys_from_the_web_and_watches_it_finish() {
    let a = crate::deploy::app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let member = s.token("mo", "member").await;
    let viewer = s.token("vera", "viewer").await;
    let (_driver, c) = driver().await;
    let wait = |c: &fantoccini::Client, css: &'static str| {
        let c = c.clone();
        async move { c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap() }
    };
    // A viewer sees the environments but no buttons.
    c.goto(&format!("{}/signin?next=/deploys", s.url)).await.unwrap();
    wait(&c, "#token").await.send_keys(&viewer).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    wait(&c, "section.env").await;
    assert!(c.find(Locator::Css("button.deploy")).await.is_err(), "viewers get no Deploy button");
    c.find(Locator::Css("form.who button")).await.unwrap().click().await.unwrap();
    // Signed out: the sign-in page is shown before the next step navigates away.
    wait(&c, "#token").await;

    c.goto(&format!("{}/signin?next=/deploys", s.url)).await.unwrap();
    wait(&c, "#token").await.send_keys(&member).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let staging = wait(&c, "section.env[data-environment=staging]").await;
    let text = staging.text().await.unwrap();
    assert!(text.contains("No live release") && text.contains("1 commit(s) pending"), "{text}");
    staging.find(Locator::Css("input[name=message]")).await.unwrap().send_keys("from the web").await.unwrap();
    staging.find(Locator::Css("button.deploy")).await.unwrap().click().await.unwrap();
    wait(&c, "#deploy-log").await;
    assert!(c.current_url().await.unwrap().path().starts_with("/deploys/"));
    let done = eventually(Duration::from_secs(20), || async {
        c.find(Locator::Css("#deploy-status")).await.unwrap().text().await.unwrap() == "succeeded"
    })
    .await;
    assert!(done, "the status turns to succeeded without reload");
    let log = c.find(Locator::Css("#deploy-log")).await.unwrap().text().await.unwrap();
    assert!(log.contains("switched to") && log.contains("succeeded in"), "{log}");
    assert!(crate::deploy::live(&a.hosts.join("staging1")).is_some());

    // Lock from the page: the lock shows, with who and why.
    c.goto(&format!("{}/deploys", s.url)).await.unwrap();
    let prod = wait(&c, "section.env[data-environment=production]").await;
    prod.find(Locator::Css("input[name=reason]")).await.unwrap().send_keys("db migration").await.unwrap();
    prod.find(Locator::Css("form[action='/deploys/lock'] button")).await.unwrap().click().await.unwrap();
    let lock = wait(&c, "section.env[data-environment=production] p.lock").await.text().await.unwrap();
    assert!(lock.contains("locked by mo") && lock.contains("db migration"), "{lock}");
    let log = c.find(Locator::Css("ul.deploylog")).await.unwrap().text().await.unwrap();
    assert!(log.contains("[mo] www deployed to staging") && log.contains("\"from the web\""), "{log}");
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_member_switches_a_flag_off_from_the_web_with_a_reason() {
    let s = Server::start().await;
    let member = s.token("mo", "member").await;
    let res = s
        .req(reqwest::Method::POST, "/api/v1/flags/video/knob", &member)
        .json(&json!({"knob": "rollout", "percent": 20, "reason": "ramp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_driver, c) = driver().await;
    let wait = |c: &fantoccini::Client, css: &'static str| {
        let c = c.clone();
        async move { c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap() }
    };
    c.goto(&format!("{}/signin?next=/flags", s.url)).await.unwrap();
    wait(&c, "#token").await.send_keys(&member).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let row = wait(&c, "tr[data-flag=video]").await;
    assert!(row.text().await.unwrap().contains("20% on, 80% off"));
    row.find(Locator::Css("input[name=reason]")).await.unwrap().send_keys("incident 7").await.unwrap();
    row.find(Locator::Css("button.switch")).await.unwrap().click().await.unwrap();
    let switched = eventually(Duration::from_secs(10), || async {
        match c.find(Locator::Css("tr[data-flag=video] td.description")).await {
            Ok(td) => td.text().await.unwrap_or_default().starts_with("off"),
            Err(_) => false,
        }
    })
    .await;
    assert!(switched, "the page shows the flag switched off");
    // The change is an event with the reason, via web; the flag's page shows the history as before → after.
    let v = s.get_json("/api/v1/events?kind=flag.changed&limit=1", &member).await;
    assert_eq!(v["events"][0]["actor"], json!({"name": "mo", "via": "web"}));
    assert_eq!(v["events"][0]["data"]["reason"], "incident 7");
    c.goto(&format!("{}/flags/video", s.url)).await.unwrap();
    let history = wait(&c, "section.change").await.text().await.unwrap();
    assert!(history.contains("incident 7") && history.contains("DISABLED"), "{history}");
    c.close().await.unwrap();
}

#[tokio::test]
async fn the_infrastructure_page_shows_each_hosts_last_apply_and_the_drift_the_schedule_found() {
    let d = crate::infra::repo();
    let cfg = d.path().join("crew.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[infra]\ncheck = \"10s\"\n");
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start_with_config(&cfg).await;
    let o = s.cli(&s.admin).args(["infra", "apply", "all", "--config"]).arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Someone edits web1 by hand; the server's schedule finds it (as `crew via scheduler`) within a few ticks.
    std::fs::write(d.path().join("hosts/web1/etc/www/app.conf"), "listen 1\n").unwrap();
    let found = eventually(Duration::from_secs(40), || async {
        let v = s.get_json("/api/v1/events?kind=infra.drift", &s.admin).await;
        v["events"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert!(found, "the schedule recorded the drift");
    let v = s.get_json("/api/v1/events?kind=infra.drift", &s.admin).await;
    assert_eq!(v["events"][0]["actor"], json!({"name": "crew", "via": "scheduler"}));
    assert_eq!(v["events"][0]["subject"], "host:web1");
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "web2 did not drift: {v}");

    let (_driver, c) = driver().await;
    let wait = |c: &fantoccini::Client, css: &'static str| {
        let c = c.clone();
        async move { c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap() }
    };
    c.goto(&format!("{}/signin?next=/infra", s.url)).await.unwrap();
    wait(&c, "#token").await.send_keys(&s.admin).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let web1 = wait(&c, "tr[data-host=web1]").await.text().await.unwrap();
    assert!(web1.contains("drifted") && web1.contains("2 changed, 0 failed, 0 refreshed"), "{web1}");
    let web2 = c.find(Locator::Css("tr[data-host=web2]")).await.unwrap().text().await.unwrap();
    assert!(web2.contains("as applied") && web2.contains("web, extra"), "{web2}");
    let section = c.find(Locator::Css("section.host[data-host=web1]")).await.unwrap();
    let drift = section.find(Locator::Css("p.drift")).await.unwrap().text().await.unwrap();
    assert!(drift.contains("web1 drifted from its roles: file:/etc/www/app.conf"), "{drift}");
    // The last apply's report: what it changed, with the diff folded away until asked for.
    let applied = section.text().await.unwrap();
    assert!(
        applied.contains("file:/etc/www/app.conf created") && applied.contains("directory:/etc/www created"),
        "{applied}"
    );
    section.find(Locator::Css("ul.outcomes details summary")).await.unwrap().click().await.unwrap();
    let diff = section.find(Locator::Css("ul.outcomes pre.diff")).await.unwrap().text().await.unwrap();
    assert!(diff.contains("listen"), "{diff}");
    let roles = c.find(Locator::Css("tr[data-role=web]")).await.unwrap().text().await.unwrap();
    assert!(roles.contains("1 directory, 1 file") && roles.contains("web1, web2"), "{roles}");
    c.close().await.unwrap();
}

/// The sum of the values the points of a graph show on hover (`<title>3 at 12:00</title>`).
fn hover_total(svg: &str) -> f64 {
    svg.split("<circle")
        .skip(1)
        .filter_map(|c| c.split("<title>").nth(1)?.split(" at ").next()?.trim().parse::<f64>().ok())
        .sum()
}

/// Pixels of a colour (within a small distance) in a PNG screenshot.
fn pixels_like(png_bytes: &[u8], rgb: (u8, u8, u8)) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| {
            let d = |a: u8, b: u8| (a as i32 - b as i32).abs();
            d(p[0], rgb.0) + d(p[1], rgb.1) + d(p[2], rgb.2) < 60
        })
        .count()
}

#[tokio::test]
async fn the_metrics_page_draws_a_dashboard_with_deploy_and_flag_markers_and_refreshes_it() {
    let app = crate::deploy::app();
    let cfg = app.with(
        "[metrics]\nflush = \"1s\"\n\n[[dashboards]]\nname = \"Shop\"\npanels = [{ title = \"Orders\", series = \"shop.orders\", stat = \"count\" }]\n",
    );
    let s = Server::start_with_statsd(&cfg).await;
    let statsd = s.statsd.clone().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3 {
        udp.send_to(format!("shop.orders:{}|c", i + 1).as_bytes(), &statsd).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let member = s.token("mo", "member").await;
    let deployed = crate::deploy::deploy_staging(&s, &member).await;
    let res = s
        .req(reqwest::Method::POST, "/api/v1/flags/checkout/knob", &member)
        .json(&json!({"knob": "rollout", "percent": 50, "reason": "ramp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_driver, c) = driver().await;
    let wait = |c: &fantoccini::Client, css: &'static str| {
        let c = c.clone();
        async move { c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap() }
    };
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&format!("{}/signin?next=/graphs", s.url)).await.unwrap();
    wait(&c, "#token").await.send_keys(&member).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let fig = wait(&c, "figure.panel svg.graph").await;
    let caption = c.find(Locator::Css("figure.panel figcaption")).await.unwrap().text().await.unwrap();
    assert!(caption.contains("Orders") && caption.contains("shop.orders") && caption.contains("count"), "{caption}");
    // Hover values: every point carries its value; together they are the 1 + 2 + 3 orders sent.
    let points = fig.find_all(Locator::Css("circle.pt")).await.unwrap();
    assert!(!points.is_empty(), "no points");
    let html = fig.html(false).await.unwrap();
    assert_eq!(hover_total(&html), 6.0, "{html}");
    // The markers: a deploy and a flag change, each linking to it.
    let deploy = fig.find(Locator::Css("line.marker.deploy")).await.unwrap();
    assert!(deploy.html(false).await.unwrap().contains("deployed www to staging"));
    let link = fig
        .find(Locator::XPath("//*[local-name()='a'][*[local-name()='line' and contains(@class,'deploy')]]"))
        .await
        .unwrap();
    assert_eq!(link.attr("href").await.unwrap(), Some(format!("/deploys/{deployed}")));
    let flag = fig.find(Locator::Css("line.marker.flag")).await.unwrap();
    assert!(flag.html(false).await.unwrap().contains("checkout"), "{}", flag.html(false).await.unwrap());
    // And they are really drawn: the screenshot holds the markers' colours.
    let shot = c.screenshot().await.unwrap();
    if let Ok(p) = std::env::var("CREW_SCREENSHOT") {
        std::fs::write(p, &shot).unwrap();
    }
    assert!(pixels_like(&shot, (0xe8, 0x59, 0x0c)) >= 20, "deploy marker orange on screen");
    assert!(pixels_like(&shot, (0x70, 0x48, 0xe8)) >= 20, "flag marker violet on screen");
    // Live: new data appears without a reload.
    udp.send_to(b"shop.orders:4|c", &statsd).unwrap();
    let grew = eventually(Duration::from_secs(25), || async {
        match c.find(Locator::Css("figure.panel svg.graph")).await {
            Ok(f) => hover_total(&f.html(false).await.unwrap_or_default()) == 10.0,
            Err(_) => false,
        }
    })
    .await;
    assert!(grew, "the panel refreshed in place");
    // Ranges and search.
    c.find(Locator::Css("nav.ranges a[href*='range=6h']")).await.unwrap().click().await.unwrap();
    wait(&c, "nav.ranges a.current[href*='range=6h']").await;
    wait(&c, "figure.panel svg.graph").await;
    c.goto(&format!("{}/graphs?q=shop", s.url)).await.unwrap();
    let found = wait(&c, "figure.panel[data-series='shop.orders'] svg.graph").await;
    assert!(found.html(false).await.unwrap().contains("polyline"));
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_member_acknowledges_and_resolves_an_incident_from_its_page_and_sees_who_is_on_call() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[people.alice]\nnotify = []\n[people.bob]\nnotify = []\n\
        [[schedules]]\nname = \"ops\"\nzone = \"America/New_York\"\n[[schedules.layers]]\nname = \"l\"\n\
        users = [\"alice\", \"bob\"]\nrotation = \"daily\"\nstart = \"2026-01-01T09:00\"\n\
        [[escalations]]\nname = \"www\"\nsteps = [{ notify = [\"schedule:ops\"], wait = \"10m\" }]\n";
    let path = dir.path().join("crew.toml");
    std::fs::write(&path, toml).unwrap();
    let s = Server::start_with_config(&path).await;
    let member = s.token("mo", "member").await;
    let body = json!({"summary": "checkout is down", "escalation": "www"});
    let res = s.req(reqwest::Method::POST, "/api/v1/incidents", &member).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<serde_json::Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();
    let (_driver, c) = driver().await;
    let wait = |c: &fantoccini::Client, css: &'static str| {
        let c = c.clone();
        async move { c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap() }
    };
    c.goto(&format!("{}/signin?next=/incidents", s.url)).await.unwrap();
    wait(&c, "#token").await.send_keys(&member).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let row = wait(&c, "tr.triggered").await;
    assert!(row.text().await.unwrap().contains("checkout is down"));
    c.goto(&format!("{}/incidents/{id}", s.url)).await.unwrap();
    wait(&c, "button.ack").await.click().await.unwrap();
    let acked = eventually(Duration::from_secs(10), || async {
        match c.find(Locator::Css("span.status")).await {
            Ok(e) => e.text().await.unwrap_or_default() == "acknowledged",
            Err(_) => false,
        }
    })
    .await;
    assert!(acked, "the page shows the incident acknowledged");
    wait(&c, "input[name=note]").await.send_keys("restarted the workers").await.unwrap();
    c.find(Locator::Css("button.resolve")).await.unwrap().click().await.unwrap();
    let resolved = eventually(Duration::from_secs(10), || async {
        match c.find(Locator::Css("ol.timeline")).await {
            Ok(e) => e.text().await.unwrap_or_default().contains("restarted the workers"),
            Err(_) => false,
        }
    })
    .await;
    assert!(resolved, "the resolution and its note are on the incident's timeline");
    let v = s.get_json(&format!("/api/v1/incidents/{id}"), &member).await;
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["acked_by"], "mo");
    // The On-call page: who is on call now, and two weeks of shifts drawn as bars.
    c.goto(&format!("{}/oncall", s.url)).await.unwrap();
    let now = wait(&c, "section.schedule p.now").await.text().await.unwrap();
    let who = s.get_json("/api/v1/oncall", &member).await["schedules"][0]["now"]["user"].as_str().unwrap().to_string();
    assert!(now.contains(&who), "{now}");
    let bars = c.find_all(Locator::Css("svg.shifts rect")).await.unwrap();
    assert!(bars.len() >= 14, "two weeks of daily shifts: {}", bars.len());
    c.close().await.unwrap();
}

#[tokio::test]
async fn an_incident_page_lists_the_changes_before_it_and_undoes_them_with_one_click() {
    let a = crate::deploy::app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let mo = s.token("mo", "member").await;
    let first = crate::deploy::deploy_staging(&s, &mo).await;
    crate::deploy::commit(&a.repo, "index.html", "<h1>v2</h1>\n", "v2");
    crate::deploy::deploy_staging(&s, &mo).await;
    let knob = json!({"knob": "rollout", "percent": 40, "reason": "ramp"});
    s.req(reqwest::Method::POST, "/api/v1/flags/search/knob", &mo).json(&knob).send().await.unwrap();
    let res = s
        .req(reqwest::Method::POST, "/api/v1/incidents", &mo)
        .json(&json!({"summary": "staging broke", "severity": "ticket"}))
        .send()
        .await
        .unwrap();
    let id = res.json::<serde_json::Value>().await.unwrap()["incident"]["id"].as_i64().unwrap();
    let (_driver, c) = driver().await;
    let wait = |c: &fantoccini::Client, css: &'static str| {
        let c = c.clone();
        async move { c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap() }
    };
    c.goto(&format!("{}/signin?next=/incidents/{id}", s.url)).await.unwrap();
    wait(&c, "#token").await.send_keys(&mo).await.unwrap();
    c.find(Locator::Css("#signin")).await.unwrap().click().await.unwrap();
    let changes = wait(&c, "ul.changes").await.text().await.unwrap();
    assert!(
        changes.contains(&format!("Roll staging back to #{first}")) && changes.contains("Switch search back"),
        "{changes}"
    );
    c.find(Locator::Css("li[data-kind='deploy.finished'] button.undo")).await.unwrap().click().await.unwrap();
    let rolled = eventually(Duration::from_secs(30), || async {
        let d = s.get_json("/api/v1/deploys?limit=1", &mo).await;
        d["deploys"][0]["action"] == "rollback" && d["deploys"][0]["status"] == "succeeded"
    })
    .await;
    assert!(rolled, "the click rolled staging back");
    c.goto(&format!("{}/incidents/{id}", s.url)).await.unwrap();
    wait(&c, "li[data-kind='flag.changed'] button.undo").await.click().await.unwrap();
    let gone = eventually(Duration::from_secs(10), || async {
        s.req(reqwest::Method::GET, "/api/v1/flags/search", &mo).send().await.unwrap().status() == 404
    })
    .await;
    assert!(gone, "the flag is back as it was before the change (it did not exist)");
    let v = s.get_json(&format!("/api/v1/events?kind=incident.undo&subject=incident:{id}"), &mo).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["events"].as_array().unwrap().iter().all(|e| e["actor"]["via"] == "web"));
    // The robot's door: `!rollback staging` (after shipping v2 again) is recorded on the open incident too.
    crate::deploy::deploy_staging(&s, &mo).await;
    let res = s
        .req(reqwest::Method::POST, "/api/v1/chat/command", &mo)
        .json(&json!({"text": "!rollback staging"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let v = s.get_json(&format!("/api/v1/events?kind=incident.undo&subject=incident:{id}"), &mo).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 3, "{v}");
    c.close().await.unwrap();
}
