//! `crew demo`: a newcomer's first command. A server on a fresh temporary data folder with the embedded
//! database, a few real events recorded through its API, and what to try next. Serves until Ctrl-C.

use crate::cli::{DemoArgs, LogFormat};
use crate::client::Client;
use crate::commands::{init_logs, start_error};
use anyhow::{Context, Result};
use crew_server::{App, FileConfig, Settings, StartError};
use reqwest::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub async fn run(args: DemoArgs) -> Result<()> {
    init_logs(LogFormat::Text, "warn");
    let dir = tempfile::Builder::new().prefix("crew-demo-").tempdir().context("a temporary folder for the demo")?;
    let data_dir = dir.path().join(".crew");
    let settings = |listen: &str| Settings {
        data_dir: data_dir.clone(),
        listen: listen.to_string(),
        statsd: None,
        database: format!("sqlite://{}", data_dir.join("crew.db").display()),
        config_path: None,
        file: FileConfig::default(),
        deploy: None,
    };
    let app = match App::build(settings(&args.listen)).await {
        Ok(app) => app,
        Err(StartError::Listen { addr, .. }) => {
            eprintln!("{addr} is taken; using a free port instead");
            App::build(settings("127.0.0.1:0")).await.map_err(start_error)?
        }
        Err(e) => return Err(start_error(e)),
    };
    let url = format!("http://{}", app.local_addr());
    let admin_token = std::fs::read_to_string(data_dir.join("admin.token")).context("the demo's admin token")?;
    let admin_token = admin_token.trim().to_string();
    let shutdown = CancellationToken::new();
    crew_server::cancel_on_signal(shutdown.clone());
    let server = tokio::spawn(app.run(shutdown.clone()));

    // Real events, through the API, as a team would make them.
    let admin = Client::with_token(&url, &admin_token);
    let alice = admin.json(Method::POST, "/api/v1/tokens", Some(&json!({"name": "alice", "role": "member"}))).await?;
    admin.json(Method::POST, "/api/v1/tokens", Some(&json!({"name": "bob", "role": "viewer"}))).await?;
    let alice = Client::with_token(&url, alice["token"].as_str().unwrap_or_default());
    let notes = [
        ("note", "www/staging", "alice: staging looks good, shipping the login fix next"),
        ("note", "www/production", "alice: watching the login error rate after the fix"),
        ("drill.planned", "ops", "alice planned a fire drill: database failover, Thursday 15:00"),
    ];
    for (kind, subject, summary) in notes {
        let body = json!({"kind": kind, "subject": subject, "summary": summary, "links": [{"rel": "timeline", "href": format!("/timeline?subject={subject}")}]});
        alice.json(Method::POST, "/api/v1/events", Some(&body)).await?;
    }

    // `cargo run -- demo` leaves no `crew` on PATH: say how to call this very binary.
    let on_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("crew").is_file()));
    let alias = match std::env::current_exe() {
        Ok(exe) if !on_path => format!("    alias crew={}\n", exe.display()),
        _ => String::new(),
    };
    println!(
        "\ncrew demo is running at {url}\n\n\
         Sign in: open {url}/signin and paste the admin token:\n    {admin_token}\n\n\
         Then try, in another terminal:\n{alias}    \
         export CREW_SERVER={url} CREW_TOKEN={admin_token}\n    \
         crew events --follow                      # the timeline, live\n    \
         crew token create carol --role viewer     # appears on the timeline at once\n    \
         crew events --search login                # search the timeline\n    \
         crew status\n\n\
         Data lives in {} until you stop the demo with Ctrl-C.",
        dir.path().display()
    );
    server.await.context("demo server")??;
    Ok(())
}
