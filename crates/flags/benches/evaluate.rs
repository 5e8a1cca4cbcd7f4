//! Evaluation latency: a static flag, a private-beta rule and a 3-way fractional split.
//! The side-by-side with Unleash's yggdrasil is `cargo bench -p crew-bench-flags`.
//!
//!   cargo bench -p crew-flags --bench evaluate

use crew_flags::FlagSet;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;

fn flags() -> FlagSet {
    FlagSet::from_value(&json!({"flags": {
        "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
        "beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                 "targeting": {"if": [{"or": [{"in": [{"var": "targetingKey"}, ["alice", "bob", "carol"]]},
                                              {"in": [{"var": "groups"}, ["staff"]]}]}, "on", "off"]}},
        "split": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"}, "defaultVariant": "a",
                  "targeting": {"fractional": [["a", 34], ["b", 33], ["c", 33]]}}
    }}))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let set = flags();
    let ctx = json!({"targetingKey": "user-12345", "groups": "staff", "plan": "pro"});
    c.bench_function("static flag", |b| b.iter(|| set.evaluate(black_box("static"), black_box(&ctx), 0)));
    c.bench_function("beta rule", |b| b.iter(|| set.evaluate(black_box("beta"), black_box(&ctx), 0)));
    c.bench_function("3-way fractional", |b| b.iter(|| set.evaluate(black_box("split"), black_box(&ctx), 0)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
