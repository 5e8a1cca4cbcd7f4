//! Every event kind crew itself writes, in one list, and the areas (kind prefixes) reserved for crew.
//!
//! Architecture invariant: no string literal of one of crew's kinds appears in crew's code outside this file
//! (`kinds_are_named_once` in the server's tests walks every crate's sources to check it). People record their
//! own kinds (`note`, `release.note`, `custom.*`) through the API; the reserved areas are crew's alone, because
//! the server reads its own events back as state (firing alerts at start, the Infra page, live streams closed by
//! a revocation).

/// The areas of the timeline that only crew writes: `POST /api/v1/events` refuses a kind in any of them.
pub const RESERVED: &[&str] =
    &[DEPLOY, FLAG, TOKEN, SESSION, LOCK, INFRA, ALERT, CHAT, INCIDENT, ONCALL, DRILL, EXPERIMENT];

// Areas: a kind filter of one of these hears every kind under it.
pub const DEPLOY: &str = "deploy";
pub const FLAG: &str = "flag";
pub const TOKEN: &str = "token";
pub const SESSION: &str = "session";
pub const LOCK: &str = "lock";
pub const INFRA: &str = "infra";
pub const ALERT: &str = "alert";
pub const CHAT: &str = "chat";
pub const INCIDENT: &str = "incident";
pub const ONCALL: &str = "oncall";
pub const DRILL: &str = "drill";
pub const EXPERIMENT: &str = "experiment";

// Deploys and rollbacks.
pub const DEPLOY_STARTED: &str = "deploy.started";
pub const DEPLOY_FINISHED: &str = "deploy.finished";
pub const DEPLOY_FAILED: &str = "deploy.failed";
pub const DEPLOY_ROLLED_BACK: &str = "deploy.rolled_back";
pub const DEPLOY_INTERRUPTED: &str = "deploy.interrupted";
/// The judge's verdict on a deploy's canary (or on its window after against the window before), metric by
/// metric.
pub const DEPLOY_JUDGED: &str = "deploy.judged";
/// A person's decision on a deploy the judge held (go on, or switch back).
pub const DEPLOY_DECIDED: &str = "deploy.decided";

// Locks on an environment.
pub const LOCK_TAKEN: &str = "lock.taken";
pub const LOCK_RELEASED: &str = "lock.released";

// Flags.
pub const FLAG_CHANGED: &str = "flag.changed";
/// The judge's verdict on a step of a flag's ramp, metric by metric.
pub const FLAG_JUDGED: &str = "flag.judged";
/// A flag's launch plan set, replaced or removed (before and after).
pub const FLAG_PLAN: &str = "flag.plan";
/// A flag's ramp started (its steps, its interval, why).
pub const FLAG_RAMP: &str = "flag.ramp";
/// A flag's running ramp cancelled by a person (or because the flag is gone).
pub const FLAG_RAMP_CANCELLED: &str = "flag.ramp_cancelled";

// Tokens and browser sessions.
pub const TOKEN_CREATED: &str = "token.created";
pub const TOKEN_REVOKED: &str = "token.revoked";
pub const SESSION_STARTED: &str = "session.started";
pub const SESSION_ENDED: &str = "session.ended";

// Infrastructure runs.
pub const INFRA_APPLIED: &str = "infra.applied";
pub const INFRA_DRIFT: &str = "infra.drift";
pub const INFRA_UNREACHABLE: &str = "infra.unreachable";

// Alert rules.
pub const ALERT_FIRED: &str = "alert.fired";
pub const ALERT_RESOLVED: &str = "alert.resolved";

// Incidents: paged, acknowledged, resolved.
pub const INCIDENT_TRIGGERED: &str = "incident.triggered";
pub const INCIDENT_ACKNOWLEDGED: &str = "incident.acknowledged";
pub const INCIDENT_RESOLVED: &str = "incident.resolved";
pub const INCIDENT_REOPENED: &str = "incident.reopened";
pub const INCIDENT_ESCALATED: &str = "incident.escalated";
pub const INCIDENT_NOTIFIED: &str = "incident.notified";
pub const INCIDENT_NOTE: &str = "incident.note";
/// An alert joined an incident that was already open (deduplicated by its key).
pub const INCIDENT_JOINED: &str = "incident.joined";
/// A change listed before an incident was undone from it (a deploy rolled back, a flag switched back).
pub const INCIDENT_UNDO: &str = "incident.undo";
/// A postmortem drafted, edited, or moved to review or published.
pub const INCIDENT_POSTMORTEM: &str = "incident.postmortem";
/// A postmortem's action item that crew could check came true, and closed itself.
pub const INCIDENT_ACTION_DONE: &str = "incident.action_done";

// Fire drills.
pub const DRILL_STARTED: &str = "drill.started";
pub const DRILL_ACTION: &str = "drill.action";
pub const DRILL_FINISHED: &str = "drill.finished";

// Experiments (bucket tests).
/// A split's users per variant are off its weights (chi-square p < 0.001): raised once per phase.
pub const EXPERIMENT_SRM: &str = "experiment.srm";

// On-call schedules.
pub const ONCALL_OVERRIDE: &str = "oncall.override";
pub const ONCALL_GAP: &str = "oncall.gap";
pub const ONCALL_FEED_ROTATED: &str = "oncall.feed_rotated";

// The robot's identity links.
pub const CHAT_LINKED: &str = "chat.linked";
pub const CHAT_UNLINKED: &str = "chat.unlinked";

/// The kinds that end a deploy or a rollback, whatever its outcome.
pub const DEPLOY_ENDINGS: &[&str] = &[DEPLOY_FINISHED, DEPLOY_FAILED, DEPLOY_ROLLED_BACK, DEPLOY_INTERRUPTED];

/// Whether `kind` is `area` or under it (`deploy.started` is under `deploy`; `deployment` is not).
pub fn is_under(kind: &str, area: &str) -> bool {
    kind == area || kind.strip_prefix(area).is_some_and(|rest| rest.starts_with('.'))
}

/// The reserved area a kind falls in, if any: only crew writes those.
pub fn reserved_area(kind: &str) -> Option<&'static str> {
    RESERVED.iter().copied().find(|area| is_under(kind, area))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_areas() {
        let crews = "deploy.finished deploy token.revoked alert.fired infra.applied incident.acked oncall.gap";
        for kind in crews.split(' ') {
            assert_eq!(reserved_area(kind), kind.split('.').next(), "{kind}");
        }
        for kind in "note release.note custom.deploy deployment.note flags".split(' ') {
            assert_eq!(reserved_area(kind), None, "{kind}");
        }
    }
}
