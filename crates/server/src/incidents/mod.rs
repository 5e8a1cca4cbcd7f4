//! The incidents domain: open (from crew's alert rules, Alertmanager, PagerDuty-shaped senders and people),
//! deduplicate by key, acknowledge, resolve, note; and the escalation worker, which fires due steps from
//! stored deadlines (claimed once across replicas) and hands the notifications to `notify.rs`. Nobody is
//! paged after an acknowledgement; one that times out starts the escalation again.

pub mod api;
pub mod context;
pub mod integrations;
pub mod notify;
pub mod postmortem;
pub mod web;

use crate::error::ApiError;
use crate::oncall::{Oncall, Recipient};
use crate::state::Platform;
use crate::timeline::Timeline;
use chrono::{DateTime, Utc};
use crew_core::{kind, Actor, Event, EventFilter, IncidentStatus, NewEvent, Severity, Via};
use crew_oncall::escalation::Policy;
use crew_store::{Advance, Incident, NewIncident, Store, Triggered};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// The incidents service.
#[derive(Clone)]
pub struct Incidents {
    store: Arc<dyn Store>,
    timeline: Timeline,
    pub oncall: Oncall,
    notifier: notify::Notifier,
    platform: Platform,
    deploys: crate::deploys::Deploys,
    flags: crate::flags::Flags,
    runbooks: crate::runbooks::Runbooks,
    chat: crate::chat::Chat,
    metrics: crate::metrics::Metrics,
}

/// The other domains' services the incidents service calls.
pub struct Peers {
    pub chat: crate::chat::Chat,
    pub deploys: crate::deploys::Deploys,
    pub flags: crate::flags::Flags,
    pub runbooks: crate::runbooks::Runbooks,
    pub metrics: crate::metrics::Metrics,
}

/// A deploy's author to page before the escalation: which deploy, how long before, and the environment and
/// series when its watch names the alert's series.
#[derive(Debug, Clone)]
struct Deployer {
    author: String,
    deploy: i64,
    before: i64,
    watched: Option<(String, String)>,
}

/// What opens an incident.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Deduplication: the same key joins the open incident.
    pub key: String,
    pub summary: String,
    pub severity: Severity,
    pub source: &'static str,
    pub escalation: Option<String>,
    pub runbook: Option<String>,
    pub details: serde_json::Value,
    pub source_id: Option<String>,
    pub drill: bool,
}

/// An incident with what people look at: its times to acknowledge and resolve, and its own timeline.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    /// Seconds from trigger to acknowledgement (or to resolution when nobody acknowledged).
    pub tta_seconds: Option<i64>,
    pub ttr_seconds: Option<i64>,
    pub url: String,
    pub runbook_url: Option<String>,
    /// crew's own changes in the window before it, newest first, each with its undo.
    pub changes: Vec<context::Change>,
    /// Every event about it, oldest first: triggered, escalated, notified, acknowledged, notes, resolved.
    pub timeline: Vec<Event>,
}

/// An incident's number as people write it (`12`, `#12`); anything else is no incident.
pub fn incident_id(id: &str) -> Result<i64, ApiError> {
    id.trim_start_matches('#')
        .parse()
        .ok()
        .filter(|n: &i64| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no incident `{id}`")))
}

pub fn subject(id: i64) -> String {
    format!("incident:{id}")
}

/// The longest summary kept; longer ones are cut (an alert's text is not ours to refuse).
const SUMMARY_MAX: usize = 300;
/// The most bytes of `details` (labels, annotations, custom details) an incident keeps.
const DETAILS_MAX: usize = 16 * 1024;
/// Open incidents one sender may have before the rest fold into one `overflow:` incident.
const OPEN_PER_SENDER: i64 = 1000;

fn clip(s: &str, max: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let t = one_line.trim();
    if t.len() <= max {
        return t.to_string();
    }
    let mut end = max;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &t[..end])
}

impl Incidents {
    pub fn new(p: &Platform, timeline: Timeline, oncall: Oncall, peers: Peers) -> Self {
        let Peers { chat, deploys, flags, runbooks, metrics } = peers;
        let notifier = notify::Notifier::new(p, timeline.clone(), chat.clone());
        Incidents {
            store: p.store.clone(),
            timeline,
            oncall,
            notifier,
            platform: p.clone(),
            deploys,
            flags,
            runbooks,
            chat,
            metrics,
        }
    }

    /// The server's own URL, as links use it.
    pub fn base_url(&self) -> String {
        self.platform.base_url()
    }

    fn policy(&self, name: &str) -> Result<&Policy, ApiError> {
        self.oncall.config.escalations.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.oncall.config.escalations.keys().map(String::as_str).collect();
            ApiError::BadRequest(format!(
                "no escalation policy `{name}`{}",
                if known.is_empty() {
                    "; crew.toml has no [[escalations]]".to_string()
                } else {
                    format!(": policies are {}", known.join(", "))
                }
            ))
        })
    }

    /// Opens an incident that pages one person (`!page alice ...`): a one-step policy made for it.
    pub async fn trigger_to(&self, t: Trigger, person: &str, actor: Actor) -> Result<(Incident, Triggered), ApiError> {
        if self.oncall.person(person).is_none() {
            return Err(ApiError::BadRequest(format!("no person `{person}` in crew.toml's [people]")));
        }
        let policy = Policy {
            name: format!("user:{person}"),
            steps: vec![crew_oncall::escalation::Step {
                notify: vec![crew_oncall::escalation::Target::User(person.to_string())],
                wait_secs: 600,
            }],
            repeat: 2,
        };
        self.trigger_with(t, Some(policy), actor).await
    }

    /// Opens an incident (or joins / reopens the one with the same key). A `page` with an escalation pages at
    /// once; `ticket` opens without paging; `info` only records (no incident).
    pub async fn trigger(&self, t: Trigger, actor: Actor) -> Result<(Incident, Triggered), ApiError> {
        let policy = match &t.escalation {
            Some(name) => Some(self.policy(name)?.clone()),
            None => None,
        };
        self.trigger_with(t, policy, actor).await
    }

    async fn trigger_with(
        &self,
        t: Trigger,
        policy: Option<Policy>,
        actor: Actor,
    ) -> Result<(Incident, Triggered), ApiError> {
        let mut t = t;
        if t.key.trim().is_empty() {
            return Err(ApiError::BadRequest("`key`: empty".into()));
        }
        // A long key (Alertmanager's group keys grow with its routes) is kept by its digest, never refused:
        // refusing it would lose the page.
        if t.key.len() > 200 {
            let (area, _) = t.key.split_once(':').unwrap_or(("key", ""));
            t.key = format!("{area}:sha256:{}", crate::auth::hash_secret(&t.key));
        }
        // What raised it is kept, but bounded: a list of incidents must never carry megabytes.
        let size = t.details.to_string().len();
        if size > DETAILS_MAX {
            t.details = json!({"truncated": true, "bytes": size});
        }
        // Whether this opens an incident (no open one has its key): only then does crew look for what changed
        // before it and count the sender's open incidents, so a stream of repeats stays cheap.
        let opening = self.store.incident_by_key(&t.key).await?.is_none_or(|i| i.status == IncidentStatus::Resolved);
        // A flood of distinct keys from one sender becomes one incident that pages once and counts the rest.
        if opening && self.store.open_incidents_by(&actor.name).await? >= OPEN_PER_SENDER {
            t.key = format!("overflow:{}", actor.name);
            t.summary = format!(
                "{} opened more than {OPEN_PER_SENDER} incidents at once; the latest: {}",
                actor.name, t.summary
            );
            t.source_id = None;
        }
        let summary = clip(&t.summary, SUMMARY_MAX);
        if summary.is_empty() {
            return Err(ApiError::BadRequest("`summary`: say what is wrong".into()));
        }
        let drill = t.drill;
        // What crew changed just before: listed on the first announcement; a deploy's author is paged first.
        let changes = if t.severity == Severity::Info || !opening {
            vec![]
        } else {
            self.changes_before(Utc::now(), None).await?
        };
        let brief: Vec<serde_json::Value> = changes
            .iter()
            .take(10)
            .map(
                |c| json!({"kind": c.kind, "summary": c.summary, "before_seconds": c.before_seconds, "event": c.event}),
            )
            .collect();
        let after = changes.first().map(|c| {
            let what = c
                .detail
                .get("deploy")
                .and_then(|d| d.as_i64())
                .map(|d| format!("deploy #{d}"))
                .unwrap_or_else(|| c.kind.clone());
            format!(
                " — {} {} before{}",
                what,
                human_secs(c.before_seconds),
                if changes.len() > 1 { format!(" (+{} more changes)", changes.len() - 1) } else { String::new() }
            )
        });
        // The deployer first: the author of the newest deploy in the window whose environment's watch names the
        // alert's series (whatever the alert's severity), else, for a page, the author of the newest deploy.
        let series = if t.source == "alert" { t.details.get("series").and_then(|s| s.as_str()) } else { None };
        let watched = series.and_then(|s| self.watching_deploy(&changes, s));
        let deployer = watched.clone().or_else(|| {
            changes.iter().find_map(|c| {
                let author = c.detail.get("author")?.as_str()?;
                self.oncall.person(author)?;
                Some(Deployer {
                    author: author.to_string(),
                    deploy: c.detail["deploy"].as_i64().unwrap_or_default(),
                    before: c.before_seconds,
                    watched: None,
                })
            })
        });
        let n = NewIncident {
            key: t.key.clone(),
            severity: t.severity,
            summary: summary.clone(),
            source: t.source.to_string(),
            escalation: t.escalation.clone(),
            policy: policy.as_ref().map(|p| serde_json::to_value(p).expect("a policy serialises")),
            runbook: t.runbook.clone(),
            details: t.details.clone(),
            opened_by: actor.name.clone(),
            source_id: t.source_id.clone(),
            drill,
        };
        let base = self.platform.base_url();
        let a = actor.clone();
        let runbook = t.runbook.clone();
        let (inc, what, _) = self
            .store
            .trigger_incident(
                n,
                Utc::now(),
                self.oncall.config.reopen,
                Box::new(move |inc: &Incident, what: Triggered| {
                    let tag = if inc.drill { "DRILL " } else { "" };
                    let (k, line) = match what {
                        Triggered::Opened => (
                            kind::INCIDENT_TRIGGERED,
                            format!(
                                "{tag}#{} triggered [{}]: {}{}",
                                inc.id,
                                inc.severity,
                                inc.summary,
                                after.clone().unwrap_or_default()
                            ),
                        ),
                        Triggered::Reopened => (
                            kind::INCIDENT_REOPENED,
                            format!("{tag}#{} reopened [{}]: {}", inc.id, inc.severity, inc.summary),
                        ),
                        Triggered::Joined => (
                            kind::INCIDENT_JOINED,
                            format!("{tag}#{} fired again ({} alerts): {}", inc.id, inc.alerts, inc.summary),
                        ),
                        Triggered::Duplicate => return vec![],
                    };
                    let mut e = NewEvent::new(a.clone(), k, &subject(inc.id), line)
                        .with_data(json!({
                            "incident": inc.id, "key": inc.key, "severity": inc.severity, "source": inc.source,
                            "escalation": inc.escalation, "summary": summary, "drill": inc.drill,
                            "changes": brief,
                        }))
                        .with_link("incident", &format!("/incidents/{}", inc.id));
                    if let Some(rb) = &runbook {
                        e = e.with_link("runbook", &runbook_href(rb));
                    }
                    let _ = &base;
                    vec![e]
                }),
            )
            .await?;
        let opened = matches!(what, Triggered::Opened | Triggered::Reopened);
        // A page goes to the deployer of any deploy in the window; an alert on a series their deploy watched
        // reaches them even when it pages nobody (a ticket).
        if let Some(d) = deployer.filter(|d| opened && (inc.due_at.is_some() || d.watched.is_some())) {
            let Deployer { author, deploy, before, watched } = d;
            let why = match &watched {
                Some((env, s)) => format!(
                    "their deploy #{deploy} to {env} went out {} before, and {env}'s watch judges {s}",
                    human_secs(before)
                ),
                None => format!("their deploy #{deploy} went out {} before", human_secs(before)),
            };
            let recipients = vec![Recipient::Person { name: author.clone(), via: Some(format!("deploy #{deploy}")) }];
            let e = NewEvent::new(
                Actor::new("crew", Via::Scheduler),
                kind::INCIDENT_ESCALATED,
                &subject(inc.id),
                if inc.due_at.is_some() {
                    format!("#{} paging {author} first: {why}", inc.id)
                } else {
                    format!("#{} notifying {author}, though it pages nobody: {why}", inc.id)
                },
            )
            .with_data(json!({"incident": inc.id, "step": null, "deployer": author, "deploy": deploy,
                              "watched": watched.as_ref().map(|(_, s)| s), "recipients": recipients}));
            self.store.note_incident(inc.id, e).await?;
            let because = if inc.due_at.is_some() { "You are paged first" } else { "You are told" };
            self.notifier.send_because(
                &inc,
                -1,
                recipients,
                Some(&format!("{because}: {}.", why.replacen("their", "your", 1))),
            );
        }
        if matches!(what, Triggered::Opened | Triggered::Reopened | Triggered::Joined)
            && inc.due_at.is_some_and(|d| d <= Utc::now())
        {
            // The first step is due now: run it without waiting for the worker's next turn.
            self.tick(Utc::now()).await?;
        }
        Ok((inc, what))
    }

    /// The newest deploy among `changes` whose environment's `[environments.NAME.watch]` names `series` (a
    /// key such as `www.errors{host=a}`, matched by its name, as the watch's `name` or `over`), if its author is
    /// someone crew.toml's `[people]` knows.
    fn watching_deploy(&self, changes: &[context::Change], series: &str) -> Option<Deployer> {
        let name = crate::metrics::split_key(series).0;
        changes.iter().find_map(|c| {
            let env = c.detail.get("environment")?.as_str()?;
            let author = c.detail.get("author")?.as_str()?;
            let (watch, _) = self.deploys.watch(env)?;
            let s = watch.series.iter().find(|w| w.name == name || w.over.as_deref() == Some(name))?;
            self.oncall.person(author)?;
            Some(Deployer {
                author: author.to_string(),
                deploy: c.detail["deploy"].as_i64().unwrap_or_default(),
                before: c.before_seconds,
                watched: Some((env.to_string(), s.name.clone())),
            })
        })
    }

    pub async fn get(&self, id: i64) -> Result<Incident, ApiError> {
        self.store.incident(id).await?.ok_or_else(|| ApiError::NotFound(format!("no incident #{id}")))
    }

    /// Acknowledges: nobody is paged from now on (until the acknowledgement times out).
    pub async fn ack(&self, id: i64, actor: Actor) -> Result<Incident, ApiError> {
        let now = Utc::now();
        // Only what pages has an escalation to re-arm when the acknowledgement times out.
        let timeout = if pages(&self.get(id).await?) { self.oncall.config.ack_timeout } else { None };
        let until = timeout.map(|d| now + chrono::Duration::from_std(d).unwrap_or_default());
        let a = actor.clone();
        let (inc, _) = self
            .store
            .ack_incident(
                id,
                &actor.name,
                now,
                until,
                Box::new(move |inc: &Incident| {
                    let tta = (now - inc.triggered_at).num_seconds();
                    let tag = if inc.drill { "DRILL " } else { "" };
                    NewEvent::new(
                        a.clone(),
                        kind::INCIDENT_ACKNOWLEDGED,
                        &subject(inc.id),
                        format!(
                            "{tag}#{} acknowledged by {} after {}: {}",
                            inc.id,
                            a.name,
                            human_secs(tta),
                            inc.summary
                        ),
                    )
                    .with_data(json!({"incident": inc.id, "tta_seconds": tta, "drill": inc.drill}))
                    .with_link("incident", &format!("/incidents/{}", inc.id))
                }),
            )
            .await?;
        Ok(inc)
    }

    /// What an emailed acknowledgement link names: the incident and the person, if the link holds.
    pub async fn link(&self, token: &str) -> Result<(Incident, String), ApiError> {
        let (id, person) = self.notifier.links.verify(token, Utc::now()).await?;
        Ok((self.get(id).await?, person))
    }

    /// Acknowledges through an emailed link, as the person it was sent to.
    pub async fn ack_by_link(&self, token: &str) -> Result<Incident, ApiError> {
        let (inc, person) = self.link(token).await?;
        if self.oncall.person(&person).is_none() {
            return Err(ApiError::Forbidden(format!("{person} is no longer in crew.toml's [people]")));
        }
        if inc.status != IncidentStatus::Triggered {
            return Err(ApiError::Conflict(format!("#{} is {} already", inc.id, inc.status)));
        }
        let sig = token.rsplit('.').next().unwrap_or_default();
        if !self.store.mark_source(&format!("ack-link:{sig}"), inc.id).await? {
            return Err(ApiError::Conflict("this link was used already: acknowledge on the incident's page".into()));
        }
        self.ack(inc.id, Actor::new(person, Via::Web)).await
    }

    /// The newest open incident: what `!ack` without a number acknowledges.
    pub async fn newest_open(&self) -> Result<Option<Incident>, ApiError> {
        let open = self.store.incidents(true, 50).await?;
        Ok(open.into_iter().find(|i| i.status == IncidentStatus::Triggered))
    }

    pub async fn resolve(&self, id: i64, note: Option<&str>, actor: Actor) -> Result<Incident, ApiError> {
        let now = Utc::now();
        let a = actor.clone();
        let note = note.map(|n| clip(n, 2000)).filter(|n| !n.is_empty());
        let (inc, _) = self
            .store
            .resolve_incident(
                id,
                &actor.name,
                now,
                Box::new(move |inc: &Incident| {
                    let ttr = (now - inc.triggered_at).num_seconds();
                    let tag = if inc.drill { "DRILL " } else { "" };
                    let why = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
                    NewEvent::new(
                        a.clone(),
                        kind::INCIDENT_RESOLVED,
                        &subject(inc.id),
                        format!("{tag}#{} resolved by {} after {}{why}", inc.id, a.name, human_secs(ttr)),
                    )
                    .with_data(json!({"incident": inc.id, "ttr_seconds": ttr, "note": note, "drill": inc.drill}))
                    .with_link("incident", &format!("/incidents/{}", inc.id))
                }),
            )
            .await?;
        // The blameless postmortem is drafted from the timeline now, while it is fresh.
        if let Err(e) = self.draft_postmortem(&inc).await {
            tracing::warn!(error = %e, incident = inc.id, "the postmortem was not drafted");
        }
        Ok(inc)
    }

    pub async fn note(&self, id: i64, text: &str, actor: Actor) -> Result<Event, ApiError> {
        let text = clip(text, 2000);
        if text.is_empty() {
            return Err(ApiError::BadRequest("`text`: an empty note".into()));
        }
        let e = NewEvent::new(
            actor.clone(),
            kind::INCIDENT_NOTE,
            &subject(id),
            format!("#{id} note by {}: {text}", actor.name),
        )
        .with_data(json!({"incident": id, "text": text}))
        .with_link("incident", &format!("/incidents/{id}"));
        Ok(self.store.note_incident(id, e).await?)
    }

    /// The incident with the same key that is open, if any (what an integration's acknowledge or resolve
    /// names).
    pub async fn open_by_key(&self, key: &str) -> Result<Option<Incident>, ApiError> {
        Ok(self.store.incident_by_key(key).await?.filter(|i| i.status != IncidentStatus::Resolved))
    }

    pub async fn list(&self, open_only: bool, limit: u32) -> Result<Vec<Incident>, ApiError> {
        Ok(self.store.incidents(open_only, limit).await?)
    }

    pub async fn show(&self, id: i64) -> Result<IncidentView, ApiError> {
        let incident = self.get(id).await?;
        let mut f = EventFilter::new();
        f.subject = Some(subject(id));
        // crew's own incident events only: a person's note on the timeline with this subject is not the incident's.
        f.kind = Some(kind::INCIDENT.to_string());
        f.limit = 1000;
        let mut timeline = self.timeline.query(&f).await?.events;
        timeline.reverse();
        let tta_seconds = incident.acked_at.map(|a| (a - incident.triggered_at).num_seconds());
        let ttr_seconds = incident.resolved_at.map(|r| (r - incident.triggered_at).num_seconds());
        let base = self.platform.base_url();
        let runbook_url = incident.runbook.as_deref().map(|r| {
            let h = runbook_href(r);
            if h.starts_with('/') {
                format!("{base}{h}")
            } else {
                h
            }
        });
        let changes = self.changes_before(incident.triggered_at, Some(id)).await?;
        Ok(IncidentView {
            url: format!("{base}/incidents/{id}"),
            runbook_url,
            tta_seconds,
            ttr_seconds,
            changes,
            timeline,
            incident,
        })
    }

    /// Fires every due step (and re-arms acknowledgements that timed out), then sends what they notify.
    /// Returns how many incidents it advanced.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, ApiError> {
        let overrides = self.oncall.all_overrides(now - chrono::Duration::days(1)).await?;
        let oncall = self.oncall.clone();
        let ov = overrides.clone();
        let decide = move |inc: &Incident| -> Advance { decide(&oncall, &ov, inc, now) };
        let claimed = self.store.claim_due(now, 50, Box::new(decide)).await?;
        let n = claimed.len();
        for (inc, _, events) in claimed {
            for e in events.iter().filter(|e| e.kind == kind::INCIDENT_ESCALATED) {
                let recipients: Vec<Recipient> =
                    serde_json::from_value(e.data["recipients"].clone()).unwrap_or_default();
                let step = e.data["step"].as_i64().unwrap_or_default();
                self.notifier.send(&inc, step, recipients);
            }
        }
        Ok(n)
    }
}

/// Whether an incident pages: severity `page` with an escalation policy (a `ticket` opens without paging).
fn pages(inc: &Incident) -> bool {
    inc.severity == Severity::Page && inc.policy.is_some()
}

/// What a due incident becomes: an acknowledgement that timed out starts the escalation again; a triggered
/// incident fires its due step, and at once every following step that reaches nobody.
fn decide(oncall: &Oncall, overrides: &[crew_store::StoredOverride], inc: &Incident, now: DateTime<Utc>) -> Advance {
    let system = Actor::new("crew", Via::Scheduler);
    let tag = if inc.drill { "DRILL " } else { "" };
    if inc.status == IncidentStatus::Acknowledged {
        if !pages(inc) {
            // A ticket (or an incident without a policy) never pages: its acknowledgement just holds.
            return Advance { status: inc.status, step: inc.step, due_at: None, events: vec![] };
        }
        let e = NewEvent::new(
            system,
            kind::INCIDENT_ESCALATED,
            &subject(inc.id),
            format!(
                "{tag}#{} acknowledged by {} but not resolved in time: escalating again",
                inc.id,
                inc.acked_by.as_deref().unwrap_or("someone")
            ),
        )
        .with_data(json!({"incident": inc.id, "rearmed": true, "recipients": [], "drill": inc.drill}));
        return Advance { status: IncidentStatus::Triggered, step: 0, due_at: Some(now), events: vec![e] };
    }
    let Some(policy) = inc.policy.clone().and_then(|p| serde_json::from_value::<Policy>(p).ok()) else {
        return Advance { status: inc.status, step: inc.step, due_at: None, events: vec![] };
    };
    let mut events = Vec::new();
    let mut k = usize::try_from(inc.step).unwrap_or(usize::MAX);
    loop {
        let Some(step) = policy.step(k) else {
            return Advance { status: inc.status, step: k as i64, due_at: None, events };
        };
        let recipients = oncall.resolve(&step.notify, now, overrides);
        let targets: Vec<String> = step.notify.iter().map(|t| t.as_text()).collect();
        let round = k / policy.steps.len().max(1);
        let names: Vec<String> = recipients
            .iter()
            .map(|r| match r {
                Recipient::Person { name, .. } => name.clone(),
                Recipient::Room { name } => name.clone(),
            })
            .collect();
        let line = if names.is_empty() {
            format!("{tag}#{} step {} ({}) reaches nobody: moving on", inc.id, k + 1, targets.join(", "))
        } else {
            format!("{tag}#{} step {}: paging {}", inc.id, k + 1, names.join(", "))
        };
        events.push(
            NewEvent::new(system.clone(), kind::INCIDENT_ESCALATED, &subject(inc.id), line)
                .with_data(json!({
                    "incident": inc.id, "step": k, "round": round, "targets": targets,
                    "recipients": recipients, "drill": inc.drill,
                }))
                .with_link("incident", &format!("/incidents/{}", inc.id)),
        );
        let next = policy.next_due(k, now);
        if names.is_empty() {
            for t in &step.notify {
                if let crew_oncall::escalation::Target::Schedule(s) = t {
                    events.push(
                        NewEvent::new(
                            system.clone(),
                            kind::ONCALL_GAP,
                            &format!("schedule:{s}"),
                            format!("nobody on call for {s} when #{} escalated", inc.id),
                        )
                        .with_data(json!({"schedule": s, "incident": inc.id, "from": crew_core::time::rfc3339(now)})),
                    );
                }
            }
            match next {
                Some((n, _)) => {
                    k = n;
                    continue;
                }
                None => return Advance { status: inc.status, step: policy.len() as i64, due_at: None, events },
            }
        }
        return match next {
            Some((n, due)) => Advance { status: inc.status, step: n as i64, due_at: Some(due), events },
            None => Advance { status: inc.status, step: policy.len() as i64, due_at: None, events },
        };
    }
}

/// A runbook's link as crew serves it: a repository path or short name becomes its page; URLs stay.
pub fn runbook_href(rb: &str) -> String {
    if crate::runbooks::is_url(rb) {
        return rb.to_string();
    }
    match crate::runbooks::resolve(rb) {
        Ok(path) => crate::runbooks::page(&path),
        Err(_) => "/runbooks".to_string(),
    }
}

pub fn human_secs(s: i64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The escalation worker: every second, on every replica (the store hands each due step to one of them),
/// and the follower that opens incidents from crew's own alert rules.
pub fn start(incidents: &Incidents, bus: tokio::sync::broadcast::Receiver<Arc<Event>>) {
    let (inc, stop) = (incidents.clone(), incidents.platform.shutdown.clone());
    tokio::spawn(async move {
        loop {
            if let Err(e) = inc.tick(Utc::now()).await {
                tracing::warn!(error = %e, "the escalation worker failed a turn");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    });
    let inc = incidents.clone();
    tokio::spawn(integrations::follow_verdicts(inc.clone(), inc.store.subscribe()));
    tokio::spawn(integrations::follow_alerts(inc, bus));
}
