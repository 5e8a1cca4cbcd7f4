//! Blameless postmortems: drafted at resolve from the real timeline — summary, impact (the alert's series as
//! an SVG graph with the deploy and flag markers and the threshold, drawn by the metrics service, and how long
//! it was over its threshold), TTD, TTA, TTR, the changes before it, every event of any kind in
//! `[start − context, end]` and the lines said in the incident's room (as the chat service kept them, at most
//! [`ROOM_LINES_MAX`]) — with sections for people (contributing
//! factors, what made sense at the time, what went well, action items). No field asks who is to blame. States
//! draft → in review → published, each an event. Action items are Markdown checklist lines; those crew can check
//! ("runbook NAME exists", "an alert rule covers SERIES") close themselves when they come true.

use super::{human_secs, subject, Incidents};
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use crew_core::{kind, Actor, EventFilter, NewEvent, PostmortemState, Via};
use crew_store::{Incident, Postmortem};
use serde::Serialize;
use serde_json::json;

/// The longest postmortem kept.
pub const MARKDOWN_MAX: usize = 256 * 1024;

/// The most lines said in the incident's room that a draft lists.
pub const ROOM_LINES_MAX: i64 = 10_000;

/// One action item, as its checklist line says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionItem {
    pub text: String,
    pub done: bool,
    pub owner: Option<String>,
    /// What crew can check for it, if anything: `runbook runbooks/x.md` or `alert www.errors`.
    pub check: Option<String>,
}

/// The postmortem with its parsed action items.
#[derive(Debug, Clone, Serialize)]
pub struct PostmortemView {
    #[serde(flatten)]
    pub postmortem: Postmortem,
    pub action_items: Vec<ActionItem>,
}

/// The action items of a postmortem's `## Action items` section: `- [ ] text (owner: NAME)`.
pub fn action_items(md: &str) -> Vec<ActionItem> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            inside = t.trim_start_matches('#').trim().eq_ignore_ascii_case("action items");
            continue;
        }
        if !inside {
            continue;
        }
        let (done, rest) = if let Some(r) = t.strip_prefix("- [ ] ") {
            (false, r)
        } else if let Some(r) = t.strip_prefix("- [x] ").or_else(|| t.strip_prefix("- [X] ")) {
            (true, r)
        } else {
            continue;
        };
        let (text, owner) = match rest.rsplit_once("(owner:") {
            Some((t, o)) => (t.trim().to_string(), Some(o.trim_end_matches(')').trim().to_string())),
            None => (rest.trim().to_string(), None),
        };
        out.push(ActionItem { check: checkable(&text), text, done, owner });
    }
    out
}

/// What crew can check of an item: "runbook X exists", "an alert rule covers Y" (any wording around them).
fn checkable(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = text.split_whitespace().collect();
    let after = |word: &str| {
        let i = words.iter().position(|w| w.eq_ignore_ascii_case(word))?;
        words.get(i + 1).map(|w| w.trim_matches(|c: char| c == '`' || c == ',' || c == '.').to_string())
    };
    if lower.contains("runbook") && lower.contains("exist") {
        return after("runbook").map(|r| format!("runbook {r}"));
    }
    if lower.contains("alert") && lower.contains("covers") {
        return after("covers").map(|s| format!("alert {s}"));
    }
    None
}

impl Incidents {
    pub async fn postmortem(&self, id: i64) -> Result<PostmortemView, ApiError> {
        self.get(id).await?;
        let Some(pm) = self.store.postmortem(id).await? else {
            return Err(ApiError::NotFound(format!(
                "incident #{id} has no postmortem yet: it is drafted when it is resolved"
            )));
        };
        let pm = self.close_checked_items(pm).await?;
        let action_items = action_items(&pm.markdown);
        Ok(PostmortemView { postmortem: pm, action_items })
    }

    /// Closes the open action items crew can check that are true now, each with an event.
    async fn close_checked_items(&self, pm: Postmortem) -> Result<Postmortem, ApiError> {
        if pm.state == PostmortemState::Published {
            return Ok(pm);
        }
        let mut md = pm.markdown.clone();
        let mut closed = Vec::new();
        for item in action_items(&pm.markdown).into_iter().filter(|i| !i.done) {
            let Some(check) = &item.check else { continue };
            let holds = match check.split_once(' ') {
                Some(("runbook", name)) => self.runbooks.get(name).await.is_ok(),
                Some(("alert", series)) => self.platform.settings.alerts.iter().any(|r| r.series == series),
                _ => false,
            };
            if holds {
                md = md.replacen(&format!("- [ ] {}", item.text), &format!("- [x] {}", item.text), 1);
                closed.push(item);
            }
        }
        if closed.is_empty() {
            return Ok(pm);
        }
        let id = pm.incident;
        let texts: Vec<String> = closed.iter().map(|i| i.text.clone()).collect();
        let state = pm.state;
        let e = NewEvent::new(
            Actor::new("crew", Via::Scheduler),
            kind::INCIDENT_ACTION_DONE,
            &subject(id),
            format!("#{id} postmortem: done by itself: {}", texts.join("; ")),
        )
        .with_data(json!({"incident": id, "items": texts}));
        self.store.put_postmortem(id, state, &md, "crew", Box::new(move |_| Ok(Some(e)))).await?;
        Ok(self.store.postmortem(id).await?.unwrap_or(pm))
    }

    /// Edits a postmortem (its Markdown, its state, or both). A published one is final.
    pub async fn put_postmortem(
        &self,
        id: i64,
        markdown: Option<&str>,
        state: Option<PostmortemState>,
        actor: Actor,
    ) -> Result<PostmortemView, ApiError> {
        if let Some(md) = markdown {
            if md.len() > MARKDOWN_MAX {
                return Err(ApiError::BadRequest(format!("`markdown`: at most {MARKDOWN_MAX} bytes")));
            }
        }
        let current = self.store.postmortem(id).await?;
        let Some(current) = current else {
            self.get(id).await?;
            return Err(ApiError::NotFound(format!(
                "incident #{id} has no postmortem yet: it is drafted when it is resolved"
            )));
        };
        let new_state = state.unwrap_or(current.state);
        let md = markdown.map(str::to_string).unwrap_or_else(|| current.markdown.clone());
        let a = actor.clone();
        self.store
            .put_postmortem(
                id,
                new_state,
                &md,
                &actor.name,
                Box::new(move |before: Option<&Postmortem>| {
                    let before = before.ok_or_else(|| "no postmortem".to_string())?;
                    if before.state == PostmortemState::Published {
                        return Err(format!("the postmortem of #{id} is published: it no longer changes"));
                    }
                    let what = if before.state != new_state {
                        format!("moved to {}", new_state.as_str().replace('_', " "))
                    } else {
                        "edited".to_string()
                    };
                    Ok(Some(
                        NewEvent::new(
                            a.clone(),
                            kind::INCIDENT_POSTMORTEM,
                            &subject(id),
                            format!("#{id} postmortem {what} by {}", a.name),
                        )
                        .with_data(json!({"incident": id, "state": new_state, "before": before.state}))
                        .with_link("postmortem", &format!("/incidents/{id}/postmortem")),
                    ))
                }),
            )
            .await?;
        self.postmortem(id).await
    }

    /// Drafts the postmortem of a resolved incident, unless it has one.
    pub async fn draft_postmortem(&self, inc: &Incident) -> Result<(), ApiError> {
        if self.store.postmortem(inc.id).await?.is_some() {
            return Ok(());
        }
        let md = self.draft_markdown(inc).await?;
        let id = inc.id;
        let e = NewEvent::new(
            Actor::new("crew", Via::Scheduler),
            kind::INCIDENT_POSTMORTEM,
            &subject(id),
            format!("#{id} postmortem drafted from the timeline: edit it, then move it to review"),
        )
        .with_data(json!({"incident": id, "state": PostmortemState::Draft}))
        .with_link("postmortem", &format!("/incidents/{id}/postmortem"));
        self.store
            .put_postmortem(
                id,
                PostmortemState::Draft,
                &md,
                "crew",
                Box::new(move |before: Option<&Postmortem>| Ok(before.is_none().then_some(e))),
            )
            .await?;
        Ok(())
    }

    async fn draft_markdown(&self, inc: &Incident) -> Result<String, ApiError> {
        let end = inc.resolved_at.unwrap_or_else(Utc::now);
        let context =
            chrono::Duration::from_std(self.oncall.config.context).unwrap_or_else(|_| chrono::Duration::minutes(30));
        let start = inc.triggered_at - context;
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let mut md = format!("# Postmortem: #{} {}\n\n", inc.id, inc.summary);
        md.push_str(
            "_Blameless: this is about how the system and its circumstances let this happen, never about who._\n\n",
        );
        md.push_str("## Summary\n\n");
        let ttr = (end - inc.triggered_at).num_seconds();
        md.push_str(&format!(
            "{} ({} severity, from {}) triggered at {} and was resolved after {}.\n\n",
            inc.summary,
            inc.severity,
            inc.source,
            fmt(inc.triggered_at),
            human_secs(ttr)
        ));
        // Impact: the alert's series and how long it was over its threshold.
        md.push_str("## Impact\n\n");
        let alert = inc.details.get("alert").and_then(|a| a.as_str());
        let series = inc.details.get("series").and_then(|s| s.as_str());
        let mut breach_since: Option<DateTime<Utc>> = None;
        if let Some(ev) = inc.details.get("event").and_then(|e| e.as_str()) {
            if let Ok(e) = self.timeline.one(ev).await {
                breach_since =
                    e.data["breach_since"].as_str().and_then(|t| crew_core::time::parse_time(t, Utc::now()).ok());
            }
        }
        if breach_since.is_none() {
            breach_since = inc.details["alerts"].as_array().and_then(|a| {
                a.iter()
                    .filter_map(|x| x["starts_at"].as_str())
                    .filter_map(|t| crew_core::time::parse_time(t, Utc::now()).ok())
                    .min()
            });
        }
        match (alert, series) {
            (Some(a), Some(s)) => {
                let over =
                    breach_since.map(|b| human_secs((end - b).num_seconds())).unwrap_or_else(|| "unknown".into());
                let name = crate::metrics::split_key(s).0;
                let q = url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>();
                md.push_str(&format!(
                    "- The alert **{a}** on `{s}` ({} {} {}): over its threshold for {over}.\n- The graph, live: [/graphs?q={q}](/graphs?q={q}&range=6h)\n",
                    inc.details["stat"].as_str().unwrap_or(""),
                    inc.details["op"].as_str().unwrap_or(""),
                    inc.details["threshold"],
                ));
                // The series over the whole window, with crew's changes on it and the threshold: an HTML block
                // (its own lines, blank lines around it) that the postmortem page lets through its SVG allow-list.
                let stat = inc.details["stat"].as_str();
                let threshold = inc.details["threshold"].as_f64();
                match self.metrics.graph(s, stat, start.timestamp(), end.timestamp(), threshold).await {
                    Ok(Some(svg)) => {
                        let svg = svg.replace(['\r', '\n'], " ");
                        let (open, rest) = svg.split_once('>').unwrap_or((&svg, ""));
                        md.push_str(&format!("\n{open}>\n{rest}\n\n"));
                    }
                    Ok(None) => md.push_str(&format!("- No points of `{s}` are stored for the window.\n")),
                    Err(e) => md.push_str(&format!("- The graph of `{s}` could not be drawn: {e}\n")),
                }
            }
            _ => md.push_str("- _Who and what was affected, and for how long?_\n"),
        }
        md.push('\n');
        md.push_str("## Times\n\n");
        match breach_since {
            Some(b) => md.push_str(&format!(
                "- Time to detect (first breach → trigger): {}\n",
                human_secs((inc.triggered_at - b).num_seconds().max(0))
            )),
            None => md.push_str("- Time to detect: unknown (the source did not say when the breach began)\n"),
        }
        match (inc.acked_at, &inc.acked_by) {
            (Some(a), Some(by)) => md.push_str(&format!(
                "- Time to acknowledge: {} ({by})\n",
                human_secs((a - inc.triggered_at).num_seconds())
            )),
            _ => md.push_str("- Time to acknowledge: nobody acknowledged it\n"),
        }
        md.push_str(&format!("- Time to resolve: {}\n\n", human_secs(ttr)));
        md.push_str("## Changes before it\n\n");
        let changes = self.changes_before(inc.triggered_at, Some(inc.id)).await?;
        if changes.is_empty() {
            md.push_str("crew changed nothing in the window before it.\n");
        }
        for c in &changes {
            md.push_str(&format!("- {} before: {}\n", human_secs(c.before_seconds), c.summary));
        }
        md.push_str(&format!(
            "\n## Timeline\n\nEvery event from {} to {}, and what was said in chat.\n\n",
            fmt(start),
            fmt(end)
        ));
        let mut f = EventFilter::new();
        f.since = Some(start);
        f.until = Some(end + chrono::Duration::seconds(1));
        let mut events = self.timeline.query_all(&f, 50_000).await?;
        events.reverse();
        let room = self.oncall.config.room.clone().or_else(|| self.notifier_room());
        let said = self.chat.lines(room.as_deref(), start, end + chrono::Duration::seconds(1), ROOM_LINES_MAX).await?;
        let mut lines: Vec<(DateTime<Utc>, String)> = events
            .iter()
            .map(|e| (e.at, format!("- {} `{}` {} — {}", e.at.format("%H:%M:%S"), e.kind, e.actor.name, e.summary)))
            .collect();
        lines.extend(
            said.iter().map(|s| (s.at, format!("- {} {} <{}> {}", s.at.format("%H:%M:%S"), s.room, s.who, s.text))),
        );
        lines.sort_by_key(|(t, _)| *t);
        for (_, l) in lines {
            md.push_str(&l);
            md.push('\n');
        }
        md.push_str(
            "\n## Contributing factors\n\n_What conditions made this possible: in the code, the tools, the process, the load?_\n\n\
             ## What made sense at the time\n\n_What did the people involved know then, and why did what they did make sense to them?_\n\n\
             ## What went well\n\n_What helped: an alert, a runbook, a quick rollback, a colleague?_\n\n\
             ## Action items\n\n",
        );
        let owner = inc.acked_by.as_deref().map(|o| format!(" (owner: {o})")).unwrap_or_default();
        if inc.runbook.is_none() {
            // A runbook named after what fired; crew ticks this off by itself once the file is on the branch.
            let name: String = alert
                .unwrap_or(&inc.summary)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
                .collect::<String>()
                .split('-')
                .filter(|p| !p.is_empty())
                .take(6)
                .collect::<Vec<_>>()
                .join("-");
            md.push_str(&format!("- [ ] runbook runbooks/{name}.md exists{owner}\n"));
        } else {
            md.push_str(&format!("- [ ] The runbook says what helped this time{owner}\n"));
        }
        if let Some(s) = series {
            md.push_str(&format!(
                "- [ ] Could the rule on {} have said it sooner? (a lower threshold, a shorter `for`){owner}\n",
                crate::metrics::split_key(s).0
            ));
        }
        Ok(md)
    }

    fn notifier_room(&self) -> Option<String> {
        self.chat.first_channel()
    }
}
