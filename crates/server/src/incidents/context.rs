//! What changed just before an incident: crew's own deploys, flag changes, infra applies and drift, and locks
//! in `[triggered − context, triggered]`, newest first, each with how long before the trigger it happened and
//! its undo (roll this deploy back; switch this flag back to its definition before the change). The undo runs
//! through the deploys' and flags' own services and is recorded on the incident.

use super::{subject, Incidents};
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use crew_core::{kind, Actor, DeployStatus, Event, EventFilter, NewEvent};
use serde::Serialize;
use serde_json::{json, Value};

/// One change in an incident's window.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The change's event on the timeline.
    pub event: String,
    pub kind: String,
    pub at: String,
    pub before_seconds: i64,
    pub actor: String,
    pub summary: String,
    /// For deploys: the environment, the deploy, its commit range and message.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
}

/// How to undo a change, one click or one command away.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Undo {
    /// Roll the environment back to the deploy live before this one.
    Rollback { environment: String, to: i64, command: String },
    /// Put the flag's definition back as it was before the change (`None`: the flag did not exist).
    FlagRevert { key: String, command: String },
}

/// The kinds that count as crew's own changes.
const CHANGES: &[&str] = &[
    kind::DEPLOY_FINISHED,
    kind::DEPLOY_ROLLED_BACK,
    kind::FLAG_CHANGED,
    kind::INFRA_APPLIED,
    kind::INFRA_DRIFT,
    kind::LOCK_TAKEN,
];

/// The most events of the window read, and the most changes listed.
const MAX_SCANNED: usize = 20_000;
const MAX_CHANGES: usize = 500;

/// The changes among `events` in [at − window, at], newest first: the one rule of what an incident's context is.
pub fn select(events: &[Event], at: DateTime<Utc>, window: chrono::Duration) -> Vec<&Event> {
    let from = at - window;
    let mut out: Vec<&Event> =
        events.iter().filter(|e| e.at >= from && e.at <= at && CHANGES.contains(&e.kind.as_str())).collect();
    out.sort_by(|a, b| b.at.cmp(&a.at).then(b.seq.cmp(&a.seq)));
    out
}

impl Incidents {
    /// The changes in the `context` window before `at`, newest first.
    pub async fn changes_before(&self, at: DateTime<Utc>, incident: Option<i64>) -> Result<Vec<Change>, ApiError> {
        let window =
            chrono::Duration::from_std(self.oncall.config.context).unwrap_or_else(|_| chrono::Duration::minutes(30));
        // One query per area of change, so a window full of other events (notes, pages) is not read at all.
        let mut events = Vec::new();
        for area in [kind::DEPLOY, kind::FLAG, kind::INFRA, kind::LOCK] {
            let mut f = EventFilter::new();
            f.kind = Some(area.to_string());
            f.since = Some(at - window);
            // `until` is exclusive: the trigger's own instant is in the window.
            f.until = Some(at + chrono::Duration::milliseconds(1));
            events.extend(self.timeline.query_all(&f, MAX_SCANNED).await?);
        }
        let mut out = Vec::new();
        for e in select(&events, at, window).into_iter().take(MAX_CHANGES) {
            out.push(self.change(e, at, incident).await);
        }
        Ok(out)
    }

    async fn change(&self, e: &Event, at: DateTime<Utc>, incident: Option<i64>) -> Change {
        let mut detail = Value::Null;
        let mut undo = None;
        if e.kind == kind::DEPLOY_FINISHED || e.kind == kind::DEPLOY_ROLLED_BACK {
            if let Some(id) = e.data["deploy"].as_i64() {
                if let Ok(d) = self.deploys.get(id).await {
                    detail = json!({
                        "deploy": d.id, "environment": d.environment, "action": d.action,
                        "from": d.previous, "to": d.revision, "commits": d.commits, "message": d.message,
                        "author": d.actor, "status": d.status,
                    });
                    // The deploy live before this one, to go back to.
                    if let Ok(list) = self.deploys.list(Some(&d.environment), 200).await {
                        let before = list.iter().find(|x| x.id < d.id && x.status == DeployStatus::Succeeded);
                        if let Some(b) = before.filter(|b| b.revision != d.revision) {
                            undo = Some(Undo::Rollback {
                                environment: d.environment.clone(),
                                to: b.id,
                                command: format!("crew rollback {} --to {}", d.environment, b.id),
                            });
                        }
                    }
                }
            }
        } else if e.kind == kind::FLAG_CHANGED {
            if let Some(key) = e.data["flag"].as_str() {
                detail = json!({"flag": key, "before": e.data["before"], "after": e.data["after"], "reason": e.data["reason"]});
                let command = match incident {
                    Some(i) => format!("crew incident undo {i} {}", e.id),
                    None => format!("crew flags: put {key} back by hand"),
                };
                undo = Some(Undo::FlagRevert { key: key.to_string(), command });
            }
        }
        Change {
            event: e.id.clone(),
            kind: e.kind.clone(),
            at: crew_core::time::rfc3339(e.at),
            before_seconds: (at - e.at).num_seconds().max(0),
            actor: e.actor.name.clone(),
            summary: e.summary.clone(),
            detail,
            undo,
        }
    }

    /// Undoes one change of an incident's window (a deploy rolled back, a flag switched back) and records it on
    /// the incident.
    pub async fn undo(&self, id: i64, event: &str, actor: Actor) -> Result<Value, ApiError> {
        let inc = self.get(id).await?;
        let changes = self.changes_before(inc.triggered_at, Some(id)).await?;
        let Some(change) = changes.into_iter().find(|c| c.event == event) else {
            return Err(ApiError::NotFound(format!("no change {event} in the window before incident #{id}")));
        };
        let (what, result) = match &change.undo {
            None => return Err(ApiError::BadRequest(format!("{} has no undo", change.summary))),
            Some(Undo::Rollback { environment, to, .. }) => {
                let d = self.deploys.rollback(environment, Some(*to), actor.clone()).await?;
                (
                    format!("rolled {environment} back to #{to} (rollback #{})", d.id),
                    json!({"rollback": d.id, "environment": environment, "to": to}),
                )
            }
            Some(Undo::FlagRevert { key, .. }) => {
                let before = change.detail["before"].clone();
                let definition = (!before.is_null()).then_some(before);
                let reason = format!("undo from incident #{id}");
                self.flags.change(key, definition, &reason, actor.clone()).await?;
                (format!("switched {key} back to before the change"), json!({"flag": key}))
            }
        };
        let e =
            NewEvent::new(actor.clone(), kind::INCIDENT_UNDO, &subject(id), format!("#{id}: {} {what}", actor.name))
                .with_data(json!({"incident": id, "change": change.event, "undo": result}))
                .with_link("incident", &format!("/incidents/{id}"));
        self.store.note_incident(id, e).await?;
        Ok(result)
    }
}

impl Incidents {
    /// A rollback started elsewhere (`!rollback production` in chat) undoes a deploy listed before an open
    /// incident: record it on each such incident.
    pub async fn rolled_back(&self, environment: &str, rollback: i64, actor: &Actor) -> Result<usize, ApiError> {
        let mut n = 0;
        for inc in self.list(true, 50).await? {
            let changes = self.changes_before(inc.triggered_at, Some(inc.id)).await?;
            let Some(c) = changes.iter().find(|c| c.detail["environment"].as_str() == Some(environment)) else {
                continue;
            };
            let e = NewEvent::new(
                actor.clone(),
                kind::INCIDENT_UNDO,
                &subject(inc.id),
                format!("#{}: {} rolled {environment} back (rollback #{rollback})", inc.id, actor.name),
            )
            .with_data(json!({"incident": inc.id, "change": c.event, "undo": {"rollback": rollback, "environment": environment}}))
            .with_link("incident", &format!("/incidents/{}", inc.id));
            self.store.note_incident(inc.id, e).await?;
            n += 1;
        }
        Ok(n)
    }
}

/// `3m20s before`.
pub fn before_text(secs: i64) -> String {
    format!("{} before", super::human_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crew_core::Via;

    fn event(seq: i64, kind: &str, at_ms: i64) -> Event {
        Event {
            id: format!("e{seq}"),
            seq,
            at: DateTime::from_timestamp_millis(at_ms).unwrap(),
            actor: Actor::new("a", Via::Api),
            kind: kind.into(),
            subject: "s".into(),
            summary: "x".into(),
            data: serde_json::Value::Null,
            links: vec![],
        }
    }

    #[test]
    fn the_window_is_exactly_from_the_context_to_the_trigger() {
        let at = DateTime::from_timestamp_millis(10_000_000).unwrap();
        let w = chrono::Duration::minutes(30);
        let start = 10_000_000 - 30 * 60_000;
        let table = [
            (kind::DEPLOY_FINISHED, start - 1, false),
            (kind::DEPLOY_FINISHED, start, true),
            (kind::FLAG_CHANGED, start + 1, true),
            (kind::LOCK_TAKEN, 9_999_999, true),
            (kind::INFRA_APPLIED, 10_000_000, true),
            (kind::INFRA_DRIFT, 10_000_001, false),
            (kind::DEPLOY_STARTED, 9_000_000, false),
            (kind::ALERT_FIRED, 9_000_000, false),
            ("note", 9_000_000, false),
            (kind::DEPLOY_ROLLED_BACK, 9_500_000, true),
        ];
        let events: Vec<Event> = table.iter().enumerate().map(|(i, (k, t, _))| event(i as i64, k, *t)).collect();
        let got: Vec<&str> = select(&events, at, w).iter().map(|e| e.id.as_str()).collect();
        let mut want: Vec<(i64, String)> =
            table.iter().enumerate().filter(|(_, r)| r.2).map(|(i, r)| (r.1, format!("e{i}"))).collect();
        want.sort_by_key(|w| std::cmp::Reverse(w.0));
        assert_eq!(got, want.iter().map(|w| w.1.as_str()).collect::<Vec<_>>());
    }

    #[test]
    fn generated_timelines_list_exactly_their_window_newest_first() {
        // A small PRNG (no new dependency): generated timelines of every kind around the window.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let kinds = [
            kind::DEPLOY_FINISHED,
            kind::DEPLOY_STARTED,
            kind::FLAG_CHANGED,
            kind::LOCK_TAKEN,
            kind::LOCK_RELEASED,
            kind::INFRA_APPLIED,
            kind::INFRA_DRIFT,
            kind::ALERT_FIRED,
            kind::DEPLOY_ROLLED_BACK,
            "note",
        ];
        for round in 0..300 {
            let at_ms = 1_000_000_000 + (next() % 1_000_000) as i64;
            let w_ms = 1 + (next() % 3_600_000) as i64;
            let n = (next() % 60) as usize;
            let events: Vec<Event> = (0..n)
                .map(|i| {
                    let t = at_ms - 2 * w_ms + (next() % (3 * w_ms as u64 + 1)) as i64;
                    event(i as i64, kinds[(next() % kinds.len() as u64) as usize], t)
                })
                .collect();
            let at = DateTime::from_timestamp_millis(at_ms).unwrap();
            let got = select(&events, at, chrono::Duration::milliseconds(w_ms));
            let change = |k: &str| {
                k.starts_with("deploy.f")
                    || k == kind::DEPLOY_ROLLED_BACK
                    || k == kind::FLAG_CHANGED
                    || k == kind::LOCK_TAKEN
                    || k.starts_with("infra.")
            };
            let expected = events.iter().filter(|e| {
                let t = e.at.timestamp_millis();
                t >= at_ms - w_ms && t <= at_ms && change(&e.kind)
            });
            assert_eq!(got.len(), expected.count(), "round {round}");
            assert!(got.windows(2).all(|p| p[0].at >= p[1].at), "round {round}: newest first");
            assert!(got.iter().all(|e| change(&e.kind)), "round {round}");
        }
    }
}
