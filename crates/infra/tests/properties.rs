//! Property tests on a temporary root, over generated roles of folders, files (content, mode) and symlinks, in
//! declared folders and in folders no role declares, and generated tampering: a plan touches nothing and
//! announces exactly what the apply then does (the same resources, the same changes, the missing folders each
//! made once); a second apply changes nothing; tampering by hand (edit, chmod, delete, retarget, a whole
//! undeclared folder removed) is reported resource by resource and repaired as the plan said.

use crew_infra::engine::{run, Report, Status, Target};
use crew_infra::parse_role;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Declared folders (`/d/e` in a folder no role declares).
const DIRS: [&str; 4] = ["/a", "/a/b", "/c", "/d/e"];
/// Where files and links go: the declared folders, then folders no role declares (made by the engine, with
/// their missing parents, as the plan says).
const PLACES: [&str; 9] = ["/a", "/a/b", "/c", "/d/e", "/u", "/u/v/w", "/a/x", "/a/b/y/z", "/d/e/f"];

#[derive(Debug, Clone)]
struct FileSpec {
    dir: usize,
    content: String,
    mode: Option<u32>,
}

#[derive(Debug, Clone)]
enum Tamper {
    Edit,
    Chmod,
    Delete,
    Nothing,
}

fn file_spec() -> impl Strategy<Value = FileSpec> {
    (0..PLACES.len(), "[ -~\n]{0,40}", prop_oneof![Just(None), Just(Some(0o644)), Just(Some(0o600)), Just(Some(0o640))])
        .prop_map(|(dir, content, mode)| FileSpec { dir, content, mode })
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![Just(Tamper::Edit), Just(Tamper::Chmod), Just(Tamper::Delete), Just(Tamper::Nothing)]
}

fn role(dir_modes: &[u32], files: &[FileSpec], links: &[(usize, u8)]) -> String {
    let mut t = String::new();
    for (d, m) in DIRS.iter().zip(dir_modes) {
        t.push_str(&format!("[[directory]]\npath = \"{d}\"\nmode = \"{m:04o}\"\n\n"));
    }
    for (i, f) in files.iter().enumerate() {
        t.push_str(&format!("[[file]]\npath = \"{}/f{i}\"\ncontent = {}\n", PLACES[f.dir], toml_str(&f.content)));
        if let Some(m) = f.mode {
            t.push_str(&format!("mode = \"{m:04o}\"\n"));
        }
        t.push('\n');
    }
    for (i, (dir, to)) in links.iter().enumerate() {
        t.push_str(&format!("[[symlink]]\npath = \"{}/l{i}\"\ntarget = \"/t/{to}\"\n\n", PLACES[*dir]));
    }
    t
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn changed(r: &Report) -> BTreeSet<String> {
    r.resources.iter().filter(|o| o.status == Status::Changed).map(|o| o.resource.clone()).collect()
}

/// What a run announces: each resource's status, changes (missing folders included) and refresh.
fn announced(r: &Report) -> BTreeMap<String, (Status, Vec<String>, bool)> {
    r.resources.iter().map(|o| (o.resource.clone(), (o.status.clone(), o.changes.clone(), o.refreshed))).collect()
}

/// The folders a run says it makes, in the order it says so.
fn folders_made(r: &Report) -> Vec<String> {
    r.resources
        .iter()
        .flat_map(|o| &o.changes)
        .filter_map(|c| c.strip_prefix("folder ").and_then(|c| c.strip_suffix(" created")))
        .map(str::to_string)
        .collect()
}

/// The folders no role declares that the engine must make for `places` (each with its missing parents).
fn undeclared_above(places: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for place in places {
        let mut p = Some(Path::new(place));
        while let Some(dir) = p.filter(|d| *d != Path::new("/")) {
            let d = dir.display().to_string();
            if !DIRS.contains(&d.as_str()) {
                out.insert(d);
            }
            p = dir.parent();
        }
    }
    out
}

fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let v = if m.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                format!("dir {:o}", m.permissions().mode() & 0o7777)
            } else {
                format!("file {:o} {:?}", m.permissions().mode() & 0o7777, std::fs::read(&p).unwrap())
            };
            out.insert(p.strip_prefix(root).unwrap().display().to_string(), v);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn plans_predict_applies_which_converge_and_repair_tampering(
        dir_modes in proptest::collection::vec(prop_oneof![Just(0o755u32), Just(0o750), Just(0o700)], DIRS.len()),
        files in proptest::collection::vec(file_spec(), 1..12),
        links in proptest::collection::vec((0..PLACES.len(), 0u8..4), 0..4),
        tampering in proptest::collection::vec(tamper(), 12),
        relink in proptest::collection::vec(any::<bool>(), 4),
        wipe in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let t = Target { root: root.clone(), repo: dir.path().to_path_buf(), context: serde_json::json!({}) };
        let rs = parse_role("roles/gen.toml", &role(&dir_modes, &files, &links)).unwrap().resources;

        let before = snapshot(&root);
        let plan = run(&rs, &t, false).unwrap();
        prop_assert_eq!(snapshot(&root), before, "a plan touches nothing");
        prop_assert_eq!(plan.summary.failed, 0, "{:?}", plan);
        let apply = run(&rs, &t, true).unwrap();
        prop_assert_eq!(apply.summary.failed, 0, "{:?}", apply);
        prop_assert_eq!(announced(&plan), announced(&apply), "the plan announced what the apply did");
        prop_assert_eq!(apply.summary.changed, rs.len(), "everything was new");
        // Every folder no role declares above a file or link, made once (by the first resource that needs it),
        // 0755, and the declared folders' undeclared parents too.
        let used = files.iter().map(|f| PLACES[f.dir]).chain(links.iter().map(|(d, _)| PLACES[*d])).chain(DIRS);
        let expect_folders = undeclared_above(used);
        let made = folders_made(&apply);
        prop_assert_eq!(made.len(), expect_folders.len(), "each folder made once: {:?}", made);
        prop_assert_eq!(made.into_iter().collect::<BTreeSet<_>>(), expect_folders.clone());
        // Owned as pyinfra makes them: root's when crew is root, else the user crew runs as (who made `root`).
        let me = std::fs::metadata(&root).unwrap();
        for d in &expect_folders {
            let m = std::fs::symlink_metadata(root.join(d.trim_start_matches('/'))).unwrap();
            prop_assert!(m.is_dir() && m.mode() & 0o7777 == 0o755, "{} is {:o}", d, m.mode());
            prop_assert_eq!(m.uid(), me.uid(), "{} is owned by crew's user", d);
            if me.uid() == 0 {
                prop_assert_eq!(m.gid(), 0, "{} is root's group", d);
            }
        }
        let again = run(&rs, &t, true).unwrap();
        prop_assert_eq!(again.summary.changed, 0, "a second apply changes nothing: {:?}", changed(&again));
        prop_assert_eq!(run(&rs, &t, false).unwrap().summary.changed, 0, "and a second plan is empty");

        // Tampering by hand; what a plan must now name.
        let mut expect = BTreeSet::new();
        for (i, f) in files.iter().enumerate() {
            let id = format!("{}/f{i}", PLACES[f.dir]);
            let p = root.join(id.trim_start_matches('/'));
            match tampering[i] {
                Tamper::Edit => {
                    std::fs::write(&p, format!("{}!", f.content)).unwrap();
                    expect.insert(format!("file:{id}"));
                }
                Tamper::Chmod => {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
                    // Only a declared mode is a wanted state; without one, any mode is fine.
                    if f.mode.is_some() {
                        expect.insert(format!("file:{id}"));
                    }
                }
                Tamper::Delete => {
                    std::fs::remove_file(&p).unwrap();
                    expect.insert(format!("file:{id}"));
                }
                Tamper::Nothing => {}
            }
        }
        for (i, (d, to)) in links.iter().enumerate() {
            if relink[i] {
                let p = root.join(PLACES[*d].trim_start_matches('/')).join(format!("l{i}"));
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(format!("/t/{to}/elsewhere"), &p).unwrap();
                expect.insert(format!("symlink:{}/l{i}", PLACES[*d]));
            }
        }
        // Someone removes /u, a folder no role declares, with all that is in it: everything under it is made
        // again, the folders with it.
        let mut expect_folders = BTreeSet::new();
        if wipe && root.join("u").exists() {
            std::fs::remove_dir_all(root.join("u")).unwrap();
            for (i, f) in files.iter().enumerate().filter(|(_, f)| PLACES[f.dir].starts_with("/u")) {
                expect.insert(format!("file:{}/f{i}", PLACES[f.dir]));
                expect_folders.extend(undeclared_above([PLACES[f.dir]]));
            }
            for (i, (d, _)) in links.iter().enumerate().filter(|(_, (d, _))| PLACES[*d].starts_with("/u")) {
                expect.insert(format!("symlink:{}/l{i}", PLACES[*d]));
                expect_folders.extend(undeclared_above([PLACES[*d]]));
            }
        }
        let tampered = snapshot(&root);
        let plan = run(&rs, &t, false).unwrap();
        prop_assert_eq!(snapshot(&root), tampered, "a plan touches nothing");
        prop_assert_eq!(changed(&plan), expect.clone(), "drift named resource by resource");
        prop_assert_eq!(folders_made(&plan).into_iter().collect::<BTreeSet<_>>(), expect_folders);
        let repair = run(&rs, &t, true).unwrap();
        prop_assert_eq!(changed(&repair), expect);
        prop_assert_eq!(announced(&plan), announced(&repair), "the plan announced what the repair did");
        prop_assert_eq!(run(&rs, &t, false).unwrap().summary.changed, 0, "repaired");
    }
}
