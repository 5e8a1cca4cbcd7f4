//! The steps of a deploy on one host, as shell scripts run by `sh` here (`local:`) or over OpenSSH (`ssh://`),
//! and files moved with rsync. A host's layout: `<path>/releases/<release>/`, `<path>/shared/`, and
//! `<path>/current`, a relative symlink to `releases/<release>` switched atomically (new link, then rename).

use crate::config::Host;
use crate::{DeployError, Result};
use std::path::{Path, PathBuf};
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

/// Where SSH keeps its shared connections (`ControlPath`), for deploys and `crew infra` alike: a folder
/// private to this user, checked by [`private_dir`]. `$XDG_RUNTIME_DIR/crew-ssh` when the session has one,
/// else `crew-ssh-<uid>` in the temporary folder. When that name is taken by someone else (to listen in, or to
/// hand crew a master connection of their own), a fresh private folder of a random name is used instead, for
/// this process. Made once per process.
pub fn control_dir() -> Result<PathBuf> {
    static DIR: std::sync::OnceLock<std::result::Result<PathBuf, String>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let uid = nix::unistd::geteuid().as_raw();
        let (base, dir) = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute()) {
            Some(run) => (run.clone(), run.join("crew-ssh")),
            None => (std::env::temp_dir(), std::env::temp_dir().join(format!("crew-ssh-{uid}"))),
        };
        match private_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(refused) => {
                tracing::warn!("{refused}; using a private folder of this run's own instead");
                use std::os::unix::fs::PermissionsExt;
                let fresh = tempfile::Builder::new()
                    .prefix(&format!("crew-ssh-{uid}-"))
                    .permissions(std::fs::Permissions::from_mode(0o700))
                    .tempdir_in(&base)
                    .map_err(|e| format!("{refused}, and no private folder could be made in {}: {e}", base.display()))?
                    .keep();
                private_dir(&fresh).map(|()| fresh).map_err(|e| e.0)
            }
        }
    })
    .clone()
    .map_err(DeployError)
}

/// Makes `dir` (mode 0700) if it is missing, and checks that it is private to this user: a folder, not a
/// symlink, owned by this user, with no access for its group or others. Anything else is refused, naming the
/// folder and what is wrong: SSH's control sockets there would let someone else use or stand in for crew's
/// connections.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let shown = dir.display();
    let made = match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(DeployError(format!("cannot make the SSH control folder {shown}: {e}"))),
    };
    let m = std::fs::symlink_metadata(dir).map_err(|e| DeployError(format!("SSH control folder {shown}: {e}")))?;
    if m.file_type().is_symlink() {
        return Err(DeployError(format!("SSH control folder {shown} is a symlink: refused")));
    }
    if !m.is_dir() {
        return Err(DeployError(format!("SSH control folder {shown} is not a folder: refused")));
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(DeployError(format!(
            "SSH control folder {shown} belongs to uid {}, not to this user (uid {me}): refused",
            m.uid()
        )));
    }
    if made {
        // Ours, just made (the umask may have taken more than 0700 asked for): exactly 0700.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| DeployError(format!("SSH control folder {shown}: {e}")))?;
    } else if m.mode() & 0o077 != 0 {
        return Err(DeployError(format!(
            "SSH control folder {shown} has mode {:04o}, open to others (it must be 0700): refused",
            m.mode() & 0o7777
        )));
    }
    Ok(())
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
    fn ssh_args(&self) -> Result<Vec<String>> {
        let mut a: Vec<String> =
            ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"].iter().map(|s| s.to_string()).collect();
        // One SSH connection per host, shared by a deploy's several steps (and rsync): a step then costs a
        // round trip, not a new key exchange. The user's own ssh options come first and win.
        a.extend(self.ssh_options.iter().cloned());
        a.extend(
            [
                "-o",
                "ControlMaster=auto",
                "-o",
                &format!("ControlPath={}/%C", control_dir()?.display()),
                "-o",
                "ControlPersist=60",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if let Host::Ssh { port: Some(p), .. } = &self.host {
            a.push("-p".into());
            a.push(p.to_string());
        }
        Ok(a)
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
                c.args(self.ssh_args()?).arg("--").arg(self.destination()).arg(format!("sh -c {}", quote(script)));
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
        // A release never carries a `.git`: the build's checkout has one, and `artifact = "."` would otherwise
        // ship the repository's history to every host.
        cmd.arg("--exclude=/.git");
        if let Some(prev) = previous {
            cmd.arg("--checksum").arg(format!("--link-dest={path}/releases/{prev}"));
        }
        if matches!(self.host, Host::Ssh { .. }) {
            let ssh = std::iter::once("ssh".to_string())
                .chain(self.ssh_args()?.iter().map(|a| quote(a)))
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

#[cfg(test)]
mod tests {
    use super::{private_dir, Target};
    use crate::Host;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_control_folder_is_made_private_and_one_not_ours_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let fresh = d.path().join("fresh");
        private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700, "made 0700");
        private_dir(&fresh).unwrap();

        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&open).unwrap_err().to_string();
        assert!(e.contains("open") && e.contains("mode 0777") && e.contains("refused"), "{e}");
        assert_eq!(mode(&open), 0o777, "refused, not repaired: someone may be listening in already");

        let link = d.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        let e = private_dir(&link).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");

        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(private_dir(&file).unwrap_err().to_string().contains("is not a folder"));

        if nix::unistd::geteuid().is_root() {
            // Someone else's folder, even private to them (CI runs as root, so it can make one).
            let theirs = d.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let e = private_dir(&theirs).unwrap_err().to_string();
            assert!(e.contains("belongs to uid 65534, not to this user (uid 0)"), "{e}");
            assert_eq!(std::fs::symlink_metadata(&theirs).unwrap().uid(), 65534, "left as it was");
        }
    }

    #[tokio::test]
    async fn a_release_never_carries_the_checkouts_git() {
        let d = tempfile::tempdir().unwrap();
        let checkout = d.path().join("src");
        std::fs::create_dir_all(checkout.join(".git/objects")).unwrap();
        std::fs::create_dir_all(checkout.join("lib/.git")).unwrap();
        std::fs::write(checkout.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(checkout.join("index.html"), "<h1>v1</h1>\n").unwrap();
        let host = d.path().join("host");
        let t = Target { host: Host::parse(&format!("local:{}", host.display())).unwrap(), ssh_options: vec![] };
        assert_eq!(t.prepare().await.unwrap(), None);
        t.transfer(&checkout, "r1", None).await.unwrap();
        let release = host.join("releases/r1");
        assert!(release.join("index.html").is_file());
        assert!(!release.join(".git").exists(), "the checkout's .git was shipped");
        assert!(release.join("lib/.git").is_dir(), "only the artifact's own top-level .git is left out");
    }
}
