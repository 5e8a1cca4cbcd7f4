//! The on-call domain: who is on call now and next, the final schedule of each `[[schedules]]` (layers from
//! crew.toml, overrides from the store, computed by `crew-oncall`), overrides and "take the shift", the iCal
//! feeds with their rotatable secret keys, the gap check that records `oncall.gap`, and resolving an
//! escalation step's targets to the people and rooms to notify.

pub mod api;
pub mod config;
pub mod web;

pub use config::{OncallConfig, Person};

use crate::error::ApiError;
use crate::state::Platform;
use crate::timeline::Timeline;
use chrono::{DateTime, Duration as Span, Utc};
use crew_core::{kind, Actor, EventFilter, NewEvent, Via};
use crew_oncall::escalation::Target;
use crew_oncall::ical::Shift;
use crew_oncall::schedule::{self, Override, Schedule, Segment};
use crew_store::{Store, StoredOverride};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// The on-call service.
#[derive(Clone)]
pub struct Oncall {
    store: Arc<dyn Store>,
    pub config: Arc<OncallConfig>,
    timeline: Timeline,
}

/// Who is on call for one schedule: now and next.
#[derive(Debug, Clone, Serialize)]
pub struct WhoNow {
    pub schedule: String,
    pub zone: String,
    pub now: Segment,
    pub next: Option<Segment>,
}

/// Someone (or a room) an escalation step reaches.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Recipient {
    Person { name: String, via: Option<String> },
    Room { name: String },
}

/// How far ahead `next` looks.
const NEXT_HORIZON_DAYS: i64 = 62;
/// Overrides to come one schedule may have.
pub const MAX_OVERRIDES: usize = 200;
/// The longest window `GET /api/v1/oncall/{schedule}` and a feed compute.
pub const MAX_WINDOW_DAYS: i64 = 400;
/// A feed's default window: this many days back from now...
const FEED_PAST_DAYS: i64 = 7;
/// ...to this many ahead.
const FEED_AHEAD_DAYS: i64 = 60;

impl Oncall {
    pub fn new(p: &Platform, timeline: Timeline) -> Self {
        Oncall { store: p.store.clone(), config: Arc::new(p.settings.oncall.clone()), timeline }
    }

    pub fn schedules(&self) -> &[Schedule] {
        &self.config.schedules
    }

    pub fn schedule(&self, name: &str) -> Result<&Schedule, ApiError> {
        self.config.schedules.iter().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.config.schedules.iter().map(|s| s.name.as_str()).collect();
            ApiError::NotFound(format!(
                "no schedule `{name}`{}",
                if known.is_empty() {
                    "; crew.toml has no [[schedules]]".into()
                } else {
                    format!(": schedules are {}", known.join(", "))
                }
            ))
        })
    }

    pub fn person(&self, name: &str) -> Option<&Person> {
        self.config.people.get(name)
    }

    /// The overrides of a schedule that end after `after`, as the pure rules take them.
    async fn overrides_of(&self, name: &str, after: DateTime<Utc>) -> Result<Vec<Override>, ApiError> {
        Ok(self.store.overrides(Some(name), after).await?.into_iter().map(|o| pure(&o)).collect())
    }

    /// Who is on call at `at` and who is next, for one schedule or all.
    pub async fn now(&self, name: Option<&str>, at: DateTime<Utc>) -> Result<Vec<WhoNow>, ApiError> {
        let schedules: Vec<&Schedule> = match name {
            Some(n) => vec![self.schedule(n)?],
            None => self.config.schedules.iter().collect(),
        };
        // The segment at `at` reaches back up to REACH_DAYS: an override that ended in that time cuts it too.
        let all = self.store.overrides(None, at - Span::days(schedule::REACH_DAYS)).await?;
        let mut out = Vec::new();
        for s in schedules {
            let ov: Vec<Override> = all.iter().filter(|o| o.schedule == s.name).map(pure).collect();
            let now = schedule::on_call_at(s, &ov, at);
            let next = schedule::next_change(s, &ov, at, Span::days(NEXT_HORIZON_DAYS));
            out.push(WhoNow { schedule: s.name.clone(), zone: s.zone.name().to_string(), now, next });
        }
        Ok(out)
    }

    /// The final schedule in [from, to) and the overrides in it.
    pub async fn segments(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<Segment>, Vec<StoredOverride>), ApiError> {
        let s = self.schedule(name)?;
        if to <= from {
            return Err(ApiError::BadRequest("`to` must be after `from`".into()));
        }
        if to - from > Span::days(MAX_WINDOW_DAYS) {
            return Err(ApiError::BadRequest(format!("at most {MAX_WINDOW_DAYS} days at once")));
        }
        let stored: Vec<StoredOverride> =
            self.store.overrides(Some(name), from).await?.into_iter().filter(|o| o.from < to).collect();
        let ov: Vec<Override> = stored.iter().map(pure).collect();
        Ok((schedule::final_schedule(s, &ov, from, to), stored))
    }

    /// Puts `user` on call for `schedule` in [from, until). Refused (409) when it overlaps another override.
    pub async fn add_override(
        &self,
        name: &str,
        user: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        actor: Actor,
    ) -> Result<StoredOverride, ApiError> {
        self.schedule(name)?;
        if self.person(user).is_none() {
            return Err(ApiError::BadRequest(format!("`user`: no person `{user}` in crew.toml's [people]")));
        }
        if until <= from {
            return Err(ApiError::BadRequest("`until` must be after `from`".into()));
        }
        if until - from > Span::days(MAX_WINDOW_DAYS) {
            return Err(ApiError::BadRequest(format!("an override spans at most {MAX_WINDOW_DAYS} days")));
        }
        if until - from < Span::minutes(5) {
            return Err(ApiError::BadRequest("an override lasts at least 5 minutes".into()));
        }
        if self.store.overrides(Some(name), Utc::now()).await?.len() >= MAX_OVERRIDES {
            return Err(ApiError::Conflict(format!(
                "{name} has {MAX_OVERRIDES} overrides to come already: remove some first"
            )));
        }
        let new = Override { user: user.to_string(), from, until };
        let (sched, who) = (name.to_string(), user.to_string());
        let a = actor.clone();
        let (o, _) = self
            .store
            .add_override(
                name,
                user,
                from,
                until,
                &actor.name,
                Box::new(move |existing: &[StoredOverride]| {
                    let ov: Vec<Override> = existing.iter().map(pure).collect();
                    schedule::check_override(&ov, &new)?;
                    let fmt = |t: DateTime<Utc>| crew_core::time::rfc3339(t);
                    Ok(NewEvent::new(
                        a.clone(),
                        kind::ONCALL_OVERRIDE,
                        &format!("schedule:{sched}"),
                        format!(
                            "{who} is on call for {sched} from {} until {} (set by {})",
                            fmt(from),
                            fmt(until),
                            a.name
                        ),
                    )
                    .with_data(json!({"schedule": sched, "user": who, "from": fmt(from), "until": fmt(until)}))
                    .with_link("oncall", "/oncall"))
                }),
            )
            .await?;
        Ok(o)
    }

    /// "Take the shift": the caller is on call from now until `until`.
    pub async fn take(&self, name: &str, until: DateTime<Utc>, actor: Actor) -> Result<StoredOverride, ApiError> {
        let user = actor.name.clone();
        self.add_override(name, &user, Utc::now(), until, actor).await
    }

    /// Removes an override of `schedule`, with its event.
    pub async fn remove_override(&self, name: &str, id: i64, actor: Actor) -> Result<StoredOverride, ApiError> {
        self.schedule(name)?;
        let mine = self.store.overrides(Some(name), Utc::now() - Span::days(MAX_WINDOW_DAYS)).await?;
        let Some(o) = mine.into_iter().find(|o| o.id == id) else {
            return Err(ApiError::NotFound(format!("no override #{id} of {name}")));
        };
        let fmt = |t: DateTime<Utc>| crew_core::time::rfc3339(t);
        let e = NewEvent::new(
            actor.clone(),
            kind::ONCALL_OVERRIDE,
            &format!("schedule:{name}"),
            format!(
                "{} removed the override of {name}: {} from {} until {}",
                actor.name,
                o.user,
                fmt(o.from),
                fmt(o.until)
            ),
        )
        .with_data(
            json!({"schedule": name, "user": o.user, "from": fmt(o.from), "until": fmt(o.until), "removed": true}),
        );
        let (o, _) = self.store.remove_override(id, e).await?;
        Ok(o)
    }

    pub async fn overrides(&self, name: Option<&str>) -> Result<Vec<StoredOverride>, ApiError> {
        Ok(self.store.overrides(name, Utc::now()).await?)
    }

    /// The people and rooms a step's targets reach at `at`, given the overrides of every schedule. A schedule
    /// with nobody on call reaches nobody.
    pub fn resolve(&self, targets: &[Target], at: DateTime<Utc>, overrides: &[StoredOverride]) -> Vec<Recipient> {
        let mut out: Vec<Recipient> = Vec::new();
        for t in targets {
            let r = match t {
                Target::User(u) => Recipient::Person { name: u.clone(), via: None },
                Target::Room(r) => Recipient::Room { name: r.clone() },
                Target::Schedule(s) => {
                    let Some(sched) = self.config.schedules.iter().find(|x| &x.name == s) else { continue };
                    let ov: Vec<Override> = overrides.iter().filter(|o| &o.schedule == s).map(pure).collect();
                    match schedule::on_call_at(sched, &ov, at).user {
                        Some(u) => Recipient::Person { name: u, via: Some(format!("schedule:{s}")) },
                        None => continue,
                    }
                }
            };
            let dup = out.iter().any(|o| match (o, &r) {
                (Recipient::Person { name: a, .. }, Recipient::Person { name: b, .. }) => a == b,
                (a, b) => a == b,
            });
            if !dup {
                out.push(r);
            }
        }
        out
    }

    /// Every override ending after `after`, for resolving steps without a query per schedule.
    pub async fn all_overrides(&self, after: DateTime<Utc>) -> Result<Vec<StoredOverride>, ApiError> {
        Ok(self.store.overrides(None, after).await?)
    }

    /// The iCal feed of a schedule (`schedule:NAME`) or a person (`person:NAME`), if `key` is its secret: the
    /// final schedule in [from, to), by default the last 7 days and the next 60 (67 days from `from` or up to
    /// `to` when only one is given), at most [`MAX_WINDOW_DAYS`].
    pub async fn feed(
        &self,
        feed: &str,
        key: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<String, ApiError> {
        let stored = self.store.feed_key(feed).await?;
        let ok = stored.is_some_and(|h| crate::auth::same_secret(Some(&crate::auth::hash_secret(key)), &h));
        if !ok {
            return Err(ApiError::NotFound(format!("no feed `{feed}` with that key")));
        }
        let now = Utc::now();
        // The default window is 67 days: from 7 days ago to 60 ahead, or from `from`, or up to `to`.
        let days = Span::days(FEED_PAST_DAYS + FEED_AHEAD_DAYS);
        let (from, to) = match (from, to) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, f + days),
            (None, Some(t)) => (t - days, t),
            (None, None) => (now - Span::days(FEED_PAST_DAYS), now + Span::days(FEED_AHEAD_DAYS)),
        };
        if to <= from {
            return Err(ApiError::BadRequest("`to` must be after `from`".into()));
        }
        if to - from > Span::days(MAX_WINDOW_DAYS) {
            return Err(ApiError::BadRequest(format!("a feed spans at most {MAX_WINDOW_DAYS} days")));
        }
        match feed.split_once(':') {
            Some(("schedule", name)) => {
                let s = self.schedule(name)?;
                let shifts = Shift::of(s, &self.feed_segments(s, from, to).await?);
                Ok(crew_oncall::ical::feed(&format!("On call: {name}"), &shifts, now))
            }
            Some(("person", who)) => {
                let mut shifts = Vec::new();
                for s in &self.config.schedules {
                    let mut mine = Shift::of(s, &self.feed_segments(s, from, to).await?);
                    mine.retain(|g| g.user == who);
                    shifts.extend(mine);
                }
                shifts.sort_by(|a, b| (a.from, &a.schedule).cmp(&(b.from, &b.schedule)));
                Ok(crew_oncall::ical::feed(&format!("On call: {who}"), &shifts, now))
            }
            _ => Err(ApiError::NotFound(format!("no feed `{feed}`"))),
        }
    }

    /// The final schedule in [from, to) for a feed, its first and last segments reaching to their real ends (at
    /// most [`schedule::REACH_DAYS`] away): cut at the window, their events would move and change their UIDs
    /// with every fetch.
    async fn feed_segments(
        &self,
        s: &Schedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Segment>, ApiError> {
        let reach = Span::days(schedule::REACH_DAYS);
        let mut ov = self.overrides_of(&s.name, from - reach).await?;
        ov.retain(|o| o.from < to + reach);
        let mut segs = schedule::final_schedule(s, &ov, from, to);
        if let Some(first) = segs.first_mut().filter(|g| g.user.is_some()) {
            first.from = first.from.min(schedule::on_call_at(s, &ov, first.from).from);
        }
        if let Some(last) = segs.last_mut().filter(|g| g.user.is_some()) {
            let at = last.until - Span::milliseconds(1);
            last.until = last.until.max(schedule::on_call_at(s, &ov, at).until);
        }
        Ok(segs)
    }

    /// Makes a new secret key for a feed (the old one stops working); returns the feed's URL path with it.
    pub async fn rotate_feed(&self, feed: &str, actor: Actor) -> Result<String, ApiError> {
        let path = match feed.split_once(':') {
            Some(("schedule", name)) => {
                self.schedule(name)?;
                format!("/api/v1/oncall/{name}/feed.ics")
            }
            Some(("person", who)) => {
                if self.person(who).is_none() {
                    return Err(ApiError::NotFound(format!("no person `{who}`")));
                }
                format!("/api/v1/people/{who}/feed.ics")
            }
            _ => return Err(ApiError::BadRequest(format!("`{feed}`: schedule:NAME or person:NAME"))),
        };
        let key = crate::auth::random_id();
        let e = NewEvent::new(
            actor.clone(),
            kind::ONCALL_FEED_ROTATED,
            feed,
            format!("{} made a new key for the iCal feed of {feed}", actor.name),
        );
        self.store.put_feed_key(feed, &crate::auth::hash_secret(&key), e).await?;
        Ok(format!("{path}?key={key}"))
    }

    /// Records `oncall.gap` for every gap in the next 7 days not recorded yet. Returns how many.
    pub async fn check_gaps(&self, now: DateTime<Utc>) -> Result<usize, ApiError> {
        let mut f = EventFilter::new();
        f.kind = Some(kind::ONCALL_GAP.to_string());
        f.since = Some(now - Span::days(8));
        f.limit = 1000;
        let seen = self.timeline.query(&f).await?.events;
        let mut events = Vec::new();
        for s in &self.config.schedules {
            let ov = self.overrides_of(&s.name, now).await?;
            for (from, until) in schedule::gaps(s, &ov, now, now + Span::days(7)) {
                let from_s = crew_core::time::rfc3339(from);
                let known = seen.iter().any(|e| {
                    e.data["schedule"].as_str() == Some(s.name.as_str())
                        && e.data["from"].as_str() == Some(from_s.as_str())
                });
                if known {
                    continue;
                }
                events.push(
                    NewEvent::new(
                        Actor::new("crew", Via::Scheduler),
                        kind::ONCALL_GAP,
                        &format!("schedule:{}", s.name),
                        format!(
                            "nobody is on call for {} from {from_s} until {}",
                            s.name,
                            crew_core::time::rfc3339(until)
                        ),
                    )
                    .with_data(json!({"schedule": s.name, "from": from_s, "until": crew_core::time::rfc3339(until)}))
                    .with_link("oncall", "/oncall"),
                );
            }
        }
        let n = events.len();
        if n > 0 {
            self.timeline.append_system(events).await?;
        }
        Ok(n)
    }

    /// Gaps in the next 7 days, as warnings for the Status page and the deploy gate.
    pub async fn warnings(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut out = self.config.warnings.clone();
        for s in &self.config.schedules {
            let Ok(ov) = self.overrides_of(&s.name, now).await else { continue };
            if let Some((from, until)) = schedule::gaps(s, &ov, now, now + Span::days(7)).first() {
                out.push(format!(
                    "schedule {}: nobody on call from {} until {}",
                    s.name,
                    crew_core::time::rfc3339(*from),
                    crew_core::time::rfc3339(*until)
                ));
            }
        }
        out
    }
}

/// A stored override as the pure rules take it.
fn pure(o: &StoredOverride) -> Override {
    Override { user: o.user.clone(), from: o.from, until: o.until }
}

/// Runs the gap check every 10 minutes on one replica at a time.
pub fn start(oncall: &Oncall, platform: &Platform, holder: String) {
    if oncall.config.schedules.is_empty() {
        return;
    }
    let (o, store, stop) = (oncall.clone(), platform.store.clone(), platform.shutdown.clone());
    tokio::spawn(async move {
        loop {
            if store.try_lease("oncall-gaps", &holder, std::time::Duration::from_secs(900)).await.unwrap_or(false) {
                if let Err(e) = o.check_gaps(Utc::now()).await {
                    tracing::warn!(error = %e, "the on-call gap check failed");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
            }
        }
    });
}
