//! Escalation policies and their timing, as a pure state machine the server's worker drives.
//!
//! # Semantics
//!
//! - A policy's steps fire in order, then again `repeat` more times while nobody acknowledges: the firing
//!   order is the steps × (repeat + 1), and [`Policy::step`] indexes that flattened list.
//! - After step `k` fires, step `k + 1` is due `steps[k].wait` later, measured from when step `k` actually
//!   fired (a late worker gives the person the whole wait, it doesn't page twice in a row). So the wait of the
//!   last step is the pause before the next round; after the last step of the last round the policy is
//!   exhausted and nothing is due.
//! - A step that reaches nobody (its targets resolve to no person and no room) is reported with
//!   `reached: false` and the next step is due at once, at the same instant, so one [`Escalation::fire`] may
//!   fire several steps; a step with a zero wait does the same.
//! - [`Escalation::ack`] stops it: nothing is due any more. [`Escalation::rearm`] (an acknowledgement that
//!   timed out) starts it over: step 0 is due at that instant.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The largest `repeat` [`Policy::check`] accepts.
pub const MAX_REPEAT: u32 = 100;

/// Whom a step notifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Whoever is on call on that schedule.
    Schedule(String),
    User(String),
    /// A chat room, `#ops`.
    Room(String),
}

impl Target {
    /// `"schedule:ops"`, `"user:dave"` or `"room:#ops"`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let expected = || format!("expected a target \"schedule:NAME\", \"user:NAME\" or \"room:#ROOM\", not \"{s}\"");
        let (kind, name) = s.trim().split_once(':').ok_or_else(expected)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(expected());
        }
        match kind.trim() {
            "schedule" => Ok(Target::Schedule(name.into())),
            "user" => Ok(Target::User(name.into())),
            "room" => Ok(Target::Room(name.into())),
            _ => Err(expected()),
        }
    }

    /// The text [`Target::parse`] reads back.
    pub fn as_text(&self) -> String {
        match self {
            Target::Schedule(n) => format!("schedule:{n}"),
            Target::User(n) => format!("user:{n}"),
            Target::Room(n) => format!("room:{n}"),
        }
    }
}

/// Notify these, then wait before the next step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub notify: Vec<Target>,
    pub wait_secs: u64,
}

impl Step {
    /// The wait as a duration (saturating at chrono's range).
    pub fn wait(&self) -> Duration {
        Duration::try_seconds(i64::try_from(self.wait_secs).unwrap_or(i64::MAX)).unwrap_or(Duration::MAX)
    }
}

/// A named escalation policy, snapshotted onto an incident when it triggers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub steps: Vec<Step>,
    /// Run the steps again this many times while nobody acknowledges.
    pub repeat: u32,
}

impl Policy {
    /// What a configuration must get right; each message starts with the key it is about.
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name: a policy needs a name".into());
        }
        if self.steps.is_empty() {
            return Err("steps: a policy needs at least one step".into());
        }
        if let Some(i) = self.steps.iter().position(|s| s.notify.is_empty()) {
            return Err(format!("steps[{i}].notify: a step needs at least one target"));
        }
        if self.repeat > MAX_REPEAT {
            return Err(format!("repeat: at most {MAX_REPEAT}, not {}", self.repeat));
        }
        if self.repeat > 0 && self.steps.iter().all(|s| s.wait_secs == 0) {
            let last = self.steps.len() - 1;
            return Err(format!(
                "steps[{last}].wait: every step waits 0s, so repeat = {} would page {} times without a pause; \
                 give a step a wait",
                self.repeat,
                self.len()
            ));
        }
        Ok(())
    }

    /// The steps in firing order: steps × (repeat + 1). Step k of that flattened list.
    pub fn step(&self, k: usize) -> Option<&Step> {
        if k < self.len() {
            self.steps.get(k % self.steps.len())
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.steps.len().saturating_mul(self.repeat as usize + 1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// After step k fired at `fired_at`: the next step's index and when it is due, or None when the policy is exhausted.
    pub fn next_due(&self, k: usize, fired_at: DateTime<Utc>) -> Option<(usize, DateTime<Utc>)> {
        let step = self.step(k)?;
        let next = k + 1;
        if next >= self.len() {
            return None;
        }
        Some((next, fired_at.checked_add_signed(step.wait()).unwrap_or(DateTime::<Utc>::MAX_UTC)))
    }
}

/// A step that [`Escalation::fire`] fired.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// Its index in the firing order ([`Policy::step`]).
    pub index: usize,
    pub step: Step,
    /// Whether its targets resolved to at least one person or room.
    pub reached: bool,
}

/// A pure escalation state machine, for the tests and for the server's worker. Serialisable, so a worker can
/// keep it with the incident and another can take it over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    policy: Policy,
    /// The index (in firing order) of the step due next.
    next: usize,
    due: Option<DateTime<Utc>>,
    acked: bool,
}

impl Escalation {
    /// Step 0 due at `triggered_at`.
    pub fn start(policy: Policy, triggered_at: DateTime<Utc>) -> Escalation {
        let due = if policy.is_empty() { None } else { Some(triggered_at) };
        Escalation { policy, next: 0, due, acked: false }
    }

    /// A state as it was kept: `next` is the index of the step due next, `due` when.
    pub fn restore(policy: Policy, next: usize, due: Option<DateTime<Utc>>, acked: bool) -> Escalation {
        let due = due.filter(|_| next < policy.len());
        Escalation { policy, next, due, acked }
    }

    /// When the next step is due; `None` once acknowledged or exhausted.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        if self.acked {
            None
        } else {
            self.due
        }
    }

    /// The index (in firing order) of the step due next.
    pub fn next_index(&self) -> usize {
        self.next
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn is_acked(&self) -> bool {
        self.acked
    }

    /// Every step fired and nothing acknowledged.
    pub fn is_exhausted(&self) -> bool {
        !self.acked && self.due.is_none()
    }

    /// Fires every step due at `now`. `reaches(step)` says whether the step's targets resolve to at least one
    /// person/room; a step reaching nobody is reported with `reached: false` and the next step becomes due at
    /// once (same `now`), so one call may fire several steps. Returns the fired steps.
    pub fn fire(&mut self, now: DateTime<Utc>, mut reaches: impl FnMut(&Step) -> bool) -> Vec<Fired> {
        let mut fired = Vec::new();
        while let Some(due) = self.due() {
            if due > now {
                break;
            }
            let Some(step) = self.policy.step(self.next) else {
                self.due = None;
                break;
            };
            let reached = reaches(step);
            fired.push(Fired { index: self.next, step: step.clone(), reached });
            match self.policy.next_due(self.next, now) {
                Some((k, at)) => {
                    self.next = k;
                    self.due = Some(if reached { at } else { now });
                }
                None => {
                    self.next = self.policy.len();
                    self.due = None;
                }
            }
        }
        fired
    }

    /// Acknowledged: nothing is due any more.
    pub fn ack(&mut self) {
        self.acked = true;
    }

    /// The acknowledgement timed out: step 0 is due at `now` again.
    pub fn rearm(&mut self, now: DateTime<Utc>) {
        self.acked = false;
        self.next = 0;
        self.due = if self.policy.is_empty() { None } else { Some(now) };
    }
}
