//! `crew oncall` (who is on call, overrides, taking the shift) and `crew incident` (list, show, ack, resolve,
//! note, open).

use crate::cli::{IncidentAction, OncallAction, OncallArgs};
use crate::client::{path, path_query, Client};
use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Value};

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// `2026-12-01T09:00:00Z` as `2026-12-01 09:00Z`.
fn short_time(v: &Value) -> String {
    let t = s(v);
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h}Z"),
        _ => t,
    }
}

pub async fn oncall(client: &Client, args: OncallArgs, as_json: bool) -> Result<()> {
    match args.action {
        Some(OncallAction::Override { schedule, user, from, until }) => {
            let body = json!({"user": user, "from": from, "until": until});
            let v =
                client.json(Method::POST, &path(&["api", "v1", "oncall", &schedule, "overrides"]), Some(&body)).await?;
            print_override(&v, as_json);
            Ok(())
        }
        Some(OncallAction::Take { schedule, until }) => {
            let body = json!({"until": until});
            let v =
                client.json(Method::POST, &path(&["api", "v1", "oncall", &schedule, "overrides"]), Some(&body)).await?;
            print_override(&v, as_json);
            Ok(())
        }
        None => {
            let at: Vec<(&str, &str)> = args.at.as_deref().map(|a| ("at", a)).into_iter().collect();
            let v = client.json(Method::GET, &path_query(&["api", "v1", "oncall"], &at), None).await?;
            let mut schedules: Vec<Value> = v["schedules"].as_array().cloned().unwrap_or_default();
            if let Some(name) = &args.schedule {
                schedules.retain(|w| w["schedule"].as_str() == Some(name));
                if schedules.is_empty() {
                    return Err(crate::Exit::new(2, format!("no schedule `{name}`")).into());
                }
            }
            if as_json {
                println!("{}", serde_json::to_string_pretty(&json!({"at": v["at"], "schedules": schedules}))?);
                return Ok(());
            }
            if schedules.is_empty() {
                println!("no schedules: crew.toml has no [[schedules]]");
            }
            for w in schedules {
                let now = &w["now"];
                let who = now["user"].as_str().unwrap_or("NOBODY (a gap)");
                println!("{:<12} {who} until {}", s(&w["schedule"]), short_time(&now["until"]));
                if !w["next"].is_null() {
                    let n = &w["next"];
                    println!(
                        "{:<12} next: {} from {}",
                        "",
                        n["user"].as_str().unwrap_or("nobody"),
                        short_time(&n["from"])
                    );
                }
            }
            Ok(())
        }
    }
}

fn print_override(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
    } else {
        println!(
            "{} is on call for {} from {} until {}",
            s(&v["user"]),
            s(&v["schedule"]),
            short_time(&v["from"]),
            short_time(&v["until"])
        );
    }
}

fn incident_line(i: &Value) -> String {
    let drill = if i["drill"] == true { "DRILL " } else { "" };
    format!(
        "#{:<5} {:<12} {:<7} {drill}{}  ({})",
        i["id"],
        s(&i["status"]),
        s(&i["severity"]),
        s(&i["summary"]),
        short_time(&i["triggered_at"])
    )
}

pub async fn incident(client: &Client, action: IncidentAction, as_json: bool) -> Result<()> {
    let id_path = |id: &str, rest: &[&str]| {
        let id = id.trim_start_matches('#');
        let mut segs = vec!["api", "v1", "incidents", id];
        segs.extend_from_slice(rest);
        path(&segs)
    };
    let v = match &action {
        IncidentAction::List { open } => {
            let q: Vec<(&str, &str)> = if *open { vec![("status", "open")] } else { vec![] };
            let v = client.json(Method::GET, &path_query(&["api", "v1", "incidents"], &q), None).await?;
            if !as_json {
                let list = v["incidents"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no incidents");
                }
                for i in list {
                    println!("{}", incident_line(&i));
                }
                return Ok(());
            }
            v
        }
        IncidentAction::Show { id } => {
            let v = client.json(Method::GET, &id_path(id, &[]), None).await?;
            if !as_json {
                println!("{}", incident_line(&v));
                if let Some(rb) = v["runbook_url"].as_str() {
                    println!("runbook  {rb}");
                }
                println!("page     {}", s(&v["url"]));
                let changes = v["changes"].as_array().cloned().unwrap_or_default();
                if !changes.is_empty() {
                    println!("changes before it, newest first:");
                }
                for c in changes {
                    let undo = c["undo"]["command"].as_str().map(|u| format!("   undo: {u}")).unwrap_or_default();
                    println!(
                        "  {:>9} before  {}{undo}",
                        crate::output::uptime(c["before_seconds"].as_u64().unwrap_or(0)),
                        s(&c["summary"])
                    );
                }
                for e in v["timeline"].as_array().into_iter().flatten() {
                    println!("  {}  {}", short_time(&e["at"]), s(&e["summary"]));
                }
                return Ok(());
            }
            v
        }
        IncidentAction::Ack { id } => client.json(Method::POST, &id_path(id, &["ack"]), None).await?,
        IncidentAction::Resolve { id, note } => {
            client.json(Method::POST, &id_path(id, &["resolve"]), Some(&json!({"note": note}))).await?
        }
        IncidentAction::Undo { id, event } => {
            client.json(Method::POST, &id_path(id, &["undo"]), Some(&json!({"event": event}))).await?
        }
        IncidentAction::Note { id, text } => {
            client.json(Method::POST, &id_path(id, &["notes"]), Some(&json!({"text": text}))).await?
        }
        IncidentAction::Open { summary, escalation, severity } => {
            let body = json!({"summary": summary, "escalation": escalation, "severity": severity});
            let v = client.json(Method::POST, "/api/v1/incidents", Some(&body)).await?;
            if !as_json {
                println!("{}", incident_line(&v["incident"]));
                return Ok(());
            }
            v
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match action {
            IncidentAction::Note { .. } => println!("{}", s(&v["summary"])),
            IncidentAction::Undo { .. } => println!("undone: {v}"),
            _ => println!("{}", incident_line(&v)),
        }
    }
    Ok(())
}

/// `crew postmortem ID [--file F] [--state S]`: prints the postmortem's Markdown, after changing it if asked.
pub async fn postmortem(
    client: &Client,
    id: &str,
    file: Option<&std::path::Path>,
    state: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let p = path(&["api", "v1", "incidents", id.trim_start_matches('#'), "postmortem"]);
    let v = if file.is_some() || state.is_some() {
        let markdown = match file {
            Some(f) => {
                Some(std::fs::read_to_string(f).map_err(|e| crate::Exit::new(2, format!("{}: {e}", f.display())))?)
            }
            None => None,
        };
        client.json(Method::PUT, &p, Some(&json!({"markdown": markdown, "state": state}))).await?
    } else {
        client.json(Method::GET, &p, None).await?
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", s(&v["markdown"]));
        eprintln!("({}, last changed by {})", s(&v["state"]), s(&v["updated_by"]));
    }
    Ok(())
}

/// `crew drill list` and `crew drill run NAME` (which waits for the run to end and prints its journal).
pub async fn drill(client: &Client, action: crate::cli::DrillAction, as_json: bool) -> Result<()> {
    match action {
        crate::cli::DrillAction::List => {
            let v = client.json(Method::GET, "/api/v1/drills", None).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for d in v["drills"].as_array().into_iter().flatten() {
                match d["error"].as_str() {
                    Some(e) => println!("{:<20} {e}", s(&d["name"])),
                    None => println!("{:<20} {}", s(&d["name"]), s(&d["title"])),
                }
            }
            for r in v["runs"].as_array().into_iter().flatten().take(20) {
                println!("  {}  {}", short_time(&r["at"]), s(&r["summary"]));
            }
            Ok(())
        }
        crate::cli::DrillAction::Run { name } => {
            let v = client.json(Method::POST, &path(&["api", "v1", "drills", &name, "run"]), None).await?;
            let run = s(&v["run"]);
            eprintln!("DRILL {name} running ({run})");
            let journal = loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let j = client.json(Method::GET, &path(&["api", "v1", "drills", "runs", &run]), None).await?;
                if j["state"] == "finished" {
                    break j;
                }
            };
            if as_json {
                println!("{}", serde_json::to_string_pretty(&journal)?);
            } else {
                for a in journal["actions"].as_array().into_iter().flatten() {
                    println!("  {}", s(&a["summary"]));
                }
                println!("{}", s(&journal["finished"]["summary"]));
            }
            Ok(())
        }
    }
}
