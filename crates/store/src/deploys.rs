//! The deploy records, their logs and environment locks, as the store keeps them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A deploy or rollback of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    /// The deploy's number: `#42`.
    pub id: i64,
    pub app: String,
    pub environment: String,
    /// `deploy` or `rollback`.
    pub action: String,
    /// The commit shipped.
    pub revision: String,
    /// The commit live before, if any.
    pub previous: Option<String>,
    /// The release folder name on the hosts.
    pub release: String,
    /// How many commits this deploy brought (previous..revision).
    pub commits: i64,
    pub message: String,
    pub actor: String,
    pub via: String,
    /// `running`, `succeeded`, `failed`, `rolled_back`, `interrupted`.
    pub status: String,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::deploys::rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Per-host results, as the deploy engine reports them.
    pub hosts: serde_json::Value,
    pub error: Option<String>,
}

/// A deploy about to start.
#[derive(Debug, Clone)]
pub struct NewDeploy {
    pub app: String,
    pub environment: String,
    pub action: String,
    pub revision: String,
    pub previous: Option<String>,
    pub release: String,
    pub commits: i64,
    pub message: String,
    pub actor: crew_core::Actor,
}

/// A held lock: a person's manual lock (`manual`) or a running deploy's (`deploy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lock {
    pub environment: String,
    pub kind: String,
    pub holder: String,
    pub reason: String,
    #[serde(serialize_with = "crate::deploys::rfc3339")]
    pub since: DateTime<Utc>,
    pub deploy_id: Option<i64>,
}

pub(crate) fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crew_core::time::rfc3339(*t))
}

pub(crate) fn rfc3339_opt<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crew_core::time::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

pub(crate) const DEPLOY_COLUMNS: &str =
    "id, app, environment, action, revision, previous, release, commits, message, actor, via, \
     status, started_at, finished_at, hosts, error";

pub(crate) fn row_to_deploy<'r, R>(row: &'r R) -> crate::Result<Deploy>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let hosts: String = row.try_get(14)?;
    Ok(Deploy {
        id: row.try_get(0)?,
        app: row.try_get(1)?,
        environment: row.try_get(2)?,
        action: row.try_get(3)?,
        revision: row.try_get(4)?,
        previous: row.try_get(5)?,
        release: row.try_get(6)?,
        commits: row.try_get(7)?,
        message: row.try_get(8)?,
        actor: row.try_get(9)?,
        via: row.try_get(10)?,
        status: row.try_get(11)?,
        started_at: crate::from_millis(row.try_get(12)?)?,
        finished_at: row.try_get::<Option<i64>, _>(13)?.map(crate::from_millis).transpose()?,
        hosts: serde_json::from_str(&hosts).map_err(|e| crate::StoreError::Corrupt(format!("deploy hosts: {e}")))?,
        error: row.try_get(15)?,
    })
}

pub(crate) fn row_to_lock<'r, R>(row: &'r R) -> crate::Result<Lock>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Lock {
        environment: row.try_get(0)?,
        kind: row.try_get(1)?,
        holder: row.try_get(2)?,
        reason: row.try_get(3)?,
        since: crate::from_millis(row.try_get(4)?)?,
        deploy_id: row.try_get(5)?,
    })
}

pub(crate) const LOCK_COLUMNS: &str = "environment, kind, holder, reason, since, deploy_id";

/// A lock's description for refusals: "production is locked by alice since 2026-11-26 16:03:57: db migration".
pub fn describe(l: &Lock) -> String {
    match l.kind.as_str() {
        "deploy" => format!(
            "a deploy of {} is running: #{} by {} since {}",
            l.environment,
            l.deploy_id.unwrap_or(0),
            l.holder,
            crew_core::time::human(l.since)
        ),
        _ => format!(
            "{} is locked by {} since {}: {}",
            l.environment,
            l.holder,
            crew_core::time::human(l.since),
            l.reason
        ),
    }
}
