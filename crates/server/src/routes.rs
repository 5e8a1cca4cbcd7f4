//! The route table: every route crew serves, the least it admits, and the domain handler that answers. The
//! router is built from these lists and the role table test walks them, so a route cannot exist without
//! saying who may call it.

use crate::http::{Least, Route};
use crate::{
    chat, deploys, drills, experiments, flags, incidents, infra, metrics, oncall, runbooks, system, timeline, tokens,
    web,
};
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use crew_core::Role::{Admin, Alert, Evaluate, Member, Viewer};

/// The API: JSON under `/api/v1`, OFREP, and `/metrics` for Prometheus.
pub fn api() -> Vec<Route> {
    use Least::{Anyone, Token};
    let ofrep_limit =
        |m: axum::routing::MethodRouter<crate::AppState>| m.layer(DefaultBodyLimit::max(flags::ofrep::OFREP_BODY_MAX));
    vec![
        Route::get("/api/v1/health", Anyone, system::api::health),
        Route::get("/api/v1/status", Token(Viewer), system::api::status),
        Route::get("/api/v1/events", Token(Viewer), timeline::api::list),
        Route::post("/api/v1/events", Token(Member), timeline::api::create),
        Route::get("/api/v1/events/stream", Token(Viewer), timeline::api::stream),
        Route::get("/api/v1/events/{id}", Token(Viewer), timeline::api::one),
        Route::get("/api/v1/tokens", Token(Admin), tokens::api::list),
        Route::post("/api/v1/tokens", Token(Admin), tokens::api::create),
        Route::delete("/api/v1/tokens/{name}", Token(Admin), tokens::api::revoke),
        Route::get("/api/v1/deploys", Token(Viewer), deploys::api::list),
        Route::post("/api/v1/deploys", Token(Member), deploys::api::create),
        Route::get("/api/v1/deploys/{id}", Token(Viewer), deploys::api::one),
        Route::get("/api/v1/deploys/{id}/log", Token(Viewer), deploys::api::log),
        Route::get("/api/v1/deploys/{id}/log/stream", Token(Viewer), deploys::api::log_stream),
        Route::post("/api/v1/deploys/{id}/decision", Token(Member), deploys::api::decide),
        Route::get("/api/v1/environments", Token(Viewer), deploys::api::environments),
        Route::post("/api/v1/environments/{env}/rollback", Token(Member), deploys::api::rollback),
        Route::post("/api/v1/environments/{env}/lock", Token(Member), deploys::api::lock),
        Route::delete("/api/v1/environments/{env}/lock", Token(Member), deploys::api::unlock),
        Route::get("/api/v1/environments/{env}/pending", Token(Viewer), deploys::api::pending),
        Route::get("/api/v1/flags", Token(Viewer), flags::api::list),
        Route::get("/api/v1/flags/stream", Token(Evaluate), flags::ofrep::definitions),
        Route::get("/api/v1/flags/{key}", Token(Viewer), flags::api::one),
        Route::put("/api/v1/flags/{key}", Token(Member), flags::api::put),
        Route::delete("/api/v1/flags/{key}", Token(Member), flags::api::delete),
        Route::post("/api/v1/flags/{key}/knob", Token(Member), flags::api::knob),
        Route::get("/api/v1/flags/{key}/plan", Token(Viewer), flags::api::plan),
        Route::get("/api/v1/flags/{key}/results", Token(Viewer), experiments::api::results),
        Route::post("/api/v1/exposures", Token(Evaluate), experiments::api::exposures)
            .map(|m| m.layer(DefaultBodyLimit::max(experiments::api::EXPOSURES_BODY_MAX))),
        Route::post("/api/v1/track", Token(Evaluate), experiments::api::track).map(ofrep_limit),
        Route::put("/api/v1/flags/{key}/plan", Token(Member), flags::api::put_plan),
        Route::get("/api/v1/flags/{key}/ramp", Token(Viewer), flags::api::ramp),
        Route::post("/api/v1/flags/{key}/ramp", Token(Member), flags::api::start_ramp),
        Route::delete("/api/v1/flags/{key}/ramp", Token(Member), flags::api::cancel_ramp),
        Route::post("/ofrep/v1/evaluate/flags", Token(Evaluate), flags::ofrep::all).map(ofrep_limit),
        Route::post("/ofrep/v1/evaluate/flags/{key}", Token(Evaluate), flags::ofrep::one).map(ofrep_limit),
        Route::get(flags::ofrep::EVENTS_PATH, Token(Evaluate), flags::ofrep::events),
        Route::get("/api/v1/metrics", Token(Viewer), metrics::api::list),
        Route::get("/api/v1/metrics/query", Token(Viewer), metrics::api::query),
        Route::get("/api/v1/metrics/status", Token(Viewer), metrics::api::status),
        Route::get("/api/v1", Token(Viewer), metrics::api::index),
        Route::get("/api/v1/annotations", Token(Viewer), metrics::api::annotations),
        Route::post("/api/v1/annotations", Token(Viewer), metrics::api::annotations_post)
            .map(|m| m.layer(DefaultBodyLimit::max(metrics::api::ANNOTATIONS_BODY_MAX))),
        Route::get("/metrics", Token(Viewer), metrics::api::prometheus),
        Route::get("/api/v1/chat", Token(Viewer), chat::api::status),
        Route::post("/api/v1/chat/command", Token(Viewer), chat::api::command),
        Route::get("/api/v1/chat/links", Token(Viewer), chat::api::links),
        Route::post("/api/v1/chat/links", Token(Admin), chat::api::link),
        Route::post("/api/v1/infra/reports", Token(Member), infra::api::report),
        Route::get("/api/v1/oncall", Token(Viewer), oncall::api::now),
        Route::get("/api/v1/oncall/{schedule}", Token(Viewer), oncall::api::schedule),
        Route::post("/api/v1/oncall/{schedule}/overrides", Token(Member), oncall::api::add_override),
        Route::delete("/api/v1/oncall/{schedule}/overrides/{id}", Token(Member), oncall::api::remove_override),
        Route::post("/api/v1/oncall/{schedule}/feed", Token(Admin), oncall::api::rotate_schedule_feed),
        Route::get("/api/v1/oncall/{schedule}/feed.ics", Anyone, oncall::api::schedule_feed),
        Route::post("/api/v1/people/{name}/feed", Token(Member), oncall::api::rotate_person_feed),
        Route::get("/api/v1/people/{name}/feed.ics", Anyone, oncall::api::person_feed),
        Route::get("/api/v1/incidents", Token(Viewer), incidents::api::list),
        Route::post("/api/v1/incidents", Token(Member), incidents::api::create),
        Route::get("/api/v1/incidents/{id}", Token(Viewer), incidents::api::one),
        Route::post("/api/v1/incidents/{id}/ack", Token(Member), incidents::api::ack),
        Route::post("/api/v1/incidents/{id}/resolve", Token(Member), incidents::api::resolve),
        Route::post("/api/v1/incidents/{id}/notes", Token(Member), incidents::api::note),
        Route::post("/api/v1/incidents/{id}/undo", Token(Member), incidents::api::undo),
        Route::get("/api/v1/incidents/{id}/postmortem", Token(Viewer), incidents::api::postmortem),
        Route::put("/api/v1/incidents/{id}/postmortem", Token(Member), incidents::api::put_postmortem),
        Route::get("/api/v1/drills", Token(Viewer), drills::api::list),
        Route::post("/api/v1/drills/{name}/run", Token(Member), drills::api::run),
        Route::get("/api/v1/drills/runs/{id}", Token(Viewer), drills::api::one),
        Route::post("/api/v1/integrations/alertmanager", Token(Alert), incidents::integrations::alertmanager),
        Route::post("/api/v1/integrations/pagerduty/enqueue", Token(Alert), incidents::integrations::pagerduty),
        Route::get("/api/v1/runbooks", Token(Viewer), runbooks::api::list),
        Route::get("/api/v1/runbooks/{*path}", Token(Viewer), runbooks::api::one),
    ]
}

/// The web UI: pages for anyone signed in, forms for members, sign-in and the embedded assets for anyone.
pub fn web() -> Vec<Route> {
    use Least::{Anyone, Form, Page};
    let js = "text/javascript; charset=utf-8";
    vec![
        Route::get("/", Anyone, || async { Redirect::to("/timeline") }),
        Route::get("/signin", Anyone, web::layout::signin_page),
        Route::post("/signin", Anyone, web::signin),
        Route::post("/signout", Form(Evaluate), web::signout),
        Route::get("/static/graphs.js", Anyone, move || web::asset(js, include_str!("../assets/graphs.js"))),
        Route::get("/static/deploy.js", Anyone, move || web::asset(js, include_str!("../assets/deploy.js"))),
        Route::get("/static/timeline.js", Anyone, move || web::asset(js, include_str!("../assets/timeline.js"))),
        Route::get("/static/crew.css", Anyone, || {
            web::asset("text/css; charset=utf-8", include_str!("../assets/crew.css"))
        }),
        Route::get("/timeline", Page(Viewer), timeline::web::timeline),
        Route::get("/status", Page(Viewer), system::web::status),
        Route::get("/deploys", Page(Viewer), deploys::web::index),
        Route::get("/deploys/{id}", Page(Viewer), deploys::web::show),
        Route::post("/deploys/start", Form(Member), deploys::web::start),
        Route::post("/deploys/rollback", Form(Member), deploys::web::rollback),
        Route::post("/deploys/lock", Form(Member), deploys::web::lock),
        Route::post("/deploys/unlock", Form(Member), deploys::web::unlock),
        Route::post("/deploys/decide", Form(Member), deploys::web::decide),
        Route::get("/flags", Page(Viewer), flags::web::index),
        Route::get("/flags/{key}", Page(Viewer), flags::web::show),
        Route::get("/flags/{key}/results", Page(Viewer), experiments::web::show),
        Route::post("/flags/{key}/knob", Form(Member), flags::web::knob),
        Route::post("/flags/{key}/ramp", Form(Member), flags::web::ramp),
        Route::post("/flags/{key}/ramp/cancel", Form(Member), flags::web::cancel_ramp),
        Route::get("/graphs", Page(Viewer), metrics::web::index),
        Route::get("/infra", Page(Viewer), infra::web::index),
        Route::get("/oncall", Page(Viewer), oncall::web::index),
        Route::post("/oncall/take", Form(Member), oncall::web::take),
        Route::get("/incidents", Page(Viewer), incidents::web::index),
        Route::get("/incidents/{id}", Page(Viewer), incidents::web::show),
        Route::post("/incidents/{id}/ack", Form(Member), incidents::web::ack),
        Route::post("/incidents/{id}/resolve", Form(Member), incidents::web::resolve),
        Route::post("/incidents/{id}/notes", Form(Member), incidents::web::note),
        Route::post("/incidents/{id}/undo", Form(Member), incidents::web::undo),
        Route::get("/incidents/{id}/postmortem", Page(Viewer), incidents::web::postmortem),
        Route::post("/incidents/{id}/postmortem", Form(Member), incidents::web::save_postmortem),
        Route::get("/drills", Page(Viewer), drills::web::index),
        Route::post("/drills/run", Form(Member), drills::web::run),
        Route::get("/ack/{token}", Anyone, incidents::web::link_page),
        Route::post("/ack/{token}", Anyone, incidents::web::link_ack),
        Route::get("/runbooks", Page(Viewer), runbooks::web::index),
        Route::get("/runbooks/{*path}", Page(Viewer), runbooks::web::show),
    ]
}
