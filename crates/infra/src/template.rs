//! File templates (Jinja syntax, by minijinja) rendered with a host's vars and facts. Strict: a template that
//! uses a variable the host does not define is an error naming the variable, so a typo never writes an empty
//! value into a config file.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Renders `source` (named `name` in messages) with `context` (the host's vars, and its facts under `facts`).
pub fn render(name: &str, source: &str, context: &impl Serialize) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A config file keeps its last newline.
    let syntax =
        minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build().map_err(|e| e.to_string())?;
    env.set_syntax(syntax);
    env.add_template(name, source).map_err(|e| describe(name, &e))?;
    let t = env.get_template(name).map_err(|e| describe(name, &e))?;
    t.render(minijinja::value::Serde(context)).map_err(|e| describe(name, &e))
}

fn describe(name: &str, e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!(":{l}")).unwrap_or_default();
    let what = match e.kind() {
        minijinja::ErrorKind::UndefinedError => "uses a variable this host does not define".to_string(),
        _ => e.detail().unwrap_or("cannot be rendered").to_string(),
    };
    // minijinja names the expression in its display; keep the first line of it.
    let detail = e.to_string();
    let detail = detail.lines().next().unwrap_or("");
    format!("{name}{line}: {what} ({detail})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vars_and_facts_fill_the_template() {
        let ctx = json!({"port": 8080, "facts": {"hostname": "web1"}});
        assert_eq!(
            render("app.conf", "listen {{ port }} # {{ facts.hostname }}\n", &ctx).unwrap(),
            "listen 8080 # web1\n"
        );
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let e = render("templates/app.conf", "a\nlisten {{ prot }}\n", &json!({"port": 1})).unwrap_err();
        assert!(e.starts_with("templates/app.conf:2: uses a variable this host does not define"), "{e}");
        let e = render("t", "{% if %}", &json!({})).unwrap_err();
        assert!(e.starts_with("t:1: "), "{e}");
    }
}
