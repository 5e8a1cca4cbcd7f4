//! Roles: what a token may do. Ordered so that a larger role includes the smaller ones.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A token's role. `Evaluate` is apart from the ladder: applications evaluating flags get only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An application: flag evaluation and the definitions stream only.
    Evaluate,
    /// Reads everything: dev and ops see the same.
    Viewer,
    /// Deploys, locks, flags, acks, drills, and recording events.
    Member,
    /// Tokens, users, infra apply, configuration.
    Admin,
    /// An integration (Alertmanager, a PagerDuty-compatible sender): may send alerts and nothing else.
    Alert,
}

impl Role {
    /// Whether this role may do what `needed` allows. `Evaluate` satisfies only `Evaluate`;
    /// every person's role (viewer and up) satisfies `Evaluate` too, so people can try evaluations.
    /// `Alert` is apart too: it satisfies only `Alert`, and members and admins may send alerts as well.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Alert, Role::Alert) => true,
            (Role::Alert, _) => false,
            (_, Role::Evaluate) => true,
            (Role::Evaluate, _) => false,
            (_, Role::Alert) => self.rank() >= Role::Member.rank(),
            _ => self.rank() >= needed.rank(),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Evaluate => 0,
            Role::Viewer => 1,
            Role::Member => 2,
            Role::Admin => 3,
            Role::Alert => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Evaluate => "evaluate",
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Alert => "alert",
        }
    }

    pub const ALL: [Role; 5] = [Role::Viewer, Role::Member, Role::Admin, Role::Evaluate, Role::Alert];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "evaluate" => Ok(Role::Evaluate),
            "viewer" => Ok(Role::Viewer),
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "alert" => Ok(Role::Alert),
            other => Err(format!("unknown role `{other}`: expected viewer, member, admin, evaluate or alert")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role::*;

    #[test]
    fn ladder() {
        let table = [
            (Viewer, Viewer, true),
            (Viewer, Member, false),
            (Member, Viewer, true),
            (Member, Admin, false),
            (Admin, Member, true),
            (Evaluate, Viewer, false),
            (Evaluate, Evaluate, true),
            (Viewer, Evaluate, true),
            (Alert, Alert, true),
            (Alert, Viewer, false),
            (Alert, Evaluate, false),
            (Evaluate, Alert, false),
            (Viewer, Alert, false),
            (Member, Alert, true),
            (Admin, Alert, true),
        ];
        for (have, need, ok) in table {
            assert_eq!(have.allows(need), ok, "{have} allows {need}");
        }
    }
}
