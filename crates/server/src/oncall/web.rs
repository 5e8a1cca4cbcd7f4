//! The On-call page: per schedule who is on call now and next, and two weeks of shifts drawn as bars (gaps in
//! red, overrides marked), with a "take the shift" form for members.

use super::Oncall;
use crate::web::{layout, Form, WebError, WebUser};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use crew_core::time::human;
use crew_core::Role;
use crew_oncall::schedule::Source;
use maud::html;

pub async fn index(user: WebUser, State(oncall): State<Oncall>) -> Result<Response, WebError> {
    let now = Utc::now();
    let (from, to) = (now, now + Duration::days(14));
    let span = (to - from).num_seconds() as f64;
    let member = user.role.allows(Role::Member);
    let who = oncall.now(None, now).await?;
    let mut sections = Vec::new();
    for w in &who {
        let (segments, _) = oncall.segments(&w.schedule, from, to).await?;
        sections.push(html! {
            section.schedule data-schedule=(w.schedule) {
                h2 { (w.schedule) " " small { (w.zone) } }
                p.now {
                    "Now: "
                    @match &w.now.user { Some(u) => strong.who { (u) }, None => strong.gap { "nobody" } }
                    " until " (human(w.now.until))
                    @if let Some(n) = &w.next {
                        " · next: " (n.user.as_deref().unwrap_or("nobody")) " from " (human(n.from))
                    }
                }
                // Bars in an SVG: positions are attributes, which the pages' CSP (no inline styles) allows.
                svg.shifts viewBox="0 0 1000 24" preserveAspectRatio="none" role="img" {
                    @for s in &segments {
                        @let x = (s.from - from).num_seconds() as f64 / span * 1000.0;
                        @let w = (s.until - s.from).num_seconds() as f64 / span * 1000.0;
                        @let class = match (&s.user, &s.source) { (None, _) => "shift gap", (_, Source::Override) => "shift override", _ => "shift" };
                        rect class=(class) x=(format!("{x:.2}")) y="0" width=(format!("{w:.2}")) height="24" {
                            title { (format!("{} {} → {}", s.user.as_deref().unwrap_or("nobody (a gap)"), human(s.from), human(s.until))) }
                        }
                    }
                }
                ul.shift-list {
                    @for s in segments.iter().take(40) {
                        li class=[s.user.is_none().then_some("gap")] {
                            (human(s.from)) " → " (human(s.until)) " " (s.user.as_deref().unwrap_or("nobody"))
                            @if matches!(s.source, Source::Override) { " (override)" }
                        }
                    }
                }
                @if member {
                    form.take method="post" action="/oncall/take" {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input type="hidden" name="schedule" value=(w.schedule);
                        input type="text" name="until" value="+8h" size="6";
                        button type="submit" { "Take the shift" }
                    }
                }
            }
        });
    }
    let body = html! {
        h1 { "On call" }
        @if who.is_empty() { p { "crew.toml has no " code { "[[schedules]]" } "." } }
        @for s in &sections { (s) }
    };
    Ok(layout("On call", Some(&user), "/oncall", body).into_response())
}

pub async fn take(State(oncall): State<Oncall>, f: Form) -> Response {
    let r = async {
        let until = super::api::time("until", f.get("until"), Utc::now())?;
        oncall.take(f.get("schedule"), until, f.user.actor()).await
    }
    .await;
    match r {
        Ok(_) => Redirect::to("/oncall").into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}
