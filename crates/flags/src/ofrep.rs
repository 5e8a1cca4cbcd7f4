//! OFREP's answer for one flag (https://openfeature.dev/specification/appendix-c), serialised straight from a
//! borrowed [`Evaluation`]: the value, variant and metadata are written from the definitions, never copied into
//! an owned resolution or a `serde_json::Value` first.
//!
//! The shape: `{"key", "reason", "metadata", "value", "variant"}`, `value` and `variant` only when the flag chose
//! one (otherwise the caller's code default applies: a switched-off flag, a rule that chose nothing and no
//! default variant); an error is `{"key", "errorCode", "errorDetails", "metadata"}`. `metadata` is the flag's
//! with the set's merged under it, as [`Evaluation::metadata`] makes it.

use crate::{Evaluation, Reason};
use serde_json::{Map, Value};

/// One flag's OFREP answer, borrowed from its evaluation: [`Evaluation::ofrep`].
#[derive(Debug, Clone, Copy)]
pub struct Ofrep<'e, 'a> {
    key: &'e str,
    evaluation: &'e Evaluation<'a>,
}

impl<'a> Evaluation<'a> {
    /// This evaluation of flag `key` as OFREP answers it, to write ([`Ofrep::write_json`]).
    pub fn ofrep<'e>(&'e self, key: &'e str) -> Ofrep<'e, 'a> {
        Ofrep { key, evaluation: self }
    }
}

impl Ofrep<'_, '_> {
    /// Appends the answer as compact JSON, its keys in the order above: the same bytes `serde_json` writes for
    /// the same object. Written by hand rather than through `serde::Serialize`: the fixed parts are copied as
    /// they are and the short strings (key, variant, reason) only scanned, which is most of an answer's cost.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let e = self.evaluation;
        out.extend_from_slice(b"{\"key\":");
        string(out, self.key);
        match &e.error {
            Some((code, detail)) => {
                out.extend_from_slice(b",\"errorCode\":\"");
                out.extend_from_slice(code.as_str().as_bytes());
                out.extend_from_slice(b"\",\"errorDetails\":");
                string(out, detail);
                out.extend_from_slice(b",\"metadata\":");
                metadata(out, e.flag_metadata, e.set_metadata);
            }
            None => {
                out.extend_from_slice(reason(e.reason));
                metadata(out, e.flag_metadata, e.set_metadata);
                match (e.value, e.variant, e.choice) {
                    // The variant as stored (the fields are public: only if they still name it), its JSON
                    // written when the flag was compiled.
                    (Some(v), Some(variant), Some(c))
                        if std::ptr::eq(v, &c.value) && std::ptr::eq(variant, c.name.as_str()) =>
                    {
                        out.extend_from_slice(c.ofrep.as_bytes())
                    }
                    (Some(v), Some(variant), _) => write_choice(out, variant, v),
                    _ => {}
                }
            }
        }
        out.push(b'}');
    }

    /// The answer as a JSON string.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(128);
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON written from strings is UTF-8")
    }
}

/// `,"reason":"REASON","metadata":`, written at once.
fn reason(r: Reason) -> &'static [u8] {
    macro_rules! part {
        ($r:literal) => {
            concat!(",\"reason\":\"", $r, "\",\"metadata\":").as_bytes()
        };
    }
    match r {
        Reason::Static => part!("STATIC"),
        Reason::TargetingMatch => part!("TARGETING_MATCH"),
        Reason::Default => part!("DEFAULT"),
        Reason::Disabled => part!("DISABLED"),
        Reason::Error => part!("ERROR"),
    }
}

/// `,"value":VALUE,"variant":"NAME"`: what an answer that chose variant `name` ends with.
pub(crate) fn choice(name: &str, v: &Value) -> Box<str> {
    let mut out = Vec::with_capacity(32);
    write_choice(&mut out, name, v);
    String::from_utf8(out).expect("JSON written from strings is UTF-8").into()
}

fn write_choice(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b",\"value\":");
    value(out, v);
    out.extend_from_slice(b",\"variant\":");
    string(out, name);
}

/// A JSON string. Most need no escape (a flag key, a variant's name): they are copied once scanned.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        json(out, s);
    }
}

fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::String(s) => string(out, s),
        other => json(out, other),
    }
}

/// Anything else, through `serde_json`.
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to memory cannot fail, and a `Value` (or a string) always serialises: its map keys are strings.
    serde_json::to_writer(out, v).expect("JSON values serialise");
}

/// The flag's metadata, then the set's entries the flag does not have: one object, merged as it is written.
fn metadata(out: &mut Vec<u8>, flag: Option<&Map<String, Value>>, set: Option<&Map<String, Value>>) {
    let (flag, set) = (flag.filter(|m| !m.is_empty()), set.filter(|m| !m.is_empty()));
    if flag.is_none() && set.is_none() {
        out.extend_from_slice(b"{}");
        return;
    }
    let has = |key: &str| match flag {
        None => false,
        // Metadata is a handful of entries: comparing them in order beats hashing the name.
        Some(m) if m.len() <= 8 => m.keys().any(|k| k == key),
        Some(m) => m.contains_key(key),
    };
    out.push(b'{');
    let mut first = true;
    let entries = flag.into_iter().flatten().chain(set.into_iter().flatten().filter(|(k, _)| !has(k)));
    for (k, v) in entries {
        if !first {
            out.push(b',');
        }
        first = false;
        string(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use crate::{FlagSet, Resolution};
    use serde_json::{json, Value};

    /// What OFREP answered when it serialised the owned resolution: the oracle the borrowed answer must equal,
    /// key order included.
    fn owned(key: &str, r: &Resolution) -> Value {
        match &r.error {
            Some((code, detail)) => {
                json!({"key": key, "errorCode": code.as_str(), "errorDetails": detail, "metadata": r.metadata})
            }
            None => {
                let mut out = json!({"key": key, "reason": r.reason.as_str(), "metadata": r.metadata});
                if let (Some(v), Some(variant)) = (&r.value, &r.variant) {
                    out["value"] = v.clone();
                    out["variant"] = json!(variant);
                }
                out
            }
        }
    }

    #[test]
    fn the_borrowed_answer_is_the_owned_one_byte_for_byte() {
        let set = FlagSet::from_value(&json!({
            "metadata": {"team": "web", "scope": "set", "a\"b": [1, {"x": null}]},
            "flags": {
                "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
                "meta": {"state": "ENABLED", "variants": {"big": {"n": 1.5, "s": "é\n"}}, "defaultVariant": "big",
                         "metadata": {"scope": "flag", "owner": "ana"}},
                "off": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
                "nodefault": {"state": "ENABLED", "variants": {"on": true, "off": false}},
                "beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                         "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["alice", "bob"]]}, "on", null]}},
                "nobeta": {"state": "ENABLED", "variants": {"on": true, "off": false},
                           "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["alice"]]}, "on", null]}},
                "wrong": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
                          "targeting": {"if": [true, "gone", null]}},
                "broken": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
                           "targeting": {"nope": [1]}},
                "split": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
                          "targeting": {"fractional": [["a", 50], ["b", 50]]}}
            }
        }))
        .unwrap();
        let mut keys: Vec<String> = set.keys().cloned().collect();
        keys.extend(["missing".to_string(), "we\"ird\u{1}key".to_string()]);
        for ctx in [json!({}), json!({"targetingKey": "alice"}), json!({"targetingKey": "zed"})] {
            for key in &keys {
                let borrowed = set.evaluate_ref(key, &ctx, 0).ofrep(key).to_json();
                let want = owned(key, &set.evaluate(key, &ctx, 0)).to_string();
                assert_eq!(borrowed, want, "{key} for {ctx}");
            }
        }
    }
}
