//! A flag rule cannot stall its evaluator: a rule whose worst case is too large is refused when stored (naming
//! the operator), and every evaluation stops after `logic::MAX_STEPS` steps with a GENERAL error, whatever the
//! rule and the context; random and deeply nested rules never panic.

use crew_flags::logic::{self, MAX_STEPS};
use crew_flags::{cost, ErrorCode, Flag, FlagSet, Reason};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// The rule of the report: `R` doubles `[1]` fourteen times (2^14 items, each step copying the accumulator
/// twice), and `all(R, none(R, 1 == 2))` builds `R` again for every one of its items.
fn doubling(times: usize) -> Value {
    json!({"reduce": [(1..=times).collect::<Vec<_>>(), {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]}, [1]]})
}

fn attack() -> Value {
    json!({"if": [{"all": [doubling(14), {"none": [doubling(14), {"==": [1, 2]}]}]}, "on", "off"]})
}

fn def(targeting: Value) -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": targeting})
}

/// Evaluating takes well under a second even unoptimised: the budget, not the rule, decides how long.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    assert!(t.elapsed() < Duration::from_secs(5), "{what}: {:?}", t.elapsed());
    out
}

#[test]
fn costly_rules_are_refused_when_stored_naming_the_operator() {
    let twenty: Vec<u64> = (0..20).collect();
    let nested_maps = (0..5).fold(json!({"var": "x"}), |body, _| json!({"map": [twenty, body]}));
    let table = [
        // The report's rule.
        (attack(), &["`reduce` inside `all`", "targeting: "][..]),
        // A reduce doubling per item of the caller's list (2^20 on the estimate's list of 20).
        (
            json!({"reduce": [{"var": "items"}, {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]}, [1]]}),
            &["`merge` inside `reduce`"],
        ),
        // Doubling 64 times: merge stops at 100,000 items, but 64 copies of that much is still too much.
        (doubling(64), &["`merge` inside `reduce`"]),
        // A string growing by itself in a reduce.
        (
            json!({"reduce": [doubling(12), {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]}, "x"]}),
            &["`reduce`"],
        ),
        // Five nested iterations over lists of 20 (3,200,000 runs of the innermost rule).
        (nested_maps, &["`map`"]),
        // `in` against a doubled list, tested for every item of another.
        (json!({"some": [doubling(14), {"in": [3, doubling(14)]}]}), &["`reduce` inside `some`"]),
        (json!({"filter": [doubling(14), {"==": [{"var": ""}, doubling(10)]}]}), &["`reduce` inside `filter`"]),
    ];
    for (rule, needles) in table {
        let e = match Flag::compile("f", &def(rule.clone()), &Map::new()) {
            Ok(_) => panic!("{rule}: stored"),
            Err(e) => e.0,
        };
        for n in needles {
            assert!(e.contains(n), "{rule}: {e}");
        }
        assert!(e.contains(&format!("more than {MAX_STEPS} steps")), "{e}");
    }
    // The same shape through `$evaluators` is refused the same way.
    let mut ev = Map::new();
    ev.insert("R".into(), doubling(14));
    let e =
        Flag::compile("f", &def(json!({"all": [{"$ref": "R"}, {"none": [{"$ref": "R"}, false]}]})), &ev).unwrap_err().0;
    assert!(e.contains("`reduce` inside `all`"), "{e}");
}

#[test]
fn realistic_rules_pass_far_below_the_bound() {
    let beta: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let table = [
        json!({"if": [{"in": [{"var": "targetingKey"}, beta]}, "on", "off"]}),
        json!({"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["on", 50], ["off", 50]]}),
        json!({"if": [{"sem_ver": [{"var": "version"}, ">=", "1.2.3"]}, "on", "off"]}),
        json!({"if": [{"some": [{"var": "groups"}, {"in": [{"var": ""}, ["staff", "beta"]]}]}, "on", "off"]}),
        json!({"if": [{"all": [{"var": "roles"}, {"some": [{"var": "perms"}, {"==": [{"var": "x"}, 1]}]}]}, "on", "off"]}),
        json!({"if": [{">": [{"reduce": [{"var": "cart"}, {"+": [{"var": "accumulator"}, {"var": "current.price"}]}, 0]}, 100]}, "on", "off"]}),
        json!({"if": [{"in": [5, doubling(10)]}, "on", "off"]}),
    ];
    for rule in table {
        let compiled = logic::compile(&rule, &Map::new(), true).unwrap();
        let steps = cost::check(&compiled).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert!(steps < MAX_STEPS / 10, "{rule}: {steps}");
        Flag::compile("f", &def(rule), &Map::new()).unwrap();
    }
}

/// Every rule of the flagd testbed is estimated at less than a hundredth of the bound.
#[test]
fn the_testbed_rules_are_far_below_the_bound() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flagd-testbed/flags");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("testkit-flags.json")).unwrap()).unwrap();
    let evaluators = doc.get("$evaluators").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut seen = 0;
    for (key, flag) in doc["flags"].as_object().unwrap() {
        let Some(rule) = flag.get("targeting").filter(|t| t.as_object().is_some_and(|m| !m.is_empty())) else {
            continue;
        };
        // Some testbed rules are wrong on purpose (an unknown operator, a bad weight): those are not costs.
        let Ok(compiled) = logic::compile(rule, &evaluators, false) else { continue };
        let steps = cost::check(&compiled).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(steps < MAX_STEPS / 100, "{key}: {steps}");
        seen += 1;
    }
    assert!(seen > 20, "{seen}");
}

/// Rules that pass the check when stored but meet a huge context at evaluation: the budget stops them, the
/// answer is a GENERAL error with no value (the caller's code default), and it comes at once.
#[test]
fn costly_evaluations_hit_the_budget_and_answer_general() {
    let million: Vec<u64> = (0..1_000_000).collect();
    let big = json!({"targetingKey": "u", "items": million, "name": "x".repeat(1 << 20)});
    let small = json!({"targetingKey": "u", "items": [1, 2, 3], "name": "bob"});
    let table = [
        ("in", json!({"if": [{"in": [-1, {"var": "items"}]}, "on", "off"]})),
        ("map", json!({"if": [{"map": [{"var": "items"}, {"+": [{"var": ""}, 1]}]}, "on", "off"]})),
        ("some", json!({"if": [{"some": [{"var": "items"}, {"<": [{"var": ""}, -1]}]}, "on", "off"]})),
        ("merge", json!({"if": [{"merge": [{"var": "items"}, {"var": "items"}]}, "on", "off"]})),
        // Reading the context is free, copying it is not.
        ("whole context", json!({"if": [{"merge": [{"var": ""}]}, "on", "off"]})),
        ("equal lists", json!({"if": [{"==": [{"var": "items"}, {"var": "items"}]}, "on", "off"]})),
        (
            "string",
            json!({"if": [{"or": (0..20).map(|_| json!({"==": [{"var": "name"}, "y"]})).collect::<Vec<_>>()}, "on", "off"]}),
        ),
        ("nested", json!({"if": [{"all": [{"var": "items"}, {"all": [{"var": "items"}, true]}]}, "on", "off"]})),
    ];
    for (name, rule) in table {
        // Stored without complaint: its cost depends on the caller's context.
        let flag = Flag::compile("f", &def(rule.clone()), &Map::new()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ok = flag.evaluate("f", &small, 0);
        assert_eq!(ok.error, None, "{name}: {ok:?}");
        let r = bounded(name, || flag.evaluate("f", &big, 0));
        assert_eq!((r.reason, r.value, r.variant), (Reason::Error, None, None), "{name}");
        let (code, detail) = r.error.unwrap_or_else(|| panic!("{name}: no error"));
        assert_eq!(code, ErrorCode::General, "{name}");
        assert!(detail.contains(&format!("more than {MAX_STEPS} steps")), "{name}: {detail}");
    }
}

/// The report's rule in a document from elsewhere (kept, as flagd would run it; the SDK reads such documents):
/// each evaluation, owned or borrowed, stops at the budget, and the other flags of the set still work.
#[test]
fn the_attack_rule_in_a_document_is_cut_short_at_evaluation() {
    let set = FlagSet::from_value(&json!({"flags": {
        "attack": def(attack()),
        "fine": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}
    }}))
    .unwrap();
    for _ in 0..2 {
        let r = bounded("owned", || set.evaluate("attack", &json!({}), 0));
        assert_eq!((r.reason, r.value, r.error.map(|e| e.0)), (Reason::Error, None, Some(ErrorCode::General)));
        let e = bounded("borrowed", || set.evaluate_ref("attack", &json!({}), 0));
        assert_eq!((e.value, e.error.map(|e| e.0)), (None, Some(ErrorCode::General)));
    }
    assert_eq!(set.evaluate("fine", &json!({}), 0).value, Some(json!(true)));
}

/// Nesting at the limit and past it: refused or bounded, never a panic or a stack overflow.
#[test]
fn deep_nesting_is_refused_or_bounded() {
    let nest = |depth: usize, op: &str, leaf: Value| {
        (0..depth).fold(leaf, |inner, _| match op {
            "map" => json!({"map": [[1, 2], inner]}),
            "reduce" => json!({"reduce": [[1, 2], inner, [{"var": "accumulator"}]]}),
            other => json!({ other: [inner] }),
        })
    };
    for op in ["!", "and", "merge", "cat", "map", "reduce", "if"] {
        for depth in [10, 30, 63, 64, 65, 200] {
            let rule = nest(depth, op, json!({"var": "x"}));
            let _ = Flag::compile("f", &def(rule.clone()), &Map::new());
            let set = FlagSet::from_value(&json!({"flags": {"f": def(rule)}})).unwrap();
            let r = bounded(op, || set.evaluate("f", &json!({"x": [1, 2, 3]}), 0));
            if depth > 64 {
                assert_eq!(r.error.map(|e| e.0), Some(ErrorCode::ParseError), "{op} {depth}");
            }
        }
    }
    // A reduce that wraps its accumulator once per item builds a value as deep as its list is long: the copies
    // it makes are charged by size, so it stops long before its depth could matter.
    let rule = json!({"reduce": [{"var": "items"}, [{"var": "accumulator"}], 0]});
    let set = FlagSet::from_value(&json!({"flags": {"f": def(rule)}})).unwrap();
    let r = bounded("wrap", || set.evaluate("f", &json!({"items": (0..100_000).collect::<Vec<_>>()}), 0));
    assert_eq!(r.error.map(|e| e.0), Some(ErrorCode::General));
}

const OPS: &[&str] = &[
    "var",
    "missing",
    "missing_some",
    "if",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "or",
    "and",
    ">",
    ">=",
    "<",
    "<=",
    "max",
    "min",
    "+",
    "-",
    "*",
    "/",
    "%",
    "map",
    "filter",
    "reduce",
    "all",
    "none",
    "some",
    "merge",
    "in",
    "cat",
    "substr",
    "log",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
];

fn rule() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[a-z.]{0,6}".prop_map(Value::from),
        Just(json!({"var": "items"})),
        Just(json!({"var": "accumulator"})),
        Just(json!({"var": ""})),
        Just(Value::Null),
        Just(json!(true)),
    ];
    leaf.prop_recursive(8, 96, 4, |inner| {
        prop_oneof![
            (0..OPS.len(), prop::collection::vec(inner.clone(), 0..4)).prop_map(|(i, args)| json!({ OPS[i]: args })),
            prop::collection::vec(inner, 0..4).prop_map(Value::Array),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any rule, random or not: compiling (strict or not) and evaluating return, within the budget.
    #[test]
    fn random_rules_never_panic(rule in rule(), n in 0usize..2000) {
        let d = def(rule);
        let _ = Flag::compile("f", &d, &Map::new());
        let set = FlagSet::from_value(&json!({"flags": {"f": d}})).unwrap();
        let ctx = json!({"targetingKey": "k", "items": (0..n).collect::<Vec<_>>(), "x": "y"});
        let r = bounded("random", || set.evaluate("f", &ctx, 0));
        if let Some((code, _)) = r.error {
            prop_assert!(matches!(code, ErrorCode::General | ErrorCode::ParseError));
        }
    }
}
