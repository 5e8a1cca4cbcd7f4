//! crew's feature-flag engine: flag definitions in the flagd format (https://flagd.dev/schema/v0/flags.json),
//! validated and compiled once, then evaluated against a context with flagd's reasons and error codes.
//!
//! Architecture invariant: this crate does no IO; it is tested as tables and by the flagd-testbed suite
//! (`tests/testbed.rs`).

mod cbor;
pub mod cost;
pub mod knobs;
pub mod logic;
mod murmur3;
pub mod ofrep;
mod semver;

pub use murmur3::murmur3_32;

use logic::{Expr, Scope};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{Map, Value};

/// How `fractional` turns its bucketing value into a bucket: which flagd it agrees with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fractional {
    /// flagd 0.15 and 0.16 (today's release), flagd-testbed's `@fractional-v2`: MurmurHash3 of the string
    /// (flag key and targeting key concatenated by default); only a string buckets.
    #[default]
    V2,
    /// flagd-testbed 3.9.0's `@fractional-v3` (flagd's ADR on non-string hashing inputs, not yet in a flagd
    /// release): MurmurHash3 of the value's deterministic CBOR, so numbers, booleans and objects bucket too;
    /// by default the pair `[flag key, targeting key]`.
    V3,
}

impl Fractional {
    pub fn as_str(self) -> &'static str {
        match self {
            Fractional::V2 => "v2",
            Fractional::V3 => "v3",
        }
    }

    /// `v2` or `v3`, as crew.toml and the definitions stream write it.
    pub fn parse(s: &str) -> Option<Fractional> {
        match s {
            "v2" => Some(Fractional::V2),
            "v3" => Some(Fractional::V3),
            _ => None,
        }
    }
}

/// Why a flag resolved as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting chose a variant.
    TargetingMatch,
    /// Targeting chose nothing: the default variant (or the caller's code default when there is none).
    Default,
    /// The flag is switched off: the caller's code default.
    Disabled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TypeMismatch,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// The outcome of evaluating a flag. `value` is `None` when the caller's code default applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub value: Option<Value>,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error: Option<(ErrorCode, String)>,
    pub metadata: Map<String, Value>,
}

/// An evaluation borrowed from its flag set: what the SDK's typed accessors read, allocating nothing on the
/// common paths. [`Evaluation::to_resolution`] makes the owned [`Resolution`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'a> {
    pub value: Option<&'a Value>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error: Option<(ErrorCode, String)>,
    /// The steps its rule took (0 without one; at most [`logic::MAX_STEPS`]): what a caller evaluating many
    /// flags in a row can add up to decide whether to go on in place.
    pub steps: u64,
    flag_metadata: Option<&'a Map<String, Value>>,
    set_metadata: Option<&'a Map<String, Value>>,
    /// The chosen variant as stored, with its OFREP JSON written once when the flag was compiled.
    choice: Option<&'a Choice>,
}

impl Evaluation<'_> {
    /// The flag's metadata with the set's merged under it.
    pub fn metadata(&self) -> Map<String, Value> {
        let mut m = self.flag_metadata.cloned().unwrap_or_default();
        for (k, v) in self.set_metadata.into_iter().flatten() {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        m
    }

    pub fn to_resolution(&self) -> Resolution {
        Resolution {
            value: self.value.cloned(),
            variant: self.variant.map(String::from),
            reason: self.reason,
            error: self.error.clone(),
            metadata: self.metadata(),
        }
    }
}

/// A flag as stored: its rule compiled, or the reason it could not be.
#[derive(Debug, Clone)]
pub struct Flag {
    pub enabled: bool,
    pub variants: Map<String, Value>,
    pub default_variant: Option<String>,
    /// `Err` keeps a definition whose rule does not compile: evaluating it is a PARSE_ERROR, the others work.
    targeting: Option<Result<Expr, String>>,
    pub metadata: Map<String, Value>,
    /// The definition as given, for export.
    pub definition: Value,
    /// The variants in order, each with what an evaluation that chooses it needs, so choosing one copies and
    /// renders nothing; `by_name` indexes them when there are many.
    choices: Vec<Choice>,
    by_name: FxHashMap<String, usize>,
    default_choice: Option<usize>,
}

/// A variant as an evaluation chooses it: its name and value, and OFREP's `,"value":…,"variant":"…"` for it.
#[derive(Debug, Clone, PartialEq)]
struct Choice {
    name: String,
    value: Value,
    ofrep: Box<str>,
}

/// The most variants found by comparing names in order: a flag has a handful, and comparing beats hashing.
const SCAN_VARIANTS: usize = 8;

/// The DogStatsD tag key that says which variant of flag `key` a measurement was made under: `flag_` and the
/// key with every character other than an ASCII letter or digit as `_` (`search-v2` → `flag_search_v2`), so
/// it is a valid Prometheus label name too. Applications tag their series with it (the SDK's `tags`) and a
/// flag's ramp compares the series tagged `flag_KEY:on` with those tagged `flag_KEY:off`.
pub fn tag_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 5);
    out.push_str("flag_");
    out.extend(key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
    out
}

/// The flags of a flagd document with every `{"$ref": name}` replaced by its evaluator's rule, each checked as
/// it would be stored: what `crew flags apply` sends, one definition per flag.
pub fn inline_document(doc: &Value) -> Result<Map<String, Value>, DefinitionError> {
    let empty = Map::new();
    let evaluators = doc.get("$evaluators").and_then(Value::as_object).unwrap_or(&empty);
    let flags = doc
        .get("flags")
        .and_then(Value::as_object)
        .ok_or_else(|| DefinitionError("`flags` must be an object".into()))?;
    fn inline(v: &Value, ev: &Map<String, Value>, depth: usize) -> Result<Value, String> {
        if depth > 64 {
            return Err("rule nested more than 64 deep (or a $ref cycle)".into());
        }
        Ok(match v {
            Value::Object(m) if m.len() == 1 && m.contains_key("$ref") => {
                let name = m["$ref"].as_str().ok_or("$ref takes the name of an evaluator")?;
                let rule = ev.get(name).ok_or_else(|| format!("$ref to unknown evaluator `{name}`"))?;
                inline(rule, ev, depth + 1)?
            }
            Value::Object(m) => Value::Object(
                m.iter().map(|(k, x)| Ok((k.clone(), inline(x, ev, depth + 1)?))).collect::<Result<_, String>>()?,
            ),
            Value::Array(a) => Value::Array(a.iter().map(|x| inline(x, ev, depth + 1)).collect::<Result<_, _>>()?),
            other => other.clone(),
        })
    }
    let mut out = Map::new();
    for (key, def) in flags {
        let def = inline(def, evaluators, 0).map_err(|e| DefinitionError(format!("flag `{key}`: {e}")))?;
        Flag::compile(key, &def, &Map::new())?;
        out.insert(key.clone(), def);
    }
    Ok(out)
}

/// A set of flags, with the set's metadata merged under each flag's.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    /// Keyed with FxHash: flag keys are chosen by the team, not by whoever asks, so a keyed (DoS-resistant)
    /// hash buys nothing here and SipHash would be a third of a static flag's evaluation.
    flags: FxHashMap<String, Flag>,
    pub metadata: Map<String, Value>,
    /// How its `fractional` rules bucket.
    fractional: Fractional,
}

/// A definition that cannot be stored, naming where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DefinitionError(pub String);

impl FlagSet {
    /// Parses a flagd document (`{"flags": {...}, "$evaluators": {...}, "metadata": {...}}`).
    pub fn parse(text: &str) -> Result<FlagSet, DefinitionError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| DefinitionError(format!("not JSON: {e}")))?;
        FlagSet::from_value(&doc)
    }

    pub fn from_value(doc: &Value) -> Result<FlagSet, DefinitionError> {
        let obj = doc.as_object().ok_or_else(|| DefinitionError("a flag document is a JSON object".into()))?;
        let empty = Map::new();
        let evaluators = match obj.get("$evaluators") {
            None => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(DefinitionError("`$evaluators` must be an object".into())),
        };
        let metadata = match obj.get("metadata") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(DefinitionError("`metadata` must be an object".into())),
        };
        let flags_v = obj
            .get("flags")
            .and_then(Value::as_object)
            .ok_or_else(|| DefinitionError("`flags` must be an object".into()))?;
        let mut flags = FxHashMap::default();
        for (key, def) in flags_v {
            flags.insert(key.clone(), Flag::compile_with(key, def, evaluators, false)?);
        }
        Ok(FlagSet { flags, metadata, fractional: Fractional::default() })
    }

    /// The same set, its `fractional` rules bucketing as `f` says.
    pub fn with_fractional(mut self, f: Fractional) -> FlagSet {
        self.fractional = f;
        self
    }

    pub fn fractional(&self) -> Fractional {
        self.fractional
    }

    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.flags.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.flags.keys()
    }

    /// Evaluates `key` for a context (an object; `targetingKey` is the user's key).
    pub fn evaluate(&self, key: &str, context: &Value, now_unix: i64) -> Resolution {
        self.evaluate_ref(key, context, now_unix).to_resolution()
    }

    /// [`FlagSet::evaluate`] without copying: the value and variant are borrowed from the definitions.
    pub fn evaluate_ref<'a>(&'a self, key: &str, context: &Value, now_unix: i64) -> Evaluation<'a> {
        match self.flags.get(key) {
            None => Evaluation {
                value: None,
                variant: None,
                reason: Reason::Error,
                error: Some((ErrorCode::FlagNotFound, format!("flag `{key}` not found"))),
                steps: 0,
                flag_metadata: None,
                set_metadata: Some(&self.metadata),
                choice: None,
            },
            Some(flag) => {
                let mut e = flag.evaluate_in(key, context, now_unix, self.fractional);
                e.set_metadata = Some(&self.metadata);
                e
            }
        }
    }
}

impl Flag {
    /// Compiles a definition for storing: every problem is an error.
    pub fn compile(key: &str, def: &Value, evaluators: &Map<String, Value>) -> Result<Flag, DefinitionError> {
        Flag::compile_with(key, def, evaluators, true)
    }

    fn compile_with(
        key: &str,
        def: &Value,
        evaluators: &Map<String, Value>,
        strict: bool,
    ) -> Result<Flag, DefinitionError> {
        let err = |m: String| DefinitionError(format!("flag `{key}`: {m}"));
        let obj = def.as_object().ok_or_else(|| err("a flag is a JSON object".into()))?;
        for k in obj.keys() {
            if !["state", "variants", "defaultVariant", "targeting", "metadata"].contains(&k.as_str()) {
                return Err(err(format!("unknown field `{k}`")));
            }
        }
        let enabled = match obj.get("state").and_then(Value::as_str) {
            Some("ENABLED") => true,
            Some("DISABLED") => false,
            _ => return Err(err("`state` must be \"ENABLED\" or \"DISABLED\"".into())),
        };
        let variants = obj
            .get("variants")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| err("`variants` must be an object".into()))?;
        if variants.is_empty() {
            return Err(err("`variants` needs at least one variant".into()));
        }
        // One type per flag: the typed accessors of every SDK depend on it.
        let kind = |v: &Value| match v {
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Object(_) | Value::Array(_) => "object",
            Value::Null => "null",
        };
        let first = kind(variants.values().next().expect("non-empty"));
        if let Some((name, v)) = variants.iter().find(|(_, v)| kind(v) != first) {
            return Err(err(format!(
                "variants: `{name}` is a {} but the first variant is a {first}: one type per flag",
                kind(v)
            )));
        }
        let default_variant = match obj.get("defaultVariant") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if variants.contains_key(s) => Some(s.clone()),
            Some(Value::String(s)) => return Err(err(format!("`defaultVariant` `{s}` is not one of its variants"))),
            Some(_) => return Err(err("`defaultVariant` must be a variant's name or null".into())),
        };
        let targeting = match obj.get("targeting") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(rule) => {
                // A rule that cannot compile is refused when stored; a stored set keeps it as an error so one
                // bad flag never stops the others (a document from elsewhere, e.g. the testbed's).
                let compiled = logic::compile(rule, evaluators, strict);
                if let Err(e) = &compiled {
                    if strict {
                        return Err(err(format!("targeting: {e}")));
                    }
                }
                // A rule whose worst case is too large is refused when stored. A document from elsewhere keeps
                // it: flagd would run it, and the evaluation budget bounds every run anyway.
                if let (true, Ok(rule)) = (strict, &compiled) {
                    cost::check(rule).map_err(|e| err(format!("targeting: {e}")))?;
                }
                Some(compiled)
            }
        };
        let metadata = match obj.get("metadata") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(err("`metadata` must be an object".into())),
        };
        let choices: Vec<Choice> = variants
            .iter()
            .map(|(name, value)| Choice { name: name.clone(), value: value.clone(), ofrep: ofrep::choice(name, value) })
            .collect();
        let by_name = match choices.len() {
            n if n <= SCAN_VARIANTS => FxHashMap::default(),
            _ => choices.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect(),
        };
        let default_choice = default_variant.as_deref().and_then(|d| choices.iter().position(|c| c.name == d));
        Ok(Flag {
            enabled,
            variants,
            default_variant,
            targeting,
            metadata,
            definition: def.clone(),
            choices,
            by_name,
            default_choice,
        })
    }

    /// An answer that chose `choice` (an index into `choices`) or, with none, the caller's code default.
    fn resolution(&self, choice: Option<usize>, reason: Reason) -> Evaluation<'_> {
        let choice = choice.and_then(|i| self.choices.get(i));
        Evaluation {
            value: choice.map(|c| &c.value),
            variant: choice.map(|c| c.name.as_str()),
            reason,
            error: None,
            steps: 0,
            flag_metadata: Some(&self.metadata),
            set_metadata: None,
            choice,
        }
    }

    /// A variant by name, as an index into `choices`.
    fn variant(&self, name: &str) -> Option<usize> {
        if self.by_name.is_empty() {
            self.choices.iter().position(|c| logic::same(&c.name, name))
        } else {
            self.by_name.get(name).copied()
        }
    }

    fn error(&self, code: ErrorCode, message: String) -> Evaluation<'_> {
        let (flag_metadata, set_metadata) = (Some(&self.metadata), None);
        Evaluation {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some((code, message)),
            steps: 0,
            flag_metadata,
            set_metadata,
            choice: None,
        }
    }

    /// Evaluates this flag alone (no set metadata), bucketing as today's flagd.
    pub fn evaluate(&self, key: &str, context: &Value, now_unix: i64) -> Resolution {
        self.evaluate_in(key, context, now_unix, Fractional::default()).to_resolution()
    }

    fn evaluate_in<'a>(&'a self, key: &str, context: &Value, now_unix: i64, f: Fractional) -> Evaluation<'a> {
        if !self.enabled {
            return self.resolution(None, Reason::Disabled);
        }
        let Some(targeting) = &self.targeting else {
            let reason = if self.default_choice.is_some() { Reason::Static } else { Reason::Default };
            return self.resolution(self.default_choice, reason);
        };
        let rule = match targeting {
            Ok(rule) => rule,
            Err(e) => return self.error(ErrorCode::ParseError, e.clone()),
        };
        let scope = Scope::new(key, now_unix).with_fractional(f);
        let mut e = self.decide(key, rule, context, &scope);
        e.steps = scope.spent();
        e
    }

    /// Runs the rule and reads its answer as a variant.
    fn decide<'a>(&'a self, key: &str, rule: &Expr, context: &Value, scope: &Scope) -> Evaluation<'a> {
        let out = logic::eval_ref(rule, context, scope);
        if scope.exceeded() {
            // No variant: a rule cut short may have been about to choose any; like every other broken rule it
            // answers an error with no value, so the caller's code default applies.
            return self.error(
                ErrorCode::General,
                format!("targeting took more than {} steps; evaluation stopped", logic::MAX_STEPS),
            );
        }
        let number;
        let name = match out.as_ref() {
            Value::Null => return self.resolution(self.default_choice, Reason::Default),
            Value::String(s) => s.as_str(),
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
            Value::Number(n) => {
                number = n.to_string();
                number.as_str()
            }
            other => return self.error(ErrorCode::General, format!("targeting returned {other}, not a variant name")),
        };
        match self.variant(name) {
            Some(i) => self.resolution(Some(i), Reason::TargetingMatch),
            None => {
                self.error(ErrorCode::General, format!("targeting chose `{name}`, which is not a variant of `{key}`"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tag_keys() {
        for (key, tag) in [("video", "flag_video"), ("search-v2", "flag_search_v2"), ("a.b_C9", "flag_a_b_C9")] {
            assert_eq!(tag_key(key), tag);
        }
    }

    fn rollout(weights: &[(&str, u64)]) -> FlagSet {
        let buckets: Vec<Value> = weights.iter().map(|(v, w)| json!([v, w])).collect();
        let variants: Map<String, Value> = weights.iter().map(|(v, _)| (v.to_string(), json!(v))).collect();
        let mut fractional = vec![json!({"var": "targetingKey"})];
        fractional.extend(buckets);
        FlagSet::from_value(&json!({"flags": {"f": {
            "state": "ENABLED", "variants": variants, "defaultVariant": weights[0].0,
            "targeting": {"fractional": fractional}
        }}}))
        .unwrap()
    }

    /// Whatever the context or the rule, evaluation returns: huge weights, huge substr lengths, a rule that
    /// doubles its data (cut short by the step budget), `$ref`s that expand exponentially.
    #[test]
    fn evaluation_never_panics() {
        let set = FlagSet::from_value(&json!({"flags": {
            "w": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                  "targeting": {"fractional": [{"var": "k"}, ["a", {"var": "big"}], ["b", {"var": "big"}]]}},
            "s": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                  "targeting": {"if": [{"substr": ["abc", {"var": "big"}, {"var": "big"}]}, "a", null]}},
            "r": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                  "targeting": {"if": [{"reduce": [{"var": "items"}, {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]}, [1]]}, "a", null]}}
        }}))
        .unwrap();
        let ctx = json!({"k": "user", "big": 1e300, "items": (0..64).collect::<Vec<_>>()});
        for key in ["w", "s"] {
            let r = set.evaluate(key, &ctx, 0);
            assert!(r.error.is_none(), "{key}: {r:?}");
        }
        // 64 doublings: `merge` stops each at 100,000 items, but copying that much 64 times is past the budget.
        let r = set.evaluate("r", &ctx, 0);
        assert_eq!((r.reason, r.error.map(|e| e.0)), (Reason::Error, Some(ErrorCode::General)));
        let mut evaluators = Map::new();
        for i in 0..20 {
            evaluators.insert(
                format!("e{i}"),
                json!({"and": [{"$ref": format!("e{}", i + 1)}, {"$ref": format!("e{}", i + 1)}]}),
            );
        }
        evaluators.insert("e20".into(), json!(true));
        let def = json!({"state": "ENABLED", "variants": {"a": 1}, "targeting": {"$ref": "e0"}});
        let e = Flag::compile("f", &def, &evaluators).unwrap_err().0;
        assert!(e.contains("parts"), "{e}");
    }

    /// Over 100,000 keys each variant's share is within 1% of its weight, and a key's variant never changes.
    #[test]
    fn fractional_shares_and_stickiness() {
        let weights = [("control", 50), ("new", 30), ("dark", 20)];
        let set = rollout(&weights);
        let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let n = 100_000;
        for i in 0..n {
            let ctx = json!({"targetingKey": format!("user-{i}-{}", i * 7919 % 104_729)});
            let r = set.evaluate("f", &ctx, 0);
            assert_eq!(r.reason, Reason::TargetingMatch);
            let again = set.evaluate("f", &ctx, 0);
            assert_eq!(r.variant, again.variant, "sticky");
            *counts.entry(r.variant.unwrap()).or_default() += 1;
        }
        for (v, w) in weights {
            let share = counts[v] as f64 / n as f64 * 100.0;
            assert!((share - w as f64).abs() < 1.0, "{v}: {share:.2}% for weight {w}");
        }
    }

    /// Which inputs bucket under each `fractional`: v2 hashes strings only, v3 any value but null and lists;
    /// without a bucketing value both need a targeting key (a string; v2 also not empty), else the default.
    #[test]
    fn fractional_inputs_by_version() {
        let doc = json!({"flags": {
            "short": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "d": "d"}, "defaultVariant": "d",
                      "targeting": {"fractional": [["a", 50], ["b", 50]]}},
            "by": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "d": "d"}, "defaultVariant": "d",
                   "targeting": {"fractional": [{"var": "id"}, ["a", 50], ["b", 50]]}}
        }});
        let bucketed = |r: Resolution| match r.reason {
            Reason::TargetingMatch => true,
            Reason::Default => false,
            other => panic!("{other:?}: {r:?}"),
        };
        let table = [
            ("short", json!({"targetingKey": "alice"}), true, true),
            ("short", json!({"targetingKey": ""}), false, true),
            ("short", json!({}), false, false),
            ("short", json!({"targetingKey": 42}), false, false),
            ("by", json!({"id": "alice"}), true, true),
            ("by", json!({"id": 42}), false, true),
            ("by", json!({"id": 4.5}), false, true),
            ("by", json!({"id": true}), false, true),
            ("by", json!({"id": {"org": 1}}), false, true),
            ("by", json!({"id": null}), false, false),
            ("by", json!({"id": [1]}), false, false),
            ("by", json!({}), false, false),
        ];
        let v2 = FlagSet::from_value(&doc).unwrap();
        let v3 = FlagSet::from_value(&doc).unwrap().with_fractional(Fractional::V3);
        for (key, ctx, in_v2, in_v3) in table {
            assert_eq!(bucketed(v2.evaluate(key, &ctx, 0)), in_v2, "v2 {key} {ctx}");
            assert_eq!(bucketed(v3.evaluate(key, &ctx, 0)), in_v3, "v3 {key} {ctx}");
        }
        // v3: 1 and 1.0 are the same number, so the same bucket.
        let one = v3.evaluate("by", &json!({"id": 1}), 0).variant;
        assert_eq!(v3.evaluate("by", &json!({"id": 1.0}), 0).variant, one);
    }

    #[test]
    fn definitions_are_checked() {
        let table = [
            (json!({"flags": {"f": {"state": "ON", "variants": {"a": 1}}}}), "`state`"),
            (json!({"flags": {"f": {"state": "ENABLED", "variants": {}}}}), "at least one variant"),
            (
                json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}}),
                "`b` is not one of",
            ),
            (
                json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "colour": 1}}}),
                "unknown field `colour`",
            ),
            (json!({"flags": 3}), "`flags`"),
            (json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}}}}), "one type per flag"),
        ];
        for (doc, needle) in table {
            let e = FlagSet::from_value(&doc).unwrap_err().0;
            assert!(e.contains(needle), "{e}");
        }
        let strict = [
            (json!({"state": "ENABLED", "variants": {"a": 1}, "targeting": {"nope": [1]}}), "unknown operator `nope`"),
            (
                json!({"state": "ENABLED", "variants": {"a": 1}, "targeting": {"fractional": [["a", 2.5]]}}),
                "weight 2.5",
            ),
            (
                json!({"state": "ENABLED", "variants": {"a": 1}, "targeting": {"$ref": "missing"}}),
                "unknown evaluator `missing`",
            ),
        ];
        for (def, needle) in strict {
            let e = Flag::compile("f", &def, &Map::new()).unwrap_err().0;
            assert!(e.contains(needle) && e.contains("flag `f`"), "{e}");
        }
        // A negative weight counts as zero, as flagd counts it: the bucket never wins.
        let def = json!({"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
            "targeting": {"fractional": [["a", -5], ["b", 1]]}});
        Flag::compile("f", &def, &Map::new()).expect("a negative weight is taken");
        let set = FlagSet::from_value(&json!({"flags": {"f": def}})).unwrap();
        for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            let r = set.evaluate("f", &json!({"targetingKey": user}), 0);
            assert_eq!(r.variant.as_deref(), Some("b"), "{user}");
        }
        // In a document from elsewhere, a rule that does not compile is kept, and evaluating that flag is a
        // PARSE_ERROR while the others work.
        let set = FlagSet::from_value(&json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"nope": [1]}}}})).unwrap();
        assert_eq!(set.evaluate("f", &json!({}), 0).error.unwrap().0, ErrorCode::ParseError);
    }
}
