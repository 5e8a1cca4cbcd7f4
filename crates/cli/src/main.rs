//! `crew`: the one binary. Parses the command line, runs the server or talks to one, and maps errors to exit
//! codes (0 ok, 1 failed, 2 bad usage or input, 3 refused). The logic lives in the library crates.

mod cli;
mod client;
mod commands;
mod demo;
mod deploy;
mod flags;
mod graph;
mod infra;
mod judge;
mod oncall;
mod output;
mod serve;

use clap::Parser;
use std::process::ExitCode;

/// An error with the exit code it should end the program with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Exit { code, message: message.into() }
    }
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(commands::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<Exit>().map(|x| x.code).unwrap_or(1);
            eprintln!("crew: error: {e:#}");
            ExitCode::from(code)
        }
    }
}
