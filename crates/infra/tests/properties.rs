//! Property tests on a temporary root, over generated roles of folders, files (content, mode) and symlinks and
//! generated tampering: a plan touches nothing and names exactly what the apply then changes; a second apply
//! changes nothing; tampering by hand (edit, chmod, delete, retarget) is reported resource by resource and
//! repaired.

use crew_infra::engine::{run, Report, Status, Target};
use crew_infra::parse_role;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const DIRS: [&str; 3] = ["/a", "/a/b", "/c"];

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
    (0..DIRS.len(), "[ -~\n]{0,40}", prop_oneof![Just(None), Just(Some(0o644)), Just(Some(0o600)), Just(Some(0o640))])
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
        t.push_str(&format!("[[file]]\npath = \"{}/f{i}\"\ncontent = {}\n", DIRS[f.dir], toml_str(&f.content)));
        if let Some(m) = f.mode {
            t.push_str(&format!("mode = \"{m:04o}\"\n"));
        }
        t.push('\n');
    }
    for (i, (dir, to)) in links.iter().enumerate() {
        t.push_str(&format!("[[symlink]]\npath = \"{}/l{i}\"\ntarget = \"/t/{to}\"\n\n", DIRS[*dir]));
    }
    t
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn changed(r: &Report) -> BTreeSet<String> {
    r.resources.iter().filter(|o| o.status == Status::Changed).map(|o| o.resource.clone()).collect()
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
        dir_modes in proptest::collection::vec(prop_oneof![Just(0o755u32), Just(0o750), Just(0o700)], 3),
        files in proptest::collection::vec(file_spec(), 1..12),
        links in proptest::collection::vec((0..DIRS.len(), 0u8..4), 0..4),
        tampering in proptest::collection::vec(tamper(), 12),
        relink in proptest::collection::vec(any::<bool>(), 4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let t = Target { root: root.clone(), repo: dir.path().to_path_buf(), context: serde_json::json!({}) };
        let rs = parse_role("roles/gen.toml", &role(&dir_modes, &files, &links)).unwrap().resources;

        let before = snapshot(&root);
        let plan = run(&rs, &t, false).unwrap();
        prop_assert_eq!(snapshot(&root), before, "a plan touches nothing");
        let apply = run(&rs, &t, true).unwrap();
        prop_assert_eq!(apply.summary.failed, 0);
        prop_assert_eq!(changed(&plan), changed(&apply), "the plan named what the apply changed");
        prop_assert_eq!(apply.summary.changed, rs.len(), "everything was new");
        let again = run(&rs, &t, true).unwrap();
        prop_assert_eq!(again.summary.changed, 0, "a second apply changes nothing: {:?}", changed(&again));

        // Tampering by hand; what a plan must now name.
        let mut expect = BTreeSet::new();
        for (i, f) in files.iter().enumerate() {
            let id = format!("{}/f{i}", DIRS[f.dir]);
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
                let p = root.join(DIRS[*d].trim_start_matches('/')).join(format!("l{i}"));
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(format!("/t/{to}/elsewhere"), &p).unwrap();
                expect.insert(format!("symlink:{}/l{i}", DIRS[*d]));
            }
        }
        let tampered = snapshot(&root);
        let plan = run(&rs, &t, false).unwrap();
        prop_assert_eq!(snapshot(&root), tampered, "a plan touches nothing");
        prop_assert_eq!(changed(&plan), expect.clone(), "drift named resource by resource");
        let repair = run(&rs, &t, true).unwrap();
        prop_assert_eq!(changed(&repair), expect);
        prop_assert_eq!(run(&rs, &t, false).unwrap().summary.changed, 0, "repaired");
    }
}
