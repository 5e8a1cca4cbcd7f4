//! Where incidents come from besides people: Alertmanager's webhook (version 4: a group is one incident,
//! `groupKey` its key, `status: resolved` resolves it), PagerDuty's Events API v2 (trigger, acknowledge,
//! resolve by `dedup_key`), and crew's own alert rules (each `alert.fired` of a rule with an `escalation`).
//! The HTTP handlers answer a token of role `alert`.

use super::{Incidents, Trigger};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{parse_json, query_pairs, Created};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use crew_core::{kind, Actor, Event, Role, Severity, Via};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The caller of an integration: a token of role `alert` (or a member's, to try it by hand).
pub struct AlertSender(pub Caller);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AlertSender
where
    crate::auth::Auth: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Role::Alert)?;
        Ok(AlertSender(caller))
    }
}

/// An integration acknowledges and resolves only what it opened (a person's token may act on any).
fn owned(caller: &Caller, inc: &crew_store::Incident) -> Result<(), ApiError> {
    if caller.role == Role::Alert && inc.opened_by != caller.name {
        return Err(ApiError::Forbidden(format!(
            "incident #{} was opened by {}; {} may acknowledge or resolve only its own",
            inc.id, inc.opened_by, caller.name
        )));
    }
    Ok(())
}

/// Alertmanager's webhook body, version 4 (the fields crew reads; others are ignored, as Alertmanager adds
/// fields over time).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmWebhook {
    version: String,
    group_key: String,
    status: AmStatus,
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL", default)]
    external_url: String,
    alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum AmStatus {
    Firing,
    Resolved,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmAlert {
    status: AmStatus,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(rename = "generatorURL", default)]
    generator_url: String,
}

/// The most alerts one webhook call may carry (Alertmanager's `max_alerts` cuts a group to fit).
const MAX_ALERTS: usize = 1000;

fn severity_word(s: Option<&str>) -> Severity {
    match s.map(str::to_ascii_lowercase).as_deref() {
        Some("ticket" | "warning" | "warn" | "error") => Severity::Ticket,
        Some("info" | "informational" | "none") => Severity::Info,
        _ => Severity::Page,
    }
}

fn escalation_param(q: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut esc = None;
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "escalation" => esc = Some(v),
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`: expected escalation"))),
        }
    }
    Ok(esc)
}

/// `POST /api/v1/integrations/alertmanager?escalation=NAME`.
pub async fn alertmanager(
    AlertSender(caller): AlertSender,
    State(incidents): State<Incidents>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Created {
    let escalation = escalation_param(q.as_deref())?;
    let w: AmWebhook = parse_json(&body)?;
    if w.version != "4" {
        return Err(ApiError::BadRequest(format!(
            "`version`: \"{}\"; crew reads Alertmanager's webhook version 4",
            w.version
        )));
    }
    if w.group_key.is_empty() {
        return Err(ApiError::BadRequest("`groupKey`: empty".into()));
    }
    if w.alerts.len() > MAX_ALERTS {
        return Err(ApiError::BadRequest(format!("`alerts`: {} alerts; at most {MAX_ALERTS}", w.alerts.len())));
    }
    let key = format!("alertmanager:{}", w.group_key);
    let actor = caller.actor();
    if w.status == AmStatus::Resolved {
        return match incidents.open_by_key(&key).await? {
            Some(inc) => {
                owned(&caller, &inc)?;
                let inc = incidents.resolve(inc.id, Some("Alertmanager: resolved"), actor).await?;
                Ok((StatusCode::OK, Json(json!({"incident": inc.id, "status": inc.status}))))
            }
            None => Ok((StatusCode::OK, Json(json!({"incident": null, "status": "nothing open"})))),
        };
    }
    let firing: Vec<&AmAlert> = w.alerts.iter().filter(|a| a.status == AmStatus::Firing).collect();
    let name = w
        .group_labels
        .get("alertname")
        .or_else(|| w.common_labels.get("alertname"))
        .cloned()
        .unwrap_or_else(|| w.group_key.clone());
    let summary = w
        .common_annotations
        .get("summary")
        .cloned()
        .or_else(|| firing.first().and_then(|a| a.annotations.get("summary").cloned()))
        .unwrap_or_else(|| format!("{name} ({} firing)", firing.len()));
    let runbook = w.common_annotations.get("runbook_url").or_else(|| w.common_annotations.get("runbook")).cloned();
    let severity = severity_word(w.common_labels.get("severity").map(String::as_str));
    // One notification's identity: the same group with the same firing alerts, re-sent, is heard once.
    let mut ident: Vec<String> = firing.iter().map(|a| format!("{}@{}", a.fingerprint, a.starts_at)).collect();
    ident.sort();
    let source_id = format!("am:{}", crate::auth::hash_secret(&format!("{}|{}", w.group_key, ident.join(","))));
    let details = json!({
        "receiver": w.receiver, "group_labels": w.group_labels, "common_labels": w.common_labels,
        "common_annotations": w.common_annotations, "external_url": w.external_url,
        "alerts": firing.iter().take(50).map(|a| json!({
            "labels": a.labels, "annotations": a.annotations, "starts_at": a.starts_at,
            "generator_url": a.generator_url,
        })).collect::<Vec<_>>(),
    });
    if severity == Severity::Info {
        return Ok((StatusCode::ACCEPTED, Json(json!({"incident": null, "status": "recorded only (severity info)"}))));
    }
    let t = Trigger {
        key,
        summary,
        severity,
        source: "alertmanager",
        escalation,
        runbook,
        details,
        source_id: Some(source_id),
        drill: false,
    };
    let (inc, what) = incidents.trigger(t, actor).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"incident": inc.id, "status": inc.status, "result": what}))))
}

/// PagerDuty's Events API v2 body.
#[derive(Debug, Deserialize)]
struct PdEvent {
    #[serde(default)]
    routing_key: String,
    event_action: PdAction,
    dedup_key: Option<String>,
    payload: Option<PdPayload>,
    #[serde(default)]
    links: Vec<Value>,
    #[serde(default)]
    images: Vec<Value>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    client_url: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum PdAction {
    Trigger,
    Acknowledge,
    Resolve,
}

#[derive(Debug, Deserialize)]
struct PdPayload {
    summary: String,
    source: String,
    severity: PdSeverity,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    custom_details: Option<Value>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum PdSeverity {
    Critical,
    Error,
    Warning,
    Info,
}

/// `POST /api/v1/integrations/pagerduty/enqueue`: `routing_key` names the escalation policy (or
/// `?escalation=`).
pub async fn pagerduty(
    AlertSender(caller): AlertSender,
    State(incidents): State<Incidents>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Created {
    let escalation = escalation_param(q.as_deref())?;
    let ev: PdEvent = parse_json(&body)?;
    let actor = caller.actor();
    let _ = (&ev.links, &ev.images);
    match ev.event_action {
        PdAction::Trigger => {
            let p = ev.payload.ok_or_else(|| ApiError::BadRequest("`payload`: a trigger needs one".into()))?;
            if p.summary.trim().is_empty() || p.summary.len() > 1024 {
                return Err(ApiError::BadRequest("`payload.summary`: 1 to 1024 characters".into()));
            }
            let dedup = ev.dedup_key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let escalation = escalation.or_else(|| (!ev.routing_key.is_empty()).then(|| ev.routing_key.clone()));
            let severity = match p.severity {
                PdSeverity::Critical | PdSeverity::Error => Severity::Page,
                PdSeverity::Warning => Severity::Ticket,
                PdSeverity::Info => Severity::Info,
            };
            if severity == Severity::Info {
                return Ok((
                    StatusCode::ACCEPTED,
                    Json(json!({"status": "success", "message": "Event recorded (info)", "dedup_key": dedup})),
                ));
            }
            let t = Trigger {
                key: format!("pagerduty:{dedup}"),
                summary: p.summary,
                severity,
                source: "pagerduty",
                escalation,
                runbook: None,
                details: json!({
                    "source": p.source, "component": p.component, "group": p.group, "class": p.class,
                    "custom_details": p.custom_details, "timestamp": p.timestamp, "client": ev.client,
                    "client_url": ev.client_url,
                }),
                source_id: None,
                drill: false,
            };
            let (inc, _) = incidents.trigger(t, actor).await?;
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({"status": "success", "message": "Event processed", "dedup_key": dedup, "incident": inc.id}),
                ),
            ))
        }
        action => {
            let dedup = ev
                .dedup_key
                .ok_or_else(|| ApiError::BadRequest("`dedup_key`: acknowledge and resolve name the incident".into()))?;
            let key = format!("pagerduty:{dedup}");
            let Some(inc) = incidents.open_by_key(&key).await? else {
                return Err(ApiError::NotFound(format!("no open incident with dedup_key `{dedup}`")));
            };
            owned(&caller, &inc)?;
            if action == PdAction::Acknowledge {
                incidents.ack(inc.id, actor).await?;
            } else {
                incidents.resolve(inc.id, None, actor).await?;
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({"status": "success", "message": "Event processed", "dedup_key": dedup, "incident": inc.id}),
                ),
            ))
        }
    }
}

/// Opens incidents from crew's own alert rules: each `alert.fired` of a rule with an `escalation` (or a
/// `ticket` severity) triggers, its `alert.resolved` resolves. Every replica hears each event; the store adds
/// it once (its id is the source).
pub async fn follow_alerts(incidents: Incidents, mut bus: tokio::sync::broadcast::Receiver<Arc<Event>>) {
    use tokio::sync::broadcast::error::RecvError;
    let stop = incidents.platform.shutdown.clone();
    let rules = incidents.platform.settings.alerts.clone();
    if rules.is_empty() {
        return;
    }
    loop {
        let e = tokio::select! {
            _ = stop.cancelled() => return,
            e = bus.recv() => match e {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the incident follower fell behind the timeline");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if e.kind != kind::ALERT_FIRED && e.kind != kind::ALERT_RESOLVED {
            continue;
        }
        let (Some(name), Some(series)) = (e.data["alert"].as_str(), e.data["series"].as_str()) else { continue };
        let Some(rule) = rules.iter().find(|r| r.name == name) else { continue };
        if rule.severity == Severity::Info || (rule.escalation.is_none() && rule.severity == Severity::Page) {
            continue;
        }
        let key = format!("alert:{name}:{series}");
        let actor = Actor::new("crew", Via::Scheduler);
        let result = if e.kind == kind::ALERT_FIRED {
            let t = Trigger {
                key,
                summary: e.summary.clone(),
                severity: rule.severity,
                source: "alert",
                escalation: rule.escalation.clone(),
                runbook: rule.runbook.clone(),
                details: json!({"alert": name, "series": series, "event": e.id, "value": e.data["value"],
                                "threshold": e.data["threshold"], "stat": e.data["stat"], "op": e.data["op"]}),
                source_id: Some(format!("event:{}", e.id)),
                drill: false,
            };
            incidents.trigger(t, actor).await.map(|_| ())
        } else {
            match incidents.open_by_key(&key).await {
                Ok(Some(inc)) => incidents.resolve(inc.id, Some("the alert resolved"), actor).await.map(|_| ()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => {}
            // Another replica resolved it first.
            Err(ApiError::Conflict(_)) => {}
            Err(err) => tracing::warn!(error = %err, alert = name, "an alert did not reach its incident"),
        }
    }
}

/// Pages whoever answers for a change the judge failed: a deploy's author when its canary was switched back or
/// held (`deploy.judged` with `page`), a flag's plan owner when a ramp step failed (`flag.judged` with `page`).
/// Someone crew.toml's `[people]` does not know gets a ticket (recorded, not paged). Every replica hears each
/// verdict; the store opens the incident once (the event is its source).
pub async fn follow_verdicts(incidents: Incidents, mut bus: tokio::sync::broadcast::Receiver<Arc<Event>>) {
    use tokio::sync::broadcast::error::RecvError;
    let stop = incidents.platform.shutdown.clone();
    loop {
        let e = tokio::select! {
            _ = stop.cancelled() => return,
            e = bus.recv() => match e {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the verdict follower fell behind the timeline");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if !(e.kind == kind::DEPLOY_JUDGED || e.kind == kind::FLAG_JUDGED) || e.data["page"] != json!(true) {
            continue;
        }
        let (who, key) = if e.kind == kind::DEPLOY_JUDGED {
            let Some(id) = e.data["deploy"].as_i64() else { continue };
            (e.data["deployer"].as_str(), format!("judge:deploy:{id}"))
        } else {
            let Some(flag) = e.data["flag"].as_str() else { continue };
            let step = e.data["ramp"].as_i64().unwrap_or_default();
            (e.data["owner"].as_str(), format!("judge:flag:{flag}:{step}"))
        };
        let Some(who) = who.map(str::to_string) else { continue };
        let t = Trigger {
            key,
            summary: e.summary.clone(),
            severity: Severity::Page,
            source: "judge",
            escalation: None,
            runbook: e.data["runbook"].as_str().map(str::to_string),
            details: json!({"event": e.id, "verdict": e.data["verdict"], "why": e.data["why"]}),
            source_id: Some(format!("event:{}", e.id)),
            drill: false,
        };
        let actor = Actor::new("crew", Via::Scheduler);
        let result = if incidents.oncall.person(&who).is_some() {
            incidents.trigger_to(t, &who, actor).await
        } else {
            tracing::warn!(person = %who, "the judge failed their change but [people] does not know them: a ticket");
            incidents.trigger(Trigger { severity: Severity::Ticket, ..t }, actor).await
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, event = %e.id, "a failed verdict did not reach its incident");
        }
    }
}
