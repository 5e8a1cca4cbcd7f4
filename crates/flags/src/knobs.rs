//! Flickr's words for flags, as ordinary flagd definitions (so an exported file evaluates the same in flagd):
//! a contingency switch (`on`/`off`), a percentage rollout, a private beta, a dark launch, a bucket test.

use serde_json::{json, Map, Value};

/// What a person asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Knob {
    /// Enable the flag (its rules stay).
    On,
    /// Disable the flag: every application's code default wins.
    Off,
    /// N% of users get `on`, sticky by targeting key.
    Rollout(u8),
    /// These users (targeting keys) and members of these groups (the `groups` attribute) get `on`.
    Beta { users: Vec<String>, groups: Vec<String> },
    /// N% get variant `dark` (with `on`'s value: the work runs, the application ignores the result); beta
    /// users keep `on`.
    Dark(u8),
    /// A bucket test: sticky variants by weight.
    Split(Vec<(String, u64)>),
}

fn on_off(def: &Map<String, Value>) -> Map<String, Value> {
    let mut variants = def.get("variants").and_then(Value::as_object).cloned().unwrap_or_default();
    variants.entry("on").or_insert(json!(true));
    variants.entry("off").or_insert(json!(false));
    variants
}

/// The beta condition of an existing definition made by [`Knob::Beta`], to keep it under a dark launch.
fn beta_condition(def: &Map<String, Value>) -> Option<Value> {
    let t = def.get("targeting")?;
    let args = t.get("if")?.as_array()?;
    (args.len() == 3 && args[1] == json!("on")).then(|| args[0].clone())
}

/// The definition after the knob, from the current one (`None` for a new flag).
pub fn apply(current: Option<&Value>, knob: &Knob) -> Result<Value, String> {
    let mut def = match current {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("the current definition is not an object".into()),
        None => {
            let mut m = Map::new();
            m.insert("state".into(), json!("ENABLED"));
            m.insert("variants".into(), json!({"on": true, "off": false}));
            m.insert("defaultVariant".into(), json!("off"));
            m
        }
    };
    match knob {
        Knob::On => {
            def.insert("state".into(), json!("ENABLED"));
            if current.is_none() {
                def.insert("defaultVariant".into(), json!("on"));
            }
        }
        Knob::Off => {
            def.insert("state".into(), json!("DISABLED"));
        }
        Knob::Rollout(n) => {
            check_percent(*n)?;
            def.insert("state".into(), json!("ENABLED"));
            def.insert("variants".into(), Value::Object(on_off(&def)));
            def.insert("defaultVariant".into(), json!("off"));
            def.insert("targeting".into(), json!({"fractional": [["on", n], ["off", 100 - n]]}));
        }
        Knob::Beta { users, groups } => {
            if users.is_empty() && groups.is_empty() {
                return Err("a beta needs --users or --groups".into());
            }
            let mut any = Vec::new();
            if !users.is_empty() {
                any.push(json!({"in": [{"var": "targetingKey"}, users]}));
            }
            if !groups.is_empty() {
                // `groups` may be one group or a list of them.
                any.push(json!({"in": [{"var": "groups"}, groups]}));
                any.push(json!({"some": [{"var": "groups"}, {"in": [{"var": ""}, groups]}]}));
            }
            def.insert("state".into(), json!("ENABLED"));
            def.insert("variants".into(), Value::Object(on_off(&def)));
            def.insert("defaultVariant".into(), json!("off"));
            def.insert("targeting".into(), json!({"if": [{"or": any}, "on", "off"]}));
        }
        Knob::Dark(n) => {
            check_percent(*n)?;
            let mut variants = on_off(&def);
            // The dark variant runs the new code like `on` (same value); its name tells the application to
            // ignore the result.
            let on_value = variants.get("on").cloned().unwrap_or(json!(true));
            variants.entry("dark").or_insert(on_value);
            let dark = json!({"fractional": [["dark", n], ["off", 100 - n]]});
            let targeting = match beta_condition(&def) {
                Some(cond) => json!({"if": [cond, "on", dark]}),
                None => dark,
            };
            def.insert("state".into(), json!("ENABLED"));
            def.insert("variants".into(), Value::Object(variants));
            def.insert("defaultVariant".into(), json!("off"));
            def.insert("targeting".into(), targeting);
        }
        Knob::Split(parts) => {
            if parts.len() < 2 || parts.iter().map(|(_, w)| w).sum::<u64>() == 0 {
                return Err("a split needs two or more variants with weights, like control=50,new=50".into());
            }
            let variants: Map<String, Value> = parts.iter().map(|(v, _)| (v.clone(), json!(v))).collect();
            let buckets: Vec<Value> = parts.iter().map(|(v, w)| json!([v, w])).collect();
            def.insert("state".into(), json!("ENABLED"));
            def.insert("variants".into(), Value::Object(variants));
            def.insert("defaultVariant".into(), json!(parts[0].0));
            def.insert("targeting".into(), json!({"fractional": buckets}));
        }
    }
    Ok(Value::Object(def))
}

fn check_percent(n: u8) -> Result<(), String> {
    if n > 100 {
        Err(format!("{n}% is more than 100%"))
    } else {
        Ok(())
    }
}

/// Parses `control=50,new=50`.
pub fn parse_split(s: &str) -> Result<Vec<(String, u64)>, String> {
    s.split(',')
        .map(|part| {
            let (name, w) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected name=weight"))?;
            let w: u64 = w.trim().parse().map_err(|_| format!("`{part}`: the weight must be a whole number"))?;
            Ok((name.trim().to_string(), w))
        })
        .collect()
}

/// The variants of a split and their weights, control first: a definition switched on whose targeting is one
/// `fractional` (what `crew flag KEY split` writes, or the same by hand, with or without a bucketing expression
/// first). A bucket without a weight weighs 1 and a negative weight counts as 0, as flagd does. `None` for any
/// other definition, and for what `rollout` and `dark` write (`on`/`off`, `dark`/`off`: a ramp, not a test).
pub fn split_of(def: &Value) -> Option<Vec<(String, f64)>> {
    if def.get("state").and_then(Value::as_str) != Some("ENABLED") {
        return None;
    }
    let args = def.get("targeting")?.as_object().filter(|t| t.len() == 1)?.get("fractional")?.as_array()?;
    let buckets = args.iter().skip_while(|a| !a.is_array());
    let mut out = Vec::new();
    for b in buckets {
        let b = b.as_array()?;
        let name = b.first()?.as_str()?;
        let weight = match b.get(1) {
            None => 1.0,
            Some(w) => w.as_f64()?.max(0.0),
        };
        out.push((name.to_string(), weight));
    }
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    let ramp = names.len() == 2 && names.contains(&"off") && (names.contains(&"on") || names.contains(&"dark"));
    (out.len() >= 2 && !ramp).then_some(out)
}

/// The rules of a definition in words, for `crew flag KEY`.
pub fn describe(def: &Value) -> String {
    let state = def.get("state").and_then(Value::as_str).unwrap_or("?");
    if state == "DISABLED" {
        return "off (switched off: every application's code default wins)".into();
    }
    let default = def.get("defaultVariant").and_then(Value::as_str).unwrap_or("the code default");
    match def.get("targeting") {
        None => format!("on: everyone gets `{default}`"),
        Some(t) => {
            if let Some(b) = t.get("fractional").and_then(Value::as_array) {
                let parts: Vec<String> = b
                    .iter()
                    .filter_map(|x| x.as_array())
                    .map(|x| {
                        format!(
                            "{}% {}",
                            x.get(1).map(|w| w.to_string()).unwrap_or("1".into()),
                            x[0].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                format!("on: {} (sticky by user)", parts.join(", "))
            } else if t.get("if").is_some() {
                format!("on: a rule chooses the variant (else `{default}`): {t}")
            } else {
                format!("on: rule {t}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlagSet, Reason};

    fn eval(def: &Value, ctx: Value) -> (Option<String>, Reason) {
        let set = FlagSet::from_value(&json!({"flags": {"f": def}})).unwrap();
        let r = set.evaluate("f", &ctx, 0);
        (r.variant, r.reason)
    }

    #[test]
    fn knobs_write_definitions_that_evaluate_as_said() {
        let on = apply(None, &Knob::On).unwrap();
        assert_eq!(eval(&on, json!({})), (Some("on".into()), Reason::Static));
        let off = apply(Some(&on), &Knob::Off).unwrap();
        assert_eq!(eval(&off, json!({})), (None, Reason::Disabled));
        let beta =
            apply(Some(&off), &Knob::Beta { users: vec!["alice".into()], groups: vec!["staff".into()] }).unwrap();
        assert_eq!(eval(&beta, json!({"targetingKey": "alice"})).0.as_deref(), Some("on"));
        assert_eq!(eval(&beta, json!({"targetingKey": "bob", "groups": ["ops", "staff"]})).0.as_deref(), Some("on"));
        assert_eq!(eval(&beta, json!({"targetingKey": "bob", "groups": "staff"})).0.as_deref(), Some("on"));
        assert_eq!(eval(&beta, json!({"targetingKey": "bob"})).0.as_deref(), Some("off"));
        let dark = apply(Some(&beta), &Knob::Dark(100)).unwrap();
        assert_eq!(eval(&dark, json!({"targetingKey": "alice"})).0.as_deref(), Some("on"), "beta users keep on");
        assert_eq!(eval(&dark, json!({"targetingKey": "bob"})).0.as_deref(), Some("dark"));
        let none = apply(Some(&on), &Knob::Rollout(0)).unwrap();
        assert_eq!(eval(&none, json!({"targetingKey": "x"})).0.as_deref(), Some("off"));
        let all = apply(Some(&on), &Knob::Rollout(100)).unwrap();
        assert_eq!(eval(&all, json!({"targetingKey": "x"})).0.as_deref(), Some("on"));
        let split = apply(None, &Knob::Split(parse_split("control=50,new=50").unwrap())).unwrap();
        assert_eq!(split_of(&split), Some(vec![("control".into(), 50.0), ("new".into(), 50.0)]));
        assert_eq!(split_of(&on), None);
        assert_eq!(split_of(&beta), None);
        assert_eq!(split_of(&apply(Some(&on), &Knob::Rollout(30)).unwrap()), None, "a rollout is not a test");
        let by_hand = json!({"state": "ENABLED", "variants": {"a": 1, "b": 2, "c": 3}, "defaultVariant": "a",
            "targeting": {"fractional": [{"var": "org"}, ["a"], ["b", 2], ["c", -3]]}});
        assert_eq!(split_of(&by_hand), Some(vec![("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 0.0)]));
        assert_eq!(split_of(&json!({"state": "DISABLED", "targeting": split["targeting"]})), None);
        let v = eval(&split, json!({"targetingKey": "x"})).0.unwrap();
        assert!(v == "control" || v == "new");
        assert!(apply(None, &Knob::Rollout(101)).is_err());
        assert!(parse_split("a=1,b").is_err());
    }
}
