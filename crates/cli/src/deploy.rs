//! The deploy commands' client side: follow a deploy's log to its end, the deploy log in the Flickr form,
//! pending commits, and each environment's state for `crew status`.

use crate::client::Client;
use crate::client::{path, path_query};
use crate::Exit;
use anyhow::Result;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn when(v: &Value) -> String {
    chrono::DateTime::parse_from_rfc3339(s(v, "started_at"))
        .map(|t| crew_core::time::human(t.with_timezone(&chrono::Utc)))
        .unwrap_or_default()
}

/// One deploy as a line of the deploy log (the server's one definition of it).
pub fn log_line(d: &Value) -> String {
    match serde_json::from_value::<crew_store::Deploy>(d.clone()) {
        Ok(d) => crew_server::deploys::log_line(&d),
        Err(_) => d.to_string(),
    }
}

/// The median duration of the environment's recent succeeded deploys (of the same action), for an ETA.
async fn typical_duration(client: &Client, d: &Value) -> Option<Duration> {
    let p = path_query(&["api", "v1", "deploys"], &[("environment", s(d, "environment")), ("limit", "20")]);
    let v = client.json(Method::GET, &p, None).await.ok()?;
    let mut secs: Vec<f64> = v["deploys"]
        .as_array()?
        .iter()
        .filter(|p| p["status"] == "succeeded" && p["action"] == d["action"])
        .filter_map(|p| {
            let start = chrono::DateTime::parse_from_rfc3339(p["started_at"].as_str()?).ok()?;
            let end = chrono::DateTime::parse_from_rfc3339(p["finished_at"].as_str()?).ok()?;
            Some((end - start).num_milliseconds() as f64 / 1000.0)
        })
        .collect();
    if secs.is_empty() {
        return None;
    }
    secs.sort_by(|a, b| a.total_cmp(b));
    Some(Duration::from_secs_f64(secs[secs.len() / 2]))
}

/// Progress for a terminal: a bar over the deploy's steps (build, then each host switched), with an ETA from
/// the environment's past deploys; log lines scroll above it. `None` when stderr is not a terminal.
fn progress(hosts: u64, typical: Option<Duration>) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(hosts + 1);
    let eta = typical.map(|t| format!(" (usually {:.0}s)", t.as_secs_f64())).unwrap_or_default();
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}}{eta}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style);
    pb.enable_steady_tick(Duration::from_millis(120));
    Some(pb)
}

/// Prints a deploy's log as it is written, until it ends; exit 0 only if it succeeded.
pub async fn follow(client: &Client, d: &Value, as_json: bool) -> Result<()> {
    let id = d["id"].as_i64().unwrap_or(0);
    let mut bar = None;
    for w in d["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    if !as_json {
        eprintln!("#{id}: {}", log_line(d));
        bar = progress(host_count(client, d).await, typical_duration(client, d).await);
    }
    let mut offset = 0;
    let last = loop {
        let v = client.json(Method::GET, &format!("/api/v1/deploys/{id}/log?offset={offset}"), None).await?;
        for line in v["lines"].as_array().into_iter().flatten() {
            let line = line.as_str().unwrap_or("");
            if as_json {
                continue;
            }
            match &bar {
                Some(pb) => {
                    pb.println(line);
                    if line.contains(": built") || line.contains("reusing the build") || line.contains(": switched to")
                    {
                        pb.inc(1);
                    }
                    pb.set_message(line.chars().take(60).collect::<String>());
                }
                None => println!("{line}"),
            }
        }
        offset = v["next_offset"].as_i64().unwrap_or(offset);
        if v["status"] != "running" && v["lines"].as_array().is_none_or(|l| l.is_empty()) {
            break v["deploy"].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&last)?);
    } else {
        eprintln!("#{id}: {}", log_line(&last));
    }
    match s(&last, "status") {
        "succeeded" => Ok(()),
        _ => Err(Exit::new(1, format!("deploy #{id} {}: {}", s(&last, "status"), s(&last, "error"))).into()),
    }
}

/// How many hosts the deploy's environment has (for the progress bar).
async fn host_count(client: &Client, d: &Value) -> u64 {
    let p = path(&["api", "v1", "environments", s(d, "environment"), "pending"]);
    client.json(Method::GET, &p, None).await.ok().and_then(|v| v["hosts"].as_u64()).unwrap_or(1)
}

pub async fn log(client: &Client, environment: Option<&str>, limit: u32, as_json: bool) -> Result<()> {
    let limit = limit.to_string();
    let mut pairs = vec![("limit", limit.as_str())];
    if let Some(e) = environment {
        pairs.push(("environment", e));
    }
    let v = client.json(Method::GET, &path_query(&["api", "v1", "deploys"], &pairs), None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for d in v["deploys"].as_array().into_iter().flatten() {
        println!("{}", log_line(d));
    }
    Ok(())
}

pub async fn pending(client: &Client, environment: &str, as_json: bool) -> Result<()> {
    let v = client.json(Method::GET, &path(&["api", "v1", "environments", environment, "pending"]), None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let commits = v["commits"].as_array().cloned().unwrap_or_default();
    match v["live"].as_str() {
        Some(live) => println!(
            "{environment} runs {}; {} commit(s) on {} not live there:",
            short(live),
            commits.len(),
            s(&v, "branch")
        ),
        None => println!("{environment} has no live release; {} commit(s) on {}:", commits.len(), s(&v, "branch")),
    }
    for c in &commits {
        println!("  {} {:<16} {}", short(s(c, "sha")), s(c, "author"), s(c, "subject"));
    }
    if commits.len() > 8 {
        eprintln!("warning: {} commits pending on {environment}: deploy smaller changes more often", commits.len());
    }
    if let Some(r) = v.get("requires").filter(|r| !r.is_null()) {
        let ahead = r["commits"].as_array().map_or(0, |a| a.len());
        println!(
            "{} runs {}: {ahead} commit(s) there that {environment} lacks",
            s(r, "environment"),
            short(s(r, "live"))
        );
    }
    Ok(())
}

/// The environments part of `crew status`.
pub async fn environments(client: &Client) -> Result<()> {
    let v = client.json(Method::GET, "/api/v1/environments", None).await?;
    for e in v["environments"].as_array().into_iter().flatten() {
        let live = &e["live"];
        let state = if live.is_null() {
            "no live release".to_string()
        } else {
            format!("{} by {} at {} (#{})", short(s(live, "revision")), s(live, "actor"), when(live), live["id"])
        };
        println!("{:<14} {state}; {} pending", s(e, "name"), e["pending"]);
        for l in e["locks"].as_array().into_iter().flatten() {
            println!("{:<14} locked ({}) by {}: {}", "", s(l, "kind"), s(l, "holder"), s(l, "reason"));
        }
    }
    Ok(())
}
