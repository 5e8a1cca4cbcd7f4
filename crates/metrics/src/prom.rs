//! Prometheus' rules for what crew hands it, shared by the exposition (`GET /metrics`) and remote write: metric
//! and label names in `[a-zA-Z_][a-zA-Z0-9_]*` (every other character becomes `_`, a leading digit gets a `_`
//! before it), label names never reserved (`__` prefix) nor one of the names crew or Prometheus give a meaning
//! ([`CREW_LABELS`]) nor twice the same after sanitising: such a tag is renamed `tag_NAME` (again while taken),
//! and counted. Label values are kept as sent (any UTF-8) and escaped as the text format 0.0.4 says (`\\`,
//! `\"`, `\n`); help text escapes `\\` and `\n`.

/// Label names that never come from a tag: `__name__` (the metric name in remote write), `quantile` (a
/// summary's, which crew exposes timers as) and `le` (a histogram's bucket). Any other `__` name is reserved too.
pub const CREW_LABELS: &[&str] = &["__name__", "quantile", "le"];

/// A name in `[a-zA-Z_][a-zA-Z0-9_]*`: other characters become `_`, a leading digit gets a `_` before it, an
/// empty name is `_`.
pub fn name(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Whether a label name may come from a tag: not reserved (`__…`), not one of [`CREW_LABELS`].
pub fn label_name_free(n: &str) -> bool {
    !n.starts_with("__") && !CREW_LABELS.contains(&n)
}

/// A series' tags as Prometheus labels, sorted by name, and how many were renamed: each name sanitised
/// ([`name`]); one that is reserved, one of [`CREW_LABELS`] or already taken by an earlier tag (after
/// sanitising, `a.b` and `a_b` are one name; a tag may be given twice) gets `tag_` before it until it is free.
/// Values are kept as they are.
pub fn labels<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Vec<(String, String)>, usize) {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut renamed = 0;
    for (k, v) in tags {
        let mut n = name(k);
        if !label_name_free(&n) || out.iter().any(|(taken, _)| *taken == n) {
            renamed += 1;
            n.insert_str(0, "tag_");
            while out.iter().any(|(taken, _)| *taken == n) {
                n.insert_str(0, "tag_");
            }
        }
        out.push((n, v.to_string()));
    }
    out.sort();
    (out, renamed)
}

/// A label value as the text format writes it between quotes: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text as the text format writes it: `\` → `\\`, newline → `\n`.
pub fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value as the text format writes it (`NaN`, `+Inf`, `-Inf`, else the shortest exact decimal).
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_rules() {
        for (s, want) in [
            ("api.req-time", "api_req_time"),
            ("5xx", "_5xx"),
            ("", "_"),
            ("Zürich", "Z_rich"),
            ("a:b", "a_b"),
            ("__name__", "__name__"),
            ("ok_1", "ok_1"),
        ] {
            assert_eq!(name(s), want, "{s}");
        }
    }

    fn l(tags: &[(&str, &str)]) -> (Vec<(String, String)>, usize) {
        labels(tags.iter().copied())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn tags_never_become_reserved_or_duplicate_labels() {
        for (tags, want, renamed) in [
            (vec![("env", "prod")], vec![("env", "prod")], 0),
            (vec![("__name__", "x")], vec![("tag___name__", "x")], 1),
            (vec![("quantile", "y")], vec![("tag_quantile", "y")], 1),
            (vec![("le", "z")], vec![("tag_le", "z")], 1),
            (vec![("__reserved", "z")], vec![("tag___reserved", "z")], 1),
            (vec![("a.b", "1"), ("a_b", "2")], vec![("a_b", "1"), ("tag_a_b", "2")], 1),
            (
                vec![("env", "a"), ("env", "b"), ("env", "c")],
                vec![("env", "a"), ("tag_env", "b"), ("tag_tag_env", "c")],
                2,
            ),
            (vec![("quantile", "1"), ("tag_quantile", "2")], vec![("tag_quantile", "1"), ("tag_tag_quantile", "2")], 2),
            (vec![("5xx", "1")], vec![("_5xx", "1")], 0),
            (vec![("route", "/a\"b\\c"), ("city", "Zürich")], vec![("city", "Zürich"), ("route", "/a\"b\\c")], 0),
        ] {
            assert_eq!(l(&tags), (pairs(&want), renamed), "{tags:?}");
        }
    }

    #[test]
    fn every_label_name_is_valid_and_free() {
        let hostile = ["__name__", "quantile", "le", "__x", "", "9", "a.b", "a_b", "a-b", "tag_le", "é", "__"];
        let tags: Vec<(&str, &str)> = hostile.iter().map(|k| (*k, "v")).collect();
        let (got, _) = labels(tags);
        assert_eq!(got.len(), hostile.len());
        let mut names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        for n in &names {
            assert!(label_name_free(n), "{n}");
            let mut c = n.chars();
            assert!(c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'), "{n}");
            assert!(c.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{n}");
        }
        names.dedup();
        assert_eq!(names.len(), hostile.len(), "unique: {names:?}");
    }

    #[test]
    fn values_and_help_are_escaped_as_the_text_format_says() {
        let mut out = String::new();
        escape_value("/a\"b\\c\nZürich", &mut out);
        assert_eq!(out, r#"/a\"b\\c\nZürich"#);
        let mut out = String::new();
        escape_help("a \"b\" \\ \n", &mut out);
        assert_eq!(out, r#"a "b" \\ \n"#);
        assert_eq!(
            [number(f64::NAN), number(f64::INFINITY), number(-f64::INFINITY), number(0.5)],
            ["NaN", "+Inf", "-Inf", "0.5"]
        );
    }
}
