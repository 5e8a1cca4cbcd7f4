//! Flag ramps: a flag moved through percentage rollouts (`1,5,25,50,100`), each step judged after `every`
//! against the control — the series the application tagged `flag_KEY:on` against those tagged `flag_KEY:off`
//! — by the launch plan's watch. Pass: the next step; fail: the plan's contingency (`off` switches the flag
//! off, both page the owner); no data or marginal: hold and judge again an interval later. Ramps are stored
//! with their next due time, and the worker here claims the due ones from the store (once across replicas),
//! so a ramp survives a restart and runs on one replica at a time.

use super::plan::Plan;
use super::Flags;
use crate::error::ApiError;
use crate::feedback::Side;
use crew_core::{kind, Actor, NewEvent, Via};
use crew_flags::knobs::{self, Knob};
use crew_judge::{JudgeConfig, Verdict};
use crew_store::{NewRamp, Ramp, RampAdvance, RampStatus};
use serde_json::{json, Value};
use std::time::Duration;

/// How long a claim keeps other replicas off a ramp while it is judged; a replica that died mid-judgement
/// leaves it to the next claim after this.
pub const LEASE: Duration = Duration::from_secs(30);

/// At most this many steps in a ramp.
pub const MAX_STEPS: usize = 20;

/// The longest interval between steps.
pub const MAX_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Percents as typed: `1,5,25,50,100` (a trailing `%` allowed).
pub fn parse_steps_text(text: &str) -> Result<Vec<i64>, String> {
    text.split(',')
        .map(|s| {
            let s = s.trim();
            s.trim_end_matches('%')
                .parse::<i64>()
                .map_err(|_| format!("steps: `{}` is not a percent (steps are like 1,5,25,50,100)", s.escape_debug()))
        })
        .collect()
}

/// The steps, checked: each a percent from 1 to 100, each higher than the one before, at most [`MAX_STEPS`].
pub fn check_steps(steps: &[i64]) -> Result<Vec<u8>, String> {
    if steps.is_empty() {
        return Err("steps: name at least one percent, like 1,5,25,50,100".into());
    }
    if steps.len() > MAX_STEPS {
        return Err(format!("steps: at most {MAX_STEPS} ({} given)", steps.len()));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, &p) in steps.iter().enumerate() {
        if !(1..=100).contains(&p) {
            return Err(format!("steps[{i}]: `{p}` is not a percent from 1 to 100"));
        }
        if let Some(&before) = out.last() {
            if p <= i64::from(before) {
                return Err(format!(
                    "steps[{i}]: {p} after {before}: each step must be higher than the one before (in order, increasing)"
                ));
            }
        }
        out.push(p as u8);
    }
    Ok(out)
}

/// The interval between steps: a duration (`10m`) no shorter than the metrics flush interval (the judge would
/// see no new point) and at most a week.
pub fn parse_every(text: &str, flush: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| format!("every: `{}` is not a duration like 10m or 30s", text.escape_debug()))?;
    if d < flush {
        return Err(format!(
            "every: {} is under the metrics flush interval ({}): the judge would see no new point",
            humantime::format_duration(d),
            humantime::format_duration(flush)
        ));
    }
    if d > MAX_EVERY {
        return Err(format!("every: {} is over a week", humantime::format_duration(d)));
    }
    Ok(d)
}

/// A ramp as the API shows it.
pub fn ramp_json(r: &Ramp) -> Value {
    let rfc = crew_core::time::rfc3339;
    json!({
        "id": r.id,
        "flag": r.flag,
        "steps": r.steps,
        "every": humantime::format_duration(Duration::from_millis(r.every_ms.max(0) as u64)).to_string(),
        "step": r.step + 1,
        "percent": r.percent(),
        "status": r.status.as_str(),
        "reason": r.reason,
        "started_by": r.started_by,
        "started_at": rfc(r.started_at),
        "step_at": rfc(r.step_at),
        "due_at": r.due_at.map(rfc),
        "ended_at": r.ended_at.map(rfc),
        "last": r.last,
        "tag": crew_flags::tag_key(&r.flag),
    })
}

/// The robot's and the scheduler's actor for the steps the ramp takes by itself.
fn scheduler() -> Actor {
    Actor::new("crew", Via::Scheduler)
}

/// What one judgement decided.
struct Decision {
    action: &'static str,
    status: RampStatus,
    /// The step (index) live after it.
    step: i64,
    knob: Option<Knob>,
    page: bool,
    note: String,
}

impl Flags {
    /// Starts a ramp: the flag must exist and have a launch plan with watch series; the first step goes live at
    /// once (a `flag.changed`), and the judge is due `every` later. Returns the ramp and warnings (watched series
    /// crew has never received).
    pub async fn start_ramp(
        &self,
        key: &str,
        steps: &[i64],
        every: &str,
        reason: &str,
        actor: Actor,
    ) -> Result<(Ramp, Vec<String>), ApiError> {
        super::check_key(key)?;
        let steps = check_steps(steps).map_err(ApiError::BadRequest)?;
        let every = parse_every(every, self.config.flush).map_err(ApiError::BadRequest)?;
        super::check_reason(reason)?;
        if !self.store.flags().await?.iter().any(|f| f.key == key) {
            return Err(ApiError::NotFound(format!("no flag `{key}` to ramp")));
        }
        let plan = self.plan_of(key).await?;
        let plan = match plan {
            Some(p) if !p.watch.is_empty() => p,
            Some(_) => {
                return Err(ApiError::Conflict(format!(
                    "flag `{key}`'s launch plan watches no series: a ramp is judged on the plan's [[watch]] series; \
                     add some (crew flag {key} plan --file plan.toml)"
                )))
            }
            None => {
                return Err(ApiError::Conflict(format!(
                    "flag `{key}` has no launch plan: a ramp is judged on the plan's [[watch]] series \
                     (crew flag {key} plan --file plan.toml)"
                )))
            }
        };
        let warnings = self.unseen_warnings(&plan);
        let n = NewRamp {
            flag: key.to_string(),
            steps: steps.clone(),
            every_ms: every.as_millis() as i64,
            reason: reason.to_string(),
            started_by: actor.name.clone(),
            now: chrono::Utc::now(),
        };
        let (a, why, every_s) = (actor.clone(), reason.to_string(), humantime::format_duration(every).to_string());
        let list = steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(", ");
        let event = Box::new(move |r: &Ramp| {
            let summary =
                format!("{} started ramp {} of flag {}: {list}, every {every_s} ({why})", a.name, r.id, r.flag);
            NewEvent::new(
                a,
                kind::FLAG_RAMP,
                &format!("flag:{}", r.flag),
                summary.chars().take(480).collect::<String>(),
            )
            .with_data(json!({"flag": r.flag, "ramp": r.id, "steps": r.steps, "every": every_s, "reason": why,
                                  "owner": plan.owner}))
            .with_link("flag", &format!("/flags/{}", r.flag))
        });
        let (ramp, _) = self.store.start_ramp(n, event).await?;
        let why = format!("ramp {} step 1/{}: {reason}", ramp.id, steps.len());
        if let Err(e) = self.turn(key, &Knob::Rollout(steps[0]), true, &why, actor).await {
            // The first step could not go live: the ramp does not run.
            let note = e.to_string();
            let _ = self.store.cancel_ramp(key, cancelled_event(key, format!("its first step failed: {note}"))).await;
            return Err(e);
        }
        Ok((ramp, warnings))
    }

    /// The flag's newest ramp (running or ended).
    pub async fn ramp(&self, key: &str) -> Result<Ramp, ApiError> {
        super::check_key(key)?;
        self.store
            .ramps(key, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::NotFound(format!("flag `{key}` has never been ramped")))
    }

    /// Cancels the flag's running ramp: the flag stays where it is.
    pub async fn cancel_ramp(&self, key: &str, reason: &str, actor: Actor) -> Result<Ramp, ApiError> {
        super::check_key(key)?;
        super::check_reason(reason)?;
        let (name, why, k) = (actor.name.clone(), reason.to_string(), key.to_string());
        let event = Box::new(move |r: &Ramp| {
            let summary = format!("{name} cancelled ramp {} of flag {k} at {}% ({why})", r.id, r.percent());
            NewEvent::new(
                actor,
                kind::FLAG_RAMP_CANCELLED,
                &format!("flag:{k}"),
                summary.chars().take(480).collect::<String>(),
            )
            .with_data(json!({"flag": k, "ramp": r.id, "percent": r.percent(), "reason": why}))
            .with_link("flag", &format!("/flags/{k}"))
        });
        Ok(self.store.cancel_ramp(key, event).await?.0)
    }

    /// The ramp worker's turn: claims the due ramps and judges each.
    pub async fn tick_ramps(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, ApiError> {
        let claimed = self.store.claim_due_ramps(now, LEASE, 20).await?;
        let n = claimed.len();
        for r in claimed {
            let (id, flag) = (r.id, r.flag.clone());
            if let Err(e) = self.judge_ramp(r, now).await {
                tracing::warn!(error = %e, ramp = id, flag = %flag, "judging a ramp's step failed; it is judged again after its lease");
            }
        }
        Ok(n)
    }

    /// Judges a claimed ramp's live step, acts on the verdict, and records it with the next deadline.
    async fn judge_ramp(&self, r: Ramp, now: chrono::DateTime<chrono::Utc>) -> Result<(), ApiError> {
        let key = r.flag.clone();
        let flags = self.store.flags().await?;
        let Some(current) = flags.into_iter().find(|f| f.key == key).map(|f| f.definition) else {
            let event = cancelled_event(&key, "the flag was removed".into());
            // A cancel by a person meanwhile is fine too.
            let _ = self.store.cancel_ramp(&key, event).await;
            return Ok(());
        };
        let plan = self.plan_of(&key).await.unwrap_or(None);
        let percent = r.percent();
        let last_step = r.step as usize + 1 >= r.steps.len();
        let every = chrono::Duration::milliseconds(r.every_ms);
        let (verdict, decision) = match plan.as_ref().filter(|p| !p.watch.is_empty()) {
            None => (
                None,
                Decision {
                    action: "hold",
                    status: RampStatus::Running,
                    step: r.step,
                    knob: None,
                    page: false,
                    note: format!("the flag has no launch plan with watch series any more: holding at {percent}%"),
                },
            ),
            Some(plan) => {
                let tag = crew_flags::tag_key(&key);
                let side = |variant: &str| Side {
                    tag: Some((tag.clone(), vec![variant.to_string()])),
                    from: r.step_at.timestamp_millis(),
                    to: now.timestamp_millis(),
                };
                let v = self.feedback.judge(&plan.watch, &side("on"), &side("off"), &JudgeConfig::default()).await?;
                let d = decide(&r, plan, v.judgement.verdict, last_step);
                (Some(v), d)
            }
        };
        if let Some(knob) = &decision.knob {
            // Idempotent: a judgement taken over after a crash does not change the flag twice.
            if knobs::apply(Some(&current), knob).ok().as_ref() != Some(&current) {
                let why = match knob {
                    Knob::Off => format!("ramp {}: the judge failed it at {percent}%", r.id),
                    _ => {
                        format!("ramp {} step {}/{}: judged pass at {percent}%", r.id, decision.step + 1, r.steps.len())
                    }
                };
                self.turn(&key, knob, true, &why, scheduler()).await?;
            }
        }
        let (verdict_s, score, why, metrics, unseen) = match &verdict {
            Some(v) => (
                v.judgement.verdict.as_str(),
                json!(v.judgement.score),
                v.judgement.why.clone(),
                json!(v.judgement.metrics),
                json!(v.unseen),
            ),
            None => (Verdict::NoData.as_str(), Value::Null, decision.note.clone(), json!([]), json!([])),
        };
        let owner = plan.as_ref().map(|p| p.owner.clone());
        let runbook = plan.as_ref().and_then(|p| p.runbook.clone());
        let paged = if decision.page {
            owner.as_deref().map(|o| format!(", {o} paged")).unwrap_or_default()
        } else {
            String::new()
        };
        let summary = format!(
            "judge: flag {key} ramp {} at {percent}%: {verdict_s}{} — {why} → {}{paged}",
            r.id,
            verdict.as_ref().and_then(|v| v.judgement.score).map(|s| format!(" (score {s:.0})")).unwrap_or_default(),
            decision.note,
        );
        let summary: String = summary.chars().filter(|c| !c.is_control()).take(480).collect();
        let event = NewEvent::new(Actor::system(), kind::FLAG_JUDGED, &format!("flag:{key}"), summary)
            .with_data(json!({
                "flag": key, "ramp": r.id, "step": r.step + 1, "percent": percent, "verdict": verdict_s,
                "score": score, "why": why, "metrics": metrics, "unseen": unseen, "action": decision.action,
                "page": decision.page, "owner": owner, "runbook": runbook,
                "contingency": plan.as_ref().map(|p| p.contingency.clone()),
                "next_percent": r.steps.get(decision.step as usize).copied().filter(|_| decision.step != r.step),
            }))
            .with_link("flag", &format!("/flags/{key}"));
        let moved = decision.step != r.step;
        let advance = RampAdvance {
            step: decision.step,
            status: decision.status,
            step_at: if moved { now } else { r.step_at },
            due_at: (decision.status == RampStatus::Running).then(|| now + every),
            last: Some(json!({"verdict": verdict_s, "why": why, "action": decision.action, "percent": percent,
                              "at": crew_core::time::rfc3339(now), "note": decision.note})),
            events: vec![event],
        };
        self.store.advance_ramp(r.id, r.claim, advance).await?;
        Ok(())
    }

    /// Warnings for a plan: the watched series crew has never received.
    pub(super) fn unseen_warnings(&self, plan: &Plan) -> Vec<String> {
        self.feedback
            .unseen(&plan.watch)
            .into_iter()
            .map(|s| {
                format!("watch: crew has never received `{s}` (a typo, or no application sends it yet): no data = hold")
            })
            .collect()
    }
}

/// What a verdict does to a ramp at its step.
fn decide(r: &Ramp, plan: &Plan, verdict: Verdict, last_step: bool) -> Decision {
    let percent = r.percent();
    let hold = |note: String| Decision {
        action: "hold",
        status: RampStatus::Running,
        step: r.step,
        knob: None,
        page: false,
        note,
    };
    match verdict {
        Verdict::Pass if last_step => Decision {
            action: "done",
            status: RampStatus::Done,
            step: r.step,
            knob: None,
            page: false,
            note: format!("the ramp is done at {percent}%"),
        },
        Verdict::Pass => {
            let next = r.steps[r.step as usize + 1];
            Decision {
                action: "next",
                status: RampStatus::Running,
                step: r.step + 1,
                knob: Some(Knob::Rollout(next)),
                page: false,
                note: format!("on to {next}%"),
            }
        }
        Verdict::NoData => hold(format!("no data: holding at {percent}%, judged again in an interval")),
        Verdict::Marginal => hold(format!("marginal: holding at {percent}%, judged again in an interval")),
        Verdict::Fail if plan.contingency == "off" => Decision {
            action: "off",
            status: RampStatus::Failed,
            step: r.step,
            knob: Some(Knob::Off),
            page: true,
            note: "switched off (contingency off)".into(),
        },
        Verdict::Fail => Decision {
            action: "hold",
            status: RampStatus::Failed,
            step: r.step,
            knob: None,
            page: true,
            note: format!("the ramp stops and the flag stays at {percent}% (contingency page)"),
        },
    }
}

/// The event of a ramp cancelled by crew itself.
fn cancelled_event(key: &str, why: String) -> Box<dyn for<'r> FnOnce(&'r Ramp) -> NewEvent + Send> {
    let k = key.to_string();
    Box::new(move |r: &Ramp| {
        let summary = format!("ramp {} of flag {k} cancelled: {why}", r.id);
        NewEvent::new(
            Actor::system(),
            kind::FLAG_RAMP_CANCELLED,
            &format!("flag:{k}"),
            summary.chars().take(480).collect::<String>(),
        )
        .with_data(json!({"flag": k, "ramp": r.id, "percent": r.percent(), "reason": why}))
    })
}

/// The ramp worker: every second, the due ramps of every flag, claimed from the store.
pub async fn run(flags: Flags, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        if let Err(e) = flags.tick_ramps(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "the ramp worker failed a turn");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_intervals_name_what_is_wrong() {
        assert_eq!(check_steps(&parse_steps_text("1,5,25%,50,100").unwrap()).unwrap(), vec![1, 5, 25, 50, 100]);
        for (text, says) in [
            ("0,5", "steps[0]: `0` is not a percent from 1 to 100"),
            ("5,101", "steps[1]: `101` is not a percent from 1 to 100"),
            ("5,25,10", "steps[2]: 10 after 25: each step must be higher"),
            ("5,5", "steps[1]: 5 after 5"),
            ("-3", "steps[0]: `-3`"),
        ] {
            let e = check_steps(&parse_steps_text(text).unwrap()).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(parse_steps_text("1,x").unwrap_err().starts_with("steps: `x`"));
        assert!(check_steps(&[]).unwrap_err().starts_with("steps:"));
        let flush = Duration::from_secs(10);
        assert_eq!(parse_every("10m", flush).unwrap(), Duration::from_secs(600));
        assert!(parse_every("5s", flush)
            .unwrap_err()
            .starts_with("every: 5s is under the metrics flush interval (10s)"));
        assert!(parse_every("soon", flush).unwrap_err().starts_with("every: `soon` is not a duration"));
        assert!(parse_every("30d", flush).unwrap_err().starts_with("every:"));
    }
}
