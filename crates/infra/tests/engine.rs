//! The engine on a temporary root: idempotence, plans that predict applies and touch nothing, drift repaired,
//! failures that skip only their dependents, and a service refreshed once for three changed files.

use crew_infra::engine::{run, Status, Target};
use crew_infra::parse_role;
use std::collections::BTreeMap;
use std::path::Path;

const WEB: &str = r#"
[[directory]]
path = "/srv/www"
mode = "0755"

[[file]]
path = "/etc/www/app.conf"
template = "templates/app.conf"
mode = "0644"
notify = ["service:www"]

[[file]]
path = "/etc/www/a.conf"
content = "a\n"
notify = ["service:www"]

[[file]]
path = "/etc/www/b.conf"
content = "b\n"
notify = ["service:www"]

[[file]]
path = "/etc/www/secret"
content = "hunter2\n"
sensitive = true
mode = "0600"

[[directory]]
path = "/etc/www"

[[symlink]]
path = "/srv/www/current"
target = "/srv/www/releases/1"

[[service]]
name = "www"
provider = "command"
start = "touch running && echo start >> events"
stop = "rm -f running && echo stop >> events"
status = "test -f running"

[[command]]
name = "seed"
run = "echo seeded > srv/www/.seeded"
creates = "/srv/www/.seeded"
"#;

fn setup() -> (tempfile::TempDir, Target, Vec<crew_infra::Resource>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let root = dir.path().join("root");
    std::fs::create_dir_all(repo.join("templates")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(repo.join("templates/app.conf"), "listen {{ port }}\nname {{ facts.hostname }}\n").unwrap();
    let role = parse_role("roles/web.toml", WEB).unwrap();
    let target = Target { root, repo, context: serde_json::json!({"port": 8080, "facts": {"hostname": "web1"}}) };
    (dir, target, role.resources)
}

/// Every path under the root with its kind, mode and content: what "untouched" means.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let key = p.strip_prefix(root).unwrap().display().to_string();
            let val = if m.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(&p, root, out);
                format!("dir {:o}", m.permissions().mode() & 0o7777)
            } else {
                format!(
                    "file {:o} {}",
                    m.permissions().mode() & 0o7777,
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                )
            };
            out.insert(key, val);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn changed(report: &crew_infra::engine::Report) -> Vec<String> {
    report.resources.iter().filter(|o| o.status == Status::Changed).map(|o| o.resource.clone()).collect()
}

#[test]
fn the_plan_predicts_the_apply_which_a_second_apply_finds_done() {
    let (_d, t, rs) = setup();
    let before = snapshot(&t.root);
    let plan = run(&rs, &t, false).unwrap();
    assert_eq!(snapshot(&t.root), before, "a plan touches nothing");
    assert!(!plan.applied);
    let apply = run(&rs, &t, true).unwrap();
    assert_eq!(changed(&plan), changed(&apply), "the plan said what the apply did");
    assert_eq!(apply.summary.changed, 9);
    assert_eq!(apply.summary.failed, 0);
    assert_eq!(std::fs::read_to_string(t.root.join("etc/www/app.conf")).unwrap(), "listen 8080\nname web1\n");
    assert_eq!(std::fs::read_link(t.root.join("srv/www/current")).unwrap(), Path::new("/srv/www/releases/1"));
    let secret = plan.resources.iter().find(|o| o.resource == "file:/etc/www/secret").unwrap();
    assert!(!secret.diff.as_deref().unwrap().contains("hunter2"), "sensitive content is redacted");
    let conf = plan.resources.iter().find(|o| o.resource == "file:/etc/www/app.conf").unwrap();
    assert!(conf.diff.as_deref().unwrap().contains("+listen 8080"), "{:?}", conf.diff);

    let again = run(&rs, &t, true).unwrap();
    assert_eq!(again.summary.changed, 0, "{:?}", changed(&again));
    assert_eq!(again.summary.refreshed, 0);
    assert_eq!(again.summary.unchanged, 9);
}

#[test]
fn a_service_restarts_once_for_three_changed_files_and_never_in_a_plan() {
    let (_d, t, rs) = setup();
    run(&rs, &t, true).unwrap();
    let events = || std::fs::read_to_string(t.root.join("events")).unwrap();
    assert_eq!(events(), "start\n", "started once, not restarted as it was started just now");
    // Someone edits all three files the service reads.
    for f in ["etc/www/app.conf", "etc/www/a.conf", "etc/www/b.conf"] {
        std::fs::write(t.root.join(f), "edited by hand\n").unwrap();
    }
    let plan = run(&rs, &t, false).unwrap();
    assert_eq!(plan.summary.changed, 3);
    assert_eq!(plan.summary.refreshed, 1, "the plan says it would restart");
    assert_eq!(events(), "start\n", "but does not");
    let apply = run(&rs, &t, true).unwrap();
    assert_eq!((apply.summary.changed, apply.summary.refreshed), (3, 1));
    assert_eq!(events(), "start\nstop\nstart\n", "exactly one restart");
}

#[test]
fn drift_by_hand_is_reported_and_repaired() {
    let (_d, t, rs) = setup();
    run(&rs, &t, true).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(t.root.join("etc/www/a.conf"), "tampered\n").unwrap();
    std::fs::set_permissions(t.root.join("etc/www/secret"), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::remove_file(t.root.join("srv/www/current")).unwrap();
    let plan = run(&rs, &t, false).unwrap();
    let mut drift = changed(&plan);
    drift.sort();
    assert_eq!(drift, ["file:/etc/www/a.conf", "file:/etc/www/secret", "symlink:/srv/www/current"]);
    let secret = plan.resources.iter().find(|o| o.resource == "file:/etc/www/secret").unwrap();
    assert_eq!(secret.changes, ["mode 0666 → 0600"]);
    run(&rs, &t, true).unwrap();
    assert_eq!(run(&rs, &t, false).unwrap().summary.changed, 0, "repaired");
    assert_eq!(std::fs::read_to_string(t.root.join("etc/www/a.conf")).unwrap(), "a\n");
}

#[test]
fn a_failure_skips_only_its_dependents() {
    let text = r#"
[[command]]
name = "broken"
run = "echo no >&2; exit 3"

[[file]]
path = "/needs-broken"
content = "x"
require = ["command:broken"]

[[command]]
name = "after-that"
run = "true"
require = ["file:/needs-broken"]

[[file]]
path = "/independent"
content = "y"
"#;
    let (_d, t, _) = setup();
    let rs = parse_role("roles/t.toml", text).unwrap().resources;
    let r = run(&rs, &t, true).unwrap();
    let status: BTreeMap<&str, &Status> = r.resources.iter().map(|o| (o.resource.as_str(), &o.status)).collect();
    assert_eq!(status["command:broken"], &Status::Failed);
    assert_eq!(status["file:/needs-broken"], &Status::Skipped);
    assert_eq!(status["command:after-that"], &Status::Skipped, "transitively");
    assert_eq!(status["file:/independent"], &Status::Changed);
    assert!(
        r.resources[0].error.as_deref().unwrap().contains("exit")
            || r.resources[0].error.as_deref().unwrap().contains("no")
    );
    assert!(!t.root.join("needs-broken").exists() && t.root.join("independent").exists());
    assert_eq!((r.summary.failed, r.summary.skipped, r.summary.changed), (1, 2, 1));
}

#[test]
fn a_template_with_an_unknown_variable_is_refused_before_anything_is_touched() {
    let (_d, t, rs) = setup();
    std::fs::write(t.repo.join("templates/app.conf"), "listen {{ prot }}\n").unwrap();
    let e = run(&rs, &t, true).unwrap_err().to_string();
    assert!(e.contains("roles/web.toml:6: file:/etc/www/app.conf: templates/app.conf:1: uses a variable"), "{e}");
    assert!(snapshot(&t.root).is_empty(), "nothing was touched");
}

/// The uid this test runs as: what owns a file it makes.
fn euid(dir: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join(".euid");
    std::fs::write(&probe, "").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_file(probe).unwrap();
    uid
}

#[test]
fn a_file_in_an_undeclared_folder_is_made_with_its_folder_and_the_plan_says_so() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (d, t, _) = setup();
    // A machine with /srv/www (www's, setgid, group-writable) but no /srv/www/conf, which no role declares.
    std::fs::create_dir_all(t.root.join("srv/www")).unwrap();
    let root_runs = euid(d.path()) == 0;
    if root_runs {
        std::os::unix::fs::chown(t.root.join("srv/www"), Some(1500), Some(1500)).unwrap();
    }
    std::fs::set_permissions(t.root.join("srv/www"), std::fs::Permissions::from_mode(0o2775)).unwrap();
    let text = "[[file]]\npath = \"/srv/www/conf/app.conf\"\ncontent = \"listen 80\\n\"\nmode = \"0640\"\n\n\
                [[file]]\npath = \"/srv/www/conf/other.conf\"\ncontent = \"x\\n\"\n";
    let rs = parse_role("roles/web.toml", text).unwrap().resources;
    let changes = |r: &crew_infra::engine::Report| -> Vec<(String, Vec<String>)> {
        r.resources.iter().map(|o| (o.resource.clone(), o.changes.clone())).collect()
    };
    let announced = vec![
        ("file:/srv/www/conf/app.conf".to_string(), vec!["created".to_string(), "folder /srv/www/conf created".into()]),
        // The folder the first file makes is there for the second: the plan says it once, as the apply does.
        ("file:/srv/www/conf/other.conf".to_string(), vec!["created".to_string()]),
    ];

    let before = snapshot(&t.root);
    let plan = run(&rs, &t, false).unwrap();
    assert_eq!(snapshot(&t.root), before, "a plan touches nothing");
    assert_eq!(changes(&plan), announced, "{plan:?}");
    assert_eq!(plan.summary.failed, 0);

    let apply = run(&rs, &t, true).unwrap();
    assert_eq!(apply.summary.failed, 0, "{apply:?}");
    assert_eq!(changes(&apply), announced, "the apply did what the plan said");
    let conf = std::fs::symlink_metadata(t.root.join("srv/www/conf")).unwrap();
    assert!(conf.is_dir());
    assert_eq!(conf.mode() & 0o7777, 0o755, "0755, neither the umask's nor the setgid parent's");
    if root_runs {
        assert_eq!((conf.uid(), conf.gid()), (0, 0), "root's, not the parent's group");
    }
    assert_eq!(std::fs::read_to_string(t.root.join("srv/www/conf/app.conf")).unwrap(), "listen 80\n");
    let app = std::fs::symlink_metadata(t.root.join("srv/www/conf/app.conf")).unwrap();
    assert_eq!(app.mode() & 0o7777, 0o640);

    let again = run(&rs, &t, true).unwrap();
    assert_eq!(again.summary.changed, 0, "a second apply changes nothing: {:?}", changed(&again));
    assert_eq!(run(&rs, &t, false).unwrap().summary.changed, 0);
}

#[test]
fn folders_above_declared_folders_and_links_are_made_and_named_too() {
    let (_d, t, _) = setup();
    let text = "[[directory]]\npath = \"/opt/app/releases/1\"\nmode = \"0750\"\n\n\
                [[symlink]]\npath = \"/opt/app/current\"\ntarget = \"releases/1\"\n\n\
                [[symlink]]\npath = \"/var/lib/app/link\"\ntarget = \"/opt/app/current\"\n\n\
                [[file]]\npath = \"/opt/app/current/conf/app.conf\"\ncontent = \"x\\n\"\nrequire = [\"symlink:/opt/app/current\"]\n";
    let rs = parse_role("roles/app.toml", text).unwrap().resources;
    let changes = |r: &crew_infra::engine::Report| -> Vec<(String, Vec<String>)> {
        r.resources.iter().map(|o| (o.resource.clone(), o.changes.clone())).collect()
    };
    let plan = run(&rs, &t, false).unwrap();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        changes(&plan),
        [
            (
                "directory:/opt/app/releases/1".into(),
                s(&["created", "folder /opt created", "folder /opt/app created", "folder /opt/app/releases created"])
            ),
            ("symlink:/opt/app/current".into(), s(&["created → releases/1"])),
            (
                "symlink:/var/lib/app/link".into(),
                s(&[
                    "created → /opt/app/current",
                    "folder /var created",
                    "folder /var/lib created",
                    "folder /var/lib/app created"
                ])
            ),
            // Through the link the plan would make, as the apply goes through the link it made.
            ("file:/opt/app/current/conf/app.conf".into(), s(&["created", "folder /opt/app/releases/1/conf created"])),
        ],
        "{plan:?}"
    );
    let apply = run(&rs, &t, true).unwrap();
    assert_eq!(apply.summary.failed, 0, "{apply:?}");
    assert_eq!(changes(&apply), changes(&plan), "the apply did what the plan said");
    assert_eq!(std::fs::read_to_string(t.root.join("opt/app/releases/1/conf/app.conf")).unwrap(), "x\n");
    assert_eq!(run(&rs, &t, false).unwrap().summary.changed, 0, "and a second plan finds it done");
}

#[test]
fn an_apply_makes_the_hosts_root_when_it_is_not_there_and_a_plan_does_not() {
    let (d, mut t, _) = setup();
    t.root = d.path().join("hosts/web1");
    let rs =
        parse_role("roles/web.toml", "[[file]]\npath = \"/etc/app.conf\"\ncontent = \"x\\n\"\n").unwrap().resources;
    let plan = run(&rs, &t, false).unwrap();
    assert!(!d.path().join("hosts").exists(), "a plan touches nothing");
    assert_eq!(plan.resources[0].changes, ["created", "folder /etc created"], "the root is not a host folder");
    let apply = run(&rs, &t, true).unwrap();
    assert_eq!(apply.resources[0].changes, plan.resources[0].changes, "{apply:?}");
    assert_eq!(std::fs::read_to_string(t.root.join("etc/app.conf")).unwrap(), "x\n");
}
