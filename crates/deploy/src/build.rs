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
    if dir.join("complete").exists() && artifact.is_dir() {
        journal.line(format!("build: reusing the build of {}", git::short(sha)));
        return Ok(artifact);
    }
    let work = builds.join(&cfg.app.name).join(format!("{sha}.building-{}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&work).await;
    let src = work.join("src");
    journal.line(format!("build: exporting {} from {}", git::short(sha), cfg.repo));
    git::export(&cfg.repo, sha, &src).await?;
    journal.line(format!("build: $ {}", cfg.build.command));
    run_logged(&cfg.build.command, &src, &[("CREW_REVISION", sha), ("CREW_APP", &cfg.app.name), ("CREW_ENVIRONMENT", environment)], "build", journal)
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

/// Runs `sh -c command` in `dir`, each output line to the journal with `prefix`; an error names the exit status.
pub async fn run_logged(command: &str, dir: &Path, env: &[(&str, &str)], prefix: &str, journal: &dyn Journal) -> Result<()> {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DeployError(format!("cannot start `{command}`: {e}")))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
    let (mut out_done, mut err_done) = (false, false);
    while !(out_done && err_done) {
        tokio::select! {
            l = out.next_line(), if !out_done => match l { Ok(Some(l)) => journal.line(format!("{prefix}: {l}")), _ => out_done = true },
            l = err.next_line(), if !err_done => match l { Ok(Some(l)) => journal.line(format!("{prefix}: {l}")), _ => err_done = true },
        }
    }
    let status = child.wait().await.map_err(|e| DeployError(format!("`{command}`: {e}")))?;
    if !status.success() {
        return Err(DeployError(format!("`{command}` exited with {status}")));
    }
    Ok(())
}
