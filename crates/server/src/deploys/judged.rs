//! A deploy's gate (`[environments.NAME.watch]`): every `interval` for `window` the judge compares the canary
//! hosts' series (their `host` tag) with the baseline hosts', or, without canaries, the window after the switch
//! with the window before it. A failing verdict acts at once (`on_fail`): switch back by itself (the deployer is
//! paged by the incidents domain on the verdict's event), or hold for a person's decision (`deploy.decided`,
//! switched back when none comes within the window). A marginal verdict, or no data at the window's end, holds
//! the same way; a first deploy (no baseline data anywhere) is not judged and says so. `dry_run` records and
//! never acts. Each verdict that ends the watch is a `deploy.judged` event, metric by metric.

use crate::feedback::{Feedback, Side};
use crew_core::{kind, Actor, NewEvent};
use crew_deploy::{Gate, Journal, OnFail, Proceed, Stage, Watch};
use crew_judge::{JudgeConfig, Verdict};
use crew_store::{Deploy, Store};
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub(super) struct Judged {
    pub feedback: Feedback,
    pub store: Arc<dyn Store>,
    pub deploy: Deploy,
    pub watch: Option<Watch>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// What the watch did with a verdict, as its event says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Proceed,
    SwitchBack,
    Hold,
    /// A dry run, or a first deploy: recorded only.
    None,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Proceed => "proceed",
            Action::SwitchBack => "switch_back",
            Action::Hold => "hold",
            Action::None => "none",
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A person's decision on a held deploy, as its event carries it.
pub const PROCEED: &str = "proceed";
pub const SWITCH_BACK: &str = "switch_back";

impl Gate for Judged {
    fn judge<'a>(&'a self, stage: Stage<'a>, journal: &'a dyn Journal) -> BoxFuture<'a, Proceed> {
        Box::pin(async move {
            match &self.watch {
                None => Proceed::Yes,
                Some(w) => self.watch(w, stage, journal).await,
            }
        })
    }
}

impl Judged {
    async fn watch(&self, w: &Watch, stage: Stage<'_>, journal: &dyn Journal) -> Proceed {
        let start = now_ms();
        let window = w.window();
        let interval = w.interval();
        let tag = |hosts: &[String]| Some(("host".to_string(), hosts.to_vec()));
        let (what, canary_tag, baseline) = match stage {
            Stage::Canary { canaries, baseline } => (
                format!("canary {} against baseline {}", canaries.join(", "), baseline.join(", ")),
                tag(canaries),
                Side { tag: tag(baseline), from: start, to: start },
            ),
            Stage::Whole { hosts } => (
                format!("{} after the switch against the {} before", hosts.join(", "), human(window)),
                tag(hosts),
                Side { tag: tag(hosts), from: start - window.as_millis() as i64, to: start },
            ),
        };
        // A canary's baseline runs beside it, so its window grows with the canary's; without canaries the
        // baseline is the fixed window before the switch.
        let growing_baseline = matches!(stage, Stage::Canary { .. });
        journal.line(format!(
            "judge: {what}, every {} for {}{}",
            human(interval),
            human(window),
            if w.dry_run { " (dry run: records, never acts)" } else { "" }
        ));
        if self.deploy.previous.is_none() {
            let why = "not judged: a first deploy, the environment has no baseline release";
            journal.line(format!("judge: {why}"));
            let v = crate::feedback::Verdict {
                judgement: crew_judge::Judgement {
                    verdict: Verdict::NoData,
                    score: None,
                    why: why.into(),
                    metrics: vec![],
                },
                unseen: self.feedback.unseen(&w.series),
                baseline_seen: false,
            };
            self.record(w, &what, &v, Action::None, "the deploy goes on").await;
            return Proceed::Yes;
        }
        let config = JudgeConfig::default();
        let mut bus = self.store.subscribe();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Proceed::SwitchBack("the crew server is stopping".into()),
                _ = tokio::time::sleep(interval) => {}
            }
            let now = now_ms();
            let canary = Side { tag: canary_tag.clone(), from: start, to: now };
            let base = if growing_baseline { Side { to: now, ..baseline.clone() } } else { baseline.clone() };
            let v = match self.feedback.judge(&w.series, &canary, &base, &config).await {
                Ok(v) => v,
                Err(e) => {
                    journal.line(format!("judge: could not read the series: {e}"));
                    continue;
                }
            };
            let j = &v.judgement;
            let elapsed = Duration::from_millis((now - start).max(0) as u64);
            journal.line(format!("judge: {} after {}: {}", j.verdict.as_str(), human(elapsed), j.why));
            let done = elapsed >= window;
            let action = match j.verdict {
                Verdict::Fail if w.dry_run => Action::None,
                Verdict::Fail => match w.on_fail {
                    OnFail::Rollback => Action::SwitchBack,
                    OnFail::Page | OnFail::Pause => Action::Hold,
                },
                _ if !done => continue,
                Verdict::Pass => Action::Proceed,
                _ if w.dry_run => Action::None,
                _ if !v.baseline_seen => {
                    self.record(w, &what, &v, Action::None, "not judged: the baseline has no data (a first deploy?)")
                        .await;
                    journal.line("judge: not judged: the baseline has no data for any watched series".into());
                    return Proceed::Yes;
                }
                _ => Action::Hold,
            };
            let note = match action {
                Action::None => "dry run: recorded, nothing done",
                Action::Proceed => "the rest switch",
                Action::SwitchBack => "every switched host switches back",
                Action::Hold => "held for a person's decision",
            };
            self.record(w, &what, &v, action, note).await;
            return match action {
                Action::None | Action::Proceed => Proceed::Yes,
                Action::SwitchBack => Proceed::SwitchBack(format!("the judge failed the canary: {}", j.why)),
                Action::Hold => self.hold(w, &mut bus, journal).await,
            };
        }
    }

    /// Waits for a person's decision (`deploy.decided` for this deploy, from any replica) for one window; none
    /// switches back.
    async fn hold(
        &self,
        w: &Watch,
        bus: &mut tokio::sync::broadcast::Receiver<Arc<crew_core::Event>>,
        journal: &dyn Journal,
    ) -> Proceed {
        let id = self.deploy.id;
        journal.line(format!(
            "judge: held; decide within {} with `crew decide {id} proceed` or `crew decide {id} switch-back` \
             (none switches back)",
            human(w.window())
        ));
        let deadline = tokio::time::sleep(w.window());
        tokio::pin!(deadline);
        loop {
            let e = tokio::select! {
                _ = &mut deadline => return Proceed::SwitchBack(format!("held by the judge and nobody decided within {}", human(w.window()))),
                _ = self.shutdown.cancelled() => return Proceed::SwitchBack("the crew server is stopping".into()),
                e = bus.recv() => e,
            };
            let e = match e {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return Proceed::SwitchBack("the timeline closed".into()),
            };
            if e.kind != kind::DEPLOY_DECIDED || e.data["deploy"].as_i64() != Some(id) {
                continue;
            }
            let who = &e.actor.name;
            return match e.data["decision"].as_str() {
                Some(PROCEED) => {
                    journal.line(format!("judge: {who} decided to go on"));
                    Proceed::Yes
                }
                _ => Proceed::SwitchBack(format!("{who} decided to switch back")),
            };
        }
    }

    /// The `deploy.judged` event: the verdict metric by metric, what was done, and who deployed (the incidents
    /// domain pages them when the canary was switched back or held).
    async fn record(&self, w: &Watch, what: &str, v: &crate::feedback::Verdict, action: Action, note: &str) {
        let d = &self.deploy;
        let j = &v.judgement;
        let page = matches!(action, Action::SwitchBack) || (action == Action::Hold && w.on_fail != OnFail::Pause);
        let summary = format!(
            "judge: deploy #{} of {} to {}: {}{} — {} ({note})",
            d.id,
            d.app,
            d.environment,
            j.verdict.as_str(),
            j.score.map(|s| format!(" (score {s:.0})")).unwrap_or_default(),
            j.why,
        );
        let summary: String = summary.chars().filter(|c| !c.is_control()).take(480).collect();
        let event =
            NewEvent::new(Actor::system(), kind::DEPLOY_JUDGED, &format!("{}/{}", d.app, d.environment), summary)
                .with_data(json!({
                    "deploy": d.id, "environment": d.environment, "deployer": d.actor, "compared": what,
                    "verdict": j.verdict, "score": j.score, "why": j.why, "metrics": j.metrics,
                    "unseen": v.unseen, "action": action.as_str(), "dry_run": w.dry_run, "page": page,
                    "on_fail": w.on_fail.as_str(),
                }))
                .with_link("deploy", &format!("/deploys/{}", d.id));
        if let Err(e) = self.store.append(vec![event]).await {
            tracing::error!(error = %e, deploy = d.id, "recording the judge's verdict failed");
        }
    }
}
