//! Flags over HTTP: list, show, set a definition, turn a knob (Flickr's words); OFREP evaluation and the
//! definitions stream are in `ofrep.rs`.

use super::Flags;
use crate::auth::{Member, Viewer};
use crate::http::{parse_json, Answer};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use crew_flags::knobs;
use serde::Deserialize;
use serde_json::{json, Value};

fn flag_json(f: &crew_store::StoredFlag) -> Value {
    json!({
        "key": f.key,
        "definition": f.definition,
        "description": knobs::describe(&f.definition),
        "updated_at": crew_core::time::rfc3339(f.updated_at),
        "updated_by": f.updated_by,
    })
}

pub async fn list(_: Viewer, State(flags): State<Flags>) -> Answer {
    let c = flags.current();
    Ok(Json(json!({"flags": c.stored.iter().map(flag_json).collect::<Vec<_>>()})))
}

pub async fn one(_: Viewer, State(flags): State<Flags>, Path(key): Path<String>) -> Answer {
    let (f, history) = flags.show(&key, 1).await?;
    let last = history.into_iter().next();
    let mut out = flag_json(&f);
    out["last_change"] = json!(last);
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFlag {
    definition: Value,
    reason: String,
}

pub async fn put(Member(caller): Member, State(flags): State<Flags>, Path(key): Path<String>, body: Bytes) -> Answer {
    let req: PutFlag = parse_json(&body)?;
    let (before, after) = flags.change(&key, Some(req.definition), &req.reason, caller.actor()).await?;
    Ok(Json(json!({"key": key, "before": before, "after": after})))
}

pub async fn delete(Member(by): Member, State(s): State<Flags>, Path(key): Path<String>, body: Bytes) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Why {
        reason: String,
    }
    let req: Why = parse_json(&body)?;
    let (before, _) = s.change(&key, None, &req.reason, by.actor()).await?;
    Ok(Json(json!({"key": key, "before": before, "after": null})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnKnob {
    /// `on`, `off`, `rollout`, `beta`, `dark`, `split`.
    knob: String,
    percent: Option<u8>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    split: Option<String>,
    reason: String,
}

pub async fn knob(Member(caller): Member, State(flags): State<Flags>, Path(key): Path<String>, body: Bytes) -> Answer {
    let req: TurnKnob = parse_json(&body)?;
    let knob = super::knob(&req.knob, req.percent, req.users, req.groups, req.split.as_deref())?;
    let (before, after) = flags.turn(&key, &knob, false, &req.reason, caller.actor()).await?;
    Ok(Json(json!({"key": key, "before": before, "after": after, "description": after.as_ref().map(knobs::describe)})))
}
