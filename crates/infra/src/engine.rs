//! The engine on the target: for each resource in converge order, observe the live state (stat and hash in
//! memory), say what would change (with a unified diff for text files), and on apply change it (files written
//! to a temporary file and renamed into place). Refreshes run once, after all of a resource's notifiers; a
//! failed resource skips its dependents only. Every path is under the host's root prefix, which is how tests
//! run without privileges. This module does IO; the model, the order and the templates do not.
//!
//! Not yet here: owners and groups of files, packages, users and groups (refused with a clear message).

use crate::graph::{order, Edge};
use crate::model::{Content, InfraError, Kind, Resource, Spec};
use serde::Serialize;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
            if let Spec::File { content, .. } = &mut r.spec {
                let bytes = desired_content(content, target).map_err(|message| InfraError::At {
                    file,
                    line,
                    key: id,
                    message,
                })?;
                *content = match String::from_utf8(bytes) {
                    Ok(text) => Content::Literal(text),
                    Err(e) => Content::Base64(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
                };
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
        if matches!(r.kind, Kind::Package | Kind::User | Kind::Group) {
            return Err(InfraError::At {
                file: r.file.clone(),
                line: r.line,
                key: r.id(),
                message: format!("{} resources are not supported by this engine yet", r.kind.as_str()),
            });
        }
        if let Spec::File { content, .. } = &r.spec {
            desired_content(content, target).map_err(|message| InfraError::At {
                file: r.file.clone(),
                line: r.line,
                key: r.id(),
                message,
            })?;
        }
    }
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
        let outcome = converge(r, target, apply, refresh);
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

/// `/etc/app.conf` under the root.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn desired_content(content: &Content, target: &Target) -> Result<Vec<u8>, String> {
    use base64::Engine;
    match content {
        Content::Literal(s) => Ok(s.clone().into_bytes()),
        Content::Base64(b) => base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| format!("content: {e}")),
        Content::Source(p) => fs::read(target.repo.join(p)).map_err(|e| format!("source {p}: {e}")),
        Content::Template(p) => {
            let text = fs::read_to_string(target.repo.join(p)).map_err(|e| format!("template {p}: {e}"))?;
            crate::template::render(p, &text, &target.context).map(String::into_bytes)
        }
    }
}

fn converge(r: &Resource, target: &Target, apply: bool, refresh: bool) -> Outcome {
    let mut o = Outcome {
        resource: r.id(),
        status: Status::Unchanged,
        changes: vec![],
        diff: None,
        refreshed: false,
        error: None,
    };
    let result = match &r.spec {
        Spec::File { path, content, mode, sensitive, .. } => {
            file(&under(&target.root, path), content, *mode, *sensitive, target, apply, &mut o)
        }
        Spec::Directory { path, mode, .. } => directory(&under(&target.root, path), *mode, apply, &mut o),
        Spec::Symlink { path, target: to } => symlink(&under(&target.root, path), to, apply, &mut o),
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
        Spec::Package { .. } | Spec::User { .. } | Spec::Group { .. } => Err("not supported by this engine yet".into()),
    };
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

fn file(
    p: &Path,
    content: &Content,
    mode: Option<u32>,
    sensitive: bool,
    target: &Target,
    apply: bool,
    o: &mut Outcome,
) -> Result<(), String> {
    let want = desired_content(content, target)?;
    let meta = fs::symlink_metadata(p).ok();
    let have = match &meta {
        Some(m) if m.is_file() => Some(fs::read(p).map_err(io("read", p))?),
        Some(_) => return Err(format!("{} exists and is not a regular file", p.display())),
        None => None,
    };
    if have.as_deref() != Some(want.as_slice()) {
        o.changes.push(if have.is_none() { "created".into() } else { "content".into() });
        o.diff = Some(if sensitive {
            "(content of a sensitive file: not shown)".into()
        } else {
            unified(have.as_deref().unwrap_or_default(), &want, p)
        });
        if apply {
            let dir = p.parent().ok_or("a file needs a parent folder")?;
            // Written whole to a temporary file in the same folder, then renamed over: never half a file.
            let tmp = dir.join(format!(".{}.crew-tmp", p.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
            fs::write(&tmp, &want).map_err(io("write", &tmp))?;
            let keep = meta.as_ref().map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode.unwrap_or(keep))).map_err(io("chmod", &tmp))?;
            fs::rename(&tmp, p).map_err(io("rename onto", p))?;
        }
    }
    if let (Some(m), Some(want_mode)) = (&meta, mode) {
        let have_mode = m.permissions().mode() & 0o7777;
        if m.is_file() && have_mode != want_mode {
            o.changes.push(format!("mode {have_mode:04o} → {want_mode:04o}"));
            if apply {
                fs::set_permissions(p, fs::Permissions::from_mode(want_mode)).map_err(io("chmod", p))?;
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

fn directory(p: &Path, mode: Option<u32>, apply: bool, o: &mut Outcome) -> Result<(), String> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            if let Some(want) = mode {
                let have = m.permissions().mode() & 0o7777;
                if have != want {
                    o.changes.push(format!("mode {have:04o} → {want:04o}"));
                    if apply {
                        fs::set_permissions(p, fs::Permissions::from_mode(want)).map_err(io("chmod", p))?;
                    }
                }
            }
            Ok(())
        }
        Ok(_) => Err(format!("{} exists and is not a folder", p.display())),
        Err(_) => {
            o.changes.push("created".into());
            if apply {
                fs::create_dir_all(p).map_err(io("create", p))?;
                if let Some(want) = mode {
                    fs::set_permissions(p, fs::Permissions::from_mode(want)).map_err(io("chmod", p))?;
                }
            }
            Ok(())
        }
    }
}

fn symlink(p: &Path, to: &str, apply: bool, o: &mut Outcome) -> Result<(), String> {
    match fs::read_link(p) {
        Ok(have) if have == Path::new(to) => return Ok(()),
        Ok(have) => o.changes.push(format!("target {} → {to}", have.display())),
        Err(_) if fs::symlink_metadata(p).is_ok() => {
            return Err(format!("{} exists and is not a symlink", p.display()))
        }
        Err(_) => o.changes.push(format!("created → {to}")),
    }
    if apply {
        let tmp = p.with_file_name(format!(".{}.crew-tmp", p.file_name().and_then(|n| n.to_str()).unwrap_or("link")));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(to, &tmp).map_err(io("symlink", &tmp))?;
        fs::rename(&tmp, p).map_err(io("rename onto", p))?;
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
