//! What each command does: `serve` runs the server; the others are clients of its HTTP API.

use crate::cli::{Cli, Command, EventsArgs, TokenCommand};
use crate::client::{path, Client};
use crate::output::{event_line, uptime};
use crate::Exit;
use anyhow::{Context, Result};
use crew_core::Event;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

pub async fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.global.data_dir.clone().unwrap_or_else(|| PathBuf::from(".crew"));
    match cli.command {
        Command::Serve(args) => crate::serve::serve(args, cli.global.data_dir).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Events(args) => events(Client::new(&cli.global.server, &data_dir)?, args, cli.global.json).await,
        Command::Status => status(Client::new(&cli.global.server, &data_dir)?, cli.global.json).await,
        Command::Chat { action } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            match action {
                crate::cli::ChatAction::Status => chat_status(client, cli.global.json).await,
                crate::cli::ChatAction::Link { user, irc } => {
                    chat_link(client, json!({"identity": irc, "user": user}), cli.global.json).await
                }
                crate::cli::ChatAction::Unlink { irc } => {
                    chat_link(client, json!({"identity": irc, "user": null}), cli.global.json).await
                }
                crate::cli::ChatAction::Links => chat_links(client, cli.global.json).await,
            }
        }
        Command::Token(cmd) => token(Client::new(&cli.global.server, &data_dir)?, cmd, cli.global.json).await,
        Command::Deploy { environment, rev, message } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            let body = json!({"environment": environment, "rev": rev, "message": message});
            let d = client.json(Method::POST, "/api/v1/deploys", Some(&body)).await?;
            crate::deploy::follow(&client, &d, cli.global.json).await
        }
        Command::Experiment { key, metric, method, all } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            let mut q: Vec<(&str, &str)> = vec![];
            if let Some(m) = &metric {
                q.push(("metric", m));
            }
            if let Some(m) = &method {
                q.push(("method", m));
            }
            let p = crate::client::path_query(&["api", "v1", "flags", &key, "results"], &q);
            let r = client.json(Method::GET, &p, None).await?;
            if cli.global.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", crate::output::experiment(&r, all));
            }
            Ok(())
        }
        Command::Decide { deploy, decision, message } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            let decision = match decision.as_str() {
                "proceed" => "proceed",
                "switch-back" | "switch_back" => "switch_back",
                other => return Err(Exit::new(2, format!("`{other}`: decide proceed or switch-back")).into()),
            };
            let id = deploy.trim_start_matches('#');
            let e = client
                .json(
                    Method::POST,
                    &path(&["api", "v1", "deploys", id, "decision"]),
                    Some(&json!({"decision": decision, "reason": message})),
                )
                .await?;
            if cli.global.json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!("{}", e["summary"].as_str().unwrap_or_default());
            }
            Ok(())
        }
        Command::Rollback { environment, to } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            let to = match to {
                Some(t) => Some(
                    t.trim_start_matches('#')
                        .parse::<i64>()
                        .map_err(|_| Exit::new(2, format!("--to `{t}`: expected a deploy number")))?,
                ),
                None => None,
            };
            let path = path(&["api", "v1", "environments", &environment, "rollback"]);
            let d = client.json(Method::POST, &path, Some(&json!({"to": to}))).await?;
            crate::deploy::follow(&client, &d, cli.global.json).await
        }
        Command::Lock { environment, reason } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            let path = path(&["api", "v1", "environments", &environment, "lock"]);
            let v = client.json(Method::POST, &path, Some(&json!({"reason": reason}))).await?;
            if cli.global.json {
                println!("{v}");
            } else {
                println!("{environment} is locked by {}: {reason}", v["holder"].as_str().unwrap_or("you"));
            }
            Ok(())
        }
        Command::Unlock { environment } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            let v =
                client.json(Method::DELETE, &path(&["api", "v1", "environments", &environment, "lock"]), None).await?;
            if cli.global.json {
                println!("{v}");
            } else {
                println!("{environment} is unlocked.");
            }
            Ok(())
        }
        Command::Graph { name, since, stat, labels } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            crate::graph::run(&client, &name, &since, stat.as_deref(), labels.as_deref(), cli.global.json).await
        }
        Command::Log { environment, limit } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            crate::deploy::log(&client, environment.as_deref(), limit, cli.global.json).await
        }
        Command::Flags { action } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            match action {
                None => crate::flags::list(&client, cli.global.json).await,
                Some(crate::cli::FlagsAction::Export) => crate::flags::export(&client).await,
                Some(crate::cli::FlagsAction::Apply { file, yes, reason }) => {
                    crate::flags::apply(&client, &file, yes, reason).await
                }
            }
        }
        Command::Flag(args) => {
            crate::flags::flag(&Client::new(&cli.global.server, &data_dir)?, args, cli.global.json).await
        }
        Command::Pending { environment } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            crate::deploy::pending(&client, &environment, cli.global.json).await
        }
        Command::Oncall(args) => {
            crate::oncall::oncall(&Client::new(&cli.global.server, &data_dir)?, args, cli.global.json).await
        }
        Command::Postmortem { id, file, state } => {
            let client = Client::new(&cli.global.server, &data_dir)?;
            crate::oncall::postmortem(&client, &id, file.as_deref(), state.as_deref(), cli.global.json).await
        }
        Command::Drill { action } => {
            crate::oncall::drill(&Client::new(&cli.global.server, &data_dir)?, action, cli.global.json).await
        }
        Command::Judge(args) => crate::judge::run(&args, cli.global.json),
        Command::Incident { action } => {
            crate::oncall::incident(&Client::new(&cli.global.server, &data_dir)?, action, cli.global.json).await
        }
        Command::Infra { action } => {
            use crate::infra::Mode;
            let (args, mode) = match action {
                crate::cli::InfraAction::Plan(a) => (a, Mode::Plan),
                crate::cli::InfraAction::Apply(a) => (a, Mode::Apply),
                crate::cli::InfraAction::Check(a) => (a, Mode::Check),
                crate::cli::InfraAction::Engine { root, apply } => return crate::infra::engine_here(&root, apply),
            };
            crate::infra::run(&args, mode, cli.global.json, || Client::new(&cli.global.server, &data_dir)).await
        }
    }
}

fn filter_query(args: &EventsArgs, paged: bool) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let fields = [
        ("kind", &args.kind),
        ("subject", &args.subject),
        ("actor", &args.actor),
        ("q", &args.search),
        ("since", &args.since),
        ("until", &args.until),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    if paged {
        q.push(("limit", args.limit.to_string()));
    }
    q
}

fn encode(pairs: &[(&str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::client::query(&pairs)
}

async fn events(client: Client, args: EventsArgs, as_json: bool) -> Result<()> {
    // With --follow, subscribe before reading the newest events, so nothing falls between the two.
    let stream =
        if args.follow { Some(open_stream(&client, &encode(&filter_query(&args, false)), None).await?) } else { None };
    let page =
        client.json(Method::GET, &format!("/api/v1/events?{}", encode(&filter_query(&args, true))), None).await?;
    let mut events: Vec<Event> = serde_json::from_value(page["events"].clone()).context("the server's events")?;
    events.reverse();
    if as_json && !args.follow {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    let mut seen = HashSet::new();
    for e in &events {
        seen.insert(e.id.clone());
        print_event(e, as_json);
    }
    let Some(first) = stream else { return Ok(()) };
    follow(&client, &encode(&filter_query(&args, false)), first, seen, as_json).await
}

fn print_event(e: &Event, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string(e).expect("events serialize"));
    } else {
        println!("{}", event_line(e));
    }
}

async fn open_stream(client: &Client, query: &str, last_id: Option<&str>) -> Result<reqwest::Response> {
    let path = format!("/api/v1/events/stream?{query}");
    let headers: Vec<(&str, &str)> = last_id.map(|id| ("last-event-id", id)).into_iter().collect();
    client.send_with(Method::GET, &path, None, &headers).await
}

/// Prints streamed events until Ctrl-C; reconnects (resuming after the last event) if the server goes away.
async fn follow(
    client: &Client,
    query: &str,
    first: reqwest::Response,
    mut seen: HashSet<String>,
    as_json: bool,
) -> Result<()> {
    let mut res = Some(first);
    let mut last_id: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let response = match res.take() {
            Some(r) => r,
            None => match open_stream(client, query, last_id.as_deref()).await {
                Ok(r) => {
                    backoff = Duration::from_millis(500);
                    r
                }
                // Refused or bad input will not get better by retrying.
                Err(e) if e.downcast_ref::<Exit>().is_some_and(|x| x.code >= 2) => return Err(e),
                Err(e) => {
                    eprintln!("crew: live stream lost ({e:#}); retrying in {:.1}s", backoff.as_secs_f32());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        let mut stream = response.bytes_stream().eventsource();
        while let Some(item) = stream.next().await {
            let Ok(msg) = item else { break };
            if msg.data.is_empty() {
                continue;
            }
            if !msg.id.is_empty() {
                last_id = Some(msg.id.clone());
            }
            let e: Event = serde_json::from_str(&msg.data).context("a streamed event")?;
            if seen.remove(&e.id) {
                continue;
            }
            print_event(&e, as_json);
        }
        eprintln!("crew: live stream ended; reconnecting");
    }
}

async fn status(client: Client, as_json: bool) -> Result<()> {
    let s = client.json(Method::GET, "/api/v1/status", None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("crew {} at {}", s["version"].as_str().unwrap_or("?"), client.url(""));
    println!("store     {} ({})", s["store"].as_str().unwrap_or("?"), s["database"].as_str().unwrap_or("?"));
    println!(
        "uptime    {} (since {})",
        uptime(s["uptime_seconds"].as_u64().unwrap_or(0)),
        s["started_at"].as_str().unwrap_or("?")
    );
    println!("events    {}", s["counts"]["events"]);
    println!("tokens    {}", s["counts"]["tokens"]);
    for w in s["warnings"].as_array().into_iter().flatten() {
        println!("warning   {}", w.as_str().unwrap_or(""));
    }
    crate::deploy::environments(&client).await
}

async fn chat_link(client: Client, body: Value, as_json: bool) -> Result<()> {
    let v = client.json(Method::POST, "/api/v1/chat/links", Some(&body)).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(user) = v["user"].as_str() {
        println!("{} now speaks as {user}", v["identity"].as_str().unwrap_or(""));
    } else {
        println!("{} unlinked", v["identity"].as_str().unwrap_or(""));
    }
    Ok(())
}

async fn chat_links(client: Client, as_json: bool) -> Result<()> {
    let v = client.json(Method::GET, "/api/v1/chat/links", None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for l in v["links"].as_array().into_iter().flatten() {
        let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
        println!("{:<40} {:<16} ({})", s("identity"), s("user"), s("from"));
    }
    Ok(())
}

async fn chat_status(client: Client, as_json: bool) -> Result<()> {
    let v = client.json(Method::GET, "/api/v1/chat", None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let irc = &v["irc"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    for w in v["webhooks"].as_array().into_iter().flatten() {
        println!("{:<24} sent {}   failed {}   dropped {}", s(&w["name"]), w["sent"], w["failed"], w["dropped"]);
    }
    if irc.is_null() {
        println!("no IRC robot: this server's crew.toml has no [chat.irc]");
        return Ok(());
    }
    if irc["connected"] == true {
        let rooms: Vec<String> = irc["channels"].as_array().into_iter().flatten().map(s).collect();
        println!("irc       connected to {} as {} in {}", s(&irc["server"]), s(&irc["nick"]), rooms.join(" "));
    } else {
        println!(
            "irc       not connected to {} (last error: {})",
            s(&irc["server"]),
            irc["last_error"].as_str().unwrap_or("none")
        );
    }
    println!(
        "reconnects {}   backlog {}   sasl {}",
        irc["reconnects"],
        irc["backlog"],
        irc["sasl"].as_str().unwrap_or("-")
    );
    for m in v["recent"].as_array().into_iter().flatten().rev().take(10).collect::<Vec<_>>().into_iter().rev() {
        println!("{} {} <{}> {}", s(&m["at"]).get(11..19).unwrap_or(""), s(&m["room"]), s(&m["who"]), s(&m["text"]));
    }
    Ok(())
}

async fn token(client: Client, cmd: TokenCommand, as_json: bool) -> Result<()> {
    match cmd {
        TokenCommand::Create { name, role } => {
            let t = client.json(Method::POST, "/api/v1/tokens", Some(&json!({"name": name, "role": role}))).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("{}", t["token"].as_str().unwrap_or_default());
                eprintln!("Token `{name}` ({role}) created. This is the only time it is shown: hand it over now.");
            }
        }
        TokenCommand::List => {
            let v = client.json(Method::GET, "/api/v1/tokens", None).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let tokens = v["tokens"].as_array().cloned().unwrap_or_default();
                println!("{:<24} {:<9} {:<25} BY", "NAME", "ROLE", "CREATED");
                for t in tokens {
                    let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
                    println!("{:<24} {:<9} {:<25} {}", s("name"), s("role"), s("created_at"), s("created_by"));
                }
            }
        }
        TokenCommand::Revoke { name } => {
            let path =
                format!("/api/v1/tokens/{}", url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>());
            let v: Value = client.json(Method::DELETE, &path, None).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("Token `{name}` revoked.");
            }
        }
    }
    Ok(())
}
