//! Escalation timing, driven the way the server's worker drives it: a loop that sleeps until `due()` on tokio's
//! paused clock (its instants mapped to times from a fixed base), fires, and records when. Plus the policy's
//! checks, its firing order, and targets.

mod common;

use chrono::{DateTime, Utc};
use common::utc;
use crew_oncall::escalation::{Escalation, Policy, Step, Target};
use tokio::time::{sleep_until, Instant};

/// tokio's clock as times: `t0` is `base`.
struct Clock {
    t0: Instant,
    base: DateTime<Utc>,
}

impl Clock {
    fn new() -> Clock {
        Clock { t0: Instant::now(), base: utc("2026-05-01T12:00Z") }
    }
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.t0.elapsed()).unwrap()
    }
    fn instant(&self, at: DateTime<Utc>) -> Instant {
        self.t0 + (at - self.base).to_std().unwrap()
    }
    fn after(&self, secs: u64) -> Instant {
        self.t0 + std::time::Duration::from_secs(secs)
    }
    fn secs(&self) -> u64 {
        self.t0.elapsed().as_secs()
    }
}

fn step(targets: &[&str], wait_secs: u64) -> Step {
    Step { notify: targets.iter().map(|t| Target::parse(t).unwrap()).collect(), wait_secs }
}

fn www(repeat: u32) -> Policy {
    let p = Policy {
        name: "www".into(),
        steps: vec![step(&["schedule:ops"], 300), step(&["user:dave", "room:#ops"], 600)],
        repeat,
    };
    p.check().unwrap();
    p
}

/// What happened, in seconds from the start: `(when, step index, reached, which call to fire)`.
type Log = Vec<(u64, usize, bool, usize)>;

/// The worker: sleeps until the escalation is due and fires it, until `stop` seconds; someone acknowledges at
/// `ack` seconds, and that acknowledgement times out (re-arms) `rearm` seconds later.
async fn drive(
    esc: &mut Escalation,
    clock: &Clock,
    mut ack: Option<u64>,
    rearm: Option<u64>,
    stop: u64,
    mut reaches: impl FnMut(&Step) -> bool,
) -> Log {
    let mut log = Vec::new();
    let mut calls = 0;
    let mut rearm_at: Option<u64> = None;
    let far = clock.after(stop + 1);
    loop {
        let due = esc.due().map(|d| clock.instant(d));
        tokio::select! {
            _ = sleep_until(due.unwrap_or(far)), if due.is_some() => {
                calls += 1;
                for f in esc.fire(clock.now(), &mut reaches) {
                    log.push((clock.secs(), f.index, f.reached, calls));
                }
            }
            _ = sleep_until(clock.after(ack.unwrap_or(0))), if ack.is_some() => {
                esc.ack();
                assert_eq!(esc.due(), None, "nothing is due after an ack");
                rearm_at = rearm.map(|r| clock.secs() + r);
                ack = None;
            }
            _ = sleep_until(clock.after(rearm_at.unwrap_or(0))), if rearm_at.is_some() => {
                esc.rearm(clock.now());
                rearm_at = None;
            }
            _ = sleep_until(clock.after(stop)) => break,
        }
    }
    log
}

#[tokio::test(start_paused = true)]
async fn steps_fire_after_their_waits_and_repeat() {
    let clock = Clock::new();
    let mut esc = Escalation::start(www(2), clock.now());
    let log = drive(&mut esc, &clock, None, None, 3 * 3600, |_| true).await;
    let when: Vec<(u64, usize)> = log.iter().map(|l| (l.0, l.1)).collect();
    // 5 minutes after step 0, 10 minutes after step 1, three rounds, then nothing.
    assert_eq!(when, [(0, 0), (300, 1), (900, 2), (1200, 3), (1800, 4), (2100, 5)]);
    assert!(log.iter().all(|l| l.2));
    assert_eq!(esc.due(), None);
    assert!(esc.is_exhausted());
    assert_eq!(clock.secs(), 3 * 3600, "the loop slept on tokio's clock until the end");
}

#[tokio::test(start_paused = true)]
async fn nothing_fires_after_an_ack() {
    let clock = Clock::new();
    let mut esc = Escalation::start(www(2), clock.now());
    let log = drive(&mut esc, &clock, Some(420), None, 3 * 3600, |_| true).await;
    assert_eq!(log.iter().map(|l| (l.0, l.1)).collect::<Vec<_>>(), [(0, 0), (300, 1)]);
    assert!(esc.is_acked());
    assert_eq!(esc.due(), None);
    // Firing later does nothing either.
    assert!(esc.fire(clock.now(), |_| true).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_ack_that_times_out_rearms_from_step_0() {
    let clock = Clock::new();
    let mut esc = Escalation::start(www(2), clock.now());
    let log = drive(&mut esc, &clock, Some(420), Some(1800), 3 * 3600, |_| true).await;
    let when: Vec<(u64, usize)> = log.iter().map(|l| (l.0, l.1)).collect();
    let r = 420 + 1800;
    assert_eq!(
        when,
        [(0, 0), (300, 1), (r, 0), (r + 300, 1), (r + 900, 2), (r + 1200, 3), (r + 1800, 4), (r + 2100, 5)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_reaching_nobody_moves_on_at_once() {
    let clock = Clock::new();
    let policy =
        Policy { name: "p".into(), steps: vec![step(&["schedule:empty"], 300), step(&["user:dave"], 600)], repeat: 1 };
    let mut esc = Escalation::start(policy, clock.now());
    let nobody_on_empty = |s: &Step| s.notify != [Target::Schedule("empty".into())];
    let log = drive(&mut esc, &clock, None, None, 3600, nobody_on_empty).await;
    // Step 0 reaches nobody: step 1 fires in the same call; its wait runs to the next round.
    assert_eq!(log, [(0, 0, false, 1), (0, 1, true, 1), (600, 2, false, 2), (600, 3, true, 2)]);
    assert!(esc.is_exhausted());
}

#[test]
fn a_late_worker_gives_the_whole_wait_and_early_fires_nothing() {
    let t = utc("2026-05-01T12:00Z");
    let mut esc = Escalation::start(www(0), t);
    assert_eq!(esc.due(), Some(t));
    assert!(esc.fire(t - chrono::Duration::seconds(1), |_| true).is_empty());
    let late = t + chrono::Duration::minutes(2);
    let fired = esc.fire(late, |_| true);
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].index, fired[0].reached, &fired[0].step), (0, true, &www(0).steps[0]));
    assert_eq!(esc.due(), Some(late + chrono::Duration::minutes(5)));
    assert_eq!(esc.next_index(), 1);
    // Very late: only the step due fires, the next is a whole wait after it.
    let later = late + chrono::Duration::hours(5);
    assert_eq!(esc.fire(later, |_| true).len(), 1);
    assert_eq!(esc.due(), None, "repeat 0: two steps, then done");
}

#[test]
fn a_kept_state_carries_on() {
    let t = utc("2026-05-01T12:00Z");
    let mut esc = Escalation::start(www(1), t);
    esc.fire(t, |_| true);
    let kept = serde_json::to_string(&esc).unwrap();
    let mut back: Escalation = serde_json::from_str(&kept).unwrap();
    assert_eq!(back, esc);
    let restored = Escalation::restore(www(1), esc.next_index(), esc.due(), false);
    assert_eq!(restored, esc);
    let due = back.due().unwrap();
    assert_eq!(back.fire(due, |_| true)[0].index, 1);
}

#[test]
fn policies_flatten_their_rounds() {
    let p = www(2);
    assert_eq!(p.len(), 6);
    assert_eq!(p.step(0), Some(&p.steps[0]));
    assert_eq!(p.step(3), Some(&p.steps[1]));
    assert_eq!(p.step(4), Some(&p.steps[0]));
    assert_eq!(p.step(6), None);
    let t = utc("2026-05-01T12:00Z");
    assert_eq!(p.next_due(0, t), Some((1, utc("2026-05-01T12:05Z"))));
    assert_eq!(
        p.next_due(1, t),
        Some((2, utc("2026-05-01T12:10Z"))),
        "the last step's wait is the pause between rounds"
    );
    assert_eq!(p.next_due(5, t), None);
    assert_eq!(p.next_due(9, t), None);
}

#[test]
fn policies_are_checked() {
    let cases: Vec<(Policy, &str)> = vec![
        (Policy { name: "p".into(), steps: vec![], repeat: 0 }, "steps: a policy needs at least one step"),
        (Policy { name: "".into(), steps: vec![step(&["user:a"], 60)], repeat: 0 }, "name: a policy needs a name"),
        (
            Policy { name: "p".into(), steps: vec![step(&["user:a"], 60), step(&[], 60)], repeat: 0 },
            "steps[1].notify: a step needs at least one target",
        ),
        (
            Policy { name: "p".into(), steps: vec![step(&["user:a"], 0), step(&["user:b"], 0)], repeat: 2 },
            "steps[1].wait: every step waits 0s, so repeat = 2 would page 6 times without a pause; give a step a wait",
        ),
        (Policy { name: "p".into(), steps: vec![step(&["user:a"], 60)], repeat: 101 }, "repeat: at most 100, not 101"),
    ];
    for (p, want) in cases {
        assert_eq!(p.check(), Err(want.to_string()), "{p:?}");
    }
    // Zero waits are fine without repeat (everyone at once), and with a pause somewhere.
    assert_eq!(Policy { name: "p".into(), steps: vec![step(&["user:a"], 0)], repeat: 0 }.check(), Ok(()));
    assert_eq!(
        Policy { name: "p".into(), steps: vec![step(&["user:a"], 0), step(&["user:b"], 60)], repeat: 3 }.check(),
        Ok(())
    );
}

#[test]
fn targets_parse() {
    for (text, want) in [
        ("schedule:ops", Target::Schedule("ops".into())),
        ("user:dave", Target::User("dave".into())),
        ("room:#ops", Target::Room("#ops".into())),
    ] {
        assert_eq!(Target::parse(text), Ok(want.clone()));
        assert_eq!(want.as_text(), text);
    }
    for bad in ["dave", "team:ops", "user:", ""] {
        assert_eq!(
            Target::parse(bad),
            Err(format!("expected a target \"schedule:NAME\", \"user:NAME\" or \"room:#ROOM\", not \"{bad}\""))
        );
    }
}
