//! git, through the `git` program: resolve a revision on trunk, list commits, check out a commit for its build.

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

/// Where a build's checkout finds the repository's objects (see [`checkout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objects {
    /// Read from the repository through `.git/objects/info/alternates` (`git clone --shared`): nothing copied.
    Shared,
    /// Copied into the checkout's own `.git` (`git clone --no-hardlinks`): a checkout that needs nothing of the
    /// repository once made.
    Copied,
}

/// Checks out exactly `sha` into `dest` (which must not exist yet), detached, with a `.git` of its own, so the
/// build can run `git rev-parse HEAD`, `git describe` or a Makefile that stamps the version. It only reads the
/// repository: its working tree, index and `.git` are never written, and nothing uncommitted reaches `dest`.
///
/// A clone rather than `git worktree add --detach`: a worktree records itself in the repository's own
/// `.git/worktrees` (an entry to prune for every build folder, kept as long as the build is) and shares the
/// repository's config, hooks and refs with the build, which runs a committer's files; a clone has its own
/// `.git`, made afresh (no config or hooks of the repository's), and writes nothing outside `dest`.
///
/// [`Objects::Shared`] costs nothing but needs the repository readable by whoever runs git in `dest`, and its
/// objects kept: a `gc` there removes only what trunk no longer reaches. [`Objects::Copied`] is for a build run
/// as another user, who may not be able to read the repository; never git's default hard links for a local
/// clone, since the checkout is then handed to that user, and changing a hard link's owner changes the
/// repository's own object file.
///
/// The `export-ignore` and `export-subst` attributes are `git archive`'s and do not apply: the build sees the
/// commit's files as committed, and asks git itself for what `export-subst` would have stamped.
pub async fn checkout(repo: &str, sha: &str, dest: &Path, objects: Objects) -> Result<()> {
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| DeployError(format!("cannot create {}: {e}", parent.display())))?;
    }
    let how = match objects {
        Objects::Shared => "--shared",
        Objects::Copied => "--no-hardlinks",
    };
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-checkout", how, "--", repo])
        .arg(dest)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| DeployError(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(DeployError(format!("git clone {how} {repo} into {}: {}", dest.display(), err.trim())));
    }
    let dir = dest.display().to_string();
    git(&dir, &["checkout", "--quiet", "--detach", sha]).await?;
    Ok(())
}

/// The short form people read: 7 characters.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}
