//! Bucket tests end to end on the real `crew serve`: exposures from OFREP evaluations and from the Rust SDK's
//! batches, conversions from `POST /api/v1/track` and `crew_sdk::Client::track`, counted exactly (second looks
//! and conversions before exposure not counted), the results through the API, `crew experiment`, the Results
//! page and `!experiment` in ngircd; a new phase at a change of weights; bad input refused with the field
//! named and nothing stored; and the sample-ratio check raised on a 52/48 split of 100,000 users, not on 50/50.

use crate::chat::{robot_in, Person};
use crate::harness::{eventually, Server};
use crew_testkit::Ngircd;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

async fn users(s: &Server, flag: &str) -> u64 {
    let path = format!("/api/v1/flags/{flag}/results");
    s.get_json(&path, &s.admin).await["phases"][0]["users"].as_u64().unwrap_or(0)
}

async fn post(s: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    let res = s.req(Method::POST, path, token).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn split(s: &Server, token: &str, flag: &str, parts: &str) {
    let (st, v) = post(
        s,
        token,
        &format!("/api/v1/flags/{flag}/knob"),
        json!({"knob": "split", "split": parts, "reason": "bucket test"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

/// Users and conversions per variant of the newest phase.
fn counts(r: &Value) -> HashMap<String, (u64, u64)> {
    r["phases"][0]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                (v["users"].as_u64().unwrap(), v["conversions"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn exposures_and_conversions_are_counted_exactly_from_ofrep_the_sdk_and_track() {
    let irc = Ngircd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::chat::config(dir.path(), &irc, false);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[experiments]\nmetrics = [\"purchase\"]\n");
    std::fs::write(&config, toml).unwrap();
    let s = Server::start_with_config(&config).await;
    let member = s.token("ann", "member").await;
    let app = s.token("www", "evaluate").await;
    split(&s, &member, "checkout", "control=50,blue=50").await;

    // Expected figures, kept by this test from what crew answered each user.
    let mut want: HashMap<String, (u64, u64)> = HashMap::new();
    // A conversion before any exposure: kept, never attributed (its user is exposed later).
    let (st, v) =
        post(&s, &app, "/api/v1/track", json!({"key": "checkout", "context": {"targetingKey": "early"}})).await;
    assert_eq!(st, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(20)).await;

    // 200 users through OFREP, the first 50 looking twice; every third converts (once or twice).
    let mut ofrep_variant = HashMap::new();
    for round in 0..2 {
        for i in 0..200 {
            if round == 1 && i >= 50 {
                break;
            }
            let user = format!("u{i}");
            let (st, v) = post(
                &s,
                &app,
                "/ofrep/v1/evaluate/flags/checkout",
                json!({"context": {"targetingKey": user, "plan": "pro"}}),
            )
            .await;
            assert_eq!(st, 200, "{v}");
            let variant = v["variant"].as_str().unwrap().to_string();
            if round == 0 {
                want.entry(variant.clone()).or_default().0 += 1;
                ofrep_variant.insert(user, variant);
            } else {
                assert_eq!(ofrep_variant[&user], variant, "sticky");
            }
        }
    }
    let (st, _) =
        post(&s, &app, "/ofrep/v1/evaluate/flags/checkout", json!({"context": {"targetingKey": "early"}})).await;
    assert_eq!(st, 200);
    let early_variant =
        post(&s, &app, "/ofrep/v1/evaluate/flags/checkout", json!({"context": {"targetingKey": "early"}})).await.1
            ["variant"]
            .as_str()
            .unwrap()
            .to_string();
    want.entry(early_variant).or_default().0 += 1;
    // The bulk call is a prefetch, not a look: no exposure for this user.
    let (st, _) = post(&s, &app, "/ofrep/v1/evaluate/flags", json!({"context": {"targetingKey": "prefetch"}})).await;
    assert_eq!(st, 200);
    for i in (0..200).step_by(3) {
        let user = format!("u{i}");
        for _ in 0..(1 + i % 2) {
            let (st, v) =
                post(&s, &app, "/api/v1/track", json!({"key": "checkout", "context": {"targetingKey": user}})).await;
            assert_eq!(st, 202, "{v}");
        }
        want.get_mut(&ofrep_variant[&user]).unwrap().1 += 1;
    }
    let (st, v) =
        post(&s, &app, "/api/v1/track", json!({"key": "purchase", "context": {"targetingKey": "u1"}, "value": 19.99}))
            .await;
    assert_eq!(st, 202, "{v}");

    // 300 users through the SDK (local evaluation, exposures in batches), each looking three times; every
    // fourth converts through the SDK's track.
    let sdk = crew_sdk::Client::builder(&s.url, &app).start();
    assert!(sdk.ready(Duration::from_secs(10)).await);
    for i in 0..300 {
        let ctx = json!({"targetingKey": format!("s{i}")});
        let variant = sdk.string("checkout", &ctx, "none");
        assert_ne!(variant, "none");
        assert_eq!(sdk.variant("checkout", &ctx).unwrap(), variant);
        let _ = sdk.evaluate("checkout", &ctx);
        want.entry(variant.clone()).or_default().0 += 1;
        if i % 4 == 0 {
            sdk.track("checkout", &ctx, Some(1.0)).await.unwrap();
            want.get_mut(&variant).unwrap().1 += 1;
        }
    }
    sdk.flush().await;
    // The SDK's track says why crew refused.
    let e = sdk.track("ghost-flag", &json!({"targetingKey": "s1"}), None).await.unwrap_err();
    assert!(e.0.contains("ghost-flag"), "{e}");

    let path = "/api/v1/flags/checkout/results";
    let mut last = Value::Null;
    let mut ok = false;
    for _ in 0..150 {
        last = s.get_json(path, &s.admin).await;
        if counts(&last) == want {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "want {want:?}, crew says {:?}\n{last:#}", counts(&last));
    let phase = &last["phases"][0];
    assert_eq!(phase["users"], 501, "200 OFREP + `early` + 300 SDK users");
    assert_eq!(phase["sampled"], false);
    assert!(phase["change"]["summary"].as_str().unwrap().contains("ann changed flag checkout"), "{phase}");
    assert!(phase["srm"]["p_value"].as_f64().unwrap() > 0.001, "a fair split: {}", phase["srm"]);
    let blue = &phase["variants"][1];
    assert_eq!(blue["name"], "blue");
    let c = &blue["comparison"];
    assert!(c["low"].as_f64().unwrap() < c["lift"].as_f64().unwrap(), "{c}");
    assert!(c["lift"].as_f64().unwrap() < c["high"].as_f64().unwrap(), "{c}");
    assert!(last["receiving"]["exposures_repeated"].as_u64().unwrap() >= 50, "{}", last["receiving"]);
    // Another metric: the one purchase of u1, who was exposed.
    let purchase = s.get_json(&format!("{path}?metric=purchase&method=fixed"), &s.admin).await;
    let total: u64 = counts(&purchase).values().map(|c| c.1).sum();
    assert_eq!((total, purchase["method"].as_str()), (1, Some("fixed")));

    // Bad input: refused with the field named, nothing stored.
    for (path, body, names) in [
        ("/api/v1/track", json!({"key": "nope", "context": {"targetingKey": "u1"}}), "key"),
        ("/api/v1/track", json!({"key": "checkout", "context": {}}), "context.targetingKey"),
        ("/api/v1/track", json!({"key": "checkout", "context": {"targetingKey": 7}}), "targetingKey"),
        ("/api/v1/track", json!({"key": "checkout", "context": {"targetingKey": "u2"}, "value": "x"}), "value"),
        ("/api/v1/track", json!({"key": "checkout"}), "context"),
        ("/api/v1/track", json!([1, 2]), "malformed"),
        (
            "/api/v1/exposures",
            json!({"exposures": [{"key": "nope", "targetingKey": "u", "variant": "blue"}]}),
            "exposures[0].key",
        ),
        (
            "/api/v1/exposures",
            json!({"exposures": [{"key": "checkout", "targetingKey": "z1", "variant": "blue"},
                                 {"key": "checkout", "targetingKey": "", "variant": "blue"}]}),
            "exposures[1].targetingKey",
        ),
        ("/api/v1/exposures", json!({"exposures": [{"key": "checkout", "variant": "blue"}]}), "targetingKey"),
        (
            "/api/v1/exposures",
            json!({"exposures": (0..10_001).map(|i| json!({"key": "checkout", "targetingKey": format!("b{i}"), "variant": "blue"})).collect::<Vec<_>>()}),
            "at most 10000",
        ),
    ] {
        let (st, v) = post(&s, &app, path, body).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert!(v.to_string().contains(names), "{path}: `{names}` not named in {v}");
    }
    let anonymous = s.client().post(format!("{}/api/v1/track", s.url));
    let res = anonymous.json(&json!({"key": "checkout", "context": {"targetingKey": "x"}})).send().await.unwrap();
    assert_eq!(res.status(), 401, "tracking needs an evaluation key");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = s.get_json(path, &s.admin).await;
    assert_eq!(counts(&after), want, "bad input stored nothing");
    let res = s.req(Method::GET, "/api/v1/flags/checkout/results?method=bayes", &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = s.req(Method::GET, "/api/v1/flags/ghost/results", &s.admin).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // The CLI, the Results page and the robot say the same figures.
    let out = s.cli(&s.admin).args(["experiment", "checkout"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for (name, (users, conv)) in &want {
        let line = text.lines().find(|l| l.trim_start().starts_with(name.as_str())).unwrap_or_else(|| panic!("{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((cols[1], cols[2]), (users.to_string().as_str(), conv.to_string().as_str()), "{text}");
    }
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = http.post(format!("{}/signin", s.url)).form(&[("token", s.admin.as_str())]).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = http.get(format!("{}/flags/checkout/results", s.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg") && html.contains("polygon class=\"band s1\""), "a chart with intervals: {html}");
    assert!(html.contains(&format!("<td class=\"users\">{}</td>", want["blue"].0)), "{html}");

    assert!(robot_in(&s, "#ops").await);
    let mut mo = Person::join(irc.port, "mo", "#ops").await;
    mo.say("PRIVMSG #ops :!experiment checkout").await;
    let reply = mo.wait(|l| l.contains("PRIVMSG #ops :checkout on checkout:"), "the !experiment reply").await;
    assert!(
        reply.contains(&format!(
            "blue {:.2}% of {}",
            100.0 * want["blue"].1 as f64 / want["blue"].0 as f64,
            want["blue"].0
        )),
        "{reply}"
    );
    assert!(reply.contains("/flags/checkout/results"), "{reply}");

    // New weights start a new phase; the old one keeps its figures.
    split(&s, &member, "checkout", "control=60,blue=40").await;
    let r = s.get_json(path, &s.admin).await;
    assert_eq!(r["phases"].as_array().unwrap().len(), 2, "{r:#}");
    assert_eq!(r["phases"][0]["users"], 0);
    assert_eq!(r["phases"][0]["variants"][0]["weight"], 60.0);
    assert_eq!(r["phases"][1]["users"], 501);
    assert!(r["phases"][1]["ended_ms"].is_i64());
}

#[tokio::test]
async fn a_52_48_split_of_100000_users_raises_a_sample_ratio_mismatch_and_50_50_does_not() {
    let s = Server::start().await;
    let member = s.token("ann", "member").await;
    let app = s.token("www", "evaluate").await;
    split(&s, &member, "fair", "control=50,blue=50").await;
    split(&s, &member, "broken", "control=50,blue=50").await;
    // `fair`: 100,000 users bucketed by crew's own split in the SDK, which reports them in batches.
    let sdk = crew_sdk::Client::builder(&s.url, &app).start();
    assert!(sdk.ready(Duration::from_secs(10)).await);
    for i in 0..100_000 {
        sdk.variant("fair", &json!({"targetingKey": format!("user-{i}")})).unwrap();
    }
    // `broken`: a logger that loses blue exposures reports 52,000 control and 48,000 blue.
    let all: Vec<Value> = (0..100_000)
        .map(|i| json!({"key": "broken", "targetingKey": format!("user-{i}"), "variant": if i < 52_000 { "control" } else { "blue" }}))
        .collect();
    for batch in all.chunks(10_000) {
        let (st, v) = post(&s, &app, "/api/v1/exposures", json!({"exposures": batch})).await;
        assert_eq!((st, &v["accepted"]), (202, &json!(batch.len())), "{v}");
    }
    sdk.flush().await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            users(&s, "fair").await == 100_000 && users(&s, "broken").await == 100_000
        })
        .await,
        "every exposure stored: fair {}, broken {}",
        users(&s, "fair").await,
        users(&s, "broken").await
    );
    let srm = |flag: &'static str| {
        let s = &s;
        async move {
            let mut f = format!("/api/v1/events?kind=experiment.srm&subject=flag:{flag}");
            f = f.replace(':', "%3A");
            s.get_json(&f, &s.admin).await["events"].as_array().cloned().unwrap_or_default()
        }
    };
    // The check runs every 10 s; a loaded machine may take a few rounds to get to it.
    assert!(eventually(Duration::from_secs(90), || async { !srm("broken").await.is_empty() }).await, "no SRM raised");
    let e = &srm("broken").await[0];
    assert_eq!(e["data"]["users"], json!([52_000, 48_000]), "{e}");
    assert!(e["data"]["p_value"].as_f64().unwrap() < 1e-9, "{e}");
    assert!(e["summary"].as_str().unwrap().contains("the change before it: ann changed flag broken"), "{e}");
    let fair = s.get_json("/api/v1/flags/fair/results", &s.admin).await;
    assert_eq!(fair["phases"][0]["srm"]["mismatch"], false, "{}", fair["phases"][0]["srm"]);
    let broken = s.get_json("/api/v1/flags/broken/results", &s.admin).await;
    assert_eq!(broken["phases"][0]["srm"]["mismatch"], true);
    // Once per phase, and never for the fair split.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(srm("broken").await.len(), 1);
    assert!(srm("fair").await.is_empty());
}

/// The launch plan's series, per variant, beside the conversions: an application tags its latency with the
/// variant each request got (`crew_sdk::Client::tags`), and the results show each variant's mean.
#[tokio::test]
async fn guardrails_show_the_launch_plan_series_per_variant() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crew.toml");
    std::fs::write(&config, "[metrics]\nflush = \"1s\"\n\n[people.ann]\nemail = \"ann@example.com\"\n").unwrap();
    let s = Server::start_with_statsd(&config).await;
    let member = s.token("ann", "member").await;
    split(&s, &member, "checkout", "control=50,blue=50").await;
    let plan = "owner = \"ann\"\nrisks = \"the new button may be slower\"\ncontingency = \"off\"\n\n\
                [[watch]]\nseries = \"www.latency\"\ndirection = \"increase\"\n";
    let res = s
        .req(Method::PUT, "/api/v1/flags/checkout/plan", &member)
        .header("content-type", "text/plain")
        .body(plan)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = s.statsd.clone().unwrap();
    let mut guardrail = Value::Null;
    let mut seen = false;
    for _ in 0..200 {
        let _ =
            udp.send_to(b"www.latency:10|ms|#flag_checkout:control\nwww.latency:30|ms|#flag_checkout:blue\n", &statsd);
        guardrail = s.get_json("/api/v1/flags/checkout/results", &s.admin).await["phases"][0]["guardrails"][0].clone();
        if guardrail["variants"][0][1].is_f64() && guardrail["variants"][1][1].is_f64() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "{guardrail}");
    assert_eq!(guardrail["series"], "www.latency");
    assert_eq!(
        (guardrail["variants"][0][0].as_str(), guardrail["variants"][0][1].as_f64()),
        (Some("control"), Some(10.0))
    );
    assert_eq!(
        (guardrail["variants"][1][0].as_str(), guardrail["variants"][1][1].as_f64()),
        (Some("blue"), Some(30.0))
    );
}
