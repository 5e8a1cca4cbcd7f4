//! The steps of a deploy on one host, as shell scripts run by `sh` here (`local:`) or over OpenSSH (`ssh://`),
//! and files moved with rsync. A host's layout: `<path>/releases/<release>/`, `<path>/shared/`, and
//! `<path>/current`, a relative symlink to `releases/<release>` switched atomically (new link, then rename).

use crate::config::Host;
use crate::{DeployError, Result};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: Host,
    /// Extra arguments for `ssh` (from `ssh_options`), before crew's own.
    pub ssh_options: Vec<String>,
}

/// Where SSH keeps its shared connections: private to this user.
fn control_dir() -> String {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mut dir = std::env::temp_dir().join(format!("crew-ssh-{uid}"));
        let _ = std::fs::create_dir(&dir);
        // Someone else may have made it first, to listen in: then a private folder of our own.
        let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid().to_string() == uid);
        if !ours {
            dir = std::env::temp_dir().join(format!("crew-ssh-{uid}-{}", std::process::id()));
            let _ = std::fs::create_dir(&dir);
        }
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        dir.display().to_string()
    })
    .clone()
}

/// A release name as crew makes them (`20261126160357123-8e4d0b1`): letters, digits, `.`, `_`, `-`, not
/// starting with `-` or `.`. Anything else (say, a `current` link edited by hand) is refused before it reaches
/// a script.
pub fn check_release(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DeployError(format!("`{name}` is not a release name")))
    }
}

/// Quotes a string for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Target {
    fn ssh_args(&self) -> Vec<String> {
        let mut a: Vec<String> =
            ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"].iter().map(|s| s.to_string()).collect();
        // One SSH connection per host, shared by a deploy's several steps (and rsync): a step then costs a
        // round trip, not a new key exchange. The user's own ssh options come first and win.
        a.extend(self.ssh_options.iter().cloned());
        a.extend(
            ["-o", "ControlMaster=auto", "-o", &format!("ControlPath={}/%C", control_dir()), "-o", "ControlPersist=60"]
                .iter()
                .map(|s| s.to_string()),
        );
        if let Host::Ssh { port: Some(p), .. } = &self.host {
            a.push("-p".into());
            a.push(p.to_string());
        }
        a
    }

    fn destination(&self) -> String {
        match &self.host {
            Host::Ssh { user: Some(u), host, .. } => format!("{u}@{host}"),
            Host::Ssh { user: None, host, .. } => host.clone(),
            Host::Local { .. } => String::new(),
        }
    }

    /// Runs a shell script on the host; returns its standard output, or an error with its standard error.
    pub async fn run(&self, script: &str) -> Result<String> {
        let mut cmd = match &self.host {
            Host::Local { .. } => {
                let mut c = Command::new("sh");
                c.args(["-c", script]);
                c
            }
            Host::Ssh { .. } => {
                let mut c = Command::new("ssh");
                c.args(self.ssh_args()).arg("--").arg(self.destination()).arg(format!("sh -c {}", quote(script)));
                c
            }
        };
        let out = cmd
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| DeployError(format!("{}: cannot run: {e}", self.host)))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            let err = if err.is_empty() {
                format!("exited with {}", out.status)
            } else {
                err.lines().last().unwrap_or(err).to_string()
            };
            return Err(DeployError(format!("{}: {err}", self.host)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn p(&self) -> String {
        quote(&self.host.path())
    }

    /// Makes the folders; returns the release `current` points to, if any.
    pub async fn prepare(&self) -> Result<Option<String>> {
        let out = self
            .run(&format!(
                "set -e; P={}; mkdir -p \"$P/releases\" \"$P/shared\"; if [ -L \"$P/current\" ]; then readlink \"$P/current\"; fi",
                self.p()
            ))
            .await?;
        match out.rsplit('/').next().filter(|s| !s.is_empty()) {
            Some(r) => check_release(r).map(|_| Some(r.to_string())),
            None => Ok(None),
        }
    }

    /// Copies the artifact into `releases/<release>/` with rsync, hard-linking files unchanged since `previous`.
    pub async fn transfer(&self, artifact: &Path, release: &str, previous: Option<&str>) -> Result<()> {
        check_release(release)?;
        let path = self.host.path();
        let mut cmd = Command::new("rsync");
        // Recursive, links, permissions, devices; not times: every build writes fresh files, so times never
        // match the previous release and, as a preserved attribute, would stop rsync from hard-linking
        // unchanged files. With --checksum it compares contents instead: an unchanged file becomes a hard link
        // to the previous release's (no copy, no transfer).
        cmd.args(["-rlpD", "--delete"]);
        if let Some(prev) = previous {
            cmd.arg("--checksum").arg(format!("--link-dest={path}/releases/{prev}"));
        }
        if matches!(self.host, Host::Ssh { .. }) {
            let ssh = std::iter::once("ssh".to_string())
                .chain(self.ssh_args().iter().map(|a| quote(a)))
                .collect::<Vec<_>>()
                .join(" ");
            cmd.args(["-e", &ssh]);
        }
        cmd.arg(format!("{}/", artifact.display()));
        let dest = format!("{path}/releases/{release}/");
        match &self.host {
            Host::Local { .. } => cmd.arg(dest),
            Host::Ssh { .. } => cmd.arg(format!("{}:{dest}", self.destination())),
        };
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| DeployError(format!("{}: cannot run rsync: {e}", self.host)))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(DeployError(format!(
                "{}: rsync failed: {}",
                self.host,
                err.trim().lines().next().unwrap_or("")
            )));
        }
        Ok(())
    }

    /// Points `current` at `releases/<release>` atomically: a new link, renamed over the old one. Links
    /// `shared/` into the release first, unless the artifact has its own.
    pub async fn switch(&self, release: &str) -> Result<()> {
        check_release(release)?;
        self.run(&format!(
            "set -e; P={}; R=\"$P/releases/{release}\"; test -d \"$R\" || {{ echo \"release {release} is not on this host\" >&2; exit 1; }}; \
             [ -e \"$R/shared\" ] || [ -L \"$R/shared\" ] || ln -s ../../shared \"$R/shared\"; \
             ln -sfn \"releases/{release}\" \"$P/.current-{release}\"; mv -Tf \"$P/.current-{release}\" \"$P/current\"",
            self.p()
        ))
        .await
        .map(|_| ())
    }

    /// Removes `current` (switching back a host whose first release failed).
    pub async fn unswitch(&self) -> Result<()> {
        self.run(&format!("rm -f {}/current", self.p())).await.map(|_| ())
    }

    /// Runs the restart command in the current release's folder.
    pub async fn restart(&self, command: &str) -> Result<()> {
        self.run(&format!("cd {}/current && {command}", self.p())).await.map(|_| ())
    }

    /// The releases on the host, oldest first (names sort by time).
    pub async fn releases(&self) -> Result<Vec<String>> {
        let out = self.run(&format!("ls -1 {}/releases 2>/dev/null | sort || true", self.p())).await?;
        Ok(out.lines().map(String::from).filter(|l| !l.is_empty()).collect())
    }

    /// Keeps the newest `keep` releases, and never the one `current` points to nor `protect` (the release a
    /// rollback would go back to).
    pub async fn clean(&self, keep: usize, protect: Option<&str>) -> Result<()> {
        let protect = protect.map(quote).unwrap_or_else(|| "''".into());
        self.run(&format!(
            "P={}; keep={protect}; cur=$(basename \"$(readlink \"$P/current\")\"); ls -1 \"$P/releases\" | sort | head -n -{keep} | \
             while read -r r; do [ \"$r\" = \"$cur\" ] || [ \"$r\" = \"$keep\" ] || rm -rf \"$P/releases/$r\"; done",
            self.p()
        ))
        .await
        .map(|_| ())
    }

    /// Removes a release that never went live (a deploy that failed before or after switching back).
    pub async fn discard(&self, release: &str) -> Result<()> {
        check_release(release)?;
        self.run(&format!(
            "P={}; [ \"$(basename \"$(readlink \"$P/current\")\")\" = {r} ] || rm -rf \"$P/releases/\"{r}",
            self.p(),
            r = quote(release)
        ))
        .await
        .map(|_| ())
    }

    /// Whether the host has `releases/<release>`.
    pub async fn has_release(&self, release: &str) -> Result<bool> {
        check_release(release)?;
        let out = self.run(&format!("if [ -d {}/releases/{} ]; then echo yes; fi", self.p(), quote(release))).await?;
        Ok(out == "yes")
    }
}

/// Polls `url` every second until it answers `expect` or `timeout` passes (Kamal's `/up`, the same way).
pub async fn health(url: &str, expect: u16, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    let end = Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(r) if r.status().as_u16() == expect => return Ok(()),
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => format!("{e}"),
        };
        if Instant::now() >= end {
            return Err(DeployError(format!(
                "health check {url} failed for {}s: {last} (expected {expect})",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1).min(end.saturating_duration_since(Instant::now()))).await;
    }
}
