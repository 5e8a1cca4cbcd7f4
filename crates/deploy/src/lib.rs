//! crew's deploys: the `[app]`, `[build]` and `[environments.*]` sections of `crew.toml` (checked strictly),
//! git (resolve a revision on trunk, list commits, check out a commit for its build), the build made once per
//! commit, and the per-host steps of a deploy (prepare, transfer, switch, restart, health check, switch back,
//! clean up) on `local:` and `ssh://` hosts, orchestrated by [`run::deploy`] and [`run::rollback`].
//!
//! Architecture invariant: this crate knows nothing of the store or HTTP. It reports through the [`Journal`]
//! trait; the server records what it reports.

pub mod build;
pub mod config;
pub mod git;
pub mod host;
pub mod run;

pub use config::{BuildUser, DeployConfig, Environment, Host, OnFail, Watch};

/// Where a deploy reports its progress: log lines and each host's state.
pub trait Journal: Send + Sync {
    /// One line of the deploy's log.
    fn line(&self, text: String);

    /// Why the deploy must stop now, if it must: its server learned the deploy is no longer its own (another
    /// replica marked it interrupted, and its environment may be another deploy's by now). Asked before each
    /// step that touches hosts; a deploy that must stop touches no further host.
    fn stopped(&self) -> Option<String> {
        None
    }
}

/// What a deploy has switched when it asks the [`Gate`] whether to go on (hosts by their `host` tag).
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// The canary hosts run the new release; the baseline hosts still run the old one.
    Canary { canaries: &'a [String], baseline: &'a [String] },
    /// Every host runs the new release (an environment without canaries): after against before.
    Whole { hosts: &'a [String] },
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proceed {
    /// Go on (switch the rest, or finish).
    Yes,
    /// Switch every switched host back; the reason ends the deploy.
    SwitchBack(String),
}

/// Asked after the canaries switch (and, without canaries, after every host switched): the server judges the
/// hosts' series here (`[environments.NAME.watch]`) and may hold the deploy while it does.
pub trait Gate: Send + Sync {
    fn judge<'a>(&'a self, stage: Stage<'a>, journal: &'a dyn Journal) -> futures_util::future::BoxFuture<'a, Proceed>;
}

/// A gate that always lets the deploy go on (no watch, benchmarks).
pub struct Open;

impl Gate for Open {
    fn judge<'a>(&'a self, _: Stage<'a>, _: &'a dyn Journal) -> futures_util::future::BoxFuture<'a, Proceed> {
        Box::pin(async { Proceed::Yes })
    }
}

/// The longest log line kept, in bytes: a build printing megabytes without a newline must not reach the
/// database (or the server's memory) whole.
pub const LINE_LIMIT: usize = 16 * 1024;

/// `line` cut to [`LINE_LIMIT`] bytes (on a character boundary), saying how much was cut.
pub fn cut_line(mut line: String) -> String {
    if line.len() <= LINE_LIMIT {
        return line;
    }
    let mut end = LINE_LIMIT;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let cut = line.len() - end;
    line.truncate(end);
    line.push_str(&format!(" […{cut} more bytes cut: a log line keeps {LINE_LIMIT}]"));
    line
}

/// A deploy step failed; the message names the host or thing and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeployError(pub String);

pub type Result<T, E = DeployError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        assert_eq!(super::cut_line("short".into()), "short");
        let long = "é".repeat(super::LINE_LIMIT);
        let cut = super::cut_line(long.clone());
        assert!(cut.len() < super::LINE_LIMIT + 80 && long.starts_with(cut.split(" […").next().unwrap()));
        assert!(cut.ends_with(&format!("…{} more bytes cut: a log line keeps 16384]", super::LINE_LIMIT)), "{cut}");
    }
}
