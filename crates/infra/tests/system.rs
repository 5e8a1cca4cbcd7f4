//! Accounts, owners and packages on a temporary root, with the real tools: `groupadd`/`useradd -R` (which
//! chroot, so these tests run as root, as CI does) and a package the test builds with `dpkg-deb --build` and
//! the engine installs with `dpkg --root`.

use crew_infra::engine::{resolve, run, Report, Status, Target};
use crew_infra::parse_role;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn must_be_root() {
    let id = Command::new("id").arg("-u").output().unwrap();
    let euid = String::from_utf8_lossy(&id.stdout).trim().to_string();
    assert_eq!(euid, "0", "useradd -R and dpkg --root chroot: run these tests as root (scripts/test does)");
}

/// A package `crew-hello` at `version`, built here.
fn build_deb(dir: &Path, version: &str) -> std::path::PathBuf {
    let pkg = dir.join(format!("pkg-{version}"));
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/crew-hello")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: crew-hello\nVersion: {version}\nArchitecture: all\nMaintainer: crew tests <t@example.invalid>\nDescription: built by crew's tests\n"
        ),
    )
    .unwrap();
    std::fs::write(pkg.join("usr/share/crew-hello/greeting"), format!("hello {version}\n")).unwrap();
    let out = dir.join(format!("crew-hello_{version}_all.deb"));
    let st = Command::new("dpkg-deb").args(["--build", "--root-owner-group"]).arg(&pkg).arg(&out).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    out
}

/// A machine under a folder: accounts with only root, an empty dpkg database.
fn machine(root: &Path) {
    for d in ["etc", "var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
}

const ROLE: &str = r#"
[[user]]
name = "www"
uid = 1500
group = "www"
home = "/srv/www"
shell = "/bin/sh"

[[directory]]
path = "/srv/www"
owner = "www"
group = "www"
mode = "0750"

[[file]]
path = "/srv/www/index.html"
content = "hello\n"
owner = "www"
group = "www"
mode = "0640"

[[group]]
name = "www"
gid = 1501

[[package]]
name = "crew-hello"
version = "1.0-1"
deb = "files/crew-hello.deb"

[[file]]
path = "/etc/crew-hello.conf"
content = "greeting = yes\n"
require = ["package:crew-hello"]
"#;

fn changed(r: &Report) -> Vec<String> {
    r.resources.iter().filter(|o| o.status == Status::Changed).map(|o| o.resource.clone()).collect()
}

fn outcome<'a>(r: &'a Report, id: &str) -> &'a crew_infra::engine::Outcome {
    r.resources.iter().find(|o| o.resource == id).unwrap_or_else(|| panic!("{id} in {r:?}"))
}

fn setup(role: &str) -> (tempfile::TempDir, Target, Vec<crew_infra::Resource>) {
    must_be_root();
    let dir = tempfile::tempdir().unwrap();
    let (repo, root) = (dir.path().join("repo"), dir.path().join("root"));
    std::fs::create_dir_all(repo.join("files")).unwrap();
    machine(&root);
    let deb = build_deb(dir.path(), "1.0-1");
    std::fs::copy(deb, repo.join("files/crew-hello.deb")).unwrap();
    let rs = parse_role("roles/app.toml", role).unwrap().resources;
    (dir, Target { root, repo, context: serde_json::json!({}) }, rs)
}

#[test]
fn accounts_owners_and_a_package_converge_under_a_root() {
    let (_d, t, rs) = setup(ROLE);
    let passwd = || std::fs::read_to_string(t.root.join("etc/passwd")).unwrap();
    let plan = run(&rs, &t, false).unwrap();
    assert_eq!(plan.summary.failed, 0, "{plan:?}");
    assert!(!passwd().contains("www"), "a plan creates no account");
    assert!(!t.root.join("usr").exists(), "a plan installs nothing");
    // The group first (a user after its group, automatically), the owned paths after both.
    let order: Vec<&str> = plan.resources.iter().map(|o| o.resource.as_str()).collect();
    assert_eq!(order[..2], ["group:www", "user:www"]);

    let apply = run(&rs, &t, true).unwrap();
    assert_eq!(apply.summary.failed, 0, "{apply:?}");
    assert_eq!(changed(&plan), changed(&apply), "the plan said what the apply did");
    assert_eq!(apply.summary.changed, 6);
    assert!(
        passwd().contains("www:!:1500:1501::/srv/www:/bin/sh")
            || passwd().contains("www:x:1500:1501::/srv/www:/bin/sh"),
        "{}",
        passwd()
    );
    let dir = std::fs::metadata(t.root.join("srv/www")).unwrap();
    assert_eq!((dir.uid(), dir.gid(), dir.mode() & 0o7777), (1500, 1501, 0o750));
    let file = std::fs::metadata(t.root.join("srv/www/index.html")).unwrap();
    assert_eq!((file.uid(), file.gid(), file.mode() & 0o7777), (1500, 1501, 0o640));
    assert_eq!(std::fs::read_to_string(t.root.join("usr/share/crew-hello/greeting")).unwrap(), "hello 1.0-1\n");
    assert_eq!(crew_infra::system::installed(&t.root, "crew-hello").as_deref(), Some("1.0-1"));

    let again = run(&rs, &t, true).unwrap();
    assert_eq!(again.summary.changed, 0, "{:?}", changed(&again));

    // Tampering: the file's owner, the user's shell.
    std::os::unix::fs::chown(t.root.join("srv/www/index.html"), Some(0), Some(0)).unwrap();
    let st = Command::new("usermod").arg("-R").arg(&t.root).args(["-s", "/bin/false", "www"]).output().unwrap();
    assert!(st.status.success());
    let plan = run(&rs, &t, false).unwrap();
    assert_eq!(changed(&plan), ["user:www", "file:/srv/www/index.html"]);
    assert_eq!(outcome(&plan, "user:www").changes, ["shell /bin/false → /bin/sh"]);
    assert_eq!(outcome(&plan, "file:/srv/www/index.html").changes, ["owner 0 → 1500", "group 0 → 1501"]);
    run(&rs, &t, true).unwrap();
    assert_eq!(run(&rs, &t, false).unwrap().summary.changed, 0, "repaired");
    assert_eq!(std::fs::metadata(t.root.join("srv/www/index.html")).unwrap().uid(), 1500);
}

#[test]
fn a_new_package_version_is_installed_over_the_old() {
    let (d, t, rs) = setup(ROLE);
    run(&rs, &t, true).unwrap();
    let newer = build_deb(d.path(), "1.1-1");
    std::fs::copy(newer, t.repo.join("files/crew-hello.deb")).unwrap();
    let rs = parse_role("roles/app.toml", &ROLE.replace("\"1.0-1\"", "\"1.1-1\"")).unwrap().resources;
    // Resolved as for a remote host: the .deb travels as bytes.
    let resolved = resolve(&rs, &t).unwrap();
    let plan = run(&resolved, &t, false).unwrap();
    assert_eq!(outcome(&plan, "package:crew-hello").changes, ["version 1.0-1 → 1.1-1"]);
    let apply = run(&resolved, &t, true).unwrap();
    assert_eq!(changed(&apply), ["package:crew-hello"]);
    assert_eq!(std::fs::read_to_string(t.root.join("usr/share/crew-hello/greeting")).unwrap(), "hello 1.1-1\n");
}

#[test]
fn what_cannot_be_done_under_a_root_fails_that_resource_with_the_reason() {
    let role = r#"
[[package]]
name = "nginx"

[[file]]
path = "/etc/nginx.conf"
content = "x"
require = ["package:nginx"]

[[file]]
path = "/etc/owned"
content = "x"
owner = "nobody-here"

[[file]]
path = "/etc/fine"
content = "x"
"#;
    let (_d, t, rs) = setup(role);
    let r = run(&rs, &t, true).unwrap();
    let nginx = outcome(&r, "package:nginx");
    assert_eq!(nginx.status, Status::Failed);
    assert!(nginx.error.as_deref().unwrap().contains("give `deb = \"...\"`"), "{nginx:?}");
    assert_eq!(outcome(&r, "file:/etc/nginx.conf").status, Status::Skipped);
    let owned = outcome(&r, "file:/etc/owned");
    assert_eq!(owned.status, Status::Failed);
    assert!(owned.error.as_deref().unwrap().contains("owner `nobody-here`: no such user in"), "{owned:?}");
    assert!(!t.root.join("etc/owned").exists());
    assert_eq!(outcome(&r, "file:/etc/fine").status, Status::Changed);
}

#[test]
fn a_link_planted_at_the_staged_deb_s_name_is_not_followed() {
    let (d, t, rs) = setup(ROLE);
    // The name a .deb used to be staged under in the shared temporary folder, as any local user can plant it.
    let victim = d.path().join("shadow");
    std::fs::write(&victim, "root:secret\n").unwrap();
    let planted = std::env::temp_dir().join(format!("crew-crew-hello-{}.deb", std::process::id()));
    let _ = std::fs::remove_file(&planted);
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let r = run(&rs, &t, true).unwrap();
    let _ = std::fs::remove_file(&planted);
    assert_eq!(outcome(&r, "package:crew-hello").status, Status::Changed, "{r:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root:secret\n", "the victim was overwritten");
    assert_eq!(crew_infra::system::installed(&t.root, "crew-hello").as_deref(), Some("1.0-1"));
}

#[test]
fn sources_resolve_inside_the_repository() {
    let (d, t, _) = setup(ROLE);
    std::fs::write(d.path().join("outside"), "the controller's own file\n").unwrap();
    // A link inside the repository to a file outside it.
    std::os::unix::fs::symlink(d.path().join("outside"), t.repo.join("files/escape")).unwrap();
    std::os::unix::fs::symlink("../../outside", t.repo.join("files/escape-relative")).unwrap();
    for source in ["files/escape", "files/escape-relative"] {
        for key in ["source", "template"] {
            let role = format!("[[file]]\npath = \"/etc/x\"\n{key} = \"{source}\"\n");
            let rs = parse_role("roles/app.toml", &role).unwrap().resources;
            let e = resolve(&rs, &t).unwrap_err().to_string();
            assert!(e.contains("roles/app.toml:1: file:/etc/x:") && e.contains(&format!("{key} `{source}`")), "{e}");
            assert!(e.contains("outside the repository"), "{e}");
            assert!(run(&rs, &t, true).is_err(), "refused by the engine too");
            assert!(!t.root.join("etc/x").exists());
        }
    }
    let role = "[[package]]\nname = \"crew-hello\"\ndeb = \"files/escape\"\n";
    let rs = parse_role("roles/app.toml", role).unwrap().resources;
    let e = resolve(&rs, &t).unwrap_err().to_string();
    assert!(e.contains("package:crew-hello: deb `files/escape`") && e.contains("outside the repository"), "{e}");
    // A link that stays inside is fine.
    std::os::unix::fs::symlink("crew-hello.deb", t.repo.join("files/alias.deb")).unwrap();
    let rs = parse_role("roles/app.toml", "[[package]]\nname = \"crew-hello\"\ndeb = \"files/alias.deb\"\n")
        .unwrap()
        .resources;
    resolve(&rs, &t).unwrap();
}
