//! Feature flags end to end: Flickr's words on the CLI, every change an event with before and after, OFREP
//! evaluation with evaluation keys, ETags, and replicas on one PostgreSQL agreeing within a second.

use crate::harness::{eventually, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.stdin(Stdio::null()).output().unwrap();
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

async fn ofrep(s: &Server, key_header: (&str, &str), flag: &str, ctx: Value) -> (u16, Value) {
    let res = s
        .client()
        .post(format!("{}/ofrep/v1/evaluate/flags/{flag}", s.url))
        .header(key_header.0, key_header.1)
        .json(&json!({"context": ctx}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn flickr_words_on_the_cli_and_ofrep_for_applications() {
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let app = s.token("www-app", "evaluate").await;
    let key = ("x-api-key", app.as_str());

    let (code, out, err) = run(s.cli(&mo).args(["flag", "video", "on", "--reason", "launch"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("video: on: everyone gets `on`"), "{out}");
    let (status, v) = ofrep(&s, key, "video", json!({"targetingKey": "alice"})).await;
    assert_eq!((status, v["value"].clone(), v["reason"].clone()), (200, json!(true), json!("STATIC")));

    let (code, out, _) = run(s.cli(&mo).args(["flag", "video", "rollout", "10", "-r", "ramp up"]));
    assert_eq!(code, 0);
    assert!(out.contains("10% on, 90% off"), "{out}");
    let mut on = 0;
    for i in 0..1000 {
        let (_, v) = ofrep(&s, key, "video", json!({"targetingKey": format!("user{i}")})).await;
        assert_eq!(v["reason"], "TARGETING_MATCH");
        if v["value"] == json!(true) {
            on += 1;
        }
    }
    assert!((60..=140).contains(&on), "about 10% of 1000 users: {on}");

    let (code, out, _) = run(s.cli(&mo).args(["flag", "eval", "video", "--user", "user1", "--attr", "plan=pro"]));
    assert_eq!(code, 0);
    assert!(out.contains("reason TARGETING_MATCH") && out.contains("variant "), "{out}");

    // Off: a contingency switch. Applications get DISABLED and no value: their code default wins.
    let (code, _, _) = run(s.cli(&mo).args(["flag", "video", "off", "-r", "incident 42"]));
    assert_eq!(code, 0);
    let (status, v) = ofrep(&s, key, "video", json!({"targetingKey": "alice"})).await;
    assert_eq!((status, v["reason"].clone(), v.get("value").cloned()), (200, json!("DISABLED"), None));

    // Every change is on the timeline with before, after and reason; `crew flag KEY` says who changed it last.
    let v = s.get_json("/api/v1/events?kind=flag.changed", &mo).await;
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["data"]["reason"], "incident 42");
    assert_eq!(events[0]["data"]["after"]["state"], "DISABLED");
    assert_eq!(events[0]["data"]["before"]["targeting"]["fractional"][0], json!(["on", 10]));
    assert_eq!(events[2]["data"]["before"], Value::Null);
    let (_, out, _) = run(s.cli(&mo).args(["flag", "video"]));
    assert!(out.contains("off (switched off") && out.contains("by mo") && out.contains("incident 42"), "{out}");
    let (_, out, _) = run(s.cli(&mo).args(["flag", "video", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["definition"]["state"], "DISABLED");

    // A beta and a split.
    run(s.cli(&mo).args([
        "flag",
        "checkout",
        "beta",
        "--users",
        "alice,bob",
        "--groups",
        "staff",
        "-r",
        "private beta",
    ]));
    assert_eq!(ofrep(&s, key, "checkout", json!({"targetingKey": "alice"})).await.1["value"], json!(true));
    assert_eq!(
        ofrep(&s, key, "checkout", json!({"targetingKey": "zed", "groups": ["staff"]})).await.1["value"],
        json!(true)
    );
    assert_eq!(ofrep(&s, key, "checkout", json!({"targetingKey": "zed"})).await.1["value"], json!(false));
    let (code, _, err) = run(s.cli(&mo).args(["flag", "button", "split", "control=50,new=50", "-r", "test"]));
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(s.cli(&mo).arg("flags"));
    assert!(out.contains("button") && out.contains("checkout") && out.contains("video"), "{out}");

    // Refusals: no reason (exit 2), a viewer (exit 3), an application key on the management API (403).
    let (code, _, err) = run(s.cli(&mo).args(["flag", "video", "on"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--reason"), "{err}");
    let viewer = s.token("vera", "viewer").await;
    let (code, _, _) = run(s.cli(&viewer).args(["flag", "video", "on", "-r", "x"]));
    assert_eq!(code, 3);
    let res = s.client().get(format!("{}/api/v1/flags", s.url)).header("x-api-key", &app).send().await.unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn flags_apply_shows_the_diff_then_makes_the_server_match_the_file() {
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    run(s.cli(&mo).args(["flag", "old", "on", "-r", "legacy"]));
    run(s.cli(&mo).args(["flag", "video", "rollout", "5", "-r", "start"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({
            "$evaluators": {"is_staff": {"ends_with": [{"var": "email"}, "@example.com"]}},
            "flags": {
                "video": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                          "targeting": {"fractional": [["on", 50], ["off", 50]]}},
                "admin-panel": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                                "targeting": {"if": [{"$ref": "is_staff"}, "on", "off"]}}
            }
        }))
        .unwrap(),
    )
    .unwrap();
    let (code, out, err) = run(s.cli(&mo).args(["flags", "apply"]).arg(&file));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+ admin-panel")
            && out.contains("~ video: on: 5% on, 95% off (sticky by user) → on: 50% on, 50% off")
            && out.contains("- old"),
        "{out}"
    );
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        s.get_json("/api/v1/flags", &mo).await["flags"].as_array().unwrap().len(),
        2,
        "nothing applied without --yes"
    );
    let (code, _, err) = run(s.cli(&mo).args(["flags", "apply", "--yes", "-r", "flags as code"]).arg(&file));
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(s.cli(&mo).args(["flags", "export"]));
    let exported: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&String> = exported["flags"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["admin-panel", "video"]);
    assert_eq!(
        exported["flags"]["admin-panel"]["targeting"]["if"][0]["ends_with"][1], "@example.com",
        "the $ref is written out"
    );
    let (_, out, _) = run(s.cli(&mo).args(["flags", "apply"]).arg(&file));
    assert!(out.contains("match"), "{out}");
    // A file with a bad definition changes nothing.
    std::fs::write(&file, r#"{"flags": {"video": {"state": "ENABLED", "variants": {"on": true, "off": 3}}}}"#).unwrap();
    let (code, _, err) = run(s.cli(&mo).args(["flags", "apply", "--yes", "-r", "x"]).arg(&file));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("one type per flag"), "{err}");
    assert_eq!(s.get_json("/api/v1/flags", &mo).await["flags"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn ofrep_errors_etags_and_invalid_definitions() {
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let app = s.token("app", "evaluate").await;
    let key = ("authorization", &*Box::leak(format!("Bearer {app}").into_boxed_str()));
    let (status, v) = ofrep(&s, key, "nope", json!({})).await;
    assert_eq!((status, v["errorCode"].clone()), (404, json!("FLAG_NOT_FOUND")));
    let res = s.client().post(format!("{}/ofrep/v1/evaluate/flags/nope", s.url)).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = s
        .client()
        .post(format!("{}/ofrep/v1/evaluate/flags/nope", s.url))
        .bearer_auth(&app)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["errorCode"], "INVALID_CONTEXT");
    // The OFREP openapi's request shape: an object body, an object context, a string targetingKey; each
    // mistake is a 400 INVALID_CONTEXT on both endpoints, and a missing targetingKey still evaluates.
    for (body, says) in [
        ("[1, 2]", "must be a JSON object"),
        ("5", "must be a JSON object"),
        ("{\"context\": [1]}", "`context` must be an object"),
        ("{\"context\": {\"targetingKey\": 42}}", "`context.targetingKey` must be a string"),
    ] {
        for path in ["/ofrep/v1/evaluate/flags/nope", "/ofrep/v1/evaluate/flags"] {
            let res = s
                .client()
                .post(format!("{}{path}", s.url))
                .bearer_auth(&app)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 400, "{path} {body}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["errorCode"], "INVALID_CONTEXT", "{path} {body}");
            assert!(v["errorDetails"].as_str().unwrap().contains(says), "{path} {body}: {v}");
        }
    }
    let res = s
        .client()
        .post(format!("{}/ofrep/v1/evaluate/flags", s.url))
        .bearer_auth(&app)
        .json(&json!({"context": {"plan": "pro"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "no targetingKey still evaluates");
    // A body over a megabyte is refused with 413 before it is read, on both endpoints; the server goes on.
    let huge = json!({"context": {"targetingKey": "x", "blob": "x".repeat(2 << 20)}});
    for path in ["/ofrep/v1/evaluate/flags/nope", "/ofrep/v1/evaluate/flags"] {
        let res = s.client().post(format!("{}{path}", s.url)).bearer_auth(&app).json(&huge).send().await.unwrap();
        assert_eq!(res.status(), 413, "{path}");
        let v: Value = res.json().await.unwrap();
        assert!(v["errorDetails"].as_str().unwrap().contains("over 1024 KiB"), "{v}");
    }
    let (status, _) = ofrep(&s, key, "nope", json!({})).await;
    assert_eq!(status, 404);

    // A definition that is not valid flagd is refused with 422, naming the problem; nothing is stored.
    let bad = json!({"definition": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}, "reason": "x"});
    let res = s.req(Method::PUT, "/api/v1/flags/f", &mo).json(&bad).send().await.unwrap();
    assert_eq!(res.status(), 422);
    assert!(res.json::<Value>().await.unwrap()["errors"][0]["detail"].as_str().unwrap().contains("`b` is not one of"));
    let good = json!({"definition": {"state": "ENABLED", "variants": {"a": "x", "b": "y"}, "defaultVariant": "b",
        "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "a", null]}}, "reason": "new"});
    let res = s.req(Method::PUT, "/api/v1/flags/f", &mo).json(&good).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Bulk evaluation with an ETag; the same request with If-None-Match is 304; a change makes a new ETag.
    let bulk = |etag: Option<String>| {
        let mut r = s
            .client()
            .post(format!("{}/ofrep/v1/evaluate/flags", s.url))
            .bearer_auth(&app)
            .json(&json!({"context": {"email": "a@example.com"}}));
        if let Some(e) = etag {
            r = r.header("if-none-match", e);
        }
        r.send()
    };
    let res = bulk(None).await.unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v["flags"][0],
        json!({"key": "f", "value": "x", "variant": "a", "reason": "TARGETING_MATCH", "metadata": {}})
    );
    assert_eq!(bulk(Some(etag.clone())).await.unwrap().status(), 304);
    let res = s
        .req(Method::POST, "/api/v1/flags/f/knob", &mo)
        .json(&json!({"knob": "off", "reason": "stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = bulk(Some(etag.clone())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(res.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn a_flag_change_on_one_replica_reaches_the_other_within_a_second() {
    let a = Server::start_postgres().await;
    let b = Server::start_on(a.database.as_deref().unwrap(), Some(&a.admin)).await;
    let mo = a.token("mo", "member").await;
    let res = a
        .req(Method::POST, "/api/v1/flags/video/knob", &mo)
        .json(&json!({"knob": "on", "reason": "go"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let key = ("authorization", &*Box::leak(format!("Bearer {mo}").into_boxed_str()));
    let seen = eventually(Duration::from_secs(1), || async {
        ofrep(&b, key, "video", json!({})).await.1["value"] == json!(true)
    })
    .await;
    assert!(seen, "replica b evaluates the new flag within a second");
    // An SDK on replica b's definitions stream hears of a change made on replica a.
    let app = a.token("sdk", "evaluate").await;
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let res = b.client().get(format!("{}/api/v1/flags/stream", b.url)).header("x-api-key", &app).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut defs = Box::pin(res.bytes_stream().eventsource());
    let first: Value = serde_json::from_str(&defs.next().await.unwrap().unwrap().data).unwrap();
    assert_eq!(first["flags"]["video"]["state"], "ENABLED");
    let res = a
        .req(Method::POST, "/api/v1/flags/video/knob", &mo)
        .json(&json!({"knob": "rollout", "percent": 30, "reason": "ramp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let next = tokio::time::timeout(Duration::from_secs(1), defs.next())
        .await
        .expect("pushed within a second")
        .unwrap()
        .unwrap();
    let doc: Value = serde_json::from_str(&next.data).unwrap();
    assert_eq!(doc["flags"]["video"]["targeting"]["fractional"][0], json!(["on", 30]));
    let local = crew_flags_eval(&doc, "video");
    assert!(local == "on" || local == "off");
    let res = b
        .req(Method::POST, "/api/v1/flags/video/knob", &mo)
        .json(&json!({"knob": "off", "reason": "stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let off = eventually(Duration::from_secs(1), || async {
        ofrep(&a, key, "video", json!({})).await.1["reason"] == json!("DISABLED")
    })
    .await;
    assert!(off);
}

/// Evaluates a streamed document locally, as an SDK does.
fn crew_flags_eval(doc: &Value, key: &str) -> String {
    let set = crew_flags::FlagSet::from_value(&json!({"flags": doc["flags"]})).unwrap();
    set.evaluate(key, &json!({"targetingKey": "someone"}), 0).variant.unwrap()
}

/// The Rust SDK: local evaluation kept current by the stream, a switch seen within a second, the last known
/// definitions kept while the server is down, and a bootstrap file for a cold start without it.
#[tokio::test]
async fn the_sdk_follows_switches_and_survives_the_server_going_away() {
    let mut s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let app = s.token("www", "evaluate").await;
    let knob = |body: Value| s.req(Method::POST, "/api/v1/flags/video/knob", &mo).json(&body).send();
    assert_eq!(knob(json!({"knob": "on", "reason": "launch"})).await.unwrap().status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("flags.json");
    let sdk = crew_sdk::Client::builder(&s.url, &app).bootstrap(&bootstrap).start();
    assert!(sdk.ready(Duration::from_secs(5)).await);
    let alice = json!({"targetingKey": "alice"});
    assert!(sdk.bool("video", &alice, false));
    assert_eq!(sdk.variant("video", &alice).as_deref(), Some("on"));

    // A switch flipped on the server reaches the SDK within a second.
    let flipped = std::time::Instant::now();
    assert_eq!(knob(json!({"knob": "off", "reason": "incident"})).await.unwrap().status(), 200);
    assert!(eventually(Duration::from_secs(1), || async { !sdk.bool("video", &alice, false) }).await);
    assert!(flipped.elapsed() < Duration::from_secs(1));
    assert!(sdk.bool("video", &alice, true), "switched off: the code default wins");
    assert_eq!(knob(json!({"knob": "dark", "percent": 100, "reason": "measure"})).await.unwrap().status(), 200);
    assert!(eventually(Duration::from_secs(1), || async { sdk.is_dark("video", &alice) }).await);

    // The same through the standard OpenFeature API, with crew evaluating locally; types are checked.
    {
        use open_feature::provider::FeatureProvider;
        let provider = crew_sdk::openfeature::Provider::new(sdk.clone());
        let ctx = open_feature::EvaluationContext::default().with_targeting_key("alice");
        let r = provider.resolve_bool_value("video", &ctx).await.unwrap();
        assert_eq!((r.value, r.variant.as_deref()), (true, Some("dark")));
        let wrong = provider.resolve_string_value("video", &ctx).await.unwrap_err();
        assert_eq!(wrong.code, open_feature::EvaluationErrorCode::TypeMismatch);
        let missing = provider.resolve_bool_value("nope", &ctx).await.unwrap_err();
        assert_eq!(missing.code, open_feature::EvaluationErrorCode::FlagNotFound);
    }

    // The server goes away: the last known definitions stay in force.
    s.stop_hard();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sdk.is_dark("video", &alice));
    // A cold start with the server down reads the bootstrap file.
    let cold = crew_sdk::Client::builder(&s.url, &app).bootstrap(&bootstrap).start();
    assert!(cold.ready(Duration::from_secs(1)).await);
    assert!(cold.is_dark("video", &alice));
    assert_eq!(cold.string("missing-flag", &alice, "fallback"), "fallback");
}

/// A published OpenFeature client that no one here wrote (`open-feature` with `open-feature-ofrep`) evaluating
/// against a live `crew serve`.
#[tokio::test]
async fn the_openfeature_ofrep_provider_evaluates_against_crew() {
    use open_feature::provider::FeatureProvider;
    use open_feature::{EvaluationContext, EvaluationErrorCode};
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let app = s.token("www", "evaluate").await;
    for (key, body) in [
        ("checkout", json!({"knob": "beta", "users": ["alice"], "reason": "beta"})),
        ("button", json!({"knob": "split", "split": "control=50,blue=50", "reason": "test"})),
    ] {
        let res = s.req(Method::POST, &format!("/api/v1/flags/{key}/knob"), &mo).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {app}").parse().unwrap());
    let provider = open_feature_ofrep::OfrepProvider::new(open_feature_ofrep::OfrepOptions {
        base_url: s.url.clone(),
        headers,
        connect_timeout: Duration::from_secs(4),
    })
    .await
    .unwrap();
    let alice = EvaluationContext::default().with_targeting_key("alice");
    let bob = EvaluationContext::default().with_targeting_key("bob").with_custom_field("plan", "pro");
    let r = provider.resolve_bool_value("checkout", &alice).await.unwrap();
    assert_eq!((r.value, r.variant.as_deref()), (true, Some("on")));
    assert!(!provider.resolve_bool_value("checkout", &bob).await.unwrap().value);
    let local = crew_flags::FlagSet::from_value(
        &json!({"flags": {"button": s.get_json("/api/v1/flags/button", &mo).await["definition"]}}),
    )
    .unwrap();
    let want = local.evaluate("button", &json!({"targetingKey": "bob", "plan": "pro"}), 0).variant.unwrap();
    assert_eq!(
        provider.resolve_string_value("button", &bob).await.unwrap().value,
        want,
        "OFREP and local evaluation agree"
    );
    let missing = provider.resolve_bool_value("nope", &alice).await.unwrap_err();
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
}

/// A flag rule cannot stall the server: one whose worst case is too large (a `reduce` doubling a list 14 times,
/// run again for each of its 16,384 items) is refused with 422 naming the operators, and nothing is stored; one
/// that is cheap on paper but meets a huge context answers GENERAL from the step budget, in the bulk call too,
/// while the other flags answer as usual.
#[tokio::test]
async fn a_costly_rule_is_refused_and_a_costly_evaluation_is_cut_short() {
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let app = s.token("app", "evaluate").await;
    let r = json!({"reduce": [(1..=14).collect::<Vec<_>>(),
        {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]}, [1]]});
    let attack = json!({"definition": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"all": [r, {"none": [r, {"==": [1, 2]}]}]}, "on", "off"]}}, "reason": "x"});
    let res = s.req(Method::PUT, "/api/v1/flags/attack", &mo).json(&attack).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let detail = res.json::<Value>().await.unwrap()["errors"][0]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("`reduce` inside `all`") && detail.contains("steps"), "{detail}");
    assert_eq!(s.get_json("/api/v1/events?kind=flag.changed", &mo).await["events"], json!([]));
    assert_eq!(s.req(Method::GET, "/api/v1/flags/attack", &mo).send().await.unwrap().status(), 404);

    let costly = json!({"definition": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"map": [{"var": "items"}, {"+": [{"var": ""}, 1]}]}, "on", "off"]}}, "reason": "x"});
    let res = s.req(Method::PUT, "/api/v1/flags/a-costly", &mo).json(&costly).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let fine =
        json!({"definition": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}, "reason": "x"});
    let res = s.req(Method::PUT, "/api/v1/flags/b-fine", &mo).json(&fine).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // 400,000 items in under a megabyte: the map's two steps per item are past the budget.
    let ctx = json!({"context": {"items": vec![0; 400_000]}});
    let res = s
        .client()
        .post(format!("{}/ofrep/v1/evaluate/flags", s.url))
        .bearer_auth(&app)
        .json(&ctx)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["flags"][0]["key"], "a-costly");
    assert_eq!(v["flags"][0]["errorCode"], "GENERAL", "{}", v["flags"][0]);
    assert!(v["flags"][0].get("value").is_none());
    assert_eq!((v["flags"][1]["key"].clone(), v["flags"][1]["value"].clone()), (json!("b-fine"), json!(true)));
    let (status, v) = ofrep(&s, ("authorization", &format!("Bearer {app}")), "a-costly", ctx["context"].clone()).await;
    assert_eq!((status, v["errorCode"].clone()), (400, json!("GENERAL")));
    let (status, v) = ofrep(&s, ("authorization", &format!("Bearer {app}")), "a-costly", json!({"items": [1]})).await;
    assert_eq!((status, v["value"].clone()), (200, json!(true)));
}

/// The next event of a stream, within a second.
async fn notice<S, E>(st: &mut S) -> eventsource_stream::Event
where
    S: futures_util::Stream<Item = Result<eventsource_stream::Event, E>> + Unpin,
    E: std::fmt::Debug,
{
    let next = tokio::time::timeout(Duration::from_secs(1), futures_util::StreamExt::next(st)).await;
    next.expect("a notification within a second").expect("the stream is open").unwrap()
}

/// OFREP's change notifications (the protocol's ADR 0008 and `service/event-streams.yaml`), as a provider uses
/// them: the bulk answer names an SSE stream; a change of a flag arrives on it as a `message` whose data is
/// `{"type": "refetchEvaluation", "etag"}`; the re-fetch it triggers (with `flagConfigEtag`) gets the new
/// answers; a provider that reconnects with `Last-Event-ID` after missing a change hears of it at once.
#[tokio::test]
async fn an_ofrep_provider_hears_of_a_change_on_the_event_stream_the_bulk_answer_names() {
    use eventsource_stream::Eventsource;
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let app = s.token("www", "evaluate").await;
    let knob = |body: Value| {
        let req = s.req(Method::POST, "/api/v1/flags/video/knob", &mo).json(&body);
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    };
    knob(json!({"knob": "on", "reason": "launch"})).await;
    let bulk = |query: &'static str, etag: Option<String>| {
        let mut r = s
            .client()
            .post(format!("{}/ofrep/v1/evaluate/flags{query}", s.url))
            .header("x-api-key", &app)
            .json(&json!({"context": {"targetingKey": "alice"}}));
        if let Some(e) = etag {
            r = r.header("if-none-match", e);
        }
        r.send()
    };
    let res = bulk("", None).await.unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["flags"][0]["value"], json!(true));
    // The protocol's eventStream: a type, and exactly one of `url` or `endpoint` (`requestUri` on the origin
    // the provider is configured with, when `origin` is absent).
    let streams = v["eventStreams"].as_array().expect("eventStreams").clone();
    assert_eq!(streams.len(), 1, "{v}");
    assert_eq!(streams[0]["type"], "sse");
    assert!(streams[0].get("url").is_none() && streams[0].get("endpoint").is_some(), "{v}");
    assert!(streams[0]["inactivityDelaySec"].as_u64().unwrap() >= 1);
    let uri = streams[0]["endpoint"]["requestUri"].as_str().unwrap().to_string();
    assert!(uri.starts_with('/'), "{uri}");
    let url = format!("{}{uri}", s.url);
    let open = |last: Option<String>| {
        let mut r = s.client().get(&url).header("x-api-key", &app).header("accept", "text/event-stream");
        if let Some(id) = last {
            r = r.header("last-event-id", id);
        }
        async move {
            let res = r.send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
            Box::pin(res.bytes_stream().eventsource())
        }
    };
    let mut st = open(None).await;
    knob(json!({"knob": "off", "reason": "stop"})).await;
    let e = notice(&mut st).await;
    // The envelope's event is always `message`; the provider reads the type inside the data.
    assert_eq!(e.event, "message");
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data["type"], "refetchEvaluation", "{data}");
    let config_etag = data["etag"].as_str().unwrap().to_string();
    assert!(!config_etag.is_empty());
    assert_eq!(e.id, config_etag, "a stable id to resume from");
    // The re-fetch the notification triggers, with its metadata as the protocol's query parameters.
    let res =
        bulk(Box::leak(format!("?flagConfigEtag={config_etag}").into_boxed_str()), Some(etag.clone())).await.unwrap();
    assert_eq!(res.status(), 200, "the flags changed, so not 304");
    assert_ne!(res.headers()["etag"].to_str().unwrap(), etag);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["flags"][0]["reason"], "DISABLED");
    assert!(v["flags"][0].get("value").is_none(), "the code default: {v}");
    // Gone while the flag changes again: on its way back, with Last-Event-ID, it hears of it at once.
    drop(st);
    knob(json!({"knob": "on", "reason": "again"})).await;
    let mut st = open(Some(config_etag.clone())).await;
    let e = notice(&mut st).await;
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data["type"], "refetchEvaluation");
    assert_ne!(data["etag"].as_str().unwrap(), config_etag);
    // A stream with no credentials, or an application key of nobody, is refused.
    let res = s.client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = s.client().get(&url).header("x-api-key", "nope").send().await.unwrap();
    assert_eq!(res.status(), 401);
}

/// `[flags] fractional = "v3"`: OFREP buckets a number as flagd-testbed 3.9.0's `@fractional-v3` does (the
/// engine's own evaluation with `Fractional::V3` is the oracle the testbed checked), the definitions stream tells
/// the SDKs so; a value crew does not know stops `crew serve` naming it.
#[tokio::test]
async fn fractional_v3_in_crew_toml_buckets_numbers_and_the_stream_says_so() {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("crew.toml");
    std::fs::write(&cfg, "[flags]\nfractional = \"v3\"\n").unwrap();
    let s = Server::start_with_config(&cfg).await;
    let mo = s.token("mo", "member").await;
    let app = s.token("www", "evaluate").await;
    let def = json!({"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c", "d": "d"}, "defaultVariant": "d",
        "targeting": {"fractional": [{"var": "org"}, ["a", 34], ["b", 33], ["c", 33]]}});
    let res = s.req(Method::PUT, "/api/v1/flags/org-split", &mo).json(&json!({"definition": def, "reason": "x"}));
    assert_eq!(res.send().await.unwrap().status(), 200);
    let local = crew_flags::FlagSet::from_value(&json!({"flags": {"org-split": def}}))
        .unwrap()
        .with_fractional(crew_flags::Fractional::V3);
    let key = ("x-api-key", &*Box::leak(app.clone().into_boxed_str()));
    for org in [json!(42), json!(7.5), json!(true), json!({"id": 1}), json!("acme")] {
        let (status, v) = ofrep(&s, key, "org-split", json!({"org": org})).await;
        assert_eq!(status, 200);
        let want = local.evaluate("org-split", &json!({"org": org}), 0);
        assert_eq!(v["reason"], "TARGETING_MATCH", "{org}: {v}");
        assert_eq!(v["variant"].as_str(), want.variant.as_deref(), "{org}");
    }
    // No bucketing value: the code default's variant, as flagd.
    let (_, v) = ofrep(&s, key, "org-split", json!({})).await;
    assert_eq!((v["reason"].clone(), v["variant"].clone()), (json!("DEFAULT"), json!("d")));
    let res = s.client().get(format!("{}/api/v1/flags/stream", s.url)).header("x-api-key", &app).send().await.unwrap();
    let mut defs = Box::pin(res.bytes_stream().eventsource());
    let doc: Value = serde_json::from_str(&defs.next().await.unwrap().unwrap().data).unwrap();
    assert_eq!(doc["fractional"], "v3");

    std::fs::write(&cfg, "[flags]\nfractional = \"v4\"\n").unwrap();
    let out = crate::harness::serve_refused(&cfg, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("flags") && err.contains("v4"), "{err}");
}

/// OFREP's ADR 0006: where the code default applies — targeting that chooses nothing with no `defaultVariant`, a
/// flag with neither, a flag switched off — the answer is a success with no `value` (and no `variant`), its
/// reason DEFAULT (DISABLED when off), in the single and the bulk evaluation alike.
#[tokio::test]
async fn ofrep_answers_without_a_value_where_the_code_default_applies() {
    let s = Server::start().await;
    let mo = s.token("mo", "member").await;
    let app = s.token("www", "evaluate").await;
    let defs = [
        (
            "beta-only",
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": null,
                "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["alice"]]}, "on", null]}}),
        ),
        ("no-default", json!({"state": "ENABLED", "variants": {"on": true, "off": false}})),
        ("switched-off", json!({"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"})),
    ];
    for (key, def) in &defs {
        let res =
            s.req(Method::PUT, &format!("/api/v1/flags/{key}"), &mo).json(&json!({"definition": def, "reason": "x"}));
        assert_eq!(res.send().await.unwrap().status(), 200, "{key}");
    }
    let key = ("x-api-key", &*Box::leak(app.clone().into_boxed_str()));
    let (status, v) = ofrep(&s, key, "beta-only", json!({"targetingKey": "alice"})).await;
    assert_eq!((status, v["value"].clone(), v["reason"].clone()), (200, json!(true), json!("TARGETING_MATCH")));
    let want = [("beta-only", "DEFAULT"), ("no-default", "DEFAULT"), ("switched-off", "DISABLED")];
    for (flag, reason) in want {
        let (status, v) = ofrep(&s, key, flag, json!({"targetingKey": "bob"})).await;
        assert_eq!(status, 200, "{flag}: {v}");
        assert_eq!(v, json!({"key": flag, "reason": reason, "metadata": {}}), "{flag}");
    }
    let res = s
        .client()
        .post(format!("{}/ofrep/v1/evaluate/flags", s.url))
        .header("x-api-key", &app)
        .json(&json!({"context": {"targetingKey": "bob"}}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    for (flag, reason) in want {
        let got = v["flags"].as_array().unwrap().iter().find(|f| f["key"] == flag).unwrap();
        assert_eq!(*got, json!({"key": flag, "reason": reason, "metadata": {}}), "bulk {flag}");
    }
}
