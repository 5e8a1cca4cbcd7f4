//! The schedule math at its largest expected size: 10 layers (daily, weekly, 12h, 8h, 3d rotations, some
//! restricted to weekdays, nights or weekends) over one year in Europe/Berlin with 200 overrides. Goals: the
//! final schedule of the year ≤ 50 ms, `on_call_at` ≤ 1 ms.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use crew_oncall::schedule::{
    final_schedule, next_change, on_call_at, Layer, Override, Restriction, Rotation, Schedule,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn schedule() -> Schedule {
    let users = |k: usize| (0..4).map(|i| format!("user{k}-{i}")).collect::<Vec<_>>();
    let r = |d: &str, f: &str, t: &str| vec![Restriction::parse(d, f, t).unwrap()];
    let rotations = [
        (Rotation::Weekly, vec![]),
        (Rotation::Daily, r("mon-fri", "09:00", "18:00")),
        (Rotation::Every(Duration::hours(12)), vec![]),
        (Rotation::Daily, r("mon-fri", "18:00", "09:00")),
        (Rotation::Weekly, r("sat,sun", "00:00", "24:00")),
        (Rotation::Every(Duration::hours(8)), r("mon-fri", "08:00", "20:00")),
        (Rotation::Every(Duration::days(3)), vec![]),
        (Rotation::Daily, r("daily", "22:00", "06:00")),
        (Rotation::Weekly, r("fri-mon", "12:00", "14:00")),
        (Rotation::Every(Duration::hours(12)), r("tue,thu", "10:00", "16:00")),
    ];
    let layers = rotations
        .into_iter()
        .enumerate()
        .map(|(k, (rotation, restrict))| Layer {
            name: format!("layer{k}"),
            users: users(k),
            rotation,
            start: NaiveDate::from_ymd_opt(2025, 12, 1).unwrap().and_hms_opt(9, 0, 0).unwrap(),
            restrict,
        })
        .collect();
    let s = Schedule { name: "ops".into(), zone: chrono_tz::Europe::Berlin, layers };
    s.check().unwrap();
    s
}

fn year() -> (DateTime<Utc>, DateTime<Utc>) {
    let from = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    (from, from + Duration::days(365))
}

/// 200 overrides of 4 to 40 hours, spread over the year without overlapping.
fn overrides() -> Vec<Override> {
    let (from, _) = year();
    (0..200)
        .map(|i| {
            let start = from + Duration::hours(i * 43 + 5);
            Override { user: format!("sub{}", i % 7), from: start, until: start + Duration::hours(4 + (i * 13) % 37) }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (s, o, (from, until)) = (schedule(), overrides(), year());
    let segs = final_schedule(&s, &o, from, until);
    eprintln!("a year: {} segments", segs.len());
    c.bench_function("final_schedule 10 layers x 1 year x 200 overrides", |b| {
        b.iter(|| final_schedule(black_box(&s), black_box(&o), from, until))
    });
    let at = from + Duration::days(180) + Duration::hours(3);
    c.bench_function("on_call_at 10 layers x 200 overrides", |b| {
        b.iter(|| on_call_at(black_box(&s), black_box(&o), at))
    });
    // Inside the long weekend segment of the weekend layer, and inside an override.
    let sat = NaiveDate::from_ymd_opt(2026, 7, 4).unwrap().and_hms_opt(12, 0, 0).unwrap().and_utc();
    c.bench_function("on_call_at on a weekend", |b| b.iter(|| on_call_at(black_box(&s), black_box(&o), sat)));
    c.bench_function("next_change 10 layers x 200 overrides", |b| {
        b.iter(|| next_change(black_box(&s), black_box(&o), at, Duration::days(14)))
    });
    // The worst cases: a segment as long as on_call_at looks (one person on the top layer, no overrides), and a
    // gap before every layer's first handoff.
    let mut one = s.clone();
    one.layers[9].users.truncate(1);
    one.layers[9].restrict.clear();
    c.bench_function("on_call_at one person for ever (the whole reach)", |b| {
        b.iter(|| on_call_at(black_box(&one), black_box(&[]), at))
    });
    let before = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    c.bench_function("on_call_at in the gap before the first handoff", |b| {
        b.iter(|| on_call_at(black_box(&s), black_box(&o), before))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
