//! The flagd-testbed suites, run with the `cucumber` crate: the evaluator suite (`../shared/conformance/flagd-testbed/`,
//! copied unchanged into `tests/flagd-testbed/`) as today's flagd buckets (`Fractional::V2`), then the
//! `fractional` scenarios of the providers' targeting suite (release 3.9.0's `gherkin/targeting.feature` and its
//! `flags/custom-ops.json`, copied unchanged into `tests/flagd-testbed/provider/`): those tagged
//! `@fractional-v2` with `Fractional::V2` and those tagged `@fractional-v3` with `Fractional::V3`.
//! `@fractional-v1` (the legacy float bucketing) is never run.

use crew_flags::{ErrorCode, FlagSet, Fractional, Resolution};
use cucumber::gherkin::Step;
use cucumber::{given, then, when, World};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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

/// The flags the suite being run evaluates, bucketing as it asks: set before each run (the runs go one
/// after another).
static FLAGS: Mutex<Option<Arc<FlagSet>>> = Mutex::new(None);

fn flags() -> Arc<FlagSet> {
    FLAGS.lock().unwrap().clone().expect("a suite's flags")
}

fn load(path: PathBuf, fractional: Fractional) {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let set = FlagSet::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    *FLAGS.lock().unwrap() = Some(Arc::new(set.with_fractional(fractional)));
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

/// The providers' suite: its provider is this engine, its options (a cache) mean nothing here.
#[given("a stable flagd provider")]
fn provider(w: &mut Eval) {
    w.flags = Some(flags());
}

#[given(expr = "an option {string} of type {string} with value {string}")]
fn option(_: &mut Eval, _name: String, _kind: String, _value: String) {}

#[given(expr = "a {word}-flag with key {string} and a default value {string}")]
fn flag_with_default(w: &mut Eval, kind: String, key: String, fallback: String) {
    flag(w, kind, key, fallback);
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

// A regex, not `{string}`: the providers' suite writes objects with their quotes as they are.
#[given(regex = r#"^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$"#)]
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

/// Reads a feature file as the gherkin crate does, except that an outline's placeholder with a space in its
/// name (`<targeting key>`, which the providers' suite uses and `cucumber` leaves unexpanded) is read with an
/// underscore, in the steps and in the examples' heading alike. The file itself stays as upstream wrote it.
struct Placeholders;

impl<I: AsRef<std::path::Path>> cucumber::Parser<I> for Placeholders {
    type Cli = cucumber::cli::Empty;
    type Output = futures_util::stream::Iter<std::vec::IntoIter<cucumber::parser::Result<cucumber::gherkin::Feature>>>;

    fn parse(self, input: I, _: Self::Cli) -> Self::Output {
        let path = input.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = text.replace("<targeting key>", "<targeting_key>").replace("| targeting key ", "| targeting_key ");
        let feature = cucumber::gherkin::Feature::parse(text, Default::default())
            .map_err(|e| {
                let e = cucumber::gherkin::ParseFileError::Parsing { path: path.clone(), error: None, source: e };
                cucumber::parser::Error::from(e)
            })
            .and_then(|mut f| {
                use cucumber::feature::Ext as _;
                f.path = Some(path.clone());
                f.expand_examples().map_err(|e| cucumber::parser::Error::ExampleExpansion(Arc::new(e)))
            });
        futures_util::stream::iter(vec![feature])
    }
}

/// Whether a feature, rule or scenario carries `tag`.
fn tagged(
    feature: &cucumber::gherkin::Feature,
    rule: Option<&cucumber::gherkin::Rule>,
    scenario: &cucumber::gherkin::Scenario,
    tag: &str,
) -> bool {
    let has = |tags: &[String]| tags.iter().any(|t| t == tag);
    has(&feature.tags) || rule.is_some_and(|r| has(&r.tags)) || has(&scenario.tags)
}

#[tokio::main]
async fn main() {
    use cucumber::writer::Stats;
    let mut failed = Vec::new();
    load(testbed().join("flags/testkit-flags.json"), Fractional::V2);
    let w = Eval::cucumber()
        .fail_on_skipped()
        .filter_run(testbed().join("gherkin"), |f, r, s| {
            !tagged(f, r, s, "fractional-v1") && !tagged(f, r, s, "fractional-v3")
        })
        .await;
    if w.execution_has_failed() {
        failed.push("the evaluator suite");
    }
    let provider = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/flagd-testbed/provider");
    for (fractional, tag) in [(Fractional::V2, "fractional-v2"), (Fractional::V3, "fractional-v3")] {
        load(provider.join("flags/custom-ops.json"), fractional);
        let w = Eval::cucumber::<PathBuf>()
            .with_parser(Placeholders)
            .fail_on_skipped()
            .filter_run(provider.join("gherkin/targeting.feature"), move |f, r, s| tagged(f, r, s, tag))
            .await;
        if w.execution_has_failed() {
            failed.push(tag);
        }
    }
    assert!(failed.is_empty(), "failed: {}", failed.join(", "));
}
