//! The engine on the target: for each resource in converge order, observe the live state (stat and hash in
//! memory), say what would change (with a unified diff for text files), and on apply change it (files written
//! to a temporary file and renamed into place). Refreshes run once, after all of a resource's notifiers; a
//! failed resource skips its dependents only. Every path is under the host's root prefix, which is how tests
//! run without privileges. This module does IO; the model, the order and the templates do not.
//! Accounts, owners and packages go through `system`, which reads them from the root's own files.
//!
//! crew runs as root, in folders other accounts may write (`/srv/www`, owned by `www`), so it never follows a
//! link no role declares: each path is walked from the root one component at a time (a link the roles declare
//! is followed, inside the root; any other link is refused, naming it), a file is written whole to a
//! temporary file of a random name made with `O_EXCL` in its folder, given its owner and mode on the open file,
//! synced and renamed over, and an existing file or folder is opened with `O_NOFOLLOW` and changed through
//! that open file. Sources and templates are read only from inside the repository.
//!
//! A file, folder or link whose parent folders are missing gets them, as pyinfra does: found missing by that
//! same walk, each made by one `mkdir` (0755, root's when crew is root), and named in the resource's changes
//! (`folder /srv/www/conf created`). A plan counts what earlier resources would make (folders, links), so it
//! names each folder once, on the resource whose apply makes it: what a plan says is what the apply does.

use crate::graph::{order, Edge};
use crate::model::{Content, InfraError, Resource, Spec};
use crate::system;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Where the engine works: the root prefix, the repository (templates and sources), the template context.
pub struct Target {
    pub root: PathBuf,
    pub repo: PathBuf,
    /// The host's vars, with its facts under `facts`.
    pub context: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Unchanged,
    Changed,
    Failed,
    Skipped,
}

/// What happened to one resource (or, in a plan, what would).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub resource: String,
    pub status: Status,
    /// What changed in words: `created`, `content`, `mode 0600 → 0644`, `started`.
    pub changes: Vec<String>,
    /// A unified diff for text files (redacted when the file is `sensitive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// It was (or would be) refreshed: a service restarted, a refresh-only command run.
    pub refreshed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run's outcomes in converge order and its counts.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    pub applied: bool,
    pub resources: Vec<Outcome>,
    pub summary: Summary,
}

impl Report {
    /// The resources that changed (or, in a plan, would).
    pub fn changed(&self) -> Vec<&str> {
        self.resources.iter().filter(|o| o.status == Status::Changed).map(|o| o.resource.as_str()).collect()
    }

    /// What the timeline keeps of a run: the summary and every outcome that is not plain `unchanged`, each
    /// diff cut at 4 KiB, at most 200 outcomes (a report is an event's data, not an archive of files).
    pub fn stored(&self) -> serde_json::Value {
        let kept: Vec<Outcome> = self
            .resources
            .iter()
            .filter(|o| o.status != Status::Unchanged || o.refreshed)
            .take(200)
            .map(|o| {
                let mut o = o.clone();
                if let Some(d) = &mut o.diff {
                    if d.len() > 4096 {
                        let mut cut = 4096;
                        while !d.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        d.truncate(cut);
                        d.push_str("\n… (diff cut at 4 KiB)");
                    }
                }
                o
            })
            .collect();
        serde_json::json!({"applied": self.applied, "summary": self.summary, "resources": kept})
    }

    /// `web1 drifted from its roles: file:/etc/a, file:/etc/b and 3 more`, when a check found changes.
    pub fn drift_summary(&self, host: &str) -> Option<String> {
        let changed = self.changed();
        if changed.is_empty() {
            return None;
        }
        let shown = changed.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = if changed.len() > 5 { format!(" and {} more", changed.len() - 5) } else { String::new() };
        Some(format!("{host} drifted from its roles: {shown}{more}"))
    }
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub changed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub skipped: usize,
    pub refreshed: usize,
}

/// The resources with every file's content resolved here (templates rendered, sources read), to send to a
/// host's engine, which then needs neither the repository nor the vars.
pub fn resolve(resources: &[Resource], target: &Target) -> Result<Vec<Resource>, InfraError> {
    use base64::Engine;
    resources
        .iter()
        .map(|r| {
            let (file, line, id) = (r.file.clone(), r.line, r.id());
            let mut r = r.clone();
            let at = |message| InfraError::At { file: file.clone(), line, key: id.clone(), message };
            match &mut r.spec {
                Spec::File { content, .. } => {
                    let bytes = desired_content(content, "source", target).map_err(at)?;
                    *content = match String::from_utf8(bytes) {
                        Ok(text) => Content::Literal(text),
                        Err(e) => Content::Base64(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
                    };
                }
                Spec::Package { deb: Some(deb), .. } => {
                    let bytes = desired_content(deb, "deb", target).map_err(at)?;
                    *deb = Content::Base64(base64::engine::general_purpose::STANDARD.encode(bytes));
                }
                _ => {}
            }
            Ok(r)
        })
        .collect()
}

/// Plans (`apply = false`: nothing is touched) or applies a host's resources.
pub fn run(resources: &[Resource], target: &Target, apply: bool) -> Result<Report, InfraError> {
    let (sorted, edges) = order(resources)?;
    // Refused before anything is touched: what this engine cannot converge yet, templates that do not render.
    for r in resources {
        let (content, key) = match &r.spec {
            Spec::File { content, .. } => (Some(content), "source"),
            Spec::Package { deb, .. } => (deb.as_ref(), "deb"),
            _ => (None, ""),
        };
        if let Some(content) = content {
            desired_content(content, key, target).map_err(|message| InfraError::At {
                file: r.file.clone(),
                line: r.line,
                key: r.id(),
                message,
            })?;
        }
    }
    // Accounts this run creates (a plan may name them as owners before they exist), and the links it declares
    // (the only links a path is resolved through).
    let declared: HashSet<String> = resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::User { .. } | Spec::Group { .. } | Spec::Symlink { .. }))
        .map(|r| match &r.spec {
            Spec::Symlink { path, .. } => format!("symlink:{}", normal(path)),
            _ => r.id(),
        })
        .collect();
    // The root prefix itself (a folder of its own per host in tests, `/` on a machine) is the operator's, named
    // in crew.toml: an apply makes it when it is not there yet; the folders under it are the plan's to name.
    if apply && fs::symlink_metadata(&target.root).is_err() {
        fs::create_dir_all(&target.root).map_err(|e| InfraError::File {
            file: target.root.display().to_string(),
            message: format!("cannot create the host's root: {e}"),
        })?;
    }
    let mut planned = Planned::default();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; resources.len()];
    let mut failed: HashSet<usize> = HashSet::new();
    let mut changed: HashSet<usize> = HashSet::new();
    for &i in &sorted {
        let r = &resources[i];
        let id = r.id();
        if let Some(bad) = edges.iter().find(|e| e.to == i && failed.contains(&e.from)) {
            failed.insert(i); // its dependents are skipped too
            outcomes[i] = Some(Outcome {
                resource: id,
                status: Status::Skipped,
                changes: vec![],
                diff: None,
                refreshed: false,
                error: Some(format!("skipped: {} failed", resources[bad.from].id())),
            });
            continue;
        }
        let refresh = edges.iter().any(|e: &Edge| e.to == i && e.refresh && changed.contains(&e.from));
        let outcome = converge(r, target, apply, refresh, &declared, &mut planned);
        match outcome.status {
            Status::Failed => {
                failed.insert(i);
            }
            Status::Changed => {
                changed.insert(i);
            }
            _ => {}
        }
        if outcome.refreshed {
            changed.insert(i); // a restarted service notifies onward too
        }
        outcomes[i] = Some(outcome);
    }
    let resources: Vec<Outcome> = sorted.iter().map(|&i| outcomes[i].take().expect("every resource ran")).collect();
    let mut summary = Summary::default();
    for o in &resources {
        match o.status {
            Status::Changed => summary.changed += 1,
            Status::Unchanged => summary.unchanged += 1,
            Status::Failed => summary.failed += 1,
            Status::Skipped => summary.skipped += 1,
        }
        if o.refreshed {
            summary.refreshed += 1;
        }
    }
    Ok(Report { applied: apply, resources, summary })
}

/// A host path's components, `.` dropped and `..` taken back, never above the root: `/a/../../b` is `["b"]`.
/// The model refuses `..`; this keeps a payload sent to `crew infra engine` inside the root all the same.
fn components(path: &Path) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// A host path written one way: `/a/b` for `/a//b/./`.
fn normal(path: &str) -> String {
    let parts: Vec<String> = components(Path::new(path)).iter().map(|c| c.to_string_lossy().into_owned()).collect();
    format!("/{}", parts.join("/"))
}

/// `/etc/app.conf` under the root (lexically: for what is only looked at, such as `creates`).
fn under(root: &Path, path: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(components(Path::new(path)));
    p
}

/// What earlier resources of a plan would make, by host path as the walk resolves it (`/srv/www/conf`): a plan
/// goes through the folders and links an earlier resource would create, as its apply goes through the ones it
/// created. An apply leaves it empty: the machine is what it is.
#[derive(Default)]
struct Planned(HashMap<String, Made>);

enum Made {
    Folder,
    File,
    Link(String),
}

/// Where a declared path really is: the path under the root, the host path it resolves to (through declared
/// links), and its parent folders that are missing, top down (host path, path under the root).
struct Located {
    real: PathBuf,
    host: String,
    missing: Vec<(String, PathBuf)>,
}

/// `/a/b` for the components `a`, `b`; `/` for none.
fn host_path(at: &[std::ffi::OsString]) -> String {
    format!("/{}", at.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/"))
}

/// Where a declared file, folder or link `path` really is under the root, walked one component at a time
/// without letting the system follow any link: a link the roles declare (`declared` holds `symlink:/path`) is
/// followed by hand, its target taken inside the root; any other link is refused, naming it, and so is a
/// component that is not a folder. A component not there yet is a folder to create (`missing`). In a plan,
/// what earlier resources would make (`planned`) counts as there. The last component is not followed: the
/// caller looks at what is there.
fn locate(root: &Path, path: &str, declared: &HashSet<String>, planned: &Planned) -> Result<Located, String> {
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = components(Path::new(path)).into();
    let Some(last) = todo.pop_back() else { return Err(format!("`{path}` names the root itself")) };
    let mut at: Vec<std::ffi::OsString> = Vec::new();
    let mut missing: Vec<(String, PathBuf)> = Vec::new();
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            at.pop();
            continue;
        }
        at.push(name);
        let real = at.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let host = host_path(&at);
        let to = match planned.0.get(&host) {
            Some(Made::Folder) => continue,
            Some(Made::File) => return Err(format!("{} is to be a file, not a folder", real.display())),
            Some(Made::Link(to)) => PathBuf::from(to),
            None => {
                let m = match fs::symlink_metadata(&real) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        missing.push((host, real)); // made by crew before the resource itself
                        continue;
                    }
                    Err(e) => return Err(format!("stat {}: {e}", real.display())),
                };
                if m.is_dir() {
                    continue;
                }
                if !m.is_symlink() {
                    return Err(format!("{} exists and is not a folder", real.display()));
                }
                if !declared.contains(&format!("symlink:{host}")) {
                    return Err(format!(
                        "{} is a symlink no role declares: crew does not follow it (remove it, or declare it as a [[symlink]])",
                        real.display()
                    ));
                }
                fs::read_link(&real).map_err(io("read link", &real))?
            }
        };
        hops += 1;
        if hops > 40 {
            return Err(format!("{}: too many levels of symlinks", real.display()));
        }
        at.pop();
        if to.is_absolute() {
            at.clear();
        }
        for c in to.components().rev() {
            match c {
                Component::Normal(n) => todo.push_front(n.to_os_string()),
                Component::ParentDir => todo.push_front("..".into()),
                _ => {}
            }
        }
    }
    // Only the folders the path finally goes through (a link's `..` may have left one), each once.
    let parent = host_path(&at);
    let mut seen = HashSet::new();
    missing.retain(|(h, _)| (parent == *h || parent.starts_with(&format!("{h}/"))) && seen.insert(h.clone()));
    let host = if at.is_empty() {
        format!("/{}", last.to_string_lossy())
    } else {
        format!("{parent}/{}", last.to_string_lossy())
    };
    Ok(Located { real: at.iter().fold(root.to_path_buf(), |p, c| p.join(c)).join(last), host, missing })
}

/// Makes a path's missing parent folders, top down, as pyinfra does: each made by one `mkdir` (which follows no
/// link at the name it makes), then opened without following a link and given mode 0755 and, when crew runs as
/// root (it then owns what it made), owner and group root (uid and gid 0 of the root's accounts), on the open
/// folder, whatever the umask or a setgid parent would have given. A folder that appears meanwhile is refused
/// rather than adopted. Each one made is added to `made` (its host path).
fn make_folders(missing: &[(String, PathBuf)], made: &mut Vec<String>) -> Result<(), String> {
    for (host, real) in missing {
        match fs::DirBuilder::new().mode(0o755).create(real) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(format!("{} appeared while crew was creating it", real.display()))
            }
            Err(e) => return Err(format!("create folder {}: {e}", real.display())),
        }
        made.push(host.clone());
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(real)
            .map_err(io("open", real))?;
        let m = f.metadata().map_err(io("stat", real))?;
        if m.uid() == 0 {
            std::os::unix::fs::fchown(&f, Some(0), Some(0)).map_err(io("chown", real))?;
        }
        f.set_permissions(fs::Permissions::from_mode(0o755)).map_err(io("chmod", real))?;
    }
    Ok(())
}

/// What a declared file or folder finds at its path: nothing, or the thing itself opened without following a
/// link (`O_NOFOLLOW`), with its metadata from the open file. A link, or the other kind, is refused.
fn existing(p: &Path, want_dir: bool) -> Result<Option<(fs::File, fs::Metadata)>, String> {
    let what = if want_dir { "a folder" } else { "a file" };
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("stat {}: {e}", p.display())),
    };
    if m.is_symlink() {
        return Err(format!(
            "{} is a symlink where {what} is declared: crew neither follows nor replaces it (remove it, or declare a [[symlink]] instead)",
            p.display()
        ));
    }
    if want_dir && !m.is_dir() {
        return Err(format!("{} exists and is not a folder", p.display()));
    }
    if !want_dir && !m.is_file() {
        return Err(format!("{} exists and is not a regular file", p.display()));
    }
    let f = open_nofollow(p).map_err(io("open", p))?;
    let m2 = f.metadata().map_err(io("stat", p))?;
    // Swapped between the look and the open: refused rather than guessed at.
    if (m2.dev(), m2.ino()) != (m.dev(), m.ino()) || m2.is_dir() != want_dir {
        return Err(format!("{} changed while crew looked at it", p.display()));
    }
    Ok(Some((f, m2)))
}

/// Opens a file or folder for reading and changing its owner and mode, failing on a link (`ELOOP`) and never
/// waiting on a FIFO.
fn open_nofollow(p: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(p)
}

/// Every file crew writes: `bytes` into a temporary file of a random name created in `p`'s folder (`O_EXCL`,
/// so nothing planted there is followed or reused), given its owner then its mode on the open file (a secret
/// is never readable by the wrong account, a chown never clears a mode set after it), synced, renamed over `p`.
fn write_file(p: &Path, bytes: &[u8], mode: u32, uid: Option<u32>, gid: Option<u32>) -> Result<(), String> {
    let dir = p.parent().ok_or("a file needs a parent folder")?;
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".crew-tmp")
        .tempfile_in(dir)
        .map_err(io("create a temporary file in", dir))?;
    let at = tmp.path().to_path_buf();
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(tmp.as_file(), uid, gid).map_err(io("chown", &at))?;
    }
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode)).map_err(io("chmod", &at))?;
    tmp.write_all(bytes).map_err(io("write", &at))?;
    tmp.as_file().sync_all().map_err(io("sync", &at))?;
    tmp.persist(p).map_err(|e| format!("rename onto {}: {}", p.display(), e.error))?;
    if let Ok(d) = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A source or template of the repository: a relative path that stays inside it, links included (a link in
/// the repository to `/etc/hostname` would otherwise copy the controller's own file to every host).
fn repo_file(repo: &Path, key: &str, p: &str) -> Result<PathBuf, String> {
    let rel = Path::new(p);
    if p.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!("{key} `{p}` is outside the repository: give a path relative to it, without `..`"));
    }
    let base = repo.canonicalize().map_err(|e| format!("{key} `{p}`: the repository {}: {e}", repo.display()))?;
    let real = repo.join(rel).canonicalize().map_err(|e| format!("{key} `{p}`: {e}"))?;
    if !real.starts_with(&base) {
        return Err(format!("{key} `{p}` is outside the repository: it leads to {}", real.display()));
    }
    Ok(real)
}

fn desired_content(content: &Content, key: &str, target: &Target) -> Result<Vec<u8>, String> {
    use base64::Engine;
    match content {
        Content::Literal(s) => Ok(s.clone().into_bytes()),
        Content::Base64(b) => base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| format!("content: {e}")),
        Content::Source(p) => {
            let real = repo_file(&target.repo, key, p)?;
            fs::read(real).map_err(|e| format!("{key} `{p}`: {e}"))
        }
        Content::Template(p) => {
            let real = repo_file(&target.repo, "template", p)?;
            let text = fs::read_to_string(real).map_err(|e| format!("template `{p}`: {e}"))?;
            crate::template::render(p, &text, &target.context).map(String::into_bytes)
        }
    }
}

fn converge(
    r: &Resource,
    target: &Target,
    apply: bool,
    refresh: bool,
    declared: &HashSet<String>,
    planned: &mut Planned,
) -> Outcome {
    let mut o = Outcome {
        resource: r.id(),
        status: Status::Unchanged,
        changes: vec![],
        diff: None,
        refreshed: false,
        error: None,
    };
    // The missing parent folders of a file, folder or link: made (on apply) once everything that can be refused
    // without touching the machine has been looked at, named after the resource's own changes.
    let mut folders: Vec<String> = vec![];
    let mut parents = |at: &Located| -> Result<(), String> {
        if apply {
            make_folders(&at.missing, &mut folders)
        } else {
            folders.extend(at.missing.iter().map(|(h, _)| h.clone()));
            Ok(())
        }
    };
    let mut made: Option<(String, Made)> = None;
    let result = match &r.spec {
        Spec::File { path, content, mode, sensitive, owner, group } => (|| {
            let at = locate(&target.root, path, declared, planned)?;
            let p = &at.real;
            let own = Ownership::resolve(&target.root, owner, group, declared, apply)?;
            let have = existing(p, false)?;
            parents(&at)?;
            own.converge(p, have.as_ref(), apply, &mut o)?;
            file(p, have, content, *mode, *sensitive, &own, target, apply, &mut o)?;
            made = Some((at.host, Made::File));
            Ok(())
        })(),
        Spec::Directory { path, mode, owner, group } => (|| {
            let at = locate(&target.root, path, declared, planned)?;
            let p = &at.real;
            let own = Ownership::resolve(&target.root, owner, group, declared, apply)?;
            let have = existing(p, true)?;
            parents(&at)?;
            own.converge(p, have.as_ref(), apply, &mut o)?;
            directory(p, have, *mode, &own, apply, &mut o)?;
            made = Some((at.host, Made::Folder));
            Ok(())
        })(),
        Spec::Symlink { path, target: to } => (|| {
            let at = locate(&target.root, path, declared, planned)?;
            symlink(&at.real, to, apply, &mut o, || parents(&at))?;
            made = Some((at.host, Made::Link(to.clone())));
            Ok(())
        })(),
        Spec::Command { run, creates, unless, onlyif, refresh_only, .. } => command(
            run,
            creates.as_deref(),
            unless.as_deref(),
            onlyif.as_deref(),
            *refresh_only,
            refresh,
            target,
            apply,
            &mut o,
        ),
        Spec::Service { name, provider, start, stop, status, restart } => {
            let cmds = ServiceCommands::new(name, provider, start, stop, status, restart);
            service(&cmds, refresh, target, apply, &mut o)
        }
        Spec::Package { name, version, deb } => package(name, version.as_deref(), deb.as_ref(), target, apply, &mut o),
        Spec::User { name, uid, group, home, shell } => {
            user(name, *uid, group.as_deref(), home.as_deref(), shell.as_deref(), target, apply, &mut o)
        }
        Spec::Group { name, gid } => group(name, *gid, target, apply, &mut o),
    };
    o.changes.extend(folders.iter().map(|h| format!("folder {h} created")));
    if let (false, Ok(()), Some((host, what))) = (apply, &result, made) {
        planned.0.extend(folders.into_iter().map(|h| (h, Made::Folder)));
        planned.0.insert(host, what);
    }
    match result {
        Err(e) => {
            o.status = Status::Failed;
            o.error = Some(e);
        }
        Ok(()) if !o.changes.is_empty() => o.status = Status::Changed,
        Ok(()) => {}
    }
    o
}

fn io<'a>(what: &'a str, p: &'a Path) -> impl Fn(std::io::Error) -> String + 'a {
    move |e| format!("{what} {}: {e}", p.display())
}

#[allow(clippy::too_many_arguments)]
fn file(
    p: &Path,
    have: Option<(fs::File, fs::Metadata)>,
    content: &Content,
    mode: Option<u32>,
    sensitive: bool,
    own: &Ownership,
    target: &Target,
    apply: bool,
    o: &mut Outcome,
) -> Result<(), String> {
    use std::io::Read;
    let want = desired_content(content, "source", target)?;
    let (live, meta) = match have {
        Some((mut f, m)) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(io("read", p))?;
            (Some(bytes), Some((f, m)))
        }
        None => (None, None),
    };
    let rewrite = live.as_deref() != Some(want.as_slice());
    if rewrite {
        o.changes.push(if live.is_none() { "created".into() } else { "content".into() });
        o.diff = Some(if sensitive {
            "(content of a sensitive file: not shown)".into()
        } else {
            unified(live.as_deref().unwrap_or_default(), &want, p)
        });
        if apply {
            // Written whole and renamed over: never half a file. The mode and owners kept unless declared.
            let m = meta.as_ref().map(|(_, m)| m);
            let keep = m.map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
            let uid = own.uid.or(m.map(|m| m.uid()));
            let gid = own.gid.or(m.map(|m| m.gid()));
            write_file(p, &want, mode.unwrap_or(keep), uid, gid)?;
        }
    }
    if let (Some((f, m)), Some(want_mode)) = (&meta, mode) {
        let have_mode = m.permissions().mode() & 0o7777;
        if have_mode != want_mode {
            o.changes.push(format!("mode {have_mode:04o} → {want_mode:04o}"));
            if apply && !rewrite {
                f.set_permissions(fs::Permissions::from_mode(want_mode)).map_err(io("chmod", p))?;
            }
        }
    }
    Ok(())
}

fn unified(old: &[u8], new: &[u8], p: &Path) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(a), Ok(b)) => similar::TextDiff::from_lines(a, b)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{} (live)", p.display()), &format!("{} (wanted)", p.display()))
            .to_string(),
        _ => format!("binary content differs ({} → {} bytes)", old.len(), new.len()),
    }
}

fn directory(
    p: &Path,
    have: Option<(fs::File, fs::Metadata)>,
    mode: Option<u32>,
    own: &Ownership,
    apply: bool,
    o: &mut Outcome,
) -> Result<(), String> {
    match have {
        Some((f, m)) => {
            if let Some(want) = mode {
                let have = m.permissions().mode() & 0o7777;
                if have != want {
                    o.changes.push(format!("mode {have:04o} → {want:04o}"));
                    if apply {
                        f.set_permissions(fs::Permissions::from_mode(want)).map_err(io("chmod", p))?;
                    }
                }
            }
            Ok(())
        }
        None => {
            o.changes.push("created".into());
            if apply {
                // One `mkdir` (its parents are there by now): it follows no link at the name it makes.
                fs::create_dir(p).map_err(io("create", p))?;
                // Owner then mode, on the folder just made, opened without following a link.
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                    .open(p)
                    .map_err(io("open", p))?;
                if own.uid.is_some() || own.gid.is_some() {
                    std::os::unix::fs::fchown(&f, own.uid, own.gid).map_err(io("chown", p))?;
                }
                if let Some(want) = mode {
                    f.set_permissions(fs::Permissions::from_mode(want)).map_err(io("chmod", p))?;
                }
            }
            Ok(())
        }
    }
}

fn symlink(
    p: &Path,
    to: &str,
    apply: bool,
    o: &mut Outcome,
    parents: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    match fs::read_link(p) {
        Ok(have) if have == Path::new(to) => return Ok(()),
        Ok(have) => o.changes.push(format!("target {} → {to}", have.display())),
        Err(_) if fs::symlink_metadata(p).is_ok() => {
            return Err(format!("{} exists and is not a symlink", p.display()))
        }
        Err(_) => o.changes.push(format!("created → {to}")),
    }
    parents()?;
    if apply {
        // A new link of a random name in the same folder (made only where nothing is), renamed over.
        let dir = p.parent().ok_or("a link needs a parent folder")?;
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".crew-tmp")
            .make_in(dir, |at| std::os::unix::fs::symlink(to, at))
            .map_err(io("symlink in", dir))?;
        tmp.persist(p).map_err(|e| format!("rename onto {}: {}", p.display(), e.error))?;
    }
    Ok(())
}

/// Runs a shell command on the target (cwd the root, `CREW_ROOT` set); its exit status and output.
fn shell(script: &str, target: &Target) -> Result<(bool, String), String> {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(&target.root)
        .env("CREW_ROOT", &target.root)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text.trim().chars().take(2000).collect()))
}

#[allow(clippy::too_many_arguments)]
fn command(
    run: &str,
    creates: Option<&str>,
    unless: Option<&str>,
    onlyif: Option<&str>,
    refresh_only: bool,
    refresh: bool,
    target: &Target,
    apply: bool,
    o: &mut Outcome,
) -> Result<(), String> {
    if refresh_only && !refresh {
        return Ok(());
    }
    if !refresh_only {
        if creates.is_some_and(|c| under(&target.root, c).exists()) {
            return Ok(());
        }
        if let Some(u) = unless {
            if shell(u, target)?.0 {
                return Ok(());
            }
        }
        if let Some(c) = onlyif {
            if !shell(c, target)?.0 {
                return Ok(());
            }
        }
    }
    if refresh_only {
        o.refreshed = true;
    } else {
        o.changes.push("run".into());
    }
    if apply {
        let (ok, out) = shell(run, target)?;
        if !ok {
            return Err(format!("`{run}` failed: {out}"));
        }
    }
    Ok(())
}

struct ServiceCommands {
    start: String,
    status: String,
    restart: String,
}

impl ServiceCommands {
    fn new(
        name: &str,
        provider: &str,
        start: &Option<String>,
        stop: &Option<String>,
        status: &Option<String>,
        restart: &Option<String>,
    ) -> Self {
        if provider == "systemd" {
            return ServiceCommands {
                start: format!("systemctl start {name}"),
                status: format!("systemctl is-active --quiet {name}"),
                restart: restart.clone().unwrap_or_else(|| format!("systemctl restart {name}")),
            };
        }
        let (start, stop) = (start.clone().unwrap_or_default(), stop.clone().unwrap_or_default());
        ServiceCommands {
            restart: restart.clone().unwrap_or_else(|| format!("{stop}; {start}")),
            start,
            status: status.clone().unwrap_or_default(),
        }
    }
}

fn service(cmds: &ServiceCommands, refresh: bool, target: &Target, apply: bool, o: &mut Outcome) -> Result<(), String> {
    let running = shell(&cmds.status, target)?.0;
    if !running {
        o.changes.push("started".into());
        if apply {
            let (ok, out) = shell(&cmds.start, target)?;
            if !ok {
                return Err(format!("start failed: {out}"));
            }
        }
    } else if refresh {
        // A service started just now already reads its new files: only a running one restarts.
        o.refreshed = true;
        if apply {
            let (ok, out) = shell(&cmds.restart, target)?;
            if !ok {
                return Err(format!("restart failed: {out}"));
            }
        }
    }
    Ok(())
}

/// A file's or folder's wanted owner and group, as ids resolved through the root's own account files. A name
/// that is not there yet but is declared in this run is fine in a plan (`pending`); anywhere else it fails.
struct Ownership {
    uid: Option<u32>,
    gid: Option<u32>,
    /// Names a plan cannot resolve yet because this run creates them: `owner → www`.
    pending: Vec<String>,
}

impl Ownership {
    fn resolve(
        root: &Path,
        owner: &Option<String>,
        group: &Option<String>,
        declared: &HashSet<String>,
        apply: bool,
    ) -> Result<Ownership, String> {
        let mut own = Ownership { uid: None, gid: None, pending: vec![] };
        if let Some(name) = owner {
            match system::user(root, name) {
                Some(u) => own.uid = Some(u.uid),
                None if !apply && declared.contains(&format!("user:{name}")) => {
                    own.pending.push(format!("owner → {name}"))
                }
                None => return Err(format!("owner `{name}`: no such user in {}", root.join("etc/passwd").display())),
            }
        }
        if let Some(name) = group {
            match system::group(root, name) {
                Some(g) => own.gid = Some(g.gid),
                None if !apply && declared.contains(&format!("group:{name}")) => {
                    own.pending.push(format!("group → {name}"))
                }
                None => return Err(format!("group `{name}`: no such group in {}", root.join("etc/group").display())),
            }
        }
        Ok(own)
    }

    /// Compares (and on apply, sets, on the open file) the owner of what is at `p`, before its content or mode;
    /// a path not there yet is created with its owner, and says only `created`.
    fn converge(
        &self,
        p: &Path,
        have: Option<&(fs::File, fs::Metadata)>,
        apply: bool,
        o: &mut Outcome,
    ) -> Result<(), String> {
        let Some((f, m)) = have else { return Ok(()) };
        o.changes.extend(self.pending.iter().cloned());
        let uid = self.uid.filter(|&u| u != m.uid());
        let gid = self.gid.filter(|&g| g != m.gid());
        if let Some(u) = uid {
            o.changes.push(format!("owner {} → {u}", m.uid()));
        }
        if let Some(g) = gid {
            o.changes.push(format!("group {} → {g}", m.gid()));
        }
        if apply && (uid.is_some() || gid.is_some()) {
            std::os::unix::fs::fchown(f, uid, gid).map_err(io("chown", p))?;
        }
        Ok(())
    }
}

fn group(name: &str, gid: Option<u32>, target: &Target, apply: bool, o: &mut Outcome) -> Result<(), String> {
    let mut args = system::prefix_args(&target.root);
    match system::group(&target.root, name) {
        None => {
            o.changes.push("created".into());
            if let Some(g) = gid {
                args.extend(["-g".into(), g.to_string()]);
            }
            args.push(name.into());
            if apply {
                system::exec("groupadd", &args)?;
            }
        }
        Some(have) => {
            if let Some(g) = gid.filter(|&g| g != have.gid) {
                o.changes.push(format!("gid {} → {g}", have.gid));
                args.extend(["-g".into(), g.to_string(), name.into()]);
                if apply {
                    system::exec("groupmod", &args)?;
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn user(
    name: &str,
    uid: Option<u32>,
    group: Option<&str>,
    home: Option<&str>,
    shell: Option<&str>,
    target: &Target,
    apply: bool,
    o: &mut Outcome,
) -> Result<(), String> {
    let root = &target.root;
    let mut args = system::prefix_args(root);
    match system::user(root, name) {
        None => {
            o.changes.push("created".into());
            if let Some(u) = uid {
                args.extend(["-u".into(), u.to_string()]);
            }
            if let Some(g) = group {
                args.extend(["-g".into(), g.into()]);
            }
            if let Some(h) = home {
                args.extend(["-d".into(), h.into()]);
            }
            if let Some(s) = shell {
                args.extend(["-s".into(), s.into()]);
            }
            args.push(name.into());
            if apply {
                system::exec("useradd", &args)?;
            }
        }
        Some(have) => {
            let before = args.len();
            if let Some(u) = uid.filter(|&u| u != have.uid) {
                o.changes.push(format!("uid {} → {u}", have.uid));
                args.extend(["-u".into(), u.to_string()]);
            }
            if let Some(g) = group {
                // The primary group by name: a plan whose group this run creates says so.
                let same = system::group(root, g).is_some_and(|g| g.gid == have.gid);
                if !same {
                    o.changes.push(format!("group → {g}"));
                    args.extend(["-g".into(), g.into()]);
                }
            }
            if let Some(h) = home.filter(|&h| h != have.home) {
                o.changes.push(format!("home {} → {h}", have.home));
                args.extend(["-d".into(), h.into()]);
            }
            if let Some(s) = shell.filter(|&s| s != have.shell) {
                o.changes.push(format!("shell {} → {s}", have.shell));
                args.extend(["-s".into(), s.into()]);
            }
            if args.len() > before {
                args.push(name.into());
                if apply {
                    system::exec("usermod", &args)?;
                }
            }
        }
    }
    Ok(())
}

fn package(
    name: &str,
    version: Option<&str>,
    deb: Option<&Content>,
    target: &Target,
    apply: bool,
    o: &mut Outcome,
) -> Result<(), String> {
    let root = &target.root;
    let have = system::installed(root, name);
    match (&have, version) {
        (Some(h), Some(w)) if h == w => return Ok(()),
        (Some(_), None) => return Ok(()),
        (Some(h), Some(w)) => o.changes.push(format!("version {h} → {w}")),
        (None, w) => o.changes.push(match w {
            Some(w) => format!("installed {w}"),
            None => "installed".into(),
        }),
    }
    let real_root = root == Path::new("/");
    if deb.is_none() && !real_root {
        // apt cannot install into a root prefix; dpkg can, from a .deb.
        return Err(format!(
            "`{name}` comes from the archive, which installs only on a host whose root is /; give `deb = \"...\"` to install it under {}",
            root.display()
        ));
    }
    if !apply {
        return Ok(());
    }
    match deb {
        Some(deb) => {
            let bytes = desired_content(deb, "deb", target)?;
            // Staged in a folder of its own (random name, 0700), removed when dropped: nothing planted in the
            // shared temporary folder is written through.
            let private = tempfile::Builder::new()
                .prefix("crew-deb-")
                .permissions(fs::Permissions::from_mode(0o700))
                .tempdir()
                .map_err(|e| format!("a temporary folder: {e}"))?;
            let tmp = private.path().join("package.deb");
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(io("write", &tmp))?;
            drop(f);
            let mut args = vec![];
            if !real_root {
                args.push(format!("--root={}", root.display()));
            }
            args.extend(["--force-confdef".into(), "--force-confold".into(), "-i".into(), tmp.display().to_string()]);
            let result = system::exec("dpkg", &args);
            drop(private);
            result?;
        }
        None => {
            let what = match version {
                Some(v) => format!("{name}={v}"),
                None => name.to_string(),
            };
            system::exec("apt-get", &["install".into(), "-y".into(), "-q".into(), what])?;
        }
    }
    let now = system::installed(root, name);
    if let (Some(w), Some(n)) = (version, &now) {
        if n != w {
            return Err(format!("installed {name} {n}, but {w} was wanted"));
        }
    }
    if now.is_none() {
        return Err(format!("{name} is still not installed"));
    }
    Ok(())
}
