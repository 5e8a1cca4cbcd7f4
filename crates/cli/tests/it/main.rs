//! crew's black-box tests: the built `crew` binary, started for real on port 0, driven over HTTP, from the
//! command line and from headless Chromium. One test binary (see ripgrep's tests/tests.rs).

mod api;
mod browser;
mod canary;
mod chat;
mod cli;
mod deploy;
mod domains;
mod experiments;
mod flags;
mod hardening;
mod harness;
mod incidents;
mod infra;
mod judge;
mod metrics;
mod oncall_feed;
mod paging;
mod ramps;
mod runbooks;
