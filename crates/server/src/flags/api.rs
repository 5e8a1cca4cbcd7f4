//! Flags over HTTP: list, show, set a definition, turn a knob (Flickr's words), a flag's launch plan and its
//! ramp; OFREP evaluation and the definitions stream are in `ofrep.rs`.

use super::Flags;
use crate::auth::{Member, Viewer};
use crate::error::ApiError;
use crate::http::{parse_json, Answer, Created};
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

fn plan_json(
    key: &str,
    plan: &super::plan::Plan,
    stored: Option<&crew_store::StoredPlan>,
    warnings: &[String],
) -> Value {
    json!({
        "flag": key,
        "plan": plan,
        "description": plan.describe(),
        "updated_at": stored.map(|s| crew_core::time::rfc3339(s.updated_at)),
        "updated_by": stored.map(|s| s.updated_by.clone()),
        "warnings": warnings,
    })
}

pub async fn plan(_: Viewer, State(flags): State<Flags>, Path(key): Path<String>) -> Answer {
    let (stored, plan, warnings) = flags.show_plan(&key).await?;
    Ok(Json(plan_json(&key, &plan, Some(&stored), &warnings)))
}

/// `PUT /api/v1/flags/{key}/plan`: the plan as JSON, or a plan file's TOML with `Content-Type: text/plain` (or
/// `application/toml`).
pub async fn put_plan(
    Member(caller): Member,
    State(flags): State<Flags>,
    Path(key): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Answer {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let plan = if content_type.starts_with("text/plain") || content_type.starts_with("application/toml") {
        let text = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("plan: not UTF-8 text".into()))?;
        super::plan::Plan::from_toml(text)
    } else {
        let v: Value = parse_json(&body)?;
        super::plan::Plan::from_json(&v)
    }
    .map_err(ApiError::Unprocessable)?;
    let (before, after, warnings) = flags.set_plan(&key, plan.clone(), caller.actor()).await?;
    let mut out = plan_json(&key, &plan, None, &warnings);
    out["before"] = json!(before);
    out["after"] = after;
    Ok(Json(out))
}

pub async fn ramp(_: Viewer, State(flags): State<Flags>, Path(key): Path<String>) -> Answer {
    let r = flags.ramp(&key).await?;
    Ok(Json(super::ramp::ramp_json(&r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRamp {
    /// Percents in order: `[1, 5, 25, 50, 100]` (or the text `"1,5,25,50,100"`).
    steps: Value,
    /// `"10m"`.
    every: String,
    reason: String,
}

pub async fn start_ramp(
    Member(caller): Member,
    State(flags): State<Flags>,
    Path(key): Path<String>,
    body: Bytes,
) -> Created {
    let req: StartRamp = parse_json(&body)?;
    let steps = match &req.steps {
        Value::String(s) => super::ramp::parse_steps_text(s).map_err(ApiError::BadRequest)?,
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_i64().ok_or_else(|| ApiError::BadRequest(format!("steps[{i}]: `{v}` is not a percent"))))
            .collect::<Result<_, _>>()?,
        other => return Err(ApiError::BadRequest(format!("steps: `{other}` is not a list of percents"))),
    };
    let (r, warnings) = flags.start_ramp(&key, &steps, &req.every, &req.reason, caller.actor()).await?;
    let mut out = super::ramp::ramp_json(&r);
    out["warnings"] = json!(warnings);
    Ok((axum::http::StatusCode::CREATED, Json(out)))
}

pub async fn cancel_ramp(
    Member(caller): Member,
    State(flags): State<Flags>,
    Path(key): Path<String>,
    body: Bytes,
) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Why {
        reason: String,
    }
    let req: Why = parse_json(&body)?;
    let r = flags.cancel_ramp(&key, &req.reason, caller.actor()).await?;
    Ok(Json(super::ramp::ramp_json(&r)))
}
