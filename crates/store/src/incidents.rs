//! Incidents: their records (deduplicated by key, reopened within a window), acknowledgements and resolutions,
//! and the due escalation steps, claimed by one replica at a time.

use crate::db::{query, Backend, Row};
use crate::{from_millis, to_millis, IncidentStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crew_core::{Event, IncidentStatus, NewEvent, Severity};
use serde::Serialize;

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// Its number: `#12`.
    pub id: i64,
    pub key: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub summary: String,
    /// Where it came from: `alert`, `alertmanager`, `pagerduty`, `person`, `drill`.
    pub source: String,
    pub escalation: Option<String>,
    /// The escalation policy as it was at trigger (a JSON object), if it pages.
    #[serde(skip)]
    pub policy: Option<serde_json::Value>,
    /// The next step of the policy to fire.
    pub step: i64,
    /// When that step is due (or, acknowledged, when the acknowledgement times out).
    #[serde(serialize_with = "crate::deploys::rfc3339_opt")]
    pub due_at: Option<DateTime<Utc>>,
    pub runbook: Option<String>,
    /// The labels and annotations of what raised it.
    pub details: serde_json::Value,
    pub opened_by: String,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub triggered_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::deploys::rfc3339_opt")]
    pub acked_at: Option<DateTime<Utc>>,
    pub acked_by: Option<String>,
    #[serde(serialize_with = "crate::deploys::rfc3339_opt")]
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    /// How many alerts joined it (the first included).
    pub alerts: i64,
    /// A practice incident of a fire drill.
    pub drill: bool,
}

/// An incident about to be opened (or to join / reopen one with the same key).
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub key: String,
    pub severity: Severity,
    pub summary: String,
    pub source: String,
    pub escalation: Option<String>,
    pub policy: Option<serde_json::Value>,
    pub runbook: Option<String>,
    pub details: serde_json::Value,
    pub opened_by: String,
    /// The event or notification that raised it, when it has an identity: heard twice, it is added once.
    pub source_id: Option<String>,
    pub drill: bool,
}

/// An incident's postmortem as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Postmortem {
    pub incident: i64,
    pub state: crew_core::PostmortemState,
    pub markdown: String,
    pub updated_by: String,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

fn postmortem_row(r: &Row) -> Result<Postmortem> {
    let state: String = r.try_get(1)?;
    Ok(Postmortem {
        incident: r.try_get(0)?,
        state: state.parse().map_err(|e: String| StoreError::Corrupt(format!("postmortem state: {e}")))?,
        markdown: r.try_get(2)?,
        updated_by: r.try_get(3)?,
        updated_at: from_millis(r.try_get(4)?)?,
    })
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Triggered {
    /// A new incident.
    Opened,
    /// The same key was open: the alert joined it.
    Joined,
    /// The same key was resolved within the reopen window: it is open again and escalates from the start.
    Reopened,
    /// This source was already heard: nothing changed.
    Duplicate,
}

/// What a due incident becomes, decided by the caller from the incident as claimed.
#[derive(Debug, Clone)]
pub struct Advance {
    pub status: IncidentStatus,
    pub step: i64,
    pub due_at: Option<DateTime<Utc>>,
    pub events: Vec<NewEvent>,
}

const COLUMNS: &str =
    "id, key, status, severity, summary, source, escalation, policy, step, due_ms, runbook, details, \
                       opened_by, triggered_ms, acked_ms, acked_by, resolved_ms, resolved_by, alerts, drill";

fn incident(r: &Row) -> Result<Incident> {
    let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("incident {what}: {e}"));
    let status: String = r.try_get(2)?;
    let severity: String = r.try_get(3)?;
    let policy: Option<String> = r.try_get(7)?;
    let details: String = r.try_get(11)?;
    let opt_time =
        |i: usize| -> Result<Option<DateTime<Utc>>> { r.try_get::<Option<i64>>(i)?.map(from_millis).transpose() };
    Ok(Incident {
        id: r.try_get(0)?,
        key: r.try_get(1)?,
        status: status.parse().map_err(|e| corrupt("status", e))?,
        severity: severity.parse().map_err(|e| corrupt("severity", e))?,
        summary: r.try_get(4)?,
        source: r.try_get(5)?,
        escalation: r.try_get(6)?,
        policy: policy.map(|p| serde_json::from_str(&p).map_err(|e| corrupt("policy", e.to_string()))).transpose()?,
        step: r.try_get(8)?,
        due_at: opt_time(9)?,
        runbook: r.try_get(10)?,
        details: serde_json::from_str(&details).map_err(|e| corrupt("details", e.to_string()))?,
        opened_by: r.try_get(12)?,
        triggered_at: from_millis(r.try_get(13)?)?,
        acked_at: opt_time(14)?,
        acked_by: r.try_get(15)?,
        resolved_at: opt_time(16)?,
        resolved_by: r.try_get(17)?,
        alerts: r.try_get(18)?,
        drill: r.try_get::<i64>(19)? != 0,
    })
}

async fn one<'c>(on: impl Into<crate::db::Conn<'c>>, id: i64) -> Result<Option<Incident>> {
    query(format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"))
        .bind(id)
        .fetch_optional(on)
        .await?
        .as_ref()
        .map(incident)
        .transpose()
}

fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(to_millis)
}

#[async_trait]
impl<B: Backend> IncidentStore for B {
    async fn trigger_incident(
        &self,
        n: NewIncident,
        now: DateTime<Utc>,
        reopen_within: std::time::Duration,
        event: Box<dyn for<'i> FnOnce(&'i Incident, Triggered) -> Vec<NewEvent> + Send>,
    ) -> Result<(Incident, Triggered, Vec<Event>)> {
        let mut tx = self.begin_write().await?;
        tx.serialize_on(&format!("incident:{}", n.key)).await?;
        let now_ms = to_millis(now);
        if let Some(src) = &n.source_id {
            let seen: Option<i64> = query("SELECT incident_id FROM incident_sources WHERE source_id = $1")
                .bind(src.as_str())
                .fetch_optional_scalar(&mut tx)
                .await?;
            if let Some(id) = seen {
                let inc = one(&mut tx, id).await?.ok_or_else(|| StoreError::Corrupt(format!("incident {id}")))?;
                tx.commit(&[]).await?;
                return Ok((inc, Triggered::Duplicate, vec![]));
            }
        }
        let newest = query(format!("SELECT {COLUMNS} FROM incidents WHERE key = $1 ORDER BY id DESC LIMIT 1"))
            .bind(n.key.as_str())
            .fetch_optional(&mut tx)
            .await?
            .as_ref()
            .map(incident)
            .transpose()?;
        let policy_text = n.policy.as_ref().map(|p| p.to_string());
        let window = i64::try_from(reopen_within.as_millis()).unwrap_or(i64::MAX / 2);
        let pages = n.severity == crew_core::Severity::Page && n.policy.is_some();
        let due = pages.then_some(now_ms);
        let (id, what) = match newest {
            Some(old) if old.status != IncidentStatus::Resolved => {
                query("UPDATE incidents SET alerts = alerts + 1 WHERE id = $1").bind(old.id).execute(&mut tx).await?;
                // A page joining an incident that does not page (a ticket, or one without a policy) makes it
                // page: a ticket opened first must never silence the page that follows.
                if pages && old.severity != crew_core::Severity::Page && old.status == IncidentStatus::Triggered {
                    query(
                        "UPDATE incidents SET severity = 'page', policy = $2, escalation = $3, step = 0, due_ms = $4 \
                         WHERE id = $1",
                    )
                    .bind(old.id)
                    .bind(&policy_text)
                    .bind(n.escalation.as_deref())
                    .bind(now_ms)
                    .execute(&mut tx)
                    .await?;
                }
                (old.id, Triggered::Joined)
            }
            Some(old) if old.resolved_at.is_some_and(|r| now_ms - to_millis(r) <= window) => {
                // Reopened: it escalates again from its first step, with the policy of today.
                query(
                    "UPDATE incidents SET status = 'triggered', step = 0, due_ms = $2, acked_ms = NULL, \
                     acked_by = NULL, resolved_ms = NULL, resolved_by = NULL, alerts = alerts + 1, policy = $3, \
                     escalation = $4 WHERE id = $1",
                )
                .bind(old.id)
                .bind(due)
                .bind(&policy_text)
                .bind(n.escalation.as_deref())
                .execute(&mut tx)
                .await?;
                (old.id, Triggered::Reopened)
            }
            _ => {
                let id: i64 = query(
                    "INSERT INTO incidents (key, status, severity, summary, source, escalation, policy, step, \
                     due_ms, runbook, details, opened_by, triggered_ms, drill) \
                     VALUES ($1, 'triggered', $2, $3, $4, $5, $6, 0, $7, $8, $9, $10, $11, $12) RETURNING id",
                )
                .bind(n.key.as_str())
                .bind(n.severity.as_str())
                .bind(n.summary.as_str())
                .bind(n.source.as_str())
                .bind(n.escalation.as_deref())
                .bind(&policy_text)
                .bind(due)
                .bind(n.runbook.as_deref())
                .bind(n.details.to_string())
                .bind(n.opened_by.as_str())
                .bind(now_ms)
                .bind(i64::from(n.drill))
                .fetch_scalar(&mut tx)
                .await?;
                (id, Triggered::Opened)
            }
        };
        if let Some(src) = &n.source_id {
            query("INSERT INTO incident_sources (source_id, incident_id) VALUES ($1, $2)")
                .bind(src.as_str())
                .bind(id)
                .execute(&mut tx)
                .await?;
        }
        let inc = one(&mut tx, id).await?.ok_or_else(|| StoreError::Corrupt(format!("incident {id}")))?;
        let stamped = crate::stamp(event(&inc, what))?;
        let events = tx.insert_events(stamped).await?;
        tx.commit(&events).await?;
        Ok((inc, what, events))
    }

    async fn ack_incident(
        &self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
        ack_until: Option<DateTime<Utc>>,
        event: Box<dyn for<'i> FnOnce(&'i Incident) -> NewEvent + Send>,
    ) -> Result<(Incident, Event)> {
        let mut tx = self.begin_write().await?;
        let before = one(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound(format!("no incident #{id}")))?;
        match before.status {
            IncidentStatus::Resolved => {
                return Err(StoreError::Conflict(format!("incident #{id} is resolved already")));
            }
            IncidentStatus::Acknowledged => {
                let by = before.acked_by.as_deref().unwrap_or("someone");
                return Err(StoreError::Conflict(format!("incident #{id} is acknowledged already, by {by}")));
            }
            IncidentStatus::Triggered => {}
        }
        // Conditional on its state: a step claimed at the same moment either fired before or sees the ack.
        let changed = query(
            "UPDATE incidents SET status = 'acknowledged', acked_ms = $2, acked_by = $3, due_ms = $4, step = 0 \
             WHERE id = $1 AND status = 'triggered'",
        )
        .bind(id)
        .bind(to_millis(now))
        .bind(actor)
        .bind(opt_ms(ack_until))
        .execute(&mut tx)
        .await?;
        if changed != 1 {
            return Err(StoreError::Conflict(format!("incident #{id} changed just now; look again")));
        }
        let inc = one(&mut tx, id).await?.ok_or_else(|| StoreError::Corrupt(format!("incident {id}")))?;
        let events = tx.insert_events(crate::stamp(vec![event(&inc)])?).await?;
        tx.commit(&events).await?;
        Ok((inc, events.into_iter().next().expect("one event")))
    }

    async fn resolve_incident(
        &self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
        event: Box<dyn for<'i> FnOnce(&'i Incident) -> NewEvent + Send>,
    ) -> Result<(Incident, Event)> {
        let mut tx = self.begin_write().await?;
        let changed = query(
            "UPDATE incidents SET status = 'resolved', resolved_ms = $2, resolved_by = $3, due_ms = NULL \
             WHERE id = $1 AND status <> 'resolved'",
        )
        .bind(id)
        .bind(to_millis(now))
        .bind(actor)
        .execute(&mut tx)
        .await?;
        let inc = one(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound(format!("no incident #{id}")))?;
        if changed != 1 {
            return Err(StoreError::Conflict(format!("incident #{id} is resolved already")));
        }
        let events = tx.insert_events(crate::stamp(vec![event(&inc)])?).await?;
        tx.commit(&events).await?;
        Ok((inc, events.into_iter().next().expect("one event")))
    }

    async fn note_incident(&self, id: i64, event: NewEvent) -> Result<Event> {
        let mut tx = self.begin_write().await?;
        if one(&mut tx, id).await?.is_none() {
            return Err(StoreError::NotFound(format!("no incident #{id}")));
        }
        let events = tx.insert_events(crate::stamp(vec![event])?).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next().expect("one event"))
    }

    async fn incident(&self, id: i64) -> Result<Option<Incident>> {
        one(self.reader(), id).await
    }

    async fn incidents(&self, open_only: bool, limit: u32) -> Result<Vec<Incident>> {
        // Open ones first (newest first), then the rest, newest first.
        let filter = if open_only { "WHERE status <> 'resolved'" } else { "" };
        let rows = query(format!(
            "SELECT {COLUMNS} FROM incidents {filter} \
             ORDER BY CASE WHEN status = 'resolved' THEN 1 ELSE 0 END, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(incident).collect()
    }

    async fn incident_by_key(&self, key: &str) -> Result<Option<Incident>> {
        query(format!("SELECT {COLUMNS} FROM incidents WHERE key = $1 ORDER BY id DESC LIMIT 1"))
            .bind(key)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(incident)
            .transpose()
    }

    async fn open_incidents_by(&self, opened_by: &str) -> Result<i64> {
        Ok(query("SELECT COUNT(*) FROM incidents WHERE opened_by = $1 AND status <> 'resolved'")
            .bind(opened_by)
            .fetch_scalar(self.reader())
            .await?)
    }

    async fn mark_source(&self, source_id: &str, incident: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = query(
            "INSERT INTO incident_sources (source_id, incident_id) VALUES ($1, $2) ON CONFLICT (source_id) DO NOTHING",
        )
        .bind(source_id)
        .bind(incident)
        .execute(&mut tx)
        .await?;
        tx.commit(&[]).await?;
        Ok(n == 1)
    }

    async fn put_postmortem(
        &self,
        id: i64,
        state: crew_core::PostmortemState,
        markdown: &str,
        actor: &str,
        allowed: Box<
            dyn for<'p> FnOnce(Option<&'p Postmortem>) -> std::result::Result<Option<NewEvent>, String> + Send,
        >,
    ) -> Result<Option<Event>> {
        let mut tx = self.begin_write().await?;
        if one(&mut tx, id).await?.is_none() {
            return Err(StoreError::NotFound(format!("no incident #{id}")));
        }
        let before = query(
            "SELECT incident_id, state, markdown, updated_by, updated_ms FROM postmortems WHERE incident_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .as_ref()
        .map(postmortem_row)
        .transpose()?;
        let Some(event) = allowed(before.as_ref()).map_err(StoreError::Conflict)? else {
            tx.commit(&[]).await?;
            return Ok(None);
        };
        query(
            "INSERT INTO postmortems (incident_id, state, markdown, updated_by, updated_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (incident_id) DO UPDATE SET state = excluded.state, markdown = excluded.markdown, \
             updated_by = excluded.updated_by, updated_ms = excluded.updated_ms",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(markdown)
        .bind(actor)
        .bind(to_millis(Utc::now()))
        .execute(&mut tx)
        .await?;
        let events = tx.insert_events(crate::stamp(vec![event])?).await?;
        tx.commit(&events).await?;
        Ok(events.into_iter().next())
    }

    async fn postmortem(&self, id: i64) -> Result<Option<Postmortem>> {
        query("SELECT incident_id, state, markdown, updated_by, updated_ms FROM postmortems WHERE incident_id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(postmortem_row)
            .transpose()
    }

    async fn server_secret(&self, name: &str, fresh: &str) -> Result<String> {
        let mut tx = self.begin_write().await?;
        query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh)
            .execute(&mut tx)
            .await?;
        let v: String =
            query("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_scalar(&mut tx).await?;
        tx.commit(&[]).await?;
        Ok(v)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        decide: Box<dyn for<'i> Fn(&'i Incident) -> Advance + Send + Sync>,
    ) -> Result<Vec<(Incident, Advance, Vec<Event>)>> {
        let mut tx = self.begin_write().await?;
        // On PostgreSQL a row another replica is deciding is skipped, not waited for: each due step is claimed
        // by one replica, and its new due time is committed with its events before anyone sees it again.
        let lock = match B::ENGINE {
            crate::Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Engine::Sqlite => "",
        };
        let rows = query(format!(
            "SELECT {COLUMNS} FROM incidents WHERE due_ms IS NOT NULL AND due_ms <= $1 AND status <> 'resolved' \
             ORDER BY due_ms, id LIMIT $2{lock}"
        ))
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(&mut tx)
        .await?;
        let claimed: Vec<Incident> = rows.iter().map(incident).collect::<Result<_>>()?;
        let mut out = Vec::new();
        let mut all_events = Vec::new();
        for inc in claimed {
            let adv = decide(&inc);
            // An acknowledgement that timed out is undone: the incident is nobody's again (its events keep it).
            let rearmed = inc.status == IncidentStatus::Acknowledged && adv.status == IncidentStatus::Triggered;
            let sql = if rearmed {
                "UPDATE incidents SET status = $2, step = $3, due_ms = $4, acked_ms = NULL, acked_by = NULL WHERE id = $1"
            } else {
                "UPDATE incidents SET status = $2, step = $3, due_ms = $4 WHERE id = $1"
            };
            query(sql)
                .bind(inc.id)
                .bind(adv.status.as_str())
                .bind(adv.step)
                .bind(opt_ms(adv.due_at))
                .execute(&mut tx)
                .await?;
            let events = tx.insert_events(crate::stamp(adv.events.clone())?).await?;
            all_events.extend(events.iter().cloned());
            out.push((inc, adv, events));
        }
        tx.commit(&all_events).await?;
        Ok(out)
    }
}
