//! crew's deploys: the `[app]`, `[build]` and `[environments.*]` sections of `crew.toml` (checked strictly),
//! git (resolve a revision on trunk, list commits, export a clean tree), the build made once per commit, and
//! the per-host steps of a deploy (prepare, transfer, switch, restart, health check, switch back, clean up) on
//! `local:` and `ssh://` hosts, orchestrated by [`run::deploy`] and [`run::rollback`].
//!
//! Architecture invariant: this crate knows nothing of the store or HTTP. It reports through the [`Journal`]
//! trait; the server records what it reports.

pub mod build;
pub mod config;
pub mod git;
pub mod host;
pub mod run;

pub use config::{DeployConfig, Environment, Host};

/// Where a deploy reports its progress: log lines and each host's state.
pub trait Journal: Send + Sync {
    /// One line of the deploy's log.
    fn line(&self, text: String);
}

/// A deploy step failed; the message names the host or thing and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeployError(pub String);

pub type Result<T, E = DeployError> = std::result::Result<T, E>;
