//! The runbooks domain: Markdown files `runbooks/**/*.md` in the app's repository (crew.toml's `[app] repo`),
//! read from the head of `[app] branch` through the `git` program, never from a working tree, and kept per head
//! commit so repeat reads cost one `git rev-parse`. The service lists them, reads one by name, checks the
//! runbooks other domains name (alerts now; escalations and launch plans later) and says which lack a section.
//! Rendering and sections are in `markdown.rs` (pure); the API in `api.rs`, the pages in `web.rs`.

pub mod api;
pub mod markdown;
pub mod web;

use crate::config::Settings;
use crate::error::ApiError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The folder of the repository runbooks live in.
pub const FOLDER: &str = "runbooks/";
/// The largest runbook crew reads.
pub const MAX_BYTES: u64 = 256 * 1024;
/// The most runbooks crew reads from one commit.
pub const MAX_FILES: usize = 1000;
/// How many lines of the Mitigation `!runbook` says.
pub const ROBOT_LINES: usize = 3;

/// The runbooks service: where the runbooks are and the last head commit's runbooks.
#[derive(Clone)]
pub struct Runbooks {
    source: Option<Arc<Source>>,
    cache: Arc<tokio::sync::Mutex<Option<Arc<Snapshot>>>>,
}

/// The repository and branch runbooks are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// As git is given it: an absolute path.
    pub repo: String,
    pub branch: String,
}

/// The runbooks of one commit.
struct Snapshot {
    sha: String,
    /// Every runbook by path, or why the commit's runbooks are not read at all (too many).
    files: Result<BTreeMap<String, File>, String>,
}

/// One runbook of a commit: its text, or why crew does not read it (too large).
struct File {
    text: Result<Arc<str>, String>,
    title: String,
    missing: Vec<&'static str>,
}

/// A runbook as `GET /api/v1/runbooks` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub path: String,
    pub title: String,
    pub missing_sections: Vec<&'static str>,
    pub url: String,
    /// Why crew does not show it (over 256 KiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One runbook as `GET /api/v1/runbooks/{path}` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    pub path: String,
    pub title: String,
    pub markdown: Arc<str>,
    pub html: String,
    pub missing_sections: Vec<&'static str>,
    pub url: String,
}

/// What crew says of a runbook name that cannot be one.
fn not_a_name(name: &str, why: &str) -> String {
    format!("`{}` is not a runbook: {why}", markdown::short(name, 100))
}

/// The one reading of a runbook's name: its path (`runbooks/checkout.md`, also `/runbooks/checkout.md` as its
/// page has it) or a short form (`checkout`, `checkout.md`, `db/failover`), meaning `runbooks/<name>.md`. A
/// name that would leave `runbooks/` (`..`, an absolute path, a backslash) is refused, never looked up.
pub fn resolve(name: &str) -> Result<String, String> {
    let n = name.trim();
    let n = n.strip_prefix('/').unwrap_or(n);
    let rule = "name runbooks/NAME.md in the repository, or NAME";
    if n.is_empty() {
        return Err(format!("an empty name is not a runbook: {rule}"));
    }
    if n.len() > 512 || n.ends_with('/') || n.chars().any(|c| c.is_control() || c == '\\') {
        return Err(not_a_name(name, rule));
    }
    let path = if n.starts_with(FOLDER) { n.to_string() } else { format!("{FOLDER}{n}") };
    let path = if path.ends_with(".md") { path } else { format!("{path}.md") };
    if path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(not_a_name(name, &format!("{rule}, without `.`, `..` or empty parts")));
    }
    Ok(path)
}

/// Whether a runbook reference is a web address rather than a runbook of the repository.
pub fn is_url(name: &str) -> bool {
    name.starts_with("http://") || name.starts_with("https://")
}

/// A runbook's page on crew: `runbooks/db/failover.md` → `/runbooks/db/failover.md`.
pub fn page(path: &str) -> String {
    format!("/{path}")
}

impl Runbooks {
    /// The service for these settings: runbooks come from `[app] repo` at `[app] branch`; without `[app]` there
    /// are none.
    pub fn new(settings: &Settings) -> Runbooks {
        let source = match (&settings.deploy, &settings.file.app) {
            (Some(d), _) => Some(Source { repo: tidy(&d.repo), branch: d.app.branch.clone() }),
            (None, Some(app)) => {
                let base = settings.config_path.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
                let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
                let repo = if app.repo.starts_with('/') {
                    app.repo.clone()
                } else {
                    base.join(&app.repo).display().to_string()
                };
                Some(Source { repo: tidy(&repo), branch: app.branch.clone() })
            }
            (None, None) => None,
        };
        Runbooks::from_source(source)
    }

    /// The service reading `source` (none: no runbooks).
    pub fn from_source(source: Option<Source>) -> Runbooks {
        Runbooks { source: source.map(Arc::new), cache: Arc::default() }
    }

    /// Where runbooks are read from, if anywhere.
    pub fn source(&self) -> Option<&Source> {
        self.source.as_deref()
    }

    /// Every runbook of the branch's head, by path.
    pub async fn list(&self) -> Result<Vec<Summary>, ApiError> {
        if self.source.is_none() {
            return Ok(vec![]);
        }
        let snap = self.snapshot().await?;
        let files = snap.files.as_ref().map_err(|e| ApiError::Unprocessable(e.clone()))?;
        Ok(files
            .iter()
            .map(|(path, f)| Summary {
                path: path.clone(),
                title: f.title.clone(),
                missing_sections: f.missing.clone(),
                url: page(path),
                error: f.text.as_ref().err().cloned(),
            })
            .collect())
    }

    /// One runbook's path and text, by name (see [`resolve`]): 400 for a name that cannot be a runbook, 404 naming
    /// it when the branch has no such runbook, 422 when it is too large to read.
    pub async fn read(&self, name: &str) -> Result<(String, Arc<str>), ApiError> {
        let path = resolve(name).map_err(ApiError::BadRequest)?;
        let Some(src) = self.source() else {
            return Err(ApiError::NotFound(format!(
                "no runbook {path}: crew.toml has no [app] repository to read runbooks from"
            )));
        };
        let snap = self.snapshot().await?;
        let files = snap.files.as_ref().map_err(|e| ApiError::Unprocessable(e.clone()))?;
        let Some(f) = files.get(&path) else {
            return Err(ApiError::NotFound(format!("no runbook {path} in {} (branch {})", src.repo, src.branch)));
        };
        let text = f.text.clone().map_err(ApiError::Unprocessable)?;
        Ok((path, text))
    }

    /// One runbook, rendered.
    pub async fn get(&self, name: &str) -> Result<Runbook, ApiError> {
        let (path, text) = self.read(name).await?;
        Ok(Runbook {
            title: markdown::title(&text).unwrap_or_else(|| path.clone()),
            html: markdown::render(&text, &path),
            missing_sections: markdown::missing_sections(&text),
            url: page(&path),
            markdown: text,
            path,
        })
    }

    /// Checks a runbook another part of crew.toml names at `key` (`alerts[0].runbook`): an http(s) URL is taken
    /// as it is; anything else must be a runbook on the branch's head. The error names the key and the file.
    pub async fn check_reference(&self, key: &str, name: &str) -> Result<(), String> {
        if is_url(name) {
            return match url::Url::parse(name) {
                Ok(u) if u.host().is_some() => Ok(()),
                _ => Err(format!("{key}: `{name}` is not a URL")),
            };
        }
        let path = resolve(name).map_err(|e| format!("{key}: {e} (or an http(s) URL)"))?;
        let Some(src) = self.source() else {
            return Err(format!(
                "{key}: {path}: there is no [app] repository to find it in; add [app] or give an http(s) URL"
            ));
        };
        let snap = self.snapshot().await.map_err(|e| format!("{key}: {path}: {}", reason(e)))?;
        let files = snap.files.as_ref().map_err(|e| format!("{key}: {path}: {e}"))?;
        match files.get(&path) {
            Some(File { text: Err(e), .. }) => Err(format!("{key}: {e}")),
            Some(_) => Ok(()),
            None => Err(format!("{key}: {path} does not exist in {} (branch {})", src.repo, src.branch)),
        }
    }

    /// Checks every runbook crew.toml's alert rules name (see [`Runbooks::check_reference`]).
    pub async fn check_alerts(&self, rules: &[crate::alerts::Rule]) -> Result<(), String> {
        for (i, r) in rules.iter().enumerate() {
            if let Some(rb) = &r.runbook {
                self.check_reference(&format!("alerts[{i}].runbook"), rb).await?;
            }
        }
        Ok(())
    }

    /// What the Status page warns of: each runbook that lacks a section or is too large, or why runbooks
    /// cannot be read at all.
    pub async fn warnings(&self) -> Vec<String> {
        if self.source.is_none() {
            return vec![];
        }
        let snap = match self.snapshot().await {
            Ok(s) => s,
            Err(e) => return vec![format!("runbooks cannot be read: {}", reason(e))],
        };
        let files = match &snap.files {
            Ok(f) => f,
            Err(e) => return vec![e.clone()],
        };
        let mut out = vec![];
        for (path, f) in files {
            match &f.text {
                Err(e) => out.push(e.clone()),
                Ok(_) if !f.missing.is_empty() => {
                    out.push(format!("{path} has no {} section", f.missing.join(", no ")));
                }
                Ok(_) => {}
            }
        }
        out
    }

    /// The branch head's runbooks: the kept ones while the head has not moved, else read afresh. Reads are one
    /// at a time, so a new head is read once however many ask at once.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        let src = self.source().ok_or_else(|| ApiError::NotFound("no [app] repository".into()))?;
        let sha = crew_deploy::git::resolve(&src.repo, &src.branch, None)
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("runbooks: {e}")))?;
        let mut cache = self.cache.lock().await;
        if let Some(s) = cache.as_ref().filter(|s| s.sha == sha) {
            return Ok(s.clone());
        }
        let snap = Arc::new(read_commit(src, &sha).await.map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?);
        *cache = Some(snap.clone());
        Ok(snap)
    }
}

/// A repository path as git and messages take it: absolute, `/srv/www/.` as `/srv/www`.
fn tidy(repo: &str) -> String {
    if let Ok(p) = std::fs::canonicalize(repo) {
        return p.display().to_string();
    }
    match repo.strip_suffix("/.") {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => repo.to_string(),
    }
}

/// An error's words without the "internal error" prefix, for config messages and warnings.
fn reason(e: ApiError) -> String {
    match e {
        ApiError::Internal(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// The runbooks of commit `sha`: listed with `git ls-tree`, read in one `git cat-file --batch`.
async fn read_commit(src: &Source, sha: &str) -> Result<Snapshot, String> {
    let listing = git(&src.repo, &["ls-tree", "-r", "-l", "-z", "--full-tree", sha, "--", FOLDER], None).await?;
    // `<mode> <type> <object> <size>\t<path>`, each ended by NUL; only Markdown files, not links or submodules.
    let mut blobs: Vec<(String, String, u64)> = vec![];
    for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, path)) = entry.split_once('\t') else { continue };
        let meta: Vec<&str> = meta.split_whitespace().collect();
        let [mode, "blob", object, size] = meta[..] else { continue };
        if mode == "120000" || !path.starts_with(FOLDER) || !path.ends_with(".md") || resolve(path).is_err() {
            continue;
        }
        blobs.push((path.to_string(), object.to_string(), size.parse().unwrap_or(u64::MAX)));
    }
    if blobs.len() > MAX_FILES {
        let files = Err(format!(
            "{} (branch {}) has {} runbooks under {FOLDER}; crew reads at most {MAX_FILES}",
            src.repo,
            src.branch,
            blobs.len()
        ));
        return Ok(Snapshot { sha: sha.to_string(), files });
    }
    // Each object once: two runbooks with the same text are one object.
    let wanted: std::collections::BTreeSet<&str> =
        blobs.iter().filter(|(_, _, n)| *n <= MAX_BYTES).map(|(_, o, _)| o.as_str()).collect();
    let mut input = wanted.iter().copied().collect::<Vec<_>>().join("\n");
    input.push('\n');
    let out = if wanted.is_empty() { vec![] } else { git(&src.repo, &["cat-file", "--batch"], Some(input)).await? };
    let texts = parse_batch(&out)?;
    let mut files = BTreeMap::new();
    for (path, object, size) in blobs {
        let file = if size > MAX_BYTES {
            let title = path.clone();
            let why =
                format!("{path} is {} KiB; crew reads runbooks up to {} KiB", size.div_ceil(1024), MAX_BYTES / 1024);
            File { text: Err(why), title, missing: vec![] }
        } else {
            let bytes = texts.get(&object).ok_or_else(|| format!("git cat-file gave no {object} ({path})"))?;
            let text: Arc<str> = Arc::from(String::from_utf8_lossy(bytes).as_ref());
            File {
                title: markdown::title(&text).unwrap_or_else(|| path.clone()),
                missing: markdown::missing_sections(&text),
                text: Ok(text),
            }
        };
        files.insert(path, file);
    }
    Ok(Snapshot { sha: sha.to_string(), files: Ok(files) })
}

/// `git cat-file --batch`'s answer: `<object> blob <size>\n<bytes>\n` per object asked for.
fn parse_batch(mut out: &[u8]) -> Result<std::collections::HashMap<String, Vec<u8>>, String> {
    let mut objects = std::collections::HashMap::new();
    while !out.is_empty() {
        let nl = out.iter().position(|b| *b == b'\n').ok_or("git cat-file: a header without its end")?;
        let header = String::from_utf8_lossy(&out[..nl]).to_string();
        let mut h = header.split(' ');
        let (Some(object), Some(_kind), Some(size)) = (h.next(), h.next(), h.next()) else {
            return Err(format!("git cat-file: `{header}`"));
        };
        let size: usize = size.parse().map_err(|_| format!("git cat-file: `{header}`"))?;
        let body = out.get(nl + 1..nl + 1 + size).ok_or("git cat-file: an object cut short")?;
        objects.insert(object.to_string(), body.to_vec());
        out = out.get(nl + 2 + size..).unwrap_or_default();
    }
    Ok(objects)
}

/// Runs git in `repo` (with `input` on its standard input); its standard output, or an error naming the command.
async fn git(repo: &str, args: &[&str], input: Option<String>) -> Result<Vec<u8>, String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let writer = match (input, child.stdin.take()) {
        (Some(text), Some(mut stdin)) => Some(tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
        })),
        _ => None,
    };
    let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let (mut out, mut err) = (vec![], vec![]);
    let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    r1.and(r2).map_err(|e| format!("reading git: {e}"))?;
    let status = child.wait().await.map_err(|e| format!("git: {e}"))?;
    if let Some(w) = writer {
        let _ = w.await;
    }
    if !status.success() {
        return Err(format!("git {} in {repo}: {}", args.join(" "), String::from_utf8_lossy(&err).trim()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_paths_under_runbooks() {
        let table = [
            ("runbooks/checkout.md", Ok("runbooks/checkout.md")),
            ("/runbooks/checkout.md", Ok("runbooks/checkout.md")),
            ("checkout", Ok("runbooks/checkout.md")),
            ("checkout.md", Ok("runbooks/checkout.md")),
            ("db/failover", Ok("runbooks/db/failover.md")),
            (" db/failover.md ", Ok("runbooks/db/failover.md")),
            ("../crew.toml", Err("`../crew.toml` is not a runbook")),
            ("runbooks/../crew.toml", Err("without `.`, `..` or empty parts")),
            ("../../etc/passwd", Err("is not a runbook")),
            ("db//x", Err("is not a runbook")),
            ("./x", Err("is not a runbook")),
            ("a\\..\\b", Err("is not a runbook")),
            ("a\nb", Err("is not a runbook")),
            ("db/", Err("is not a runbook")),
            ("", Err("an empty name")),
        ];
        for (name, want) in table {
            match (resolve(name), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name:?}"),
                (Err(got), Err(says)) => assert!(got.contains(says), "{name:?}: {got}"),
                (got, want) => panic!("{name:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn cat_file_batches_are_read_whole() {
        let out = b"aa blob 3\nabc\nbb blob 0\n\ncc blob 4\na\nb\n\n";
        let objects = parse_batch(out).unwrap();
        assert_eq!(objects["aa"], b"abc");
        assert_eq!(objects["bb"], b"");
        assert_eq!(objects["cc"], b"a\nb\n");
        assert!(parse_batch(b"aa blob 9\nabc\n").is_err());
    }

    fn sh(dir: &Path, script: &str) {
        let ok = std::process::Command::new("sh").arg("-c").arg(script).current_dir(dir).status().unwrap().success();
        assert!(ok, "{script}");
    }

    #[tokio::test]
    async fn runbooks_are_read_from_the_branch_head_and_kept_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        std::fs::create_dir_all(repo.join("runbooks/db")).unwrap();
        std::fs::write(repo.join("runbooks/checkout.md"), "# Checkout\n## Mitigation\nRoll back.\n").unwrap();
        std::fs::write(
            repo.join("runbooks/db/failover.md"),
            "# Failover\n## Meaning\n## Impact\n## Diagnosis\n## Mitigation\n",
        )
        .unwrap();
        std::fs::write(repo.join("runbooks/big.md"), "x".repeat(MAX_BYTES as usize + 1)).unwrap();
        std::fs::write(repo.join("runbooks/notes.txt"), "not a runbook").unwrap();
        // Two runbooks with the same text are one git object: both are read.
        std::fs::write(
            repo.join("runbooks/db/replica.md"),
            "# Failover\n## Meaning\n## Impact\n## Diagnosis\n## Mitigation\n",
        )
        .unwrap();
        std::fs::write(repo.join("crew.toml"), "secret = 1").unwrap();
        let commit = "git -c user.name=A -c user.email=a@e add -A && git -c user.name=A -c user.email=a@e commit -qm c";
        sh(repo, &format!("git init -q -b main && {commit}"));
        // Uncommitted changes are not read: only the branch head.
        std::fs::write(repo.join("runbooks/checkout.md"), "# Changed\n").unwrap();
        let rb = Runbooks::from_source(Some(Source { repo: repo.display().to_string(), branch: "main".into() }));
        let list = rb.list().await.unwrap();
        let paths: Vec<&str> = list.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            ["runbooks/big.md", "runbooks/checkout.md", "runbooks/db/failover.md", "runbooks/db/replica.md"]
        );
        assert_eq!(rb.read("db/replica").await.unwrap().1, rb.read("db/failover").await.unwrap().1);
        assert_eq!(list[1].title, "Checkout");
        assert_eq!(list[1].missing_sections, ["Meaning", "Impact", "Diagnosis"]);
        assert!(list[0].error.as_deref().unwrap().contains("crew reads runbooks up to 256 KiB"), "{list:?}");
        let (path, text) = rb.read("checkout").await.unwrap();
        assert_eq!((path.as_str(), &*text), ("runbooks/checkout.md", "# Checkout\n## Mitigation\nRoll back.\n"));
        let got = rb.get("db/failover").await.unwrap();
        assert_eq!(got.html.lines().next(), Some("<h1 id=\"failover\">Failover</h1>"));
        assert!(got.missing_sections.is_empty());
        assert!(matches!(rb.read("big").await, Err(ApiError::Unprocessable(_))));
        assert!(matches!(rb.read("nope").await, Err(ApiError::NotFound(m)) if m.contains("runbooks/nope.md")));
        assert!(matches!(rb.read("../crew.toml").await, Err(ApiError::BadRequest(_))));
        assert!(matches!(rb.read("notes.txt").await, Err(ApiError::NotFound(_))));
        assert!(rb.check_reference("alerts[0].runbook", "runbooks/checkout.md").await.is_ok());
        assert!(rb.check_reference("alerts[0].runbook", "https://wiki.example.com/x").await.is_ok());
        let e = rb.check_reference("alerts[1].runbook", "runbooks/nope.md").await.unwrap_err();
        assert_eq!(
            e,
            format!("alerts[1].runbook: runbooks/nope.md does not exist in {} (branch main)", repo.display())
        );
        let w = rb.warnings().await;
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].contains("runbooks/checkout.md has no Meaning, no Impact, no Diagnosis section"), "{w:?}");

        // A new commit is read afresh.
        sh(repo, &format!("rm runbooks/big.md && {commit}"));
        assert_eq!(rb.list().await.unwrap().len(), 3);
        assert_eq!(rb.read("checkout").await.unwrap().1.as_ref(), "# Changed\n");

        let none = Runbooks::from_source(None);
        assert!(none.list().await.unwrap().is_empty());
        let e = none.check_reference("alerts[0].runbook", "checkout").await.unwrap_err();
        assert!(e.contains("alerts[0].runbook: runbooks/checkout.md: there is no [app] repository"), "{e}");
    }

    #[tokio::test]
    async fn more_than_a_thousand_runbooks_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        std::fs::create_dir_all(repo.join("runbooks")).unwrap();
        for i in 0..=MAX_FILES {
            std::fs::write(repo.join(format!("runbooks/r{i}.md")), "# R\n").unwrap();
        }
        sh(repo, "git init -q -b main && git add -A && git -c user.name=A -c user.email=a@e commit -qm c");
        let rb = Runbooks::from_source(Some(Source { repo: repo.display().to_string(), branch: "main".into() }));
        let Err(ApiError::Unprocessable(e)) = rb.list().await else { panic!("refused") };
        assert!(e.contains("has 1001 runbooks under runbooks/; crew reads at most 1000"), "{e}");
    }
}
