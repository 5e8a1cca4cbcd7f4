//! The flag commands' client side: list, show, turn a knob (with a reason), a launch plan, a judged ramp,
//! evaluate as a user would be.

use crate::cli::FlagArgs;
use crate::client::path;
use crate::client::Client;
use crate::Exit;
use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Map, Value};

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

pub async fn list(client: &Client, as_json: bool) -> Result<()> {
    let v = client.json(Method::GET, "/api/v1/flags", None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for f in v["flags"].as_array().into_iter().flatten() {
        println!("{:<28} {}  (by {})", s(f, "key"), s(f, "description"), s(f, "updated_by"));
    }
    Ok(())
}

/// A reason from --reason, or asked for at a terminal.
fn reason(args: &FlagArgs) -> Result<String> {
    ask_reason(args.reason.clone())
}

fn ask_reason(given: Option<String>) -> Result<String> {
    if let Some(r) = given {
        return Ok(r);
    }
    use std::io::{BufRead, IsTerminal, Write};
    if std::io::stdin().is_terminal() {
        eprint!("Why? (the timeline records it): ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !line.trim().is_empty() {
            return Ok(line.trim().to_string());
        }
    }
    Err(Exit::new(2, "a flag change needs --reason \"why\"").into())
}

fn percent(action: &[String]) -> Result<u8> {
    let n = action
        .get(1)
        .ok_or_else(|| Exit::new(2, format!("`{}` needs a percent, like `{} 10`", action[0], action[0])))?;
    n.trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .filter(|n| *n <= 100)
        .ok_or_else(|| Exit::new(2, format!("`{n}` is not a percent from 0 to 100")).into())
}

pub async fn flag(client: &Client, args: FlagArgs, as_json: bool) -> Result<()> {
    if args.key == "eval" {
        return eval(client, &args, as_json).await;
    }
    let key = &args.key;
    let Some(word) = args.action.first() else { return show(client, key, as_json).await };
    match word.as_str() {
        "plan" => return plan(client, &args, as_json).await,
        "ramp" => return ramp(client, &args, as_json).await,
        _ => {}
    }
    let mut body = json!({"knob": word});
    match word.as_str() {
        "on" | "off" => {}
        "rollout" | "dark" => body["percent"] = json!(percent(&args.action)?),
        "beta" => {
            body["users"] = json!(args.users);
            body["groups"] = json!(args.groups);
        }
        "split" => {
            let spec = args
                .action
                .get(1)
                .ok_or_else(|| Exit::new(2, "`split` needs variants and weights, like `split control=50,new=50`"))?;
            body["split"] = json!(spec);
        }
        other => {
            return Err(Exit::new(
                2,
                format!("unknown action `{other}`: on, off, rollout N, beta, dark N or split SPEC"),
            )
            .into())
        }
    }
    body["reason"] = json!(reason(&args)?);
    let v = client.json(Method::POST, &path(&["api", "v1", "flags", key, "knob"]), Some(&body)).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{key}: {}", s(&v, "description"));
    }
    Ok(())
}

/// `crew flag KEY plan [--file plan.toml]`: shows the plan, or sets it from the file.
async fn plan(client: &Client, args: &FlagArgs, as_json: bool) -> Result<()> {
    let key = &args.key;
    let at = path(&["api", "v1", "flags", key, "plan"]);
    let v = match &args.file {
        None => client.json(Method::GET, &at, None).await?,
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Exit::new(2, format!("cannot read {}: {e}", file.display())))?;
            let doc: Value = toml::from_str(&text)
                .map_err(|e| Exit::new(2, format!("{}: not TOML: {}", file.display(), e.message())))?;
            client.json(Method::PUT, &at, Some(&doc)).await.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_plan(key, &v);
    for w in v["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or(""));
    }
    Ok(())
}

fn print_plan(key: &str, v: &Value) {
    let p = &v["plan"];
    println!("{key}'s launch plan: owner {}, contingency {}", s(p, "owner"), s(p, "contingency"));
    if !s(p, "risks").is_empty() {
        println!("risks: {}", s(p, "risks"));
    }
    if !s(p, "runbook").is_empty() {
        println!("runbook: {}", s(p, "runbook"));
    }
    for w in p["watch"].as_array().into_iter().flatten() {
        let stat = w["stat"].as_str().map(|st| format!(" {st}")).unwrap_or_default();
        let over = w["over"].as_str().map(|o| format!("/{o}")).unwrap_or_default();
        println!("watch: {}{over}{stat} (bad: {})", s(w, "name"), w["direction"].as_str().unwrap_or("either"));
    }
}

fn print_ramp(key: &str, r: &Value) {
    let steps: Vec<String> =
        r["steps"].as_array().into_iter().flatten().map(|p| format!("{}%", p.as_u64().unwrap_or(0))).collect();
    println!(
        "{key}: ramp {} {} at {}% (step {} of {}: {}), every {}",
        r["id"],
        s(r, "status"),
        r["percent"],
        r["step"],
        steps.len(),
        steps.join(" → "),
        s(r, "every")
    );
    if let Some(last) = r["last"].as_object() {
        println!(
            "last verdict: {} — {} → {}",
            last.get("verdict").and_then(Value::as_str).unwrap_or(""),
            last.get("why").and_then(Value::as_str).unwrap_or(""),
            last.get("note").and_then(Value::as_str).unwrap_or("")
        );
    }
    if let Some(due) = r["due_at"].as_str() {
        println!("judged next at {due}; series tagged {}:on against {}:off", s(r, "tag"), s(r, "tag"));
    }
}

/// `crew flag KEY ramp STEPS --every D -r WHY`, `crew flag KEY ramp` (show), `crew flag KEY ramp cancel -r WHY`.
async fn ramp(client: &Client, args: &FlagArgs, as_json: bool) -> Result<()> {
    let key = &args.key;
    let at = path(&["api", "v1", "flags", key, "ramp"]);
    let v = match args.action.get(1).map(String::as_str) {
        None => client.json(Method::GET, &at, None).await?,
        Some("cancel") => client.json(Method::DELETE, &at, Some(&json!({"reason": reason(args)?}))).await?,
        Some(steps) => {
            let every = args
                .every
                .clone()
                .ok_or_else(|| Exit::new(2, "a ramp needs --every, the time between steps (like --every 10m)"))?;
            let body = json!({"steps": steps, "every": every, "reason": reason(args)?});
            client.json(Method::POST, &at, Some(&body)).await?
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_ramp(key, &v);
    for w in v["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or(""));
    }
    Ok(())
}

async fn show(client: &Client, key: &str, as_json: bool) -> Result<()> {
    let v = client.json(Method::GET, &path(&["api", "v1", "flags", key]), None).await?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"definition": v["definition"], "last_change": v["last_change"]}))?
        );
        return Ok(());
    }
    println!("{key}: {}", s(&v, "description"));
    let variants = v["definition"]["variants"].as_object().cloned().unwrap_or_default();
    let list: Vec<String> = variants.iter().map(|(k, val)| format!("{k}={val}")).collect();
    println!("variants: {}", list.join(", "));
    if let Some(e) = v["last_change"].as_object() {
        println!(
            "last change: {} by {} — {}",
            e["at"].as_str().unwrap_or(""),
            e["actor"]["name"].as_str().unwrap_or(""),
            e["summary"].as_str().unwrap_or("")
        );
    }
    let plan = client.send_allowing(Method::GET, &path(&["api", "v1", "flags", key, "plan"]), None, &[404]).await?;
    if plan.status().is_success() {
        print_plan(key, &plan.json().await?);
    } else {
        println!("no launch plan (crew flag {key} plan --file plan.toml)");
    }
    let ramp = client.send_allowing(Method::GET, &path(&["api", "v1", "flags", key, "ramp"]), None, &[404]).await?;
    if ramp.status().is_success() {
        print_ramp(key, &ramp.json().await?);
    }
    Ok(())
}

async fn eval(client: &Client, args: &FlagArgs, as_json: bool) -> Result<()> {
    let key = args.action.first().ok_or_else(|| Exit::new(2, "usage: crew flag eval KEY --user U [--attr k=v]"))?;
    let mut ctx = Map::new();
    if let Some(u) = &args.user {
        ctx.insert("targetingKey".into(), json!(u));
    }
    for a in &args.attrs {
        let (k, v) = a.split_once('=').ok_or_else(|| Exit::new(2, format!("--attr `{a}`: expected k=v")))?;
        let typed = match v {
            "true" => json!(true),
            "false" => json!(false),
            _ => v
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| v.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| json!(v)),
        };
        ctx.insert(k.to_string(), typed);
    }
    let res = client
        .send_allowing(
            Method::POST,
            &path(&["ofrep", "v1", "evaluate", "flags", key]),
            Some(&json!({"context": ctx})),
            &[404, 400, 500],
        )
        .await?;
    let v: Value = res.json().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match v.get("errorCode") {
        Some(code) => {
            Err(Exit::new(2, format!("{key}: {} ({})", code.as_str().unwrap_or(""), s(&v, "errorDetails"))).into())
        }
        None => {
            let value = v.get("value").map(|x| x.to_string()).unwrap_or_else(|| "(the code default)".into());
            println!(
                "value {value}  variant {}  reason {}",
                v.get("variant").and_then(Value::as_str).unwrap_or("-"),
                s(&v, "reason")
            );
            Ok(())
        }
    }
}

/// Every flag as one flagd document.
pub async fn export(client: &Client) -> Result<()> {
    let v = client.json(Method::GET, "/api/v1/flags", None).await?;
    let flags: Map<String, Value> = v["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| (s(f, "key").to_string(), f["definition"].clone()))
        .collect();
    let doc = json!({"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": flags});
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// Shows how the server's flags differ from a flagd file and, with `yes`, makes them match.
pub async fn apply(client: &Client, file: &std::path::Path, yes: bool, reason: Option<String>) -> Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Exit::new(2, format!("cannot read {}: {e}", file.display())))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| Exit::new(2, format!("{}: not JSON: {e}", file.display())))?;
    let wanted = crew_flags::inline_document(&doc).map_err(|e| Exit::new(2, format!("{}: {e}", file.display())))?;
    let v = client.json(Method::GET, "/api/v1/flags", None).await?;
    let current: Map<String, Value> = v["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| (s(f, "key").to_string(), f["definition"].clone()))
        .collect();
    let mut changes: Vec<(String, Option<Value>)> = Vec::new();
    for (key, def) in &wanted {
        match current.get(key) {
            None => println!("+ {key}: {}", crew_flags::knobs::describe(def)),
            Some(old) if old != def => {
                println!("~ {key}: {} → {}", crew_flags::knobs::describe(old), crew_flags::knobs::describe(def))
            }
            Some(_) => continue,
        }
        changes.push((key.clone(), Some(def.clone())));
    }
    for key in current.keys().filter(|k| !wanted.contains_key(*k)) {
        println!("- {key}");
        changes.push((key.clone(), None));
    }
    if changes.is_empty() {
        println!("The server's flags match {}.", file.display());
        return Ok(());
    }
    if !yes {
        eprintln!("{} change(s). Run again with --yes (and --reason) to apply them.", changes.len());
        return Ok(());
    }
    let why = ask_reason(reason)?;
    for (key, def) in changes {
        let path = path(&["api", "v1", "flags", &key]);
        match def {
            Some(d) => client.json(Method::PUT, &path, Some(&json!({"definition": d, "reason": why}))).await?,
            None => client.json(Method::DELETE, &path, Some(&json!({"reason": why}))).await?,
        };
    }
    println!("Applied {}.", file.display());
    Ok(())
}
