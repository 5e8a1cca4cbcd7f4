//! The parts of a machine the engine reads and changes beyond plain files, always under the host's root:
//! accounts (read from the root's `etc/passwd` and `etc/group`, changed with `useradd`/`groupadd -R ROOT`),
//! file owners resolved through those files (never through this machine's NSS, which knows nothing of a root
//! prefix), and Debian packages (read from the root's `var/lib/dpkg/status`, installed with `dpkg --root`).

use std::path::Path;
use std::process::Command;

/// One line of `etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One line of `etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

fn read(root: &Path, rel: &str) -> String {
    // A root without the file has no accounts (or packages) yet: that is a state, not an error.
    std::fs::read_to_string(root.join(rel)).unwrap_or_default()
}

pub fn users(root: &Path) -> Vec<User> {
    read(root, "etc/passwd")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7).then(|| User {
                name: f[0].into(),
                uid: f[2].parse().unwrap_or(u32::MAX),
                gid: f[3].parse().unwrap_or(u32::MAX),
                home: f[5].into(),
                shell: f[6].into(),
            })
        })
        .collect()
}

pub fn groups(root: &Path) -> Vec<Group> {
    read(root, "etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3).then(|| Group { name: f[0].into(), gid: f[2].parse().unwrap_or(u32::MAX) })
        })
        .collect()
}

pub fn user(root: &Path, name: &str) -> Option<User> {
    users(root).into_iter().find(|u| u.name == name)
}

pub fn group(root: &Path, name: &str) -> Option<Group> {
    groups(root).into_iter().find(|g| g.name == name)
}

/// `-R ROOT` for the shadow tools, nothing on a real root.
pub fn prefix_args(root: &Path) -> Vec<String> {
    if root == Path::new("/") {
        vec![]
    } else {
        vec!["-R".into(), root.display().to_string()]
    }
}

/// Runs a program with arguments (no shell: names and paths are never re-parsed); its failure in words.
pub fn exec(program: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    let text: String = text.chars().take(1000).collect();
    Err(format!("`{program} {}` failed ({}): {text}", args.join(" "), out.status))
}

/// The installed version of a package, from the root's dpkg status database.
pub fn installed(root: &Path, name: &str) -> Option<String> {
    let status = read(root, "var/lib/dpkg/status");
    for para in status.split("\n\n") {
        let mut package = None;
        let mut state = None;
        let mut version = None;
        for l in para.lines() {
            if let Some(v) = l.strip_prefix("Package: ") {
                package = Some(v.trim());
            } else if let Some(v) = l.strip_prefix("Status: ") {
                state = Some(v.trim());
            } else if let Some(v) = l.strip_prefix("Version: ") {
                version = Some(v.trim());
            }
        }
        if package == Some(name) && state.is_some_and(|s| s.ends_with(" installed")) {
            return Some(version.unwrap_or_default().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_accounts_and_packages_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:!:1500:1501::/srv/www:/bin/false\nbroken\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nwww:x:1501:\n").unwrap();
        std::fs::write(
            root.join("var/lib/dpkg/status"),
            "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2.0\n",
        )
        .unwrap();
        assert_eq!(
            user(root, "www"),
            Some(User {
                name: "www".into(),
                uid: 1500,
                gid: 1501,
                home: "/srv/www".into(),
                shell: "/bin/false".into()
            })
        );
        assert_eq!(group(root, "www").map(|g| g.gid), Some(1501));
        assert_eq!(user(root, "nobody"), None);
        assert_eq!(installed(root, "a").as_deref(), Some("1.0"));
        assert_eq!(installed(root, "b"), None, "removed, config files kept: not installed");
        assert_eq!(installed(root, "c"), None);
        assert_eq!(prefix_args(Path::new("/")), Vec::<String>::new());
    }
}
