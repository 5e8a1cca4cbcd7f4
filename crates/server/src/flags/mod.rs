//! The flags domain: the compiled set every evaluation uses, rebuilt whenever a `flag.changed` event
//! reaches the bus (so a change on any replica reaches every replica's evaluations), and one function per
//! action: list, show, set or remove a definition, turn a knob (Flickr's words), evaluate; a flag's launch plan
//! (`plan.rs`) and its ramps (`ramp.rs`, with the worker that judges them). Every change is an event with
//! before, after and reason.

pub mod api;
pub mod ofrep;
pub mod plan;
pub mod ramp;
pub mod web;

use crate::error::ApiError;
use crew_core::{kind, Actor, Event, EventFilter, NewEvent};
use crew_flags::knobs::Knob;
use crew_flags::{knobs, Flag, FlagSet, Fractional};
use crew_store::{Store, StoredFlag};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The flags as evaluations see them.
pub struct Compiled {
    pub set: FlagSet,
    pub stored: Vec<StoredFlag>,
    /// Changes whenever any definition changes: the bulk OFREP ETag is made from it.
    pub version: String,
    /// Some rule reads `$flagd.timestamp`: answers change with time, so no ETag can promise they did not.
    pub uses_time: bool,
    /// The split flags (bucket tests) by key: what an evaluation exposes a user to.
    pub splits: std::collections::HashMap<String, Split>,
}

/// A split flag as an experiment sees it: the phase its definition makes (the time of that definition's
/// `flag.changed` event, Unix ms) and its variants with their weights, control first.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub phase: i64,
    pub variants: Vec<(String, f64)>,
}

/// The current compiled set, and a way to hear of the next one.
pub struct FlagCache {
    current: tokio::sync::watch::Sender<Arc<Compiled>>,
    /// One reload at a time, so a slow reload that read older rows never publishes after a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// `[flags] fractional`: how every set this cache compiles buckets.
    fractional: Fractional,
}

impl Default for FlagCache {
    fn default() -> Self {
        FlagCache::new(Fractional::default())
    }
}

impl FlagCache {
    /// An empty cache whose sets bucket as `fractional` says.
    pub fn new(fractional: Fractional) -> Self {
        let empty = Arc::new(Compiled {
            set: FlagSet::default(),
            stored: Vec::new(),
            version: String::new(),
            uses_time: false,
            splits: Default::default(),
        });
        FlagCache {
            current: tokio::sync::watch::Sender::new(empty),
            reloading: tokio::sync::Mutex::new(()),
            fractional,
        }
    }

    pub fn current(&self) -> Arc<Compiled> {
        self.current.borrow().clone()
    }

    /// Wakes whenever the set changes (the definitions stream pushes each change).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Compiled>> {
        self.current.subscribe()
    }

    /// Reads every definition from the store and compiles the set.
    pub async fn reload(&self, store: &dyn Store) -> anyhow::Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        let stored = store.flags().await?;
        let mut flags = Map::new();
        let mut hash = Sha256::new();
        // The bucketing is part of every answer, so a restart with another one makes a new version (and ETag).
        hash.update(self.fractional.as_str().as_bytes());
        for f in &stored {
            flags.insert(f.key.clone(), f.definition.clone());
            hash.update(f.key.as_bytes());
            hash.update(f.definition.to_string().as_bytes());
            // A definition set again anew starts a new experiment phase, so its time is part of the version.
            hash.update(f.updated_at.timestamp_millis().to_le_bytes());
        }
        let set = FlagSet::from_value(&json!({ "flags": flags }))?.with_fractional(self.fractional);
        let version = format!("{:x}", hash.finalize())[..16].to_string();
        let uses_time = stored.iter().any(|f| f.definition.to_string().contains("$flagd.timestamp"));
        let splits = stored
            .iter()
            .filter_map(|f| {
                let variants = knobs::split_of(&f.definition)?;
                Some((f.key.clone(), Split { phase: f.updated_at.timestamp_millis(), variants }))
            })
            .collect();
        let changed = self.current.borrow().version != version;
        if changed {
            self.current.send_replace(Arc::new(Compiled { set, stored, version, uses_time, splits }));
        }
        Ok(())
    }
}

/// `[flags]` of crew.toml.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagsSection {
    /// A rollout or a ramp past this percent needs a launch plan (none required when absent).
    pub require_plan_above: Option<u8>,
    /// How `fractional` buckets: `v2` (flagd 0.15 and 0.16, the default) or `v3` (flagd-testbed 3.9.0's
    /// `@fractional-v3`: non-string values hashed as deterministic CBOR).
    pub fractional: Option<Fractional>,
}

impl FlagsSection {
    pub fn check(&self) -> Result<(), String> {
        match self.require_plan_above {
            Some(n) if n > 100 => Err(format!("[flags] require_plan_above = {n}: a percent from 0 to 100")),
            _ => Ok(()),
        }
    }
}

/// What the flags service needs of the settings.
#[derive(Debug, Clone)]
pub struct FlagsConfig {
    /// `[flags] require_plan_above`.
    pub require_plan_above: Option<u8>,
    /// The metrics flush interval: a ramp's steps are no shorter.
    pub flush: std::time::Duration,
}

/// The flags service: the store, this replica's compiled set, and the judge's reading of the series (ramps).
#[derive(Clone)]
pub struct Flags {
    store: Arc<dyn Store>,
    cache: Arc<FlagCache>,
    feedback: crate::feedback::Feedback,
    config: FlagsConfig,
}

/// A reason for a change: one line of at most 300 characters.
pub fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() {
        return Err(ApiError::BadRequest("a flag change needs a reason (--reason), so the timeline says why".into()));
    }
    if reason.chars().count() > 300 || reason.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("reason: one line of at most 300 characters".into()));
    }
    Ok(())
}

/// Flag keys: letters, digits, `-`, `_`, `.`.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    let ok =
        !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "bad flag key `{}`: use letters, digits, `-`, `_` or `.`",
            key.escape_debug()
        )))
    }
}

/// A knob from its words (`on`, `off`, `rollout`, `dark`, `beta`, `split`) and its arguments, the same for
/// the API, the web form and the robot.
pub fn knob(
    word: &str,
    percent: Option<u8>,
    users: Vec<String>,
    groups: Vec<String>,
    split: Option<&str>,
) -> Result<Knob, ApiError> {
    let percent = || percent.ok_or_else(|| ApiError::BadRequest(format!("`{word}` needs a percent")));
    Ok(match word {
        "on" => Knob::On,
        "off" => Knob::Off,
        "rollout" => Knob::Rollout(percent()?),
        "dark" => Knob::Dark(percent()?),
        "beta" => Knob::Beta { users, groups },
        "split" => Knob::Split(knobs::parse_split(split.unwrap_or("")).map_err(ApiError::BadRequest)?),
        other => {
            return Err(ApiError::BadRequest(format!("unknown knob `{other}`: on, off, rollout, beta, dark or split")))
        }
    })
}

impl Flags {
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<FlagCache>,
        feedback: crate::feedback::Feedback,
        config: FlagsConfig,
    ) -> Self {
        Flags { store, cache, feedback, config }
    }

    /// A flag's launch plan, parsed.
    pub async fn plan_of(&self, key: &str) -> Result<Option<plan::Plan>, ApiError> {
        check_key(key)?;
        match self.store.flag_plan(key).await? {
            None => Ok(None),
            Some(p) => plan::Plan::from_json(&p.plan)
                .map(Some)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("flag `{key}`'s stored plan: {e}"))),
        }
    }

    /// A flag's launch plan as stored, and its warnings (watched series crew has never received).
    pub async fn show_plan(&self, key: &str) -> Result<(crew_store::StoredPlan, plan::Plan, Vec<String>), ApiError> {
        check_key(key)?;
        let stored = self
            .store
            .flag_plan(key)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("flag `{key}` has no launch plan")))?;
        let p = plan::Plan::from_json(&stored.plan)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("flag `{key}`'s stored plan: {e}")))?;
        let warnings = self.unseen_warnings(&p);
        Ok((stored, p, warnings))
    }

    /// Sets (replaces) a flag's launch plan, checked, with its `flag.plan` event (before and after). Returns the
    /// plan before, the plan now, and warnings.
    pub async fn set_plan(
        &self,
        key: &str,
        plan: plan::Plan,
        actor: Actor,
    ) -> Result<(Option<Value>, Value, Vec<String>), ApiError> {
        check_key(key)?;
        plan.check().map_err(ApiError::Unprocessable)?;
        if !self.current().stored.iter().any(|f| f.key == key)
            && !self.store.flags().await?.iter().any(|f| f.key == key)
        {
            return Err(ApiError::NotFound(format!("no flag `{key}`: make it first (crew flag {key} off -r why)")));
        }
        let warnings = self.unseen_warnings(&plan);
        let after = serde_json::to_value(&plan).map_err(|e| ApiError::Internal(e.into()))?;
        let (a, k, w, words) = (actor.clone(), key.to_string(), warnings.clone(), plan.describe());
        let after_e = after.clone();
        let event = Box::new(move |before: Option<&Value>| {
            let verb = if before.is_some() { "replaced" } else { "set" };
            let summary = format!("{} {verb} the launch plan of flag {k}: {words}", a.name);
            NewEvent::new(a, kind::FLAG_PLAN, &format!("flag:{k}"), summary.chars().take(480).collect::<String>())
                .with_data(json!({"flag": k, "before": before, "after": after_e, "warnings": w}))
                .with_link("flag", &format!("/flags/{k}"))
        });
        let (before, _) = self.store.put_flag_plan(key, Some(after.clone()), &actor.name, event).await?;
        Ok((before, after, warnings))
    }

    /// `[flags] require_plan_above`: a rollout past it needs a launch plan.
    async fn check_plan_required(&self, key: &str, knob: &Knob) -> Result<(), ApiError> {
        let (Some(limit), Knob::Rollout(n)) = (self.config.require_plan_above, knob) else { return Ok(()) };
        if *n > limit && self.store.flag_plan(key).await?.is_none() {
            return Err(ApiError::Conflict(format!(
                "flag `{key}` has no launch plan: [flags] require_plan_above = {limit} refuses a rollout past {limit}% \
                 without one (crew flag {key} plan --file plan.toml)"
            )));
        }
        Ok(())
    }

    /// The compiled set evaluations use now.
    pub fn current(&self) -> Arc<Compiled> {
        self.cache.current()
    }

    /// Wakes whenever the set changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Compiled>> {
        self.cache.subscribe()
    }

    /// Reads every definition again (at start, and when the bus says a flag changed).
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.cache.reload(&*self.store).await
    }

    /// One flag as stored, and its last change on the timeline.
    pub async fn show(&self, key: &str, history: u32) -> Result<(StoredFlag, Vec<Event>), ApiError> {
        check_key(key)?;
        let c = self.current();
        let f = c.stored.iter().find(|f| f.key == key).cloned();
        let f = f.ok_or_else(|| ApiError::NotFound(format!("no flag `{key}`")))?;
        let mut filter = EventFilter::new().limit(history);
        filter.subject = Some(format!("flag:{key}"));
        Ok((f, self.store.query(&filter).await?.events))
    }

    /// Turns a knob (Flickr's words) on a flag: the new definition is built on the latest stored one (whichever
    /// replica wrote it) and stored with its event. With `must_exist`, a flag that is not there is `NotFound`
    /// (switching off always needs one).
    pub async fn turn(
        &self,
        key: &str,
        knob: &Knob,
        must_exist: bool,
        reason: &str,
        actor: Actor,
    ) -> Result<(Option<Value>, Option<Value>), ApiError> {
        check_key(key)?;
        let current = self.store.flags().await?.into_iter().find(|f| f.key == key).map(|f| f.definition);
        if current.is_none() && (must_exist || *knob == Knob::Off) {
            let what = if *knob == Knob::Off { " to switch off" } else { "" };
            return Err(ApiError::NotFound(format!("no flag `{key}`{what}")));
        }
        self.check_plan_required(key, knob).await?;
        let next = knobs::apply(current.as_ref(), knob).map_err(ApiError::BadRequest)?;
        self.change(key, Some(next), reason, actor).await
    }

    /// Stores a new definition (or removes one with `None`), validated first, with its `flag.changed` event.
    pub async fn change(
        &self,
        key: &str,
        definition: Option<Value>,
        reason: &str,
        actor: Actor,
    ) -> Result<(Option<Value>, Option<Value>), ApiError> {
        check_key(key)?;
        check_reason(reason)?;
        if let Some(def) = &definition {
            Flag::compile(key, def, &Map::new()).map_err(|e| ApiError::Unprocessable(e.0))?;
        }
        let after = definition.clone();
        let by = actor.name.clone();
        let (name, reason_s, key_s) = (actor.name.clone(), reason.to_string(), key.to_string());
        let event = Box::new(move |before: Option<&Value>| {
            let words = |d: Option<&Value>| d.map(knobs::describe).unwrap_or_else(|| "absent".into());
            let summary =
                format!("{name} changed flag {key_s}: {} → {} ({reason_s})", words(before), words(after.as_ref()));
            let summary: String = summary.chars().take(480).collect();
            NewEvent::new(actor, kind::FLAG_CHANGED, &format!("flag:{key_s}"), summary)
                .with_data(json!({"flag": key_s, "before": before, "after": after, "reason": reason_s}))
                .with_link("flag", &format!("/api/v1/flags/{key_s}"))
        });
        let (before, _) = self.store.put_flag(key, definition.clone(), &by, event).await?;
        // This replica's evaluations change at once; the bus brings the others.
        if let Err(e) = self.reload().await {
            tracing::error!(error = %e, "reloading flags failed");
        }
        Ok((before, definition))
    }
}

/// Keeps the cache in step with the timeline: every `flag.changed` (from any replica) reloads it.
pub async fn follow_changes(
    flags: Flags,
    shutdown: tokio_util::sync::CancellationToken,
    mut bus: tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
) {
    // Whatever changed between subscribing and now is read by this first reload.
    if let Err(e) = flags.reload().await {
        tracing::error!(error = %e, "reloading flags failed");
    }
    loop {
        let changed = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = bus.recv() => match e {
                Ok(e) => kind::is_under(&e.kind, kind::FLAG),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(_) => return,
            },
        };
        if changed {
            if let Err(e) = flags.reload().await {
                tracing::error!(error = %e, "reloading flags failed; evaluations keep the last good set");
            }
        }
    }
}

impl Compiled {
    /// The flagd document of every definition, for SDKs that evaluate locally, with how `fractional` buckets
    /// (`"fractional": "v2"`), so they bucket as the server does.
    pub fn document(&self) -> Value {
        let flags: Map<String, Value> = self.stored.iter().map(|f| (f.key.clone(), f.definition.clone())).collect();
        json!({"version": self.version, "fractional": self.set.fractional().as_str(), "flags": flags})
    }
}
