//! Flags' launch plans and ramps: a plan replaced with its event (before and after), a ramp started (one
//! running per flag), claimed when its judgement is due (once across replicas), advanced or ended with its
//! events only while the claim is still the latest, and cancelled.

use crate::db::{query, Backend, Row};
use crate::{from_millis, to_millis, RampStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, NewEvent};

/// A flag's launch plan as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPlan {
    pub flag: String,
    /// The plan as JSON (the flags domain owns its shape).
    pub plan: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A ramp's state: `running` until it reaches its last step (`done`), the judge fails it (`failed`) or a person
/// cancels it (`cancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampStatus {
    Running,
    Done,
    Failed,
    Cancelled,
}

impl RampStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RampStatus::Running => "running",
            RampStatus::Done => "done",
            RampStatus::Failed => "failed",
            RampStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<RampStatus> {
        Ok(match s {
            "running" => RampStatus::Running,
            "done" => RampStatus::Done,
            "failed" => RampStatus::Failed,
            "cancelled" => RampStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("ramp status `{other}`"))),
        })
    }
}

/// A ramp to start.
#[derive(Debug, Clone)]
pub struct NewRamp {
    pub flag: String,
    /// The percents, in order; the first is live from the start.
    pub steps: Vec<u8>,
    pub every_ms: i64,
    pub reason: String,
    pub started_by: String,
    pub now: DateTime<Utc>,
}

/// A ramp as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    pub id: i64,
    pub flag: String,
    pub steps: Vec<u8>,
    pub every_ms: i64,
    /// The index in `steps` of the percent live now.
    pub step: i64,
    pub status: RampStatus,
    pub reason: String,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    /// When the live step began: the judge compares the variants from then.
    pub step_at: DateTime<Utc>,
    /// When the judge is next due; `None` once the ramp ended.
    pub due_at: Option<DateTime<Utc>>,
    /// How often it was claimed: an advance names the claim it decided on.
    pub claim: i64,
    /// The last verdict in short.
    pub last: Option<serde_json::Value>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Ramp {
    /// The percent live now.
    pub fn percent(&self) -> u8 {
        self.steps.get(self.step as usize).copied().unwrap_or(0)
    }
}

/// What a judged ramp becomes.
#[derive(Debug, Clone)]
pub struct RampAdvance {
    pub step: i64,
    pub status: RampStatus,
    pub step_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub last: Option<serde_json::Value>,
    pub events: Vec<NewEvent>,
}

const COLUMNS: &str =
    "id, flag, steps, every_ms, step, status, reason, started_by, started_ms, step_ms, due_ms, claim, \
                       last, ended_ms";

fn json(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn ramp(r: &Row) -> Result<Ramp> {
    let steps: String = r.try_get(2)?;
    let steps: Vec<u8> = serde_json::from_str(&steps).map_err(|e| StoreError::Corrupt(format!("ramp steps: {e}")))?;
    let status: String = r.try_get(5)?;
    let due: Option<i64> = r.try_get(10)?;
    let last: Option<String> = r.try_get(12)?;
    let ended: Option<i64> = r.try_get(13)?;
    Ok(Ramp {
        id: r.try_get(0)?,
        flag: r.try_get(1)?,
        steps,
        every_ms: r.try_get(3)?,
        step: r.try_get(4)?,
        status: RampStatus::parse(&status)?,
        reason: r.try_get(6)?,
        started_by: r.try_get(7)?,
        started_at: from_millis(r.try_get(8)?)?,
        step_at: from_millis(r.try_get(9)?)?,
        due_at: due.map(from_millis).transpose()?,
        claim: r.try_get(11)?,
        last: last.as_deref().map(|t| json(t, "ramp verdict")).transpose()?,
        ended_at: ended.map(from_millis).transpose()?,
    })
}

#[async_trait]
impl<B: Backend> RampStore for B {
    async fn flag_plan(&self, flag: &str) -> Result<Option<StoredPlan>> {
        let row = query("SELECT flag, plan, updated_ms, updated_by FROM flag_plans WHERE flag = $1")
            .bind(flag)
            .fetch_optional(self.reader())
            .await?;
        row.map(|r| {
            let plan: String = r.try_get(1)?;
            Ok(StoredPlan {
                flag: r.try_get(0)?,
                plan: json(&plan, "flag plan")?,
                updated_at: from_millis(r.try_get(2)?)?,
                updated_by: r.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn put_flag_plan(
        &self,
        flag: &str,
        plan: Option<serde_json::Value>,
        actor: &str,
        event: Box<dyn for<'b> FnOnce(Option<&'b serde_json::Value>) -> NewEvent + Send>,
    ) -> Result<(Option<serde_json::Value>, Event)> {
        let mut tx = self.begin_write().await?;
        tx.serialize_on(&format!("flag_plan:{flag}")).await?;
        let before: Option<String> =
            query("SELECT plan FROM flag_plans WHERE flag = $1").bind(flag).fetch_optional_scalar(&mut tx).await?;
        let before = before.as_deref().map(|t| json(t, "flag plan")).transpose()?;
        if plan.is_none() && before.is_none() {
            return Err(StoreError::NotFound(format!("flag `{flag}` has no launch plan")));
        }
        let stamped = crate::stamp(vec![event(before.as_ref())])?;
        query("DELETE FROM flag_plans WHERE flag = $1").bind(flag).execute(&mut tx).await?;
        if let Some(p) = &plan {
            query("INSERT INTO flag_plans (flag, plan, updated_ms, updated_by) VALUES ($1, $2, $3, $4)")
                .bind(flag)
                .bind(p.to_string())
                .bind(to_millis(Utc::now()))
                .bind(actor)
                .execute(&mut tx)
                .await?;
        }
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok((before, events.into_iter().next().expect("one event")))
    }

    async fn start_ramp(
        &self,
        n: NewRamp,
        event: Box<dyn for<'r> FnOnce(&'r Ramp) -> NewEvent + Send>,
    ) -> Result<(Ramp, Event)> {
        let mut tx = self.begin_write().await?;
        tx.serialize_on(&format!("flag_ramp:{}", n.flag)).await?;
        let running: Option<i64> = query("SELECT id FROM flag_ramps WHERE flag = $1 AND status = 'running'")
            .bind(&n.flag)
            .fetch_optional_scalar(&mut tx)
            .await?;
        if let Some(id) = running {
            return Err(StoreError::Conflict(format!(
                "flag `{}` is ramping already (ramp {id}): cancel it first (crew flag {} ramp cancel)",
                n.flag, n.flag
            )));
        }
        let now = to_millis(n.now);
        let steps = serde_json::to_string(&n.steps).expect("percents serialise");
        let id: i64 = query(
            "INSERT INTO flag_ramps (flag, steps, every_ms, step, status, reason, started_by, started_ms, step_ms, \
             due_ms, claim) VALUES ($1, $2, $3, 0, 'running', $4, $5, $6, $6, $7, 0) RETURNING id",
        )
        .bind(&n.flag)
        .bind(steps)
        .bind(n.every_ms)
        .bind(&n.reason)
        .bind(&n.started_by)
        .bind(now)
        .bind(now + n.every_ms)
        .fetch_scalar(&mut tx)
        .await?;
        let row = query(format!("SELECT {COLUMNS} FROM flag_ramps WHERE id = $1")).bind(id).fetch_one(&mut tx).await?;
        let r = ramp(&row)?;
        let events = tx.insert_events(crate::stamp(vec![event(&r)])?).await?;
        tx.commit(&events).await?;
        Ok((r, events.into_iter().next().expect("one event")))
    }

    async fn ramp(&self, id: i64) -> Result<Option<Ramp>> {
        let row = query(format!("SELECT {COLUMNS} FROM flag_ramps WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(ramp).transpose()
    }

    async fn ramps(&self, flag: &str, limit: u32) -> Result<Vec<Ramp>> {
        let rows = query(format!("SELECT {COLUMNS} FROM flag_ramps WHERE flag = $1 ORDER BY id DESC LIMIT $2"))
            .bind(flag)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(ramp).collect()
    }

    async fn claim_due_ramps(&self, now: DateTime<Utc>, lease: std::time::Duration, limit: u32) -> Result<Vec<Ramp>> {
        let mut tx = self.begin_write().await?;
        // As with escalations: on PostgreSQL a ramp another replica is claiming is skipped, not waited for, and
        // the claim pushes its due time on by the lease, so no other replica takes it while it is judged.
        let lock = match B::ENGINE {
            crate::Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Engine::Sqlite => "",
        };
        let rows = query(format!(
            "SELECT {COLUMNS} FROM flag_ramps WHERE status = 'running' AND due_ms IS NOT NULL AND due_ms <= $1 \
             ORDER BY due_ms, id LIMIT $2{lock}"
        ))
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(&mut tx)
        .await?;
        let mut out: Vec<Ramp> = rows.iter().map(ramp).collect::<Result<_>>()?;
        let until = to_millis(now) + lease.as_millis() as i64;
        for r in &mut out {
            query("UPDATE flag_ramps SET due_ms = $2, claim = claim + 1 WHERE id = $1")
                .bind(r.id)
                .bind(until)
                .execute(&mut tx)
                .await?;
            r.claim += 1;
            r.due_at = Some(from_millis(until)?);
        }
        tx.commit(&[]).await?;
        Ok(out)
    }

    async fn advance_ramp(&self, id: i64, claim: i64, a: RampAdvance) -> Result<(Ramp, Vec<Event>)> {
        let mut tx = self.begin_write().await?;
        let ended = (a.status != RampStatus::Running).then(|| to_millis(Utc::now()));
        let last = a.last.as_ref().map(|l| l.to_string());
        let changed = query(
            "UPDATE flag_ramps SET step = $3, status = $4, step_ms = $5, due_ms = $6, last = $7, ended_ms = $8 \
             WHERE id = $1 AND claim = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(claim)
        .bind(a.step)
        .bind(a.status.as_str())
        .bind(to_millis(a.step_at))
        .bind(a.due_at.map(to_millis))
        .bind(&last)
        .bind(ended)
        .execute(&mut tx)
        .await?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "ramp {id} was cancelled, ended or claimed again meanwhile: this judgement is not recorded"
            )));
        }
        let row = query(format!("SELECT {COLUMNS} FROM flag_ramps WHERE id = $1")).bind(id).fetch_one(&mut tx).await?;
        let r = ramp(&row)?;
        let events = tx.insert_events(crate::stamp(a.events)?).await?;
        tx.commit(&events).await?;
        Ok((r, events))
    }

    async fn cancel_ramp(
        &self,
        flag: &str,
        event: Box<dyn for<'r> FnOnce(&'r Ramp) -> NewEvent + Send>,
    ) -> Result<(Ramp, Event)> {
        let mut tx = self.begin_write().await?;
        let row = query(format!("SELECT {COLUMNS} FROM flag_ramps WHERE flag = $1 AND status = 'running'"))
            .bind(flag)
            .fetch_optional(&mut tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("flag `{flag}` has no running ramp")));
        };
        let r = ramp(&row)?;
        let changed =
            query("UPDATE flag_ramps SET status = 'cancelled', due_ms = NULL, ended_ms = $2 WHERE id = $1 AND status = 'running'")
                .bind(r.id)
                .bind(to_millis(Utc::now()))
                .execute(&mut tx)
                .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("flag `{flag}` has no running ramp")));
        }
        let row =
            query(format!("SELECT {COLUMNS} FROM flag_ramps WHERE id = $1")).bind(r.id).fetch_one(&mut tx).await?;
        let r = ramp(&row)?;
        let events = tx.insert_events(crate::stamp(vec![event(&r)])?).await?;
        tx.commit(&events).await?;
        Ok((r, events.into_iter().next().expect("one event")))
    }
}
