//! Links planted by someone who can write a managed folder (`/srv/www` owned by `www`): the engine, running as
//! root, never writes, chmods or chowns through a link no role declares, whether it sits at the temporary name,
//! at a declared file, at a declared folder or above them. Run as root (as CI does), so the chown paths run.

use crew_infra::engine::{run, Outcome, Report, Status, Target};
use crew_infra::parse_role;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn must_be_root() {
    let id = std::process::Command::new("id").arg("-u").output().unwrap();
    let euid = String::from_utf8_lossy(&id.stdout).trim().to_string();
    assert_eq!(euid, "0", "these tests chown: run them as root (scripts/test does)");
}

/// A root with the account `www` (1500) and a folder `/srv/www` it owns, and outside the root a victim file
/// (`/etc/shadow`, say: root's, 0640) and a victim folder (root's, 0700).
struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
    victim: PathBuf,
    victim_dir: PathBuf,
}

fn machine() -> Machine {
    must_be_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("srv/www")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nwww:x:1500:1500::/srv/www:/bin/sh\n")
        .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nwww:x:1500:\n").unwrap();
    std::os::unix::fs::chown(root.join("srv/www"), Some(1500), Some(1500)).unwrap();
    let victim = dir.path().join("shadow");
    std::fs::write(&victim, "root:secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
    let victim_dir = dir.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    Machine { _dir: dir, root, victim, victim_dir }
}

impl Machine {
    fn target(&self) -> Target {
        Target { root: self.root.clone(), repo: self.root.clone(), context: serde_json::json!({}) }
    }

    fn victims_untouched(&self) {
        assert_eq!(std::fs::read_to_string(&self.victim).unwrap(), "root:secret\n", "the victim's content");
        let m = std::fs::symlink_metadata(&self.victim).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 0), "the victim's mode and owner");
        let d = std::fs::symlink_metadata(&self.victim_dir).unwrap();
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o700, 0, 0), "the victim folder's mode and owner");
        assert_eq!(std::fs::read_dir(&self.victim_dir).unwrap().count(), 0, "nothing written into the victim folder");
    }

    /// Plants a link at `at` (under the root) to `to`, as `www` would: the link is www's.
    fn plant(&self, at: &str, to: &Path) -> PathBuf {
        let p = self.root.join(at);
        std::os::unix::fs::symlink(to, &p).unwrap();
        std::os::unix::fs::lchown(&p, Some(1500), Some(1500)).unwrap();
        p
    }
}

fn outcome<'a>(r: &'a Report, id: &str) -> &'a Outcome {
    r.resources.iter().find(|o| o.resource == id).unwrap_or_else(|| panic!("no {id} in {r:?}"))
}

/// The planted link is still there, unchanged (its target and its owner): crew neither followed nor adopted it.
fn link_untouched(p: &Path, to: &Path) {
    assert_eq!(std::fs::read_link(p).unwrap(), to, "{}", p.display());
    let m = std::fs::symlink_metadata(p).unwrap();
    assert_eq!((m.uid(), m.gid()), (1500, 1500), "the link's own owner: {}", p.display());
}

#[test]
fn a_link_planted_at_the_temporary_name_is_not_followed() {
    let m = machine();
    let tmp = m.plant("srv/www/.app.conf.crew-tmp", &m.victim);
    let rs = parse_role(
        "roles/web.toml",
        "[[file]]\npath = \"/srv/www/app.conf\"\ncontent = \"listen 80\\n\"\nmode = \"0644\"\nowner = \"www\"\n",
    )
    .unwrap()
    .resources;
    let r = run(&rs, &m.target(), true).unwrap();
    assert_eq!(outcome(&r, "file:/srv/www/app.conf").status, Status::Changed, "{r:?}");
    m.victims_untouched();
    link_untouched(&tmp, &m.victim);
    let conf = m.root.join("srv/www/app.conf");
    let meta = std::fs::symlink_metadata(&conf).unwrap();
    assert!(meta.is_file());
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o644, 1500));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "listen 80\n");
    // A second apply with a changed content (a file now there) goes the same way.
    let rs2 = parse_role("roles/web.toml", "[[file]]\npath = \"/srv/www/app.conf\"\ncontent = \"listen 81\\n\"\n")
        .unwrap()
        .resources;
    run(&rs2, &m.target(), true).unwrap();
    m.victims_untouched();
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "listen 81\n");
    let names: Vec<String> = std::fs::read_dir(m.root.join("srv/www"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left behind: {names:?}");
}

#[test]
fn a_link_where_a_file_is_declared_is_refused_and_left_alone() {
    let m = machine();
    let link = m.plant("srv/www/app.conf", &m.victim);
    let rs = parse_role(
        "roles/web.toml",
        "[[file]]\npath = \"/srv/www/app.conf\"\ncontent = \"listen 80\\n\"\nmode = \"0600\"\nowner = \"www\"\n",
    )
    .unwrap()
    .resources;
    for apply in [false, true] {
        let r = run(&rs, &m.target(), apply).unwrap();
        let o = outcome(&r, "file:/srv/www/app.conf");
        assert_eq!(o.status, Status::Failed, "{o:?}");
        let e = o.error.as_deref().unwrap();
        assert!(e.contains("srv/www/app.conf") && e.contains("is a symlink"), "{e}");
        assert!(!o.diff.as_deref().unwrap_or_default().contains("secret"), "the victim is not read: {o:?}");
        m.victims_untouched();
        link_untouched(&link, &m.victim);
    }
}

#[test]
fn a_link_where_a_directory_is_declared_is_refused_and_left_alone() {
    let m = machine();
    std::fs::remove_dir(m.root.join("srv/www")).unwrap();
    let link = m.plant("srv/www", &m.victim_dir);
    let role = "[[directory]]\npath = \"/srv/www\"\nowner = \"www\"\nmode = \"0755\"\n\n\
                [[file]]\npath = \"/srv/www/index.html\"\ncontent = \"hi\\n\"\nowner = \"www\"\n";
    let rs = parse_role("roles/web.toml", role).unwrap().resources;
    let r = run(&rs, &m.target(), true).unwrap();
    let o = outcome(&r, "directory:/srv/www");
    assert_eq!(o.status, Status::Failed, "{o:?}");
    let e = o.error.as_deref().unwrap();
    assert!(e.contains("srv/www") && e.contains("is a symlink"), "{e}");
    assert_eq!(outcome(&r, "file:/srv/www/index.html").status, Status::Skipped);
    m.victims_untouched();
    link_untouched(&link, &m.victim_dir);
}

#[test]
fn a_link_above_a_declared_file_is_not_followed() {
    let m = machine();
    // www swaps a folder under its own for a link to a folder of root's; the role declares a file below it.
    let link = m.plant("srv/www/conf.d", &m.victim_dir);
    let rs = parse_role("roles/web.toml", "[[file]]\npath = \"/srv/www/conf.d/site\"\ncontent = \"x\\n\"\n")
        .unwrap()
        .resources;
    let r = run(&rs, &m.target(), true).unwrap();
    let o = outcome(&r, "file:/srv/www/conf.d/site");
    assert_eq!(o.status, Status::Failed, "{o:?}");
    let e = o.error.as_deref().unwrap();
    assert!(e.contains("srv/www/conf.d") && e.contains("is a symlink"), "{e}");
    m.victims_untouched();
    link_untouched(&link, &m.victim_dir);
}

#[test]
fn a_declared_link_is_followed_inside_the_root() {
    let m = machine();
    let role = "[[directory]]\npath = \"/srv/www/releases/1\"\n\n\
                [[symlink]]\npath = \"/srv/www/current\"\ntarget = \"releases/1\"\nrequire = [\"directory:/srv/www/releases/1\"]\n\n\
                [[file]]\npath = \"/srv/www/current/app.conf\"\ncontent = \"x\\n\"\nrequire = [\"symlink:/srv/www/current\"]\n";
    let rs = parse_role("roles/web.toml", role).unwrap().resources;
    let r = run(&rs, &m.target(), true).unwrap();
    assert_eq!(r.summary.failed, 0, "{r:?}");
    assert_eq!(std::fs::read_to_string(m.root.join("srv/www/releases/1/app.conf")).unwrap(), "x\n");
    assert_eq!(run(&rs, &m.target(), true).unwrap().summary.changed, 0, "and found done the second time");
    // The declared link now points where www made it point, a link of its own to root's folder: refused.
    std::fs::remove_dir_all(m.root.join("srv/www/releases/1")).unwrap();
    m.plant("srv/www/releases/1", &m.victim_dir);
    let r = run(&rs, &m.target(), true).unwrap();
    assert_eq!(outcome(&r, "directory:/srv/www/releases/1").status, Status::Failed, "{r:?}");
    m.victims_untouched();
}

#[test]
fn a_path_that_climbs_out_of_the_root_stays_inside_it() {
    // What the model refuses cannot reach the engine from a role; a payload sent to `crew infra engine` can.
    let m = machine();
    let mut rs = parse_role("roles/web.toml", "[[file]]\npath = \"/x\"\ncontent = \"x\\n\"\n").unwrap().resources;
    let outside = m.root.parent().unwrap().join("escaped");
    if let crew_infra::Spec::File { path, .. } = &mut rs[0].spec {
        *path = "/../escaped".into();
    }
    run(&rs, &m.target(), true).unwrap();
    assert!(!outside.exists(), "written outside the root");
    assert!(m.root.join("escaped").exists(), "kept inside it");
}
