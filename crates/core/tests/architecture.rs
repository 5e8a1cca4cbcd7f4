//! Architecture invariants checked on the sources themselves: every event kind crew writes is named once (in
//! `crew_core::kind`), the pure crates do no IO, and the server's domains call each other's services, never
//! each other's handlers.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn crates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A file's code without its unit tests (everything from its first `#[cfg(test)]`) and comment lines.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")).map(|(n, l)| (n + 1, l))
}

/// The kinds `kind.rs` defines: every `pub const NAME: &str = "area.what";`.
fn kinds(kind_rs: &str) -> Vec<String> {
    kind_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once("&str = \"").map(|(_, rest)| rest.trim_end_matches("\";").to_string()))
        .filter(|k| k.contains('.'))
        .collect()
}

#[test]
fn kinds_are_named_once() {
    let crates = &crates();
    let kind_rs = crates.join("core/src/kind.rs");
    let kinds = kinds(&std::fs::read_to_string(&kind_rs).unwrap());
    assert!(kinds.len() >= 15, "kind.rs lists crew's kinds: {kinds:?}");
    let mut files = vec![];
    for krate in std::fs::read_dir(crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    let mut found = vec![];
    for f in files.iter().filter(|f| **f != kind_rs) {
        let text = std::fs::read_to_string(f).unwrap();
        // A file's unit tests may spell the wire format they check.
        for (n, line) in code_lines(&text) {
            for k in &kinds {
                if line.contains(&format!("\"{k}\"")) {
                    found.push(format!("{}:{n}: \"{k}\"", f.strip_prefix(crates).unwrap().display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "kinds spelled outside crew_core::kind:\n{}", found.join("\n"));
}

#[test]
fn pure_crates_do_no_io() {
    let crates = crates();
    let mut files = vec![];
    for pure in ["core/src", "flags/src", "metrics/src", "oncall/src", "judge/src", "experiments/src"] {
        sources(&crates.join(pure), &mut files);
    }
    for f in ["infra/src/model.rs", "infra/src/graph.rs", "infra/src/template.rs"] {
        files.push(crates.join(f));
    }
    let io = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env::var",
        "tokio",
        "reqwest",
        "sqlx",
        "Utc::now",
        "Local::now",
        "Instant::now",
        "SystemTime::now",
        "File::open",
        "File::create",
    ];
    let mut found = vec![];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in code_lines(&text) {
            for word in io {
                if line.contains(word) {
                    found.push(format!("{}:{n}: {word}", f.strip_prefix(&crates).unwrap().display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "IO in a pure crate:\n{}", found.join("\n"));
}

#[test]
fn domains_use_services_not_handlers() {
    let src = crates().join("server/src");
    let domains = [
        "timeline",
        "tokens",
        "deploys",
        "flags",
        "metrics",
        "alerts",
        "chat",
        "infra",
        "runbooks",
        "oncall",
        "incidents",
        "drills",
        "experiments",
        "feedback",
        "system",
    ];
    let mut found = vec![];
    for d in domains {
        let mut files = vec![];
        sources(&src.join(d), &mut files);
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in code_lines(&text) {
                for other in domains.iter().filter(|o| **o != d) {
                    for layer in ["api", "web"] {
                        if line.contains(&format!("crate::{other}::{layer}")) {
                            found.push(format!(
                                "{}:{n}: crate::{other}::{layer}",
                                f.strip_prefix(&src).unwrap().display()
                            ));
                        }
                    }
                }
            }
        }
    }
    // The platform does not reach into a domain's pages either (only lib.rs assembles the routes).
    for f in ["config.rs", "state.rs", "auth.rs", "error.rs", "http.rs"] {
        let text = std::fs::read_to_string(src.join(f)).unwrap();
        for (n, line) in code_lines(&text) {
            if line.contains("::web::") || line.contains("::api::") {
                found.push(format!("{f}:{n}: {}", line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "a domain uses another's handlers:\n{}", found.join("\n"));
}
