//! `crew serve`: settings from flags, variables and crew.toml, the server built and run until a signal; and the
//! logging and start-up error mapping that `crew demo` shares.

use crate::cli::{LogFormat, ServeArgs};
use crate::Exit;
use anyhow::Result;
use crew_server::{App, Overrides, Settings};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

pub fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Turns a start-up failure into the right exit code: bad input (config, database URL) is 2.
pub fn start_error(e: crew_server::StartError) -> anyhow::Error {
    let code = if e.is_bad_input() { 2 } else { 1 };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !message.contains(&s_text) {
            message.push_str(": ");
            message.push_str(&s_text);
        }
        source = s.source();
    }
    Exit::new(code, message).into()
}

pub async fn serve(args: ServeArgs, data_dir: Option<PathBuf>) -> Result<()> {
    init_logs(args.log_format, "info,sqlx=warn,tower_http=warn");
    let settings = Settings::resolve(Overrides {
        config: args.config,
        data_dir,
        listen: args.listen,
        statsd: args.statsd,
        database: args.database,
    })
    .map_err(|e| Exit::new(2, e.to_string()))?;
    let app = App::build(settings).await.map_err(start_error)?;
    // The bound address on stdout, for scripts and tests that start the server on port 0.
    println!("crew listening on http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    crew_server::cancel_on_signal(shutdown.clone());
    app.run(shutdown).await
}
