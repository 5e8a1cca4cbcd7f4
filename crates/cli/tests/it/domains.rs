//! The server's shape, tested from outside: every registered route admits exactly its least role (the table
//! below must name each one), each action gives one outcome whichever way it is asked (API, web form, robot),
//! crew's own event kinds are refused from people, and absurd numbers in queries are 400s naming the field.

use crate::deploy::app;
use crate::harness::Server;
use crew_core::Role;
use crew_server::http::Least;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A browser session: its cookie and the CSRF secret its pages carry.
pub(crate) struct Session {
    pub cookie: String,
    pub csrf: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) async fn sign_in(s: &Server, token: &str) -> Session {
    let http = no_redirects();
    let res = http.post(format!("{}/signin", s.url)).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(res.status(), 303, "sign-in");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = http.get(format!("{}/timeline", s.url)).header("cookie", &cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    let csrf = page.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    Session { cookie, csrf }
}

/// A route's path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{key}", "video")
        .replace("{env}", "production")
        .replace("{name}", "nobody")
        .replace("{*rest}", "x")
        .replace("{schedule}", "ops")
        .replace("{*path}", "checkout")
}

fn redirects_to_signin(res: &reqwest::Response) -> bool {
    res.status() == StatusCode::SEE_OTHER
        && res.headers().get("location").and_then(|l| l.to_str().ok()).is_some_and(|l| l.starts_with("/signin"))
}

/// The expected least of every route crew registers. A route missing here fails the test: adding a route
/// means saying who may call it.
fn table() -> BTreeMap<(&'static str, &'static str), Least> {
    use Least::*;
    let (v, m, a, e) = (Token(Role::Viewer), Token(Role::Member), Token(Role::Admin), Token(Role::Evaluate));
    let al = Token(Role::Alert);
    let page = Page(Role::Viewer);
    let form = Form(Role::Member);
    BTreeMap::from([
        (("GET", "/api/v1/health"), Anyone),
        (("GET", "/api/v1/status"), v),
        (("GET", "/api/v1/events"), v),
        (("POST", "/api/v1/events"), m),
        (("GET", "/api/v1/events/stream"), v),
        (("GET", "/api/v1/events/{id}"), v),
        (("GET", "/api/v1/tokens"), a),
        (("POST", "/api/v1/tokens"), a),
        (("DELETE", "/api/v1/tokens/{name}"), a),
        (("GET", "/api/v1/deploys"), v),
        (("POST", "/api/v1/deploys"), m),
        (("GET", "/api/v1/deploys/{id}"), v),
        (("GET", "/api/v1/deploys/{id}/log"), v),
        (("GET", "/api/v1/deploys/{id}/log/stream"), v),
        (("POST", "/api/v1/deploys/{id}/decision"), m),
        (("GET", "/api/v1/environments"), v),
        (("POST", "/api/v1/environments/{env}/rollback"), m),
        (("POST", "/api/v1/environments/{env}/lock"), m),
        (("DELETE", "/api/v1/environments/{env}/lock"), m),
        (("GET", "/api/v1/environments/{env}/pending"), v),
        (("GET", "/api/v1/flags"), v),
        (("GET", "/api/v1/flags/stream"), e),
        (("GET", "/api/v1/flags/{key}"), v),
        (("GET", "/api/v1/flags/{key}/results"), v),
        (("POST", "/api/v1/exposures"), e),
        (("POST", "/api/v1/track"), e),
        (("PUT", "/api/v1/flags/{key}"), m),
        (("DELETE", "/api/v1/flags/{key}"), m),
        (("POST", "/api/v1/flags/{key}/knob"), m),
        (("GET", "/api/v1/flags/{key}/plan"), v),
        (("PUT", "/api/v1/flags/{key}/plan"), m),
        (("GET", "/api/v1/flags/{key}/ramp"), v),
        (("POST", "/api/v1/flags/{key}/ramp"), m),
        (("DELETE", "/api/v1/flags/{key}/ramp"), m),
        (("POST", "/ofrep/v1/evaluate/flags"), e),
        (("POST", "/ofrep/v1/evaluate/flags/{key}"), e),
        (("GET", "/ofrep/v1/events"), e),
        (("GET", "/api/v1/metrics"), v),
        (("GET", "/api/v1/metrics/query"), v),
        (("GET", "/api/v1/metrics/status"), v),
        (("GET", "/api/v1/annotations"), v),
        (("POST", "/api/v1/annotations"), v),
        (("GET", "/api/v1"), v),
        (("GET", "/metrics"), v),
        (("GET", "/api/v1/chat"), v),
        (("POST", "/api/v1/chat/command"), v),
        (("GET", "/api/v1/chat/links"), v),
        (("POST", "/api/v1/chat/links"), a),
        (("POST", "/api/v1/infra/reports"), m),
        (("GET", "/api/v1/runbooks"), v),
        (("GET", "/api/v1/runbooks/{*path}"), v),
        (("GET", "/"), Anyone),
        (("GET", "/signin"), Anyone),
        (("POST", "/signin"), Anyone),
        (("POST", "/signout"), Form(Role::Evaluate)),
        (("GET", "/static/graphs.js"), Anyone),
        (("GET", "/static/deploy.js"), Anyone),
        (("GET", "/static/crew.css"), Anyone),
        (("GET", "/static/timeline.js"), Anyone),
        (("GET", "/timeline"), page),
        (("GET", "/status"), page),
        (("GET", "/deploys"), page),
        (("GET", "/deploys/{id}"), page),
        (("POST", "/deploys/start"), form),
        (("POST", "/deploys/rollback"), form),
        (("POST", "/deploys/lock"), form),
        (("POST", "/deploys/unlock"), form),
        (("POST", "/deploys/decide"), form),
        (("GET", "/flags"), page),
        (("GET", "/flags/{key}"), page),
        (("GET", "/flags/{key}/results"), page),
        (("POST", "/flags/{key}/knob"), form),
        (("POST", "/flags/{key}/ramp"), form),
        (("POST", "/flags/{key}/ramp/cancel"), form),
        (("GET", "/graphs"), page),
        (("GET", "/infra"), page),
        (("GET", "/api/v1/oncall"), v),
        (("GET", "/api/v1/oncall/{schedule}"), v),
        (("POST", "/api/v1/oncall/{schedule}/overrides"), m),
        (("DELETE", "/api/v1/oncall/{schedule}/overrides/{id}"), m),
        (("POST", "/api/v1/oncall/{schedule}/feed"), a),
        (("GET", "/api/v1/oncall/{schedule}/feed.ics"), Anyone),
        (("POST", "/api/v1/people/{name}/feed"), m),
        (("GET", "/api/v1/people/{name}/feed.ics"), Anyone),
        (("GET", "/api/v1/incidents"), v),
        (("POST", "/api/v1/incidents"), m),
        (("GET", "/api/v1/incidents/{id}"), v),
        (("POST", "/api/v1/incidents/{id}/ack"), m),
        (("POST", "/api/v1/incidents/{id}/resolve"), m),
        (("POST", "/api/v1/incidents/{id}/notes"), m),
        (("POST", "/api/v1/incidents/{id}/undo"), m),
        (("GET", "/api/v1/incidents/{id}/postmortem"), v),
        (("PUT", "/api/v1/incidents/{id}/postmortem"), m),
        (("GET", "/api/v1/drills"), v),
        (("POST", "/api/v1/drills/{name}/run"), m),
        (("GET", "/api/v1/drills/runs/{id}"), v),
        (("POST", "/api/v1/integrations/alertmanager"), al),
        (("POST", "/api/v1/integrations/pagerduty/enqueue"), al),
        (("GET", "/oncall"), page),
        (("POST", "/oncall/take"), form),
        (("GET", "/incidents"), page),
        (("GET", "/incidents/{id}"), page),
        (("POST", "/incidents/{id}/ack"), form),
        (("POST", "/incidents/{id}/resolve"), form),
        (("POST", "/incidents/{id}/notes"), form),
        (("POST", "/incidents/{id}/undo"), form),
        (("GET", "/incidents/{id}/postmortem"), page),
        (("POST", "/incidents/{id}/postmortem"), form),
        (("GET", "/drills"), page),
        (("POST", "/drills/run"), form),
        (("GET", "/ack/{token}"), Anyone),
        (("POST", "/ack/{token}"), Anyone),
        (("GET", "/runbooks"), page),
        (("GET", "/runbooks/{*path}"), page),
    ])
}

#[tokio::test]
async fn every_route_checks_its_role() {
    let s = Server::start().await;
    let tokens = [
        (Role::Evaluate, s.token("www-app", "evaluate").await),
        (Role::Alert, s.token("alertmanager", "alert").await),
        (Role::Viewer, s.token("vera", "viewer").await),
        (Role::Member, s.token("mo", "member").await),
        (Role::Admin, s.admin.clone()),
    ];
    let people = &tokens[2..];
    let http = no_redirects();
    let table = table();
    let routes = crew_server::routes();
    let mut seen = std::collections::BTreeSet::new();
    for r in &routes {
        let row = (r.method.as_str(), r.path);
        let want = table.get(&row).unwrap_or_else(|| panic!("{} {} has no row in the role table", r.method, r.path));
        assert_eq!(&r.least, want, "{} {} registers {:?}", r.method, r.path, r.least);
        seen.insert(row);
        let method: Method = r.method.parse().unwrap();
        let url = format!("{}{}", s.url, concrete(r.path));
        let send = |req: reqwest::RequestBuilder| async move {
            let res = req.send().await.unwrap();
            assert!(res.status().as_u16() < 500, "{} {}: {}", r.method, r.path, res.status());
            res
        };
        let bare = || http.request(method.clone(), &url);
        let json_body = |req: reqwest::RequestBuilder| {
            if method == Method::GET || method == Method::DELETE {
                req
            } else {
                req.header("content-type", "application/json").body("{}")
            }
        };
        match *want {
            Least::Anyone => {
                let res = send(bare()).await;
                assert!(res.headers().get("www-authenticate").is_none(), "{} {}: asks for a token", r.method, r.path);
                assert!(res.status() != 403 && !redirects_to_signin(&res), "{} {}: {}", r.method, r.path, res.status());
            }
            Least::Token(least) => {
                for bad in [None, Some("crew_not-a-token")] {
                    let mut req = json_body(bare());
                    if let Some(t) = bad {
                        req = req.bearer_auth(t);
                    }
                    assert_eq!(send(req).await.status(), 401, "{} {} with {bad:?}", r.method, r.path);
                }
                for (role, tok) in &tokens {
                    let res = send(json_body(bare().bearer_auth(tok))).await;
                    if role.allows(least) {
                        assert!(
                            res.status() != 401 && res.status() != 403,
                            "{} {} as {role}: {}",
                            r.method,
                            r.path,
                            res.status()
                        );
                    } else {
                        assert_eq!(res.status(), 403, "{} {} as {role}", r.method, r.path);
                        let v: Value = res.json().await.unwrap();
                        assert!(v["errors"][0]["detail"].as_str().unwrap().contains(least.as_str()), "{v}");
                    }
                }
            }
            Least::Page(least) => {
                assert!(redirects_to_signin(&send(bare()).await), "{} {} without a session", r.method, r.path);
                for (role, tok) in people {
                    let session = sign_in(&s, tok).await;
                    let res = send(bare().header("cookie", &session.cookie)).await;
                    let ok = res.status() != 403 && !redirects_to_signin(&res);
                    assert_eq!(ok, role.allows(least), "{} {} as {role}: {}", r.method, r.path, res.status());
                }
            }
            Least::Form(least) => {
                assert!(redirects_to_signin(&send(bare()).await), "{} {} without a session", r.method, r.path);
                for (role, tok) in people {
                    // A fresh session each time: a form may end it (sign-out).
                    let session = sign_in(&s, tok).await;
                    let without = send(bare().header("cookie", &session.cookie).form(&[("environment", "production")]));
                    assert_eq!(
                        without.await.status(),
                        403,
                        "{} {} as {role} without the CSRF secret",
                        r.method,
                        r.path
                    );
                    let form = [("csrf", session.csrf.as_str()), ("environment", "production"), ("reason", "x")];
                    let res = send(bare().header("cookie", &session.cookie).form(&form)).await;
                    assert_eq!(
                        res.status() != 403,
                        role.allows(least),
                        "{} {} as {role}: {}",
                        r.method,
                        r.path,
                        res.status()
                    );
                }
            }
        }
    }
    let missing: Vec<_> = table.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(missing.is_empty(), "rows for routes crew does not have: {missing:?}");
    // An application's key also works as X-API-Key, and is still only an evaluation key.
    let res =
        s.client().get(format!("{}/api/v1/events", s.url)).header("x-api-key", &tokens[0].1).send().await.unwrap();
    assert_eq!(res.status(), 403);
}

/// The same action through the API, a web form and the robot: one outcome, one kind of event.
#[tokio::test]
async fn each_action_has_one_outcome_whichever_way_it_is_asked() {
    let a = app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let mo = s.token("mo", "member").await;
    let session = sign_in(&s, &mo).await;
    let http = no_redirects();
    let web = |path: &str, fields: Vec<(&str, &str)>| {
        let mut form = vec![("csrf", session.csrf.as_str())];
        form.extend(fields);
        http.post(format!("{}{path}", s.url)).header("cookie", &session.cookie).form(&form).send()
    };
    let robot = |text: String| s.req(Method::POST, "/api/v1/chat/command", &mo).json(&json!({ "text": text })).send();

    // A lock on an environment crew.toml does not have: 404 from every door, nothing recorded.
    let api = s.req(Method::POST, "/api/v1/environments/nowhere/lock", &mo).json(&json!({"reason": "db"})).send();
    assert_eq!(api.await.unwrap().status(), 404);
    assert_eq!(web("/deploys/lock", vec![("environment", "nowhere"), ("reason", "db")]).await.unwrap().status(), 404);
    let res = robot("!lock nowhere db".into()).await.unwrap();
    assert_eq!(res.status(), 404, "{}", res.text().await.unwrap());
    // An over-long reason is refused by every door alike (the web used to skip the check).
    let long = "x".repeat(201);
    let api = s.req(Method::POST, "/api/v1/environments/staging/lock", &mo).json(&json!({ "reason": long })).send();
    assert_eq!(api.await.unwrap().status(), 400);
    assert_eq!(web("/deploys/lock", vec![("environment", "staging"), ("reason", &long)]).await.unwrap().status(), 400);
    assert_eq!(robot(format!("!lock staging {long}")).await.unwrap().status(), 400);
    assert_eq!(s.get_json("/api/v1/events?kind=lock", &mo).await["events"], json!([]));

    // Taking and releasing the lock: the same event from each door, only `via` differs.
    let mut seen = vec![];
    // The robot's HTTP door runs the same command code as a room; the caller came through the API.
    for (door, via) in [("api", "api"), ("web", "web"), ("robot", "api")] {
        match door {
            "api" => {
                let r = s
                    .req(Method::POST, "/api/v1/environments/staging/lock", &mo)
                    .json(&json!({"reason": "db migration"}));
                assert_eq!(r.send().await.unwrap().status(), 200);
                let r = s.req(Method::DELETE, "/api/v1/environments/staging/lock", &mo);
                assert_eq!(r.send().await.unwrap().status(), 200);
            }
            "web" => {
                let r =
                    web("/deploys/lock", vec![("environment", "staging"), ("reason", "db migration")]).await.unwrap();
                assert_eq!(r.status(), 303);
                let r = web("/deploys/unlock", vec![("environment", "staging")]).await.unwrap();
                assert_eq!(r.status(), 303);
            }
            _ => {
                assert_eq!(robot("!lock staging db migration".into()).await.unwrap().status(), 200);
                assert_eq!(robot("!unlock staging".into()).await.unwrap().status(), 200);
            }
        }
        let v = s.get_json("/api/v1/events?kind=lock&limit=2", &mo).await;
        let events = v["events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 2);
        let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["lock.released", "lock.taken"], "{door}");
        for e in &events {
            assert_eq!(e["actor"]["name"], "mo");
            assert_eq!(e["actor"]["via"], via);
            assert_eq!(e["subject"], "www/staging");
            assert_eq!(e["data"]["environment"], "staging");
        }
        assert!(events[1]["summary"].as_str().unwrap().starts_with("mo locked staging: db migration"), "{door}");
        seen.push(events[1]["data"]["reason"].clone());
    }
    assert!(seen.iter().all(|r| r == "db migration"), "{seen:?}");

    // Switching off a flag that does not exist: 404 everywhere, and no flag is made (the web used to make one).
    let api = s.req(Method::POST, "/api/v1/flags/ghost/knob", &mo).json(&json!({"knob": "off", "reason": "why"}));
    assert_eq!(api.send().await.unwrap().status(), 404);
    let r = web("/flags/ghost/knob", vec![("knob", "off"), ("reason", "why")]).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(robot("!flag ghost off".into()).await.unwrap().status(), 404);
    assert_eq!(s.get_json("/api/v1/flags", &mo).await["flags"], json!([]));
    assert_eq!(s.get_json("/api/v1/events?kind=flag", &mo).await["events"], json!([]));

    // Ramping a flag from each door gives the same definition.
    let r = s.req(Method::POST, "/api/v1/flags/video/knob", &mo).json(&json!({"knob": "on", "reason": "launch"}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    let mut definitions = vec![];
    let ramp = s
        .req(Method::POST, "/api/v1/flags/video/knob", &mo)
        .json(&json!({"knob": "rollout", "percent": 30, "reason": "ramp"}));
    assert_eq!(ramp.send().await.unwrap().status(), 200);
    definitions.push(s.get_json("/api/v1/flags/video", &mo).await["definition"].clone());
    let r = s.req(Method::POST, "/api/v1/flags/video/knob", &mo).json(&json!({"knob": "on", "reason": "reset"}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    let r = web("/flags/video/knob", vec![("knob", "rollout"), ("percent", "30"), ("reason", "ramp")]).await.unwrap();
    assert_eq!(r.status(), 303);
    definitions.push(s.get_json("/api/v1/flags/video", &mo).await["definition"].clone());
    let r = s.req(Method::POST, "/api/v1/flags/video/knob", &mo).json(&json!({"knob": "on", "reason": "reset"}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert_eq!(robot("!flag video rollout 30".into()).await.unwrap().status(), 200);
    definitions.push(s.get_json("/api/v1/flags/video", &mo).await["definition"].clone());
    assert!(definitions.iter().all(|d| d == &definitions[0]), "{definitions:?}");

    // Pending from the API, the robot and the environments list agree.
    let pending = s.get_json("/api/v1/environments/staging/pending", &mo).await;
    let n = pending["commits"].as_array().unwrap().len();
    let envs = s.get_json("/api/v1/environments", &mo).await;
    let staging = envs["environments"].as_array().unwrap().iter().find(|e| e["name"] == "staging").unwrap().clone();
    assert_eq!(staging["pending"], n);
    let said: Value = robot("!pending staging".into()).await.unwrap().json().await.unwrap();
    assert_eq!(said["reply"], format!("{n} commits on main not yet on staging"));
}

#[tokio::test]
async fn only_crew_writes_its_own_event_kinds() {
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let before = s.get_json("/api/v1/status", &s.admin).await["counts"].clone();
    for kind in
        ["token.revoked", "infra.applied", "alert.fired", "deploy.finished", "flag", "incident.acked", "oncall.gap"]
    {
        let body = json!({"kind": kind, "subject": "token:mo", "summary": "forged", "data": {"name": "mo"}});
        let res = s.req(Method::POST, "/api/v1/events", &mo).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 422, "{kind}");
        let v: Value = res.json().await.unwrap();
        let area = kind.split('.').next().unwrap();
        let detail = v["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{area}.*` is reserved")), "{detail}");
    }
    assert_eq!(s.get_json("/api/v1/status", &s.admin).await["counts"], before, "nothing stored");
    // The forged revocation did not end mo's access.
    assert_eq!(s.req(Method::GET, "/api/v1/events", &mo).send().await.unwrap().status(), 200);
    for kind in ["note", "release.note", "custom.deploy", "deployment.note"] {
        let e = s.record(&mo, json!({"kind": kind, "summary": "ours"})).await;
        assert_eq!(e["kind"], kind);
    }
}

#[tokio::test]
async fn absurd_numbers_in_queries_are_400s_naming_the_field() {
    let s = Server::start().await;
    let m = s.token("mo", "member").await;
    let cases = [
        ("/api/v1/metrics/query?name=x&step=9223372036854775807", "`step`"),
        ("/api/v1/metrics/query?name=x&step=-1", "`step`"),
        ("/api/v1/metrics/query?name=x&to=8210266876799", "`to`"),
        ("/api/v1/metrics/query?name=x&from=-9223372036854775808", "`from`"),
        ("/api/v1/metrics/query?name=x&from=253402300800", "`from`"),
        ("/api/v1/annotations?from=99999999999999999", "`from`"),
        ("/api/v1/annotations?to=8210266876799000", "`to`"),
        ("/api/v1/events?limit=99999999999", "`limit`"),
        ("/api/v1/events?limit=4294967297", "`limit`"),
        ("/api/v1/events?until=8210266876799", "`until`"),
        ("/api/v1/deploys?limit=9223372036854775807", "`limit`"),
        ("/api/v1/deploys/1/log?offset=99999999999999999999", "`offset`"),
        ("/api/v1/deploys/1/log?offset=-1", "`offset`"),
    ];
    for (path, field) in cases {
        let res = s.req(Method::GET, path, &m).send().await.unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        let detail = v["errors"][0]["detail"].as_str().unwrap_or_default().to_string();
        // The deploy log of a deploy that does not exist may answer 404 first; never a 500.
        assert!(status == 400 || (status == 404 && path.contains("/deploys/1/")), "{path}: {status} {detail}");
        if status == 400 {
            assert!(detail.contains(field), "{path}: {detail:?} does not name {field}");
        }
    }
}

/// Deploys and rollbacks through the API, a web form and the robot: the same record and events each time.
#[tokio::test]
async fn deploys_and_rollbacks_are_the_same_whichever_way_they_are_asked() {
    let a = app();
    let s = Server::start_with_config(&a.repo.join("crew.toml")).await;
    let mo = s.token("mo", "member").await;
    let session = sign_in(&s, &mo).await;
    let http = no_redirects();
    let finished = |id: i64| {
        let s = &s;
        let mo = &mo;
        async move {
            let done = crate::harness::eventually(std::time::Duration::from_secs(30), || async {
                s.get_json(&format!("/api/v1/deploys/{id}"), mo).await["status"] != "running"
            })
            .await;
            assert!(done, "deploy #{id} ended");
            s.get_json(&format!("/api/v1/deploys/{id}"), mo).await
        }
    };
    let latest = || async { s.get_json("/api/v1/deploys?limit=1", &mo).await["deploys"][0]["id"].as_i64().unwrap() };
    let mut records = vec![];
    // Four releases, then three rollbacks, each step back to the release before.
    let steps = [
        ("api", "deploy"),
        ("web", "deploy"),
        ("robot", "deploy"),
        ("api", "deploy"),
        ("api", "rollback"),
        ("web", "rollback"),
        ("robot", "rollback"),
    ];
    for (door, action) in steps {
        {
            let status = match (door, action) {
                ("api", "deploy") => {
                    let r = s.req(Method::POST, "/api/v1/deploys", &mo).json(&json!({"environment": "staging"}));
                    r.send().await.unwrap().status().as_u16()
                }
                ("api", _) => s
                    .req(Method::POST, "/api/v1/environments/staging/rollback", &mo)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
                ("web", _) => {
                    let form = [("csrf", session.csrf.as_str()), ("environment", "staging")];
                    let path = if action == "deploy" { "/deploys/start" } else { "/deploys/rollback" };
                    http.post(format!("{}{path}", s.url))
                        .header("cookie", &session.cookie)
                        .form(&form)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                }
                _ => {
                    let text = format!("!{action} staging");
                    let r = s.req(Method::POST, "/api/v1/chat/command", &mo).json(&json!({ "text": text }));
                    r.send().await.unwrap().status().as_u16()
                }
            };
            assert!(matches!(status, 202 | 303 | 200), "{door} {action}: {status}");
            let d = finished(latest().await).await;
            assert_eq!(d["status"], "succeeded", "{door} {action}: {d}");
            assert_eq!(d["action"], action, "{door}");
            assert_eq!(d["environment"], "staging");
            assert_eq!(d["actor"], "mo");
            records.push((door.to_string(), action.to_string(), d));
        }
    }
    // Every deploy and rollback has its started and ending events, the same kinds whichever door it came in by.
    let v = s.get_json("/api/v1/events?kind=deploy&limit=100", &mo).await;
    for (door, action, d) in &records {
        let mine: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["deploy"] == d["id"])
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        let ending = if action == "deploy" { "deploy.finished" } else { "deploy.rolled_back" };
        assert_eq!(mine, [ending, "deploy.started"], "{door} {action}");
    }
    assert!(
        records.iter().any(|(d, a, _)| d == "robot" && a == "rollback"),
        "every door rolled back: {}",
        records.len()
    );
}
