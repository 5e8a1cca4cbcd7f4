//! Build once per commit: a clean export of the commit, the build command, the artifact kept by commit and
//! reused by every later deploy of that commit, to any environment.

use crate::config::DeployConfig;
use crate::{git, DeployError, Journal, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The artifact folder of `sha` (inside the build's checkout), building it first unless an earlier deploy did.
pub async fn ensure(
    cfg: &DeployConfig,
    builds: &Path,
    sha: &str,
    environment: &str,
    journal: &dyn Journal,
) -> Result<PathBuf> {
    let dir = builds.join(&cfg.app.name).join(sha);
    let artifact = dir.join("src").join(&cfg.build.artifact);
    // One build per commit at a time in this server: a second deploy of the same commit waits, then reuses.
    let lock = commit_lock(&dir);
    let _building = lock.lock().await;
    if dir.join("complete").exists() && artifact.is_dir() {
        journal.line(format!("build: reusing the build of {}", git::short(sha)));
        return Ok(artifact);
    }
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = builds.join(&cfg.app.name).join(format!("{sha}.building-{}-{n}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&work).await;
    let src = work.join("src");
    journal.line(format!("build: exporting {} from {}", git::short(sha), cfg.repo));
    git::export(&cfg.repo, sha, &src).await?;
    journal.line(format!("build: $ {}", cfg.build.command));
    let vars = [("CREW_REVISION", sha), ("CREW_APP", cfg.app.name.as_str()), ("CREW_ENVIRONMENT", environment)];
    run_logged(&cfg.build.command, &src, &vars, crate::config::span(&cfg.build.timeout), "build", journal)
        .await
        .map_err(|e| DeployError(format!("build failed: {e}")))?;
    let produced = src.join(&cfg.build.artifact);
    if !produced.is_dir() {
        return Err(DeployError(format!(
            "build did not produce the artifact folder `{}` (build.artifact) with `{}`",
            cfg.build.artifact, cfg.build.command
        )));
    }
    // The checkout stays with the artifact: hooks run in it.
    let io = |e: std::io::Error| DeployError(format!("storing the build in {}: {e}", dir.display()));
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::rename(&work, &dir).await.map_err(io)?;
    tokio::fs::write(dir.join("complete"), sha).await.map_err(io)?;
    journal.line(format!("build: {} built", git::short(sha)));
    Ok(artifact)
}

/// The lock of one commit's build folder.
fn commit_lock(dir: &Path) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let mut map = LOCKS.get_or_init(Default::default).lock().expect("build locks");
    map.entry(dir.to_path_buf()).or_default().clone()
}

/// Runs `sh -c command` in `dir`, each output line to the journal with `prefix`; an error names the exit status.
pub async fn run_logged(
    command: &str,
    dir: &Path,
    env: &[(&str, &str)],
    timeout: std::time::Duration,
    prefix: &str,
    journal: &dyn Journal,
) -> Result<()> {
    match tokio::time::timeout(timeout, run_logged_inner(command, dir, env, prefix, journal)).await {
        Ok(r) => r,
        Err(_) => Err(DeployError(format!("`{command}` did not finish in {}s and was stopped", timeout.as_secs()))),
    }
}

async fn run_logged_inner(
    command: &str,
    dir: &Path,
    env: &[(&str, &str)],
    prefix: &str,
    journal: &dyn Journal,
) -> Result<()> {
    let mut child = Command::new("sh")
        .kill_on_drop(true)
        .args(["-c", command])
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DeployError(format!("cannot start `{command}`: {e}")))?;
    // Bytes, not strings: output that is not UTF-8 must not stop the reading (the build would block on a full
    // pipe); it is shown with replacement characters.
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut err = BufReader::new(child.stderr.take().expect("piped"));
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let (mut out_done, mut err_done) = (false, false);
    let show = |buf: &mut Vec<u8>| {
        let line = String::from_utf8_lossy(buf).trim_end_matches(['\n', '\r']).to_string();
        buf.clear();
        journal.line(format!("{prefix}: {line}"));
    };
    while !(out_done && err_done) {
        tokio::select! {
            n = out.read_until(b'\n', &mut out_buf), if !out_done => match n { Ok(n) if n > 0 => show(&mut out_buf), _ => out_done = true },
            n = err.read_until(b'\n', &mut err_buf), if !err_done => match n { Ok(n) if n > 0 => show(&mut err_buf), _ => err_done = true },
        }
    }
    let status = child.wait().await.map_err(|e| DeployError(format!("`{command}`: {e}")))?;
    if !status.success() {
        return Err(DeployError(format!("`{command}` exited with {status}")));
    }
    Ok(())
}
