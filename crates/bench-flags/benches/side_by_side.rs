//! Evaluation latency, crew's engine next to Unleash's yggdrasil on equivalent flags, in one run:
//! a static flag (`default` strategy), a private beta (`userWithId`, the user not in it: the whole list is
//! checked) and a 3-way bucket test (`flexibleRollout` with variants).
//!
//!   cargo bench -p crew-bench-flags
//!
//! crew is measured twice: `crew` is what the SDK's typed accessors do (`evaluate_ref`: borrowed value and
//! variant), `crew (OFREP JSON)` is what an OFREP answer costs the server past HTTP: the same evaluation and
//! its answer `{key, reason, metadata, value, variant}` serialised from it into a reused buffer. yggdrasil is
//! measured through the calls its SDKs make: `is_enabled` for on/off toggles, `get_variant` for the bucket test.

use crew_bench_flags::{crew, yggdrasil};
use crew_flags::FlagSet;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use unleash_yggdrasil::Context;

/// What the OFREP handler does for one flag once the request is parsed: evaluate, then write the answer.
fn ofrep(buf: &mut Vec<u8>, set: &FlagSet, key: &str, ctx: &Value) -> usize {
    buf.clear();
    set.evaluate_ref(key, ctx, 0).ofrep(key).write_json(buf);
    buf.len()
}

fn bench(c: &mut Criterion) {
    let set = crew();
    let engine = yggdrasil();
    let user = "user-12345";
    let ctx = json!({ "targetingKey": user });
    let uctx = Context { user_id: Some(user.into()), ..Context::default() };

    // The two engines must answer the same before their speed means anything.
    for u in ["alice", "erin", "user-1", "user-12345", "zed"] {
        let cc = json!({ "targetingKey": u });
        let uc = Context { user_id: Some(u.into()), ..Context::default() };
        for key in ["static", "beta"] {
            let ours = set.evaluate_ref(key, &cc, 0).value.and_then(|v| v.as_bool());
            let theirs = engine.is_enabled(key, &uc, &None);
            assert_eq!(ours, Some(theirs), "{key} for {u}");
            let mut buf = Vec::new();
            ofrep(&mut buf, &set, key, &cc);
            let answer: Value = serde_json::from_slice(&buf).expect("OFREP JSON");
            assert_eq!(answer["value"].as_bool(), Some(theirs), "{key} for {u}: {answer}");
        }
        assert!(set.evaluate_ref("split", &cc, 0).variant.is_some());
        assert!(engine.get_variant("split", &uc, &None).feature_enabled);
    }

    let mut buf = Vec::with_capacity(256);
    for (key, name) in [("static", "static flag"), ("beta", "beta rule")] {
        let mut g = c.benchmark_group(name);
        g.bench_function("crew", |b| {
            b.iter(|| set.evaluate_ref(black_box(key), black_box(&ctx), 0).value.and_then(|v| v.as_bool()))
        });
        g.bench_function("crew (OFREP JSON)", |b| b.iter(|| ofrep(&mut buf, &set, black_box(key), black_box(&ctx))));
        g.bench_function("yggdrasil", |b| b.iter(|| engine.is_enabled(black_box(key), black_box(&uctx), &None)));
        g.finish();
    }
    let mut g = c.benchmark_group("3-way fractional");
    g.bench_function("crew", |b| b.iter(|| set.evaluate_ref(black_box("split"), black_box(&ctx), 0).variant));
    g.bench_function("crew (OFREP JSON)", |b| b.iter(|| ofrep(&mut buf, &set, black_box("split"), black_box(&ctx))));
    g.bench_function("yggdrasil", |b| b.iter(|| engine.get_variant(black_box("split"), black_box(&uctx), &None)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
