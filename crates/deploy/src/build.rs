//! Build once per commit: a clean checkout of the commit (with `.git`, so the build can ask git for its version),
//! the build command, the artifact kept by commit and reused by every later deploy of that commit, to any
//! environment. Builds and hooks run a trunk committer's files on the crew server, so they get a clean
//! environment ([`Shell`]), run as `[build] user` when set, and their artifact must stay inside the build
//! ([`check_artifact`]).

use crate::config::{BuildUser, DeployConfig, BUILD_VARIABLES};
use crate::{git, DeployError, Journal, Result};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How builds and hooks run: the environment they get and the user they run as.
#[derive(Debug, Clone)]
pub struct Shell {
    env: Vec<(String, String)>,
    user: Option<BuildUser>,
}

impl Shell {
    /// The shell of a build or hook of `sha` for `environment`: PATH, HOME, LANG, crew's build variables and
    /// the variables `[build] env` names, nothing else of the server's environment (its database URL, chat
    /// passwords and webhook URLs are not the build's).
    pub fn new(cfg: &DeployConfig, sha: &str, environment: &str) -> Shell {
        let user = cfg.build_user.clone();
        let var = |name: &str| std::env::var(name).ok();
        let home = match &user {
            Some(u) => Some(u.home.display().to_string()),
            None => var("HOME"),
        };
        let mut env = vec![("PATH".to_string(), var("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))];
        env.extend(home.map(|h| ("HOME".to_string(), h)));
        env.extend(var("LANG").map(|l| ("LANG".to_string(), l)));
        for (name, value) in BUILD_VARIABLES.iter().zip([sha, cfg.app.name.as_str(), environment]) {
            env.push((name.to_string(), value.to_string()));
        }
        for name in &cfg.build.env {
            if let Some(v) = var(name) {
                env.retain(|(n, _)| n != name);
                env.push((name.clone(), v));
            }
        }
        Shell { env, user }
    }

    /// Hands `path` and everything under it to the build user (if any), so the build can write there. Links
    /// are changed themselves, never followed: a committed symlink must not hand the build a server file.
    fn give(&self, path: &Path) -> Result<()> {
        let Some(u) = &self.user else { return Ok(()) };
        let io =
            |p: &Path, e: std::io::Error| DeployError(format!("giving {} to build.user {}: {e}", p.display(), u.name));
        let mut todo = vec![path.to_path_buf()];
        while let Some(p) = todo.pop() {
            std::os::unix::fs::lchown(&p, Some(u.uid), Some(u.gid)).map_err(|e| io(&p, e))?;
            if std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?.is_dir() {
                for entry in std::fs::read_dir(&p).map_err(|e| io(&p, e))? {
                    todo.push(entry.map_err(|e| io(&p, e))?.path());
                }
            }
        }
        Ok(())
    }
}

/// The artifact folder of `sha` (inside the build's checkout), building it first unless an earlier deploy did.
pub async fn ensure(
    cfg: &DeployConfig,
    builds: &Path,
    sha: &str,
    environment: &str,
    journal: &dyn Journal,
) -> Result<PathBuf> {
    let dir = builds.join(&cfg.app.name).join(sha);
    let shell = Shell::new(cfg, sha, environment);
    // One build per commit at a time in this server: a second deploy of the same commit waits, then reuses.
    let lock = commit_lock(&dir);
    let _building = lock.lock().await;
    if dir.join("complete").exists() && dir.join("src").join(&cfg.build.artifact).is_dir() {
        journal.line(format!("build: reusing the build of {}", git::short(sha)));
        // The hooks run in the checkout as the build user: a build kept from before `[build] user` is theirs too.
        shell.give(&dir.join("src"))?;
        return check_artifact(&dir.join("src"), &cfg.build.artifact);
    }
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = builds.join(&cfg.app.name).join(format!("{sha}.building-{}-{n}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&work).await;
    let src = work.join("src");
    journal.line(format!("build: checking out {} from {}", git::short(sha), cfg.repo));
    // A build user gets a checkout with its own copy of the history: it may not be able to read the repository.
    let objects = if shell.user.is_some() { git::Objects::Copied } else { git::Objects::Shared };
    git::checkout(&cfg.repo, sha, &src, objects).await?;
    // crew runs no git in the checkout from here on: its `.git` is the build's (and the build user's) to change.
    shell.give(&work)?;
    journal.line(format!("build: $ {}", cfg.build.command));
    run_logged(&cfg.build.command, &src, &shell, crate::config::span(&cfg.build.timeout), "build", journal)
        .await
        .map_err(|e| DeployError(format!("build failed: {e}")))?;
    let produced = src.join(&cfg.build.artifact);
    if !produced.is_dir() {
        return Err(DeployError(format!(
            "build did not produce the artifact folder `{}` (build.artifact) with `{}`",
            cfg.build.artifact, cfg.build.command
        )));
    }
    // Checked before it is kept: a build that links out of itself is never stored, so never reused.
    check_artifact(&src, &cfg.build.artifact)?;
    // The checkout stays with the artifact: hooks run in it.
    let io = |e: std::io::Error| DeployError(format!("storing the build in {}: {e}", dir.display()));
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::rename(&work, &dir).await.map_err(io)?;
    tokio::fs::write(dir.join("complete"), sha).await.map_err(io)?;
    journal.line(format!("build: {} built", git::short(sha)));
    check_artifact(&dir.join("src"), &cfg.build.artifact)
}

/// The artifact folder `artifact` of the checkout `src`, as a path without symlinks, once it is certain that
/// neither it nor anything in it is a symlink leading outside the checkout: rsync follows the folder itself
/// (`dist -> /` would ship the server's disk), and a link inside it would reach the hosts pointing at the
/// server's files. Links within the checkout are fine. Call it right before shipping, after the hooks.
pub fn check_artifact(src: &Path, artifact: &str) -> Result<PathBuf> {
    let io = |p: &Path, e: std::io::Error| DeployError(format!("checking the artifact {}: {e}", p.display()));
    let root = std::fs::canonicalize(src).map_err(|e| io(src, e))?;
    let folder = src.join(artifact);
    let real = std::fs::canonicalize(&folder).map_err(|e| io(&folder, e))?;
    if !real.starts_with(&root) {
        return Err(DeployError(format!(
            "the artifact folder `{artifact}` (build.artifact) is or passes through a symlink leading outside the build \
             (to {}): crew ships only what the build made",
            real.display()
        )));
    }
    let mut todo = vec![real.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let path = entry.map_err(|e| io(&dir, e))?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
            if meta.is_dir() {
                todo.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
                let lands = match std::fs::canonicalize(&path) {
                    Ok(p) => p,
                    // Dangling: where it would point once its target exists.
                    Err(_) => normalize(&dir.join(&target)),
                };
                if !lands.starts_with(&root) {
                    let shown = Path::new(artifact).join(path.strip_prefix(&real).unwrap_or(&path));
                    return Err(DeployError(format!(
                        "`{}` in the artifact is a symlink to `{}`, outside the build: crew ships only what the build made",
                        shown.display(),
                        target.display()
                    )));
                }
            }
        }
    }
    Ok(real)
}

/// `path` with `.` and `..` resolved by name.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The lock of one commit's build folder.
fn commit_lock(dir: &Path) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let mut map = LOCKS.get_or_init(Default::default).lock().expect("build locks");
    map.entry(dir.to_path_buf()).or_default().clone()
}

/// Runs `sh -c command` in `dir` with `shell`'s environment and user, each output line to the journal with
/// `prefix`; an error names the exit status.
pub async fn run_logged(
    command: &str,
    dir: &Path,
    shell: &Shell,
    timeout: std::time::Duration,
    prefix: &str,
    journal: &dyn Journal,
) -> Result<()> {
    match tokio::time::timeout(timeout, run_logged_inner(command, dir, shell, prefix, journal)).await {
        Ok(r) => r,
        Err(_) => Err(DeployError(format!("`{command}` did not finish in {}s and was stopped", timeout.as_secs()))),
    }
}

async fn run_logged_inner(command: &str, dir: &Path, shell: &Shell, prefix: &str, journal: &dyn Journal) -> Result<()> {
    let mut cmd = Command::new("sh");
    cmd.kill_on_drop(true)
        .args(["-c", command])
        .current_dir(dir)
        .env_clear()
        .envs(shell.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = &shell.user {
        // The standard library drops root's supplementary groups when it sets the uid.
        cmd.uid(u.uid).gid(u.gid);
    }
    let mut child = cmd.spawn().map_err(|e| match &shell.user {
        Some(u) if e.kind() == std::io::ErrorKind::PermissionDenied => DeployError(format!(
            "cannot start `{command}` as build.user {} in {}: {e} (that user must be able to reach the folder: \
             every folder above it needs search permission for it)",
            u.name,
            dir.display()
        )),
        _ => DeployError(format!("cannot start `{command}`: {e}")),
    })?;
    let out = BufReader::new(child.stdout.take().expect("piped"));
    let err = BufReader::new(child.stderr.take().expect("piped"));
    // Both pipes are read to their end at once (a build blocks on a full pipe otherwise).
    tokio::join!(pump(out, prefix, journal), pump(err, prefix, journal));
    let status = child.wait().await.map_err(|e| DeployError(format!("`{command}`: {e}")))?;
    if !status.success() {
        return Err(DeployError(format!("`{command}` exited with {status}")));
    }
    Ok(())
}

/// Sends each line of `reader` to the journal, until its end. Bytes, not strings: output that is not UTF-8 must
/// not stop the reading; it is shown with replacement characters. A line longer than [`crate::LINE_LIMIT`] is
/// cut as it is read: the rest up to its newline is counted, never held.
async fn pump(mut reader: impl AsyncBufRead + Unpin, prefix: &str, journal: &dyn Journal) {
    let mut line = Vec::new();
    let mut cut = 0usize;
    let show = |line: &mut Vec<u8>, cut: &mut usize| {
        let mut text = format!("{prefix}: {}", String::from_utf8_lossy(line).trim_end_matches(['\n', '\r']));
        if *cut > 0 {
            text.push_str(&format!(" […{cut} more bytes cut: a log line keeps {}]", crate::LINE_LIMIT));
        }
        journal.line(crate::cut_line(text));
        line.clear();
        *cut = 0;
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(b) => b,
        };
        let (chunk, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = crate::LINE_LIMIT.saturating_sub(line.len());
        let keep = chunk.len().min(room);
        line.extend_from_slice(&chunk[..keep]);
        cut += chunk.len() - keep;
        let used = chunk.len();
        reader.consume(used);
        if ends {
            show(&mut line, &mut cut);
        }
    }
    if !line.is_empty() || cut > 0 {
        show(&mut line, &mut cut);
    }
}
