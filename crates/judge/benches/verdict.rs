//! A verdict at its largest expected size: 50 metrics (40 of values, 10 error ratios), each side 600 points
//! (a 10-minute window of 1-second points, or an hour of 6-second ones). Goal: ≤ 10 ms.

use crew_judge::{judge, Counts, Direction, JudgeConfig, Metric, MetricRule, Samples};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn metrics() -> Vec<Metric> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..50)
        .map(|i| {
            let rule = MetricRule { direction: Direction::Increase, ..MetricRule::default() };
            let samples = if i < 40 {
                let side = |rng: &mut StdRng, scale: f64| {
                    (0..600).map(|_| scale * (50.0 + rng.random::<f64>() * 10.0)).collect()
                };
                Samples::Values {
                    baseline: side(&mut rng, 1.0),
                    canary: side(&mut rng, if i % 7 == 0 { 1.3 } else { 1.0 }),
                }
            } else {
                Samples::Ratio {
                    baseline: Counts { events: rng.random_range(10..40), total: 60_000 },
                    canary: Counts { events: rng.random_range(10..80), total: 60_000 },
                }
            };
            Metric { name: format!("m{i}"), rule, samples }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let m = metrics();
    let cfg = JudgeConfig::default();
    c.bench_function("verdict 50 metrics x 2 x 600 points", |b| {
        b.iter(|| judge(black_box(&cfg), black_box(&m)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
