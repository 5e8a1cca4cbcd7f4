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
