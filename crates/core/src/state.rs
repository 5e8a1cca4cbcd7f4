//! Typed state of deploys and locks: each status, action and lock kind an enum with one definition, parsed once
//! where it enters (a stored row, a request) and written back with `as_str`.

use serde::{Deserialize, Serialize};

/// Defines a string-valued enum: `as_str`, `Display`, `FromStr` (naming the allowed words) and serde as the word.
macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("`{}` is not a ", $what, ": expected {}"),
                        other,
                        [$($word),+].join(", ")
                    )),
                }
            }
        }
    };
}

word_enum!(
    /// Where a deploy or rollback is.
    DeployStatus, "deploy status" {
        /// Started and not ended; its server writes a heartbeat.
        Running = "running",
        /// Every host runs it.
        Succeeded = "succeeded",
        /// Stopped before any host switched (or a rollback that did not complete).
        Failed = "failed",
        /// A host failed after switching; every switched host was switched back.
        RolledBack = "rolled_back",
        /// Its server stopped before it ended.
        Interrupted = "interrupted",
    }
);

word_enum!(
    /// What a deploy record does.
    DeployAction, "deploy action" {
        /// Builds (or reuses) a commit's release and ships it.
        Deploy = "deploy",
        /// Switches back to a release still on the hosts; no build.
        Rollback = "rollback",
    }
);

word_enum!(
    /// Who holds an environment's lock.
    LockKind, "lock kind" {
        /// A person's lock (`crew lock`): others' deploys are refused.
        Manual = "manual",
        /// A running deploy's lock: one deploy at a time.
        Deploy = "deploy",
    }
);

word_enum!(
    /// Where an incident is: `triggered → acknowledged → resolved`, reopened to `triggered`.
    IncidentStatus, "incident status" {
        /// Open and escalating: nobody has acknowledged it.
        Triggered = "triggered",
        /// Someone is on it: nobody is paged (until the acknowledgement times out).
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
);

word_enum!(
    /// Where a postmortem is.
    PostmortemState, "postmortem state" {
        Draft = "draft",
        InReview = "in_review",
        Published = "published",
    }
);

word_enum!(
    /// What a firing alert asks of people.
    Severity, "severity" {
        /// Someone must act now: the escalation pages.
        Page = "page",
        /// Someone must look in working hours: an incident opens without paging.
        Ticket = "ticket",
        /// Recorded only.
        Info = "info",
    }
);

word_enum!(
    /// How a person is reached.
    Channel, "notification channel" {
        /// An IRC private message to the person's linked identity, and a highlight in the incident's room.
        Chat = "chat",
        Email = "email",
        /// A room: the announcement and a highlight of whoever is on call.
        Room = "room",
        /// An IM webhook (Slack, Mattermost), mentioning the person.
        Im = "im",
    }
);

word_enum!(
    /// What became of one notification.
    Delivery, "delivery result" {
        /// The peer took it (the SMTP server accepted the message, the IRC server the line).
        Delivered = "delivered",
        /// The peer said no (a 5xx from SMTP, an unknown nick).
        Refused = "refused",
        /// It could not be handed over (the server is down, a timeout); retried with backoff.
        Failed = "failed",
    }
);

impl DeployStatus {
    /// Whether the deploy has ended (any status but running).
    pub fn is_final(self) -> bool {
        self != DeployStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_errors_name_the_choices() {
        for s in DeployStatus::ALL {
            assert_eq!(s.as_str().parse::<DeployStatus>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        for a in DeployAction::ALL {
            assert_eq!(a.as_str().parse::<DeployAction>(), Ok(*a));
        }
        for k in LockKind::ALL {
            assert_eq!(k.as_str().parse::<LockKind>(), Ok(*k));
        }
        assert_eq!(
            "done".parse::<DeployStatus>().unwrap_err(),
            "`done` is not a deploy status: expected running, succeeded, failed, rolled_back, interrupted"
        );
        assert_eq!(serde_json::from_str::<LockKind>("\"manual\"").unwrap(), LockKind::Manual);
    }
}
