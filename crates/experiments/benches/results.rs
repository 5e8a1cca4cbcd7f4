//! Results over 3,000,000 exposures (two variants, 10% conversions, a 100-point series): the target is ≤ 100 ms.

use crew_experiments::{analyse, Method, Options, Unit, Variant};
use criterion::{criterion_group, criterion_main, Criterion};

fn results(c: &mut Criterion) {
    let variants = vec![Variant { name: "control".into(), weight: 50.0 }, Variant { name: "new".into(), weight: 50.0 }];
    let units: Vec<Unit> = (0..3_000_000i64)
        .map(|i| Unit {
            variant: (i % 2) as u16,
            exposed_at: i * 7,
            converted_at: (i % 10 == 0).then_some(i * 7 + 1000),
        })
        .collect();
    let o = Options { method: Method::default(), alpha: 0.05, start: 0, end: 21_000_000, points: 100 };
    c.bench_function("results_3m_exposures", |b| b.iter(|| analyse(&variants, units.iter().copied(), &o)));
}

criterion_group! { name = benches; config = Criterion::default().sample_size(10); targets = results }
criterion_main!(benches);
