//! The experiments domain: the results of bucket tests. An evaluation of a split flag for a targeting key is an
//! exposure (OFREP's single-flag evaluations here, the SDK's batches through `POST /api/v1/exposures`); an
//! OpenFeature tracking event is a conversion (`POST /api/v1/track`). Both are buffered and written in batches by
//! one flush task (the first exposure per user per phase counts; the store keeps at most `max_users` a phase).
//! Results split at every change of the flag's definition (a phase is named by the time of its `flag.changed`);
//! the statistics are `crew-experiments`'. A sample-ratio mismatch is announced once per phase as an event.
//!
//! Exposures and conversions are telemetry, like StatsD points: they are counted, not recorded as events.

pub mod api;
pub mod web;

use crate::error::ApiError;
use crate::feedback::{Feedback, Side};
use crate::flags::{check_key, Compiled, Flags, Split};
use crate::metrics::Metrics;
use crate::timeline::Timeline;
use crew_core::{kind, Actor, Event, EventFilter, NewEvent, Via};
use crew_experiments::{analyse_tallies, Analysis, Bucket, Method, Options, Variant};
use crew_store::{Conversion, Exposure, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At most this many exposures (or conversions) in one `POST`.
pub const BATCH_MAX: usize = 10_000;
/// Exposures and conversions waiting for the flush, at most: past it they are dropped and counted (a store that
/// cannot keep up must not grow memory without end).
const PENDING_MAX: usize = 500_000;
/// (flag, phase, user) seen lately, so a user's repeated evaluations are not written again and again; cleared
/// when it grows past this (the store's key still keeps the first exposure only).
const SEEN_MAX: usize = 1_000_000;
/// How often the buffer is written, and sample ratios are checked.
const FLUSH: Duration = Duration::from_secs(1);
const SRM_EVERY: Duration = Duration::from_secs(10);
/// Phases a results answer covers, newest first.
const PHASES_MAX: usize = 10;
/// A targeting key's longest length.
const USER_MAX: usize = 256;

/// `[experiments]` of crew.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentsSection {
    /// Users stored per experiment phase (1,000,000 by default); past it the results say they are sampled.
    pub max_users: Option<u64>,
    /// Tracking event names besides flag keys (`purchase`, `signup`): a conversion must name a flag or one of
    /// these, so nobody can fill the store with made-up metrics.
    #[serde(default)]
    pub metrics: Vec<String>,
}

impl ExperimentsSection {
    pub fn check(&self) -> Result<(), String> {
        if let Some(n) = self.max_users {
            if !(1..=100_000_000).contains(&n) {
                return Err(format!("[experiments] max_users = {n}: from 1 to 100000000"));
            }
        }
        if self.metrics.len() > 100 {
            return Err(format!("[experiments] metrics: {} names, at most 100", self.metrics.len()));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            check_key(m).map_err(|e| format!("[experiments] metrics[{i}]: {e}"))?;
        }
        Ok(())
    }
}

/// What the experiments service needs of the settings.
#[derive(Debug, Clone)]
pub struct ExperimentsConfig {
    pub max_users: u64,
    pub metrics: Vec<String>,
}

impl From<Option<&ExperimentsSection>> for ExperimentsConfig {
    fn from(s: Option<&ExperimentsSection>) -> Self {
        ExperimentsConfig {
            max_users: s.and_then(|s| s.max_users).unwrap_or(1_000_000),
            metrics: s.map(|s| s.metrics.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Default)]
struct Pending {
    exposures: Vec<Exposure>,
    conversions: Vec<Conversion>,
    seen: HashSet<(String, i64, String)>,
    /// Experiments that took new exposures since the last sample-ratio check.
    touched: HashSet<(String, i64)>,
}

/// The receive path's totals since start.
#[derive(Default)]
struct Totals {
    exposures: AtomicU64,
    repeats: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    over_cap: AtomicU64,
    conversions: AtomicU64,
    dropped: AtomicU64,
    flush_errors: AtomicU64,
}

struct Inner {
    store: Arc<dyn Store>,
    flags: Flags,
    timeline: Timeline,
    feedback: Feedback,
    metrics: Metrics,
    config: ExperimentsConfig,
    pending: Mutex<Pending>,
    totals: Totals,
    /// Phases whose mismatch was announced (read back from the timeline at the first check of each).
    announced: tokio::sync::Mutex<HashMap<(String, i64), bool>>,
}

/// The experiments service.
#[derive(Clone)]
pub struct Experiments {
    inner: Arc<Inner>,
}

/// One exposure an SDK reports: the flag, the user, the variant it evaluated to, and when (Unix ms, the
/// SDK's clock; taken within the last hour and never later than now, else the time crew takes the batch).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Reported {
    pub key: String,
    pub targeting_key: String,
    pub variant: String,
    pub at: Option<i64>,
}

/// What a batch did.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Accepted {
    pub accepted: u64,
    /// For a flag that is not a split (any more), or a variant it does not have: the definition changed under
    /// the SDK. Not counted.
    pub ignored: u64,
}

/// A tracking event: OpenFeature's `track(key, context, {value})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub key: String,
    pub context: TrackContext,
    pub value: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackContext {
    pub targeting_key: Option<String>,
    /// The rest of the evaluation context: accepted, not stored.
    #[serde(flatten)]
    pub _rest: serde_json::Map<String, Value>,
}

/// A deploy drawn on the chart.
#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    pub at_ms: i64,
    pub summary: String,
    pub href: String,
}

/// A guardrail: a launch plan's series, variant by variant.
#[derive(Debug, Clone, Serialize)]
pub struct Guardrail {
    pub series: String,
    /// The bad direction.
    pub direction: String,
    /// Per variant: the mean (a ratio for `over`) and how many points or trials it stands on.
    pub variants: Vec<(String, Option<f64>, u64)>,
    pub error: Option<String>,
}

/// The change that started a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub event: String,
    pub by: String,
    pub summary: String,
    pub reason: Option<String>,
}

/// One phase's results.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// The phase's name: its definition's time (Unix ms).
    pub phase: i64,
    pub started_ms: i64,
    /// `None` while it is the flag's definition.
    pub ended_ms: Option<i64>,
    pub change: Option<Change>,
    pub users: u64,
    /// The store took `max_users` users and no more: the figures are of a sample.
    pub sampled: bool,
    #[serde(flatten)]
    pub analysis: Analysis,
    /// The variant whose lift is surely best: its interval above 0 (the control when every other is surely
    /// worse). `None` while the intervals say nothing sure.
    pub winner: Option<String>,
    pub guardrails: Vec<Guardrail>,
    pub deploys: Vec<Marker>,
}

/// A flag's results, newest phase first.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub flag: String,
    pub metric: String,
    pub method: &'static str,
    pub alpha: f64,
    pub max_users: u64,
    pub phases: Vec<Phase>,
}

/// `sequential` (the default) or `fixed`.
pub fn method(word: Option<&str>) -> Result<Method, ApiError> {
    match word {
        None | Some("sequential") => Ok(Method::default()),
        Some("fixed") => Ok(Method::Fixed),
        Some(other) => Err(ApiError::BadRequest(format!("method `{other}`: `sequential` or `fixed`"))),
    }
}

fn method_word(m: Method) -> &'static str {
    match m {
        Method::Fixed => "fixed",
        Method::Sequential { .. } => "sequential",
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn check_user(field: &str, user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > USER_MAX || user.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{field}: a targeting key of 1 to {USER_MAX} bytes without control characters"
        )));
    }
    Ok(())
}

impl Experiments {
    pub fn new(
        platform: &crate::state::Platform,
        flags: Flags,
        timeline: Timeline,
        feedback: Feedback,
        metrics: Metrics,
    ) -> Self {
        let config = ExperimentsConfig::from(platform.settings.file.experiments.as_ref());
        Experiments {
            inner: Arc::new(Inner {
                store: platform.store.clone(),
                flags,
                timeline,
                feedback,
                metrics,
                config,
                pending: Mutex::new(Pending::default()),
                totals: Totals::default(),
                announced: Default::default(),
            }),
        }
    }

    /// Queues one exposure unless this user was seen lately on this phase. Never blocks on the store.
    fn queue(&self, flag: &str, phase: i64, user: &str, variant: &str, at_ms: i64) -> bool {
        let t = &self.inner.totals;
        t.exposures.fetch_add(1, Ordering::Relaxed);
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (flag.to_string(), phase, user.to_string());
        if p.seen.contains(&key) {
            t.repeats.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if p.exposures.len() + p.conversions.len() >= PENDING_MAX {
            t.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if p.seen.len() >= SEEN_MAX {
            p.seen.clear();
        }
        p.seen.insert(key);
        p.touched.insert((flag.to_string(), phase));
        p.exposures.push(Exposure {
            flag: flag.to_string(),
            phase,
            user: user.to_string(),
            variant: variant.to_string(),
            at_ms,
        });
        true
    }

    /// An evaluation this server made (OFREP): an exposure when the flag is a split of `compiled`, the context
    /// has a targeting key and the answer a variant of the split.
    pub fn evaluated(&self, compiled: &Compiled, flag: &str, context: &Value, variant: Option<&str>) {
        let (Some(split), Some(variant)) = (compiled.splits.get(flag), variant) else { return };
        let Some(user) = context.get("targetingKey").and_then(Value::as_str) else { return };
        if check_user("", user).is_err() || !split.variants.iter().any(|(v, _)| v == variant) {
            return;
        }
        self.queue(flag, split.phase, user, variant, now_ms());
    }

    /// `POST /api/v1/exposures`: an SDK's batch, checked whole before any of it is queued.
    pub fn report(&self, batch: &[Reported]) -> Result<Accepted, ApiError> {
        if batch.len() > BATCH_MAX {
            return Err(ApiError::BadRequest(format!(
                "exposures: {} in one batch, at most {BATCH_MAX}; send smaller batches",
                batch.len()
            )));
        }
        let compiled = self.inner.flags.current();
        let known: HashSet<&str> = compiled.stored.iter().map(|f| f.key.as_str()).collect();
        let mut queued: Vec<(&Reported, &Split)> = Vec::with_capacity(batch.len());
        let mut ignored = 0;
        for (i, r) in batch.iter().enumerate() {
            check_key(&r.key).map_err(|e| ApiError::BadRequest(format!("exposures[{i}].key: {e}")))?;
            check_user(&format!("exposures[{i}].targetingKey"), &r.targeting_key)?;
            if !known.contains(r.key.as_str()) {
                return Err(ApiError::BadRequest(format!("exposures[{i}].key: no flag `{}`", r.key)));
            }
            match compiled.splits.get(&r.key) {
                Some(s) if s.variants.iter().any(|(v, _)| *v == r.variant) => queued.push((r, s)),
                _ => ignored += 1,
            }
        }
        let now = now_ms();
        let mut accepted = 0;
        for (r, s) in queued {
            // A look reported late by its SDK keeps its own time (so a conversion tracked right after it is
            // attributed), within bounds: never before the phase, an hour back at most, never in the future.
            let at = r.at.filter(|t| *t > now - 3_600_000).unwrap_or(now).min(now).max(s.phase);
            if self.queue(&r.key, s.phase, &r.targeting_key, &r.variant, at) {
                accepted += 1;
            }
        }
        Ok(Accepted { accepted, ignored })
    }

    /// `POST /api/v1/track`: a conversion on the metric `key` (a flag's key or an `[experiments] metrics`
    /// name) for a user. It counts for a user exposed before it; one before any exposure is kept unattributed.
    pub fn track(&self, t: &Track) -> Result<(), ApiError> {
        check_key(&t.key).map_err(|e| ApiError::BadRequest(format!("key: {e}")))?;
        let user =
            t.context.targeting_key.as_deref().ok_or_else(|| {
                ApiError::BadRequest("context.targetingKey: required (whose conversion is it?)".into())
            })?;
        check_user("context.targetingKey", user)?;
        if let Some(v) = t.value {
            if !v.is_finite() {
                return Err(ApiError::BadRequest("value: a finite number".into()));
            }
        }
        let is_flag = self.inner.flags.current().stored.iter().any(|f| f.key == t.key);
        if !is_flag && !self.inner.config.metrics.contains(&t.key) {
            return Err(ApiError::BadRequest(format!(
                "key: no flag `{}` and no such metric in [experiments] metrics",
                t.key
            )));
        }
        let totals = &self.inner.totals;
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.exposures.len() + p.conversions.len() >= PENDING_MAX {
            totals.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::TooMany("too many tracking events waiting to be stored; try again".into()));
        }
        totals.conversions.fetch_add(1, Ordering::Relaxed);
        p.conversions.push(Conversion {
            metric: t.key.clone(),
            user: user.to_string(),
            at_ms: now_ms(),
            value: t.value.unwrap_or(1.0),
        });
        Ok(())
    }

    /// Writes what waits. On a store error the batch goes back to the front of the queue (room permitting).
    pub async fn flush(&self) -> Result<(), ApiError> {
        let (exposures, conversions) = {
            let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut p.exposures), std::mem::take(&mut p.conversions))
        };
        if exposures.is_empty() && conversions.is_empty() {
            return Ok(());
        }
        let t = &self.inner.totals;
        let mut result = Ok(());
        for chunk in exposures.chunks(5000) {
            match self.inner.store.record_exposures(chunk, self.inner.config.max_users).await {
                Ok(r) => {
                    t.stored.fetch_add(r.new, Ordering::Relaxed);
                    t.duplicates.fetch_add(r.duplicates, Ordering::Relaxed);
                    t.over_cap.fetch_add(r.dropped, Ordering::Relaxed);
                }
                Err(e) => {
                    t.flush_errors.fetch_add(1, Ordering::Relaxed);
                    self.requeue(chunk.to_vec(), vec![]);
                    result = Err(ApiError::from(e));
                }
            }
        }
        if let Err(e) = self.inner.store.record_conversions(&conversions).await {
            t.flush_errors.fetch_add(1, Ordering::Relaxed);
            self.requeue(vec![], conversions);
            result = Err(ApiError::from(e));
        }
        result
    }

    fn requeue(&self, exposures: Vec<Exposure>, conversions: Vec<Conversion>) {
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        let room = PENDING_MAX.saturating_sub(p.exposures.len() + p.conversions.len());
        let lost = (exposures.len() + conversions.len()).saturating_sub(room);
        self.inner.totals.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        let mut e: Vec<Exposure> = exposures.into_iter().take(room).collect();
        let room = room - e.len();
        let mut c: Vec<Conversion> = conversions.into_iter().take(room).collect();
        e.append(&mut p.exposures);
        c.append(&mut p.conversions);
        p.exposures = e;
        p.conversions = c;
    }

    /// The receive path's totals since start (in the results and the status).
    pub fn status(&self) -> Value {
        let t = &self.inner.totals;
        let p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "exposures_received": g(&t.exposures),
            "exposures_repeated": g(&t.repeats),
            "exposures_stored": g(&t.stored),
            "exposures_duplicate": g(&t.duplicates),
            "exposures_over_cap": g(&t.over_cap),
            "conversions_received": g(&t.conversions),
            "dropped_backlog": g(&t.dropped),
            "flush_errors": g(&t.flush_errors),
            "pending": p.exposures.len() + p.conversions.len(),
            "max_users": self.inner.config.max_users,
        })
    }

    /// The flag's split phases, newest first: from its `flag.changed` events (and its definition now, when the
    /// timeline does not have the event that made it).
    async fn phases(&self, key: &str) -> Result<Vec<(i64, Option<i64>, Vec<(String, f64)>, Option<Change>)>, ApiError> {
        let mut f = EventFilter::new().limit(200);
        f.kind = Some(kind::FLAG_CHANGED.into());
        f.subject = Some(format!("flag:{key}"));
        let events: Vec<Event> = self.inner.timeline.query(&f).await?.events;
        let current = self.inner.flags.current().splits.get(key).cloned();
        let mut out = vec![];
        let mut newer: Option<i64> = None;
        for (i, e) in events.iter().enumerate() {
            let at = e.at.timestamp_millis();
            let mut phase = at;
            // Definitions stored before phases were named by their event's time are a few ms apart from it.
            if let (0, Some(c)) = (i, &current) {
                if (c.phase - at).abs() < 2000 {
                    phase = c.phase;
                }
            }
            if let Some(variants) = crew_flags::knobs::split_of(&e.data["after"]) {
                let change = Change {
                    event: e.id.clone(),
                    by: e.actor.name.clone(),
                    summary: e.summary.clone(),
                    reason: e.data["reason"].as_str().map(str::to_string),
                };
                out.push((phase, newer, variants, Some(change)));
            }
            newer = Some(at);
            if out.len() >= PHASES_MAX {
                break;
            }
        }
        if let Some(c) = current {
            if !out.iter().any(|p| p.0 == c.phase) {
                out.insert(0, (c.phase, None, c.variants, None));
            }
        }
        Ok(out)
    }

    /// `crew experiment KEY`, `GET /api/v1/flags/{key}/results`: each phase's figures on `metric` (the flag's
    /// own key by default).
    pub async fn results(&self, key: &str, metric: Option<&str>, method: Method) -> Result<Results, ApiError> {
        check_key(key)?;
        let metric = metric.unwrap_or(key).to_string();
        check_key(&metric).map_err(|e| ApiError::BadRequest(format!("metric: {e}")))?;
        if !self.inner.flags.current().stored.iter().any(|f| f.key == key) {
            return Err(ApiError::NotFound(format!("no flag `{key}`")));
        }
        let plan = self.inner.flags.plan_of(key).await.unwrap_or(None);
        let alpha = 0.05;
        let now = now_ms();
        let mut phases = vec![];
        for (phase, ended, variants, change) in self.phases(key).await? {
            let t = self.inner.store.experiment_tallies(key, phase, &metric).await?;
            let index: HashMap<&str, u16> =
                variants.iter().enumerate().map(|(i, (v, _))| (v.as_str(), i as u16)).collect();
            let bucket = |(v, at, n): &(String, i64, u64)| Bucket {
                variant: index.get(v.as_str()).copied().unwrap_or(u16::MAX),
                at: *at,
                users: *n,
            };
            let end = ended.unwrap_or(now);
            let vs: Vec<Variant> = variants.iter().map(|(n, w)| Variant { name: n.clone(), weight: *w }).collect();
            let options = Options { method, alpha, start: phase, end, points: 60 };
            let analysis = analyse_tallies(&vs, t.exposed.iter().map(bucket), t.converted.iter().map(bucket), &options);
            let users: u64 = t.exposed.iter().map(|b| b.2).sum();
            let winner = winner(&analysis);
            let mut guardrails = vec![];
            for w in plan.iter().flat_map(|p| p.watch.iter()) {
                let mut per = vec![];
                let mut error = None;
                for (v, _) in &variants {
                    let side = Side { tag: Some((crew_flags::tag_key(key), vec![v.clone()])), from: phase, to: end };
                    match self.inner.feedback.reading(w, &side).await {
                        Ok(Some((value, n))) => per.push((v.clone(), Some(value), n)),
                        Ok(None) => per.push((v.clone(), None, 0)),
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                guardrails.push(Guardrail {
                    series: w.label(),
                    direction: w.direction.as_str().to_string(),
                    variants: per,
                    error,
                });
            }
            let deploys = self
                .inner
                .metrics
                .markers(phase, end, true, false)
                .await?
                .into_iter()
                .filter(|e| e.kind == kind::DEPLOY_FINISHED || e.kind == kind::DEPLOY_ROLLED_BACK)
                .map(|e| Marker {
                    at_ms: e.at.timestamp_millis(),
                    href: e.data["deploy"].as_i64().map(|id| format!("/deploys/{id}")).unwrap_or_default(),
                    summary: e.summary,
                })
                .collect();
            phases.push(Phase {
                phase,
                started_ms: phase,
                ended_ms: ended,
                change,
                users,
                sampled: users >= self.inner.config.max_users,
                analysis,
                winner,
                guardrails,
                deploys,
            });
        }
        Ok(Results {
            flag: key.to_string(),
            metric,
            method: method_word(method),
            alpha,
            max_users: self.inner.config.max_users,
            phases,
        })
    }

    /// Checks the sample ratio of every experiment that took exposures since the last check, and announces a
    /// mismatch once per phase, naming the change that preceded it.
    pub async fn check_ratios(&self) -> Result<(), ApiError> {
        let touched = std::mem::take(&mut self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).touched);
        let compiled = self.inner.flags.current();
        for (flag, phase) in touched {
            let Some(split) = compiled.splits.get(&flag).filter(|s| s.phase == phase) else { continue };
            if self.announced(&flag, phase).await? {
                continue;
            }
            let counts: HashMap<String, u64> =
                self.inner.store.experiment_counts(&flag, phase).await?.into_iter().collect();
            let users: Vec<u64> = split.variants.iter().map(|(v, _)| counts.get(v).copied().unwrap_or(0)).collect();
            let weights: Vec<f64> = split.variants.iter().map(|(_, w)| *w).collect();
            let srm = crew_experiments::srm(&users, &weights);
            if !srm.mismatch {
                continue;
            }
            let preceding = self.preceding_change(phase).await?;
            let split_words: Vec<String> =
                split.variants.iter().zip(&users).map(|((v, w), n)| format!("{v} {n} (weight {w})")).collect();
            let before = match &preceding {
                Some(e) => format!("; the change before it: {}", e.summary),
                None => String::new(),
            };
            let summary = format!(
                "bucket test {flag}: sample ratio mismatch, users {} (chi-square p = {:.1e}){before}",
                split_words.join(", "),
                srm.p_value
            );
            let event = NewEvent::new(
                Actor::new("crew", Via::Scheduler),
                kind::EXPERIMENT_SRM,
                &format!("flag:{flag}"),
                summary.chars().take(480).collect::<String>(),
            )
            .with_data(json!({
                "flag": flag, "phase": phase, "users": users, "weights": weights,
                "chi_square": srm.chi_square, "p_value": srm.p_value,
                "preceding": preceding.as_ref().map(|e| json!({"id": e.id, "kind": e.kind, "summary": e.summary})),
            }))
            .with_link("results", &format!("/flags/{flag}/results"));
            self.inner.timeline.append_system(vec![event]).await?;
            self.inner.announced.lock().await.insert((flag, phase), true);
        }
        Ok(())
    }

    /// Whether this phase's mismatch was announced already (on any replica, before a restart too).
    async fn announced(&self, flag: &str, phase: i64) -> Result<bool, ApiError> {
        if let Some(a) = self.inner.announced.lock().await.get(&(flag.to_string(), phase)) {
            if *a {
                return Ok(true);
            }
        }
        let mut f = EventFilter::new().limit(50);
        f.kind = Some(kind::EXPERIMENT_SRM.into());
        f.subject = Some(format!("flag:{flag}"));
        let done = self.inner.timeline.query(&f).await?.events.iter().any(|e| e.data["phase"].as_i64() == Some(phase));
        if done {
            self.inner.announced.lock().await.insert((flag.to_string(), phase), true);
        }
        Ok(done)
    }

    /// The newest deploy or flag change at or before now (the phase's own change at the latest).
    async fn preceding_change(&self, phase: i64) -> Result<Option<Event>, ApiError> {
        let mut best: Option<Event> = None;
        for area in [kind::DEPLOY_FINISHED, kind::FLAG_CHANGED] {
            let mut f = EventFilter::new().limit(1);
            f.kind = Some(area.into());
            let e = self.inner.timeline.query(&f).await?.events.into_iter().next();
            if let Some(e) = e.filter(|e| e.at.timestamp_millis() >= phase - 86_400_000) {
                if best.as_ref().is_none_or(|b| e.at > b.at) {
                    best = Some(e);
                }
            }
        }
        Ok(best)
    }
}

/// The variant surely best: a variant whose lift's interval is above 0 with the highest lift, or the control
/// when every other variant's interval is below 0.
fn winner(a: &Analysis) -> Option<String> {
    let others = a.variants.iter().skip(1);
    let best = others
        .clone()
        .filter_map(|v| v.comparison.map(|c| (v, c)))
        .filter(|(_, c)| c.low > 0.0)
        .max_by(|x, y| x.1.lift.total_cmp(&y.1.lift));
    if let Some((v, _)) = best {
        return Some(v.name.clone());
    }
    let all_worse = a.variants.len() > 1 && others.clone().all(|v| v.comparison.is_some_and(|c| c.high < 0.0));
    all_worse.then(|| a.variants[0].name.clone())
}

/// The flush task: writes the buffer every second (and once more at shutdown) and checks sample ratios.
pub fn start(experiments: &Experiments, shutdown: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<()> {
    let x = experiments.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_check = tokio::time::Instant::now();
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Err(e) = x.flush().await {
                tracing::warn!(error = %e, "storing exposures and conversions failed; kept for the next flush");
            }
            if stopping {
                return;
            }
            if last_check.elapsed() >= SRM_EVERY {
                last_check = tokio::time::Instant::now();
                if let Err(e) = x.check_ratios().await {
                    tracing::warn!(error = %e, "checking sample ratios failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_mistakes_name_the_key() {
        let bad = ExperimentsSection { max_users: Some(0), metrics: vec![] };
        assert!(bad.check().unwrap_err().contains("max_users"));
        let bad = ExperimentsSection { max_users: None, metrics: vec!["ok".into(), "no spaces".into()] };
        assert!(bad.check().unwrap_err().contains("metrics[1]"));
        assert!(ExperimentsSection { max_users: Some(10), metrics: vec!["purchase".into()] }.check().is_ok());
    }
}
