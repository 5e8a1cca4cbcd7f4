//! Flag definitions and their evaluation with arbitrary contexts. The input is a flagd document, a NUL byte,
//! and a context (both JSON text; a context that is not JSON is evaluated as a string, then as `{}`).
//! Oracle: no panic, and bounded time (libFuzzer's `-timeout`); an evaluation is deterministic, and
//! `evaluate` is `evaluate_ref` made owned.
#![no_main]

use crew_flags::{Flag, FlagSet};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let (defs, ctx) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(defs) = std::str::from_utf8(defs) else { return };
    let Ok(doc) = serde_json::from_str::<Value>(defs) else { return };
    let ctx_text = String::from_utf8_lossy(ctx);
    let contexts = [
        serde_json::from_str::<Value>(&ctx_text).unwrap_or_else(|_| Value::String(ctx_text.to_string())),
        json!({}),
        json!({"targetingKey": ctx_text, "email": "a@b.c", "version": "1.2.3", "n": 7}),
    ];
    // The strict compile (what storing a flag runs) on each definition.
    if let Some(flags) = doc.get("flags").and_then(Value::as_object) {
        let empty = serde_json::Map::new();
        let evaluators = doc.get("$evaluators").and_then(Value::as_object).unwrap_or(&empty);
        for (key, def) in flags {
            let _ = Flag::compile(key, def, evaluators);
        }
    }
    let Ok(set) = FlagSet::from_value(&doc) else { return };
    let keys: Vec<String> = set.keys().cloned().chain(["no-such-flag".to_string()]).collect();
    for ctx in &contexts {
        for now in [0, 1_700_000_000] {
            for key in &keys {
                let a = set.evaluate(key, ctx, now);
                let b = set.evaluate_ref(key, ctx, now).to_resolution();
                assert_eq!(a, b, "evaluate and evaluate_ref disagree on `{key}`");
            }
        }
    }
});
