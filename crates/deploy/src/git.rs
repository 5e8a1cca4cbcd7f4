//! git, through the `git` program: resolve a revision on trunk, list commits, export a clean tree.

use crate::{DeployError, Result};
use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

/// A commit as the deploy log and `crew pending` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    pub sha: String,
    pub author: String,
    pub subject: String,
}

async fn git(repo: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| DeployError(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(DeployError(format!("git {} in {repo}: {}", args.join(" "), err.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit to deploy: the head of `branch`, or `rev` if it is on `branch`.
pub async fn resolve(repo: &str, branch: &str, rev: Option<&str>) -> Result<String> {
    let head = git(repo, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}^{{commit}}")])
        .await
        .map_err(|_| DeployError(format!("branch `{branch}` not found in {repo}")))?;
    let Some(rev) = rev else { return Ok(head) };
    let sha = git(repo, &["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{rev}^{{commit}}")])
        .await
        .ok()
        .filter(|s| s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| DeployError(format!("revision `{rev}` not found in {repo}")))?;
    let on_branch = Command::new("git")
        .args(["-C", repo, "merge-base", "--is-ancestor", &sha, &head])
        .status()
        .await
        .map_err(|e| DeployError(format!("cannot run git: {e}")))?
        .success();
    if !on_branch {
        return Err(DeployError(format!("revision `{rev}` is not on branch `{branch}`: crew ships trunk")));
    }
    Ok(sha)
}

/// Commits in `to` that `from` lacks, newest first (all of `to`'s history when `from` is `None`, at most 1000).
pub async fn commits(repo: &str, from: Option<&str>, to: &str) -> Result<Vec<Commit>> {
    let range = match from {
        Some(f) => format!("{f}..{to}"),
        None => to.to_string(),
    };
    let out = git(repo, &["log", "--max-count=1000", "--format=%H%x1f%an%x1f%s", &range]).await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, '\u{1f}');
            Some(Commit {
                sha: p.next()?.to_string(),
                author: p.next()?.to_string(),
                subject: p.next().unwrap_or("").to_string(),
            })
        })
        .collect())
}

/// Whether `ancestor` is `descendant` or one of its ancestors.
pub async fn is_ancestor(repo: &str, ancestor: &str, descendant: &str) -> bool {
    Command::new("git")
        .args(["-C", repo, "merge-base", "--is-ancestor", ancestor, descendant])
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Writes the exact tree of `sha` into `dest` (never the working tree): `git archive`, then `tar -x`.
pub async fn export(repo: &str, sha: &str, dest: &Path) -> Result<()> {
    tokio::fs::create_dir_all(dest).await.map_err(|e| DeployError(format!("cannot create {}: {e}", dest.display())))?;
    let tar = dest.with_extension("tar");
    git(repo, &["archive", "--format=tar", &format!("--output={}", tar.display()), sha]).await?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(dest)
        .output()
        .await
        .map_err(|e| DeployError(format!("cannot run tar: {e}")))?;
    let _ = tokio::fs::remove_file(&tar).await;
    if !out.status.success() {
        return Err(DeployError(format!("unpacking {sha}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// The short form people read: 7 characters.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}
