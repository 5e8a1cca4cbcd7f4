//! The flagd-testbed evaluator suite (`../shared/conformance/flagd-testbed/`, copied unchanged into
//! `tests/flagd-testbed/`), run with the `cucumber` crate.
//! Scenarios tagged `@fractional-v1` and `@fractional-v3` are not current flagd behaviour and are left out.

use crew_flags::{ErrorCode, FlagSet, Resolution};
use cucumber::gherkin::Step;
use cucumber::{given, then, when, World};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The workplace's copy (`../shared/conformance/flagd-testbed` beside the project) when there is one, else the
/// unchanged copy kept in this crate, so the suite runs wherever the project is cloned.
fn testbed() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../../shared/conformance/flagd-testbed");
    if shared.join("gherkin").is_dir() {
        shared
    } else {
        manifest.join("tests/flagd-testbed")
    }
}

fn flags() -> Arc<FlagSet> {
    static FLAGS: OnceLock<Arc<FlagSet>> = OnceLock::new();
    FLAGS
        .get_or_init(|| {
            let text = std::fs::read_to_string(testbed().join("flags/testkit-flags.json")).expect("testkit flags");
            Arc::new(FlagSet::parse(&text).expect("the testkit flags parse"))
        })
        .clone()
}

#[derive(Debug, Default, World)]
struct Eval {
    flags: Option<Arc<FlagSet>>,
    key: String,
    kind: String,
    fallback: String,
    context: Map<String, Value>,
    result: Option<Resolution>,
}

/// A cell of the suite: `{\"a\": 1}` stands for `{"a": 1}`.
fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"")
}

/// The caller's typed value of a string in the suite, for a flag type (`Boolean`, `String`, ...).
fn typed(kind: &str, s: &str) -> Value {
    let s = unescape(s);
    match kind {
        "Boolean" => Value::Bool(s == "true"),
        "Integer" => Value::from(s.parse::<i64>().expect("an integer")),
        "Float" => Value::from(s.parse::<f64>().expect("a float")),
        "Object" => serde_json::from_str(&s).expect("a JSON object"),
        _ => Value::String(s),
    }
}

/// The typed accessor of an SDK: the value if it has the asked type, else TYPE_MISMATCH.
fn type_matches(kind: &str, v: &Value) -> bool {
    match kind {
        "Boolean" => v.is_boolean(),
        "String" => v.is_string(),
        "Integer" => v.is_i64() || v.is_u64(),
        "Float" => v.is_number(),
        "Object" => v.is_object() || v.is_array(),
        _ => false,
    }
}

#[given("an evaluator")]
fn evaluator(w: &mut Eval) {
    w.flags = Some(flags());
}

#[given(expr = "a {word}-flag with key {string} and a fallback value {string}")]
fn flag(w: &mut Eval, kind: String, key: String, fallback: String) {
    if w.flags.is_none() {
        w.flags = Some(flags());
    }
    (w.kind, w.key, w.fallback) = (kind, key, fallback);
}

#[given(expr = "a context containing a targeting key with value {string}")]
fn targeting_key(w: &mut Eval, v: String) {
    w.context.insert("targetingKey".into(), Value::String(v));
}

#[given(expr = "a context containing a key {string}, with type {string} and with value {string}")]
fn context_key(w: &mut Eval, key: String, kind: String, v: String) {
    w.context.insert(key, typed(&kind, &v));
}

#[given(
    expr = "a context containing a nested property with outer key {string} and inner key {string}, with value {string}"
)]
fn nested(w: &mut Eval, outer: String, inner: String, v: String) {
    let entry = w.context.entry(outer).or_insert_with(|| Value::Object(Map::new()));
    entry.as_object_mut().expect("an object").insert(inner, Value::String(v));
}

#[when("the flag was evaluated with details")]
fn evaluate(w: &mut Eval) {
    let set = w.flags.as_ref().expect("an evaluator");
    let mut r = set.evaluate(&w.key, &Value::Object(w.context.clone()), 1_764_172_800);
    if let Some(v) = &r.value {
        if r.error.is_none() && !type_matches(&w.kind, v) {
            r = Resolution {
                value: None,
                variant: None,
                reason: crew_flags::Reason::Error,
                error: Some((ErrorCode::TypeMismatch, "type".into())),
                metadata: r.metadata,
            };
        }
    }
    w.result = Some(r);
}

#[then(expr = "the resolved details value should be {string}")]
fn value(w: &mut Eval, want: String) {
    let r = w.result.as_ref().expect("evaluated");
    let got = match (&r.value, &r.error) {
        (Some(v), None) => v.clone(),
        _ => typed(&w.kind, &w.fallback),
    };
    let want = typed(&w.kind, &want);
    let same = match (&got, &want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == want,
    };
    assert!(same, "{}: got {got}, want {want} ({r:?})", w.key);
}

#[then(expr = "the reason should be {string}")]
fn reason(w: &mut Eval, want: String) {
    let r = w.result.as_ref().expect("evaluated");
    assert_eq!(r.reason.as_str(), want, "{}: {r:?}", w.key);
}

#[then(expr = "the error-code should be {string}")]
fn error_code(w: &mut Eval, want: String) {
    let r = w.result.as_ref().expect("evaluated");
    assert_eq!(r.error.as_ref().map(|(c, _)| c.as_str()), Some(want.as_str()), "{}: {r:?}", w.key);
}

#[then("the resolved metadata should contain")]
fn metadata(w: &mut Eval, step: &Step) {
    let r = w.result.as_ref().expect("evaluated");
    let table = step.table.as_ref().expect("a table");
    for row in table.rows.iter().skip(1) {
        let (key, kind, v) = (&row[0], &row[1], &row[2]);
        let got = r.metadata.get(key).unwrap_or_else(|| panic!("metadata `{key}` missing: {r:?}"));
        let want = typed(kind, v);
        let same = match (got, &want) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            _ => *got == want,
        };
        assert!(same, "metadata `{key}`: got {got}, want {want}");
    }
}

#[then("the resolved metadata is empty")]
fn no_metadata(w: &mut Eval) {
    let r = w.result.as_ref().expect("evaluated");
    assert!(r.metadata.is_empty(), "{r:?}");
}

#[tokio::main]
async fn main() {
    Eval::cucumber()
        .fail_on_skipped()
        .filter_run_and_exit(testbed().join("gherkin"), |feature, rule, scenario| {
            let skip = |tags: &[String]| tags.iter().any(|t| t == "fractional-v1" || t == "fractional-v3");
            !(skip(&feature.tags) || rule.is_some_and(|r| skip(&r.tags)) || skip(&scenario.tags))
        })
        .await;
}
