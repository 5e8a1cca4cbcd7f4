//! `crew infra plan|apply` with the local transport: two hosts (each its own root folder), a plan that touches
//! nothing, an apply, a second apply with no changes, the run on the timeline, and mistakes refused first.

use crate::harness::Server;
use serde_json::Value;
use std::path::Path;

pub fn repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("roles")).unwrap();
    std::fs::create_dir_all(p.join("templates")).unwrap();
    std::fs::write(
        p.join("crew.toml"),
        "[[hosts]]\nname = \"web1\"\naddress = \"local\"\nroles = [\"web\"]\nroot = \"hosts/web1\"\nvars = { port = 8080 }\n\n\
         [[hosts]]\nname = \"web2\"\naddress = \"local\"\nroles = [\"web\", \"extra\"]\nroot = \"hosts/web2\"\nvars = { port = 9090 }\n",
    )
    .unwrap();
    std::fs::write(
        p.join("roles/web.toml"),
        "[[directory]]\npath = \"/etc/www\"\n\n[[file]]\npath = \"/etc/www/app.conf\"\ntemplate = \"templates/app.conf\"\nmode = \"0644\"\n",
    )
    .unwrap();
    std::fs::write(p.join("roles/extra.toml"), "[[symlink]]\npath = \"/etc/www/current\"\ntarget = \"/srv/1\"\n")
        .unwrap();
    std::fs::write(p.join("templates/app.conf"), "listen {{ port }} on {{ facts.hostname }}\n").unwrap();
    d
}

fn out(o: &std::process::Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[tokio::test]
async fn plan_then_apply_then_nothing_left_to_do() {
    let s = Server::start().await;
    let d = repo();
    let cfg = d.path().join("crew.toml");
    let infra = |verb: &str, target: &str| {
        out(&s.cli(&s.admin).args(["infra", verb, target, "--config"]).arg(&cfg).output().unwrap())
    };
    let (code, text, err) = infra("plan", "all");
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("web1:") && text.contains("~ file:/etc/www/app.conf would be created"), "{text}");
    assert!(text.contains("+listen 9090 on web2"), "a diff of the rendered template: {text}");
    assert!(!d.path().join("hosts").exists(), "a plan touches nothing");

    let (code, text, err) = infra("apply", "web");
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("2 changed, 0 unchanged, 0 failed, 0 skipped, 0 refreshed"), "{text}");
    assert_eq!(std::fs::read_to_string(d.path().join("hosts/web1/etc/www/app.conf")).unwrap(), "listen 8080 on web1\n");
    assert!(std::fs::read_link(d.path().join("hosts/web2/etc/www/current")).is_ok());

    let (code, text, _) = infra("apply", "web2");
    assert_eq!(code, 0);
    assert!(text.contains("0 changed, 3 unchanged"), "{text}");
    let v: Value = s.get_json("/api/v1/events?kind=infra.applied", &s.admin).await;
    let summaries: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["summary"].as_str().unwrap()).collect();
    assert_eq!(summaries[0], "infra applied on web2: 0 changed, 0 failed, 0 refreshed");
    assert!(summaries.contains(&"infra applied on web1: 2 changed, 0 failed, 0 refreshed"), "{summaries:?}");

    // Someone edits a file by hand: `crew infra check` records the drift, naming host and resource.
    std::fs::write(d.path().join("hosts/web1/etc/www/app.conf"), "listen 1\n").unwrap();
    let (code, _, err) = infra("check", "all");
    assert_eq!(code, 0, "{err}");
    let v: Value = s.get_json("/api/v1/events?kind=infra.drift", &s.admin).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "only web1 drifted: {v}");
    assert_eq!(v["events"][0]["summary"], "web1 drifted from its roles: file:/etc/www/app.conf");
    assert_eq!(infra("apply", "web1").0, 0);

    let (code, text, _) =
        out(&s.cli(&s.admin).args(["infra", "plan", "web1", "--json", "--config"]).arg(&cfg).output().unwrap());
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["hosts"][0]["report"]["summary"]["changed"], 0);
}

#[tokio::test]
async fn mistakes_are_refused_before_any_host_is_touched() {
    let s = Server::start().await;
    for (file, text, says) in [
        ("roles/extra.toml", "[[symlink]]\npath = \"/x\"\ntarget = \"/y\"\nowner = \"root\"\n", "roles/extra.toml:1: symlink[0]"),
        ("roles/extra.toml", "[[service]]\nname = \"a\"\nrequire = [\"service:b\"]\n[[service]]\nname = \"b\"\nrequire = [\"service:a\"]\n", "a cycle: service:a → service:b → service:a"),
        ("roles/extra.toml", "[[teapot]]\nname = \"x\"\n", "roles/extra.toml:1: teapot: unknown resource type"),
        ("templates/app.conf", "listen {{ prot }}\n", "templates/app.conf:1: uses a variable this host does not define"),
        ("crew.toml", "[[hosts]]\nname = \"web1\"\naddress = \"local\"\nroles = []\n", "host `web1` has no roles"),
        ("crew.toml", "[[hosts]]\nname = \"web1\"\naddress = \"local\"\nroles = [\"db\"]\n", "roles/db.toml (role of host `web1`)"),
        // The controller's own files are no sources, and no path leaves a host's root.
        ("roles/extra.toml", "[[file]]\npath = \"/etc/h\"\nsource = \"/etc/hostname\"\n", "roles/extra.toml:1: file[0].source: `/etc/hostname` must be a path inside the repository"),
        ("roles/extra.toml", "[[command]]\nname = \"c\"\nrun = \"true\"\ncreates = \"/../../x\"\n", "roles/extra.toml:1: command[0].creates: `/../../x` must be an absolute path without `..`"),
    ] {
        let d = repo();
        std::fs::write(d.path().join(file), text).unwrap();
        let o = s.cli(&s.admin).args(["infra", "apply", "all", "--config"]).arg(d.path().join("crew.toml")).output().unwrap();
        let (code, _, err) = out(&o);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(err.contains(says), "{file}: {err}");
        assert!(!Path::new(&d.path().join("hosts")).exists(), "{file}: nothing touched");
    }
    // A link in the repository to a file outside it.
    let d = repo();
    std::fs::remove_file(d.path().join("templates/app.conf")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", d.path().join("templates/app.conf")).unwrap();
    let o =
        s.cli(&s.admin).args(["infra", "apply", "all", "--config"]).arg(d.path().join("crew.toml")).output().unwrap();
    let (code, _, err) = out(&o);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "roles/web.toml:4: file:/etc/www/app.conf: template `templates/app.conf` is outside the repository"
        ),
        "{err}"
    );
    assert!(!d.path().join("hosts").exists(), "nothing touched");
}

#[tokio::test]
async fn push_over_ssh_to_two_hosts_one_of_which_dies_mid_run() {
    let s = Server::start().await;
    let d = repo();
    let (a, mut b) = (crew_testkit::Sshd::start().unwrap(), crew_testkit::Sshd::start().unwrap());
    let roots = [d.path().join("far/web1"), d.path().join("far/web2")];
    let host = |name: &str, sshd: &crew_testkit::Sshd, root: &Path, roles: &str| {
        let opts: Vec<String> = sshd.options().iter().map(|o| format!("{o:?}")).collect();
        format!(
            "[[hosts]]\nname = \"{name}\"\naddress = \"ssh://{}@127.0.0.1:{}\"\nroles = [{roles}]\nroot = \"{}\"\nvars = {{ port = 1 }}\nssh_options = [{}]\n\n",
            crew_testkit::whoami(),
            sshd.port,
            root.display(),
            opts.join(", ")
        )
    };
    // web2 also has a slow step, which runs only once the test asks for it (`go-slow`) and says when it began.
    std::fs::write(
        d.path().join("roles/slow.toml"),
        "[[command]]\nname = \"slow\"\nrun = \"touch started && sleep 60\"\nonlyif = \"test -f go-slow\"\n",
    )
    .unwrap();
    let cfg = d.path().join("crew.toml");
    std::fs::write(&cfg, host("web1", &a, &roots[0], "\"web\"") + &host("web2", &b, &roots[1], "\"web\", \"slow\""))
        .unwrap();
    let apply = || {
        let mut c = s.cli(&s.admin);
        c.args(["infra", "apply", "all", "--forks", "2", "--config"]).arg(&cfg);
        c
    };
    let (code, text, err) = out(&apply().output().unwrap());
    assert_eq!(code, 0, "{text}\n{err}");
    for (i, r) in roots.iter().enumerate() {
        let got = std::fs::read_to_string(r.join("etc/www/app.conf")).unwrap();
        assert_eq!(got, format!("listen 1 on web{}\n", i + 1), "rendered here, written there");
    }
    let (code, text, _) = out(&apply().output().unwrap());
    assert_eq!(code, 0);
    assert_eq!(text.matches("0 changed, 2 unchanged").count(), 1, "{text}");
    assert!(text.contains("0 changed, 3 unchanged"), "{text}");

    // web2 dies while its engine runs: web2 is reported unreachable, web1 still converges.
    std::fs::write(roots[1].join("go-slow"), "").unwrap();
    std::fs::remove_file(roots[0].join("etc/www/app.conf")).unwrap();
    let run = apply().stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !roots[1].join("started").exists() {
        assert!(std::time::Instant::now() < deadline, "web2's slow step never began");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    b.kill();
    let (code, text, _) = out(&run.wait_with_output().unwrap());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("web2: unreachable"), "{text}");
    assert!(text.contains("web1:\n  ~ file:/etc/www/app.conf created"), "{text}");
    assert!(roots[0].join("etc/www/app.conf").exists());
    let v = s.get_json("/api/v1/events?kind=infra", &s.admin).await;
    let kinds: Vec<(&str, &str)> = v["events"].as_array().unwrap()[..2]
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("infra.unreachable", "host:web2")), "{v}");
    assert!(kinds.contains(&("infra.applied", "host:web1")), "{v}");
}

#[tokio::test]
async fn an_ssh_control_folder_someone_else_made_is_not_used() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = Server::start().await;
    let d = repo();
    let sshd = crew_testkit::Sshd::start().unwrap();
    // Someone made crew's control folder first, open to all, to hand crew a master connection or listen in.
    let run = d.path().join("run");
    let squat = run.join("crew-ssh");
    std::fs::create_dir_all(&squat).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&squat, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&squat, Some(65534), Some(65534)).unwrap();
    let opts: Vec<String> = sshd.options().iter().map(|o| format!("{o:?}")).collect();
    let cfg = d.path().join("crew.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[hosts]]\nname = \"web1\"\naddress = \"ssh://{}@127.0.0.1:{}\"\nroles = [\"web\"]\nroot = \"{}\"\nvars = {{ port = 1 }}\nssh_options = [{}]\n",
            crew_testkit::whoami(),
            sshd.port,
            d.path().join("far").display(),
            opts.join(", ")
        ),
    )
    .unwrap();
    let o = s
        .cli(&s.admin)
        .env("XDG_RUNTIME_DIR", &run)
        .args(["infra", "apply", "all", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let (code, text, err) = out(&o);
    assert_eq!(code, 0, "{text}\n{err}");
    assert!(d.path().join("far/etc/www/app.conf").exists(), "applied over a connection of crew's own");
    let m = std::fs::symlink_metadata(&squat).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (65534, 0o777), "the squatted folder is left as it was");
    assert_eq!(std::fs::read_dir(&squat).unwrap().count(), 0, "and no socket of crew's is in it");
}
