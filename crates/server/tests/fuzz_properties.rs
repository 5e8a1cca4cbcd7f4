//! The flags and config fuzz targets' properties (fuzz/fuzz_targets/flags.rs and config.rs) as proptest tests,
//! a few seconds each, so CI catches a regression without nightly tools. They live here because crew-server
//! is the crate that holds both crew.toml and, through its dependencies, the flag engine and the role parser.
//! (The fuzz target's other oracle, bounded time, is libFuzzer's `-timeout`; a test here has no such bound.)

use crew_flags::{Flag, FlagSet};
use crew_infra::{parse_role, InfraError};
use crew_server::config::FileConfig;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A JsonLogic rule of flagd's operators over context variables and literals, a few levels deep.
fn rule() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({"var": "targetingKey"})),
        Just(json!({"var": "email"})),
        Just(json!({"var": "version"})),
        Just(json!({"var": "n"})),
        Just(json!({"var": ["missing", 3]})),
        Just(json!({"var": "$flagd.flagKey"})),
        Just(json!({"var": "$flagd.timestamp"})),
        Just(json!("on")),
        Just(json!("off")),
        Just(json!("1.2.3")),
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[a-z@.]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        let op = prop_oneof![
            Just("if"),
            Just("=="),
            Just("==="),
            Just("!="),
            Just("<"),
            Just("<="),
            Just(">"),
            Just("!"),
            Just("!!"),
            Just("and"),
            Just("or"),
            Just("in"),
            Just("cat"),
            Just("substr"),
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("min"),
            Just("max"),
            Just("merge"),
            Just("missing"),
            Just("fractional"),
            Just("sem_ver"),
            Just("starts_with"),
            Just("ends_with"),
            Just("nope"),
        ];
        prop_oneof![
            (op, proptest::collection::vec(inner.clone(), 0..4)).prop_map(|(op, args)| json!({ op: args })),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            inner.prop_map(|a| json!({"fractional": [a, ["on", 50], ["off", 50]]})),
        ]
    })
}

fn flag_doc() -> impl Strategy<Value = Value> {
    let variants = prop_oneof![
        Just(json!({"on": true, "off": false})),
        Just(json!({"on": "a", "off": "b"})),
        Just(json!({"on": 1, "off": 2.5})),
        Just(json!({"on": {"x": 1}, "off": {}})),
    ];
    let state = prop_oneof![Just("ENABLED"), Just("DISABLED"), Just("bogus")];
    let default = prop_oneof![Just(json!("on")), Just(json!("off")), Just(json!("none")), Just(json!(null))];
    let targeting = prop_oneof![Just(None), rule().prop_map(Some), Just(Some(json!({"$ref": "shared"})))];
    (state, variants, default, targeting, rule()).prop_map(|(state, variants, default, targeting, shared)| {
        let mut flag = json!({"state": state, "variants": variants, "defaultVariant": default});
        if let Some(t) = targeting {
            flag["targeting"] = t;
        }
        json!({"flags": {"f": flag}, "$evaluators": {"shared": shared}})
    })
}

fn context() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        ("[a-z0-9-]{0,12}", "[a-z@.]{0,12}", "[0-9.a-z+-]{0,10}", any::<i64>())
            .prop_map(|(k, email, version, n)| json!({"targetingKey": k, "email": email, "version": version, "n": n})),
        Just(json!("not an object")),
        Just(json!([1, 2])),
    ]
}

fn flags_hold(doc: &Value, ctx: &Value) -> Result<(), TestCaseError> {
    if let Some(flags) = doc.get("flags").and_then(Value::as_object) {
        let empty = serde_json::Map::new();
        let evaluators = doc.get("$evaluators").and_then(Value::as_object).unwrap_or(&empty);
        for (key, def) in flags {
            let _ = Flag::compile(key, def, evaluators);
        }
    }
    let Ok(set) = FlagSet::from_value(doc) else { return Ok(()) };
    for key in ["f", "no-such-flag"] {
        for now in [0, 1_700_000_000] {
            let a = set.evaluate(key, ctx, now);
            prop_assert_eq!(a, set.evaluate_ref(key, ctx, now).to_resolution());
        }
    }
    Ok(())
}

/// crew.toml and role text: known sections and keys, values of every TOML type, and noise between them.
fn toml_text() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just("[server]"),
        Just("[app]"),
        Just("[build]"),
        Just("[environments.production]"),
        Just("[metrics]"),
        Just("[chat.irc]"),
        Just("[chat.irc.announce]"),
        Just("[[chat.users]]"),
        Just("[[chat.webhooks]]"),
        Just("[[dashboards]]"),
        Just("[[alerts]]"),
        Just("[[hosts]]"),
        Just("[infra]"),
        Just("[[directory]]"),
        Just("[[file]]"),
        Just("[[symlink]]"),
        Just("[[service]]"),
        Just("[[command]]"),
        Just("[[group]]"),
        Just("[[user]]"),
        Just("[[package]]"),
    ];
    let key = prop_oneof![
        Just("name"),
        Just("path"),
        Just("mode"),
        Just("listen"),
        Just("statsd"),
        Just("hosts"),
        Just("roles"),
        Just("address"),
        Just("flush"),
        Just("server"),
        Just("nick"),
        Just("channels"),
        Just("notify"),
        Just("requires"),
        Just("owner"),
        Just("content"),
        Just("target"),
        Just("expr"),
        Just("for"),
    ];
    let value = prop_oneof![
        Just("\"0644\"".to_string()),
        Just("\"/srv/www\"".to_string()),
        Just("\"local\"".to_string()),
        Just("[\"web\", \"service:www\"]".to_string()),
        Just("\"10s\"".to_string()),
        Just("{ port = 8080 }".to_string()),
        Just("\"\"\"\nmulti\n\"\"\"".to_string()),
        Just("'''é'''".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\"\\PC{0,12}\"",
    ];
    let line = prop_oneof![
        header.prop_map(String::from),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        "\\PC{0,20}",
        Just(String::new()),
    ];
    proptest::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

fn config_holds(text: &str) -> Result<(), TestCaseError> {
    if let Ok(file) = FileConfig::parse(text, Path::new("crew.toml")) {
        if let Some(chat) = &file.chat {
            let _ = chat.check();
        }
        if let Some(metrics) = &file.metrics {
            let _ = metrics.check();
        }
        let _ = crew_server::infra::check(&file.hosts, file.infra.as_ref());
        let _ = crew_server::alerts::check(&file.alerts);
        let _ = crew_server::metrics::dashboards::check(&file.dashboards);
    }
    match parse_role("roles/fuzz.toml", text) {
        Ok(role) => prop_assert_eq!(role.name, "fuzz"),
        Err(InfraError::At { file, line, .. }) => {
            prop_assert_eq!(file, "roles/fuzz.toml");
            let lines = text.split('\n').count();
            prop_assert!(line >= 1 && line <= lines, "line {} of {}", line, lines);
        }
        Err(_) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn flags_compile_and_evaluate(doc in flag_doc(), ctx in context()) {
        flags_hold(&doc, &ctx)?;
    }

    #[test]
    fn crew_toml_and_roles(text in toml_text()) {
        config_holds(&text)?;
    }
}
