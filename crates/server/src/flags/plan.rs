//! A flag's launch plan ("talk to ops about the impact of your code"): who owns it, the risks, the contingency
//! (`off` or `page`), a runbook and the series that will change with their bad direction. Read from a TOML plan
//! file or its JSON, checked once with the key named; no IO here.

use crew_judge::WatchSeries;
use serde::{Deserialize, Serialize};

/// What a failing verdict on a ramp does.
pub const CONTINGENCIES: [&str; 2] = ["off", "page"];

/// A flag's launch plan, as `plan.toml` writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The person paged when the judge fails a ramp (a name in `[people]` to be paged, else a ticket).
    pub owner: String,
    /// What may go wrong, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub risks: String,
    /// `off`: a failing verdict switches the flag off and pages the owner; `page`: it pages the owner and holds
    /// the flag where it is.
    pub contingency: String,
    /// A runbook in the repository (`runbooks/search.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// The series that will change, and the signs of trouble: what a ramp is judged on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<WatchSeries>,
}

impl Plan {
    /// A plan file's TOML, checked.
    pub fn from_toml(text: &str) -> Result<Plan, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| format!("plan: not TOML: {}", e.message()))?;
        let plan: Plan = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            format!("plan.{key}: {}", e.into_inner().message())
        })?;
        plan.check()?;
        Ok(plan)
    }

    /// A plan as JSON, checked.
    pub fn from_json(v: &serde_json::Value) -> Result<Plan, String> {
        let plan: Plan = serde_path_to_error::deserialize(v).map_err(|e| {
            let key = e.path().to_string();
            format!("plan.{key}: {}", e.into_inner())
        })?;
        plan.check()?;
        Ok(plan)
    }

    /// Checks every field; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        };
        if !name_ok(&self.owner) {
            return Err(format!(
                "plan.owner: `{}` is not a person's name (letters, digits, `-`, `_`, `.`, `@`)",
                self.owner.escape_debug()
            ));
        }
        if self.risks.chars().count() > 2000 {
            return Err("plan.risks: at most 2,000 characters".into());
        }
        match self.contingency.as_str() {
            "off" | "page" => {}
            "rollback" => {
                return Err("plan.contingency: `rollback` is for environments ([environments.NAME.watch] on_fail); \
                            a flag's contingency is `off` (switch it off and page the owner) or `page` (page the \
                            owner and hold)"
                    .into())
            }
            other => {
                return Err(format!(
                    "plan.contingency: unknown contingency `{}`: expected `off` or `page`",
                    other.escape_debug()
                ))
            }
        }
        if let Some(r) = &self.runbook {
            let ok = r.starts_with("runbooks/")
                && r.len() <= 200
                && r.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
            if !ok {
                return Err(format!(
                    "plan.runbook: `{}` is not a path under runbooks/ (like runbooks/search.md)",
                    r.escape_debug()
                ));
            }
        }
        if !self.watch.is_empty() {
            crew_judge::watch::check_all(&self.watch, "plan.watch")?;
        }
        Ok(())
    }

    /// The plan in one line: `owner alice, contingency off, watching www.latency p99`.
    pub fn describe(&self) -> String {
        let watching = if self.watch.is_empty() {
            "no series watched".to_string()
        } else {
            format!("watching {}", self.watch.iter().map(WatchSeries::label).collect::<Vec<_>>().join(", "))
        };
        format!("owner {}, contingency {}, {watching}", self.owner, self.contingency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> Result<Plan, String> {
        Plan::from_toml(src)
    }

    #[test]
    fn plans_and_their_mistakes_name_the_key() {
        let good = r#"
owner = "alice"
risks = "search may be slower for long queries"
contingency = "off"
runbook = "runbooks/search.md"
[[watch]]
series = "www.latency"
stat = "p99"
direction = "increase"
"#;
        let p = check(good).unwrap();
        assert_eq!(p.describe(), "owner alice, contingency off, watching www.latency p99");
        assert_eq!(Plan::from_json(&serde_json::to_value(&p).unwrap()).unwrap(), p, "JSON round trip");
        for (src, says) in [
            ("owner = \"a\"\ncontingency = \"rollback\"", "plan.contingency: `rollback` is for environments"),
            ("owner = \"a\"\ncontingency = \"pray\"", "plan.contingency: unknown contingency `pray`"),
            ("contingency = \"off\"", "missing field `owner`"),
            ("owner = \"a b\"\ncontingency = \"off\"", "plan.owner"),
            ("owner = \"a\"\ncontingency = \"off\"\nrunbook = \"/etc/passwd\"", "plan.runbook"),
            ("owner = \"a\"\ncontingency = \"off\"\nrunbook = \"runbooks/../x.md\"", "plan.runbook"),
            ("owner = \"a\"\ncontingency = \"off\"\ncolour = 1", "unknown field `colour`"),
            ("owner = \"a\"\ncontingency = \"off\"\n[[watch]]\nseries = \"x\"\nstat = \"p98\"", "plan.watch[0].stat"),
            ("owner = \"a\"\ncontingency = \"off\"\n[[watch]]\nseries = \"x\"\ndirection = \"up\"", "plan.watch"),
            ("owner = ", "plan: not TOML"),
        ] {
            let e = check(src).unwrap_err();
            assert!(e.contains(says), "{src}: {e}");
        }
    }
}
