//! Ship-and-switch benchmark: a 50 MB artifact (2,000 small files and three large ones) deployed to 10 `local:`
//! hosts and to 3 SSH hosts (real sshd on loopback), each phase next to the raw baseline (the same rsync and
//! `ln -s` + `mv` commands issued directly, all hosts at once); then a rollback of the 10 local hosts, and a
//! redeploy of an unchanged commit (the build is reused).
//!
//!   cargo bench -p crew-deploy --bench ship

use crew_deploy::config::{AppSection, BuildSection, Environment, Host};
use crew_deploy::host::Target;
use crew_deploy::{DeployConfig, Journal};
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Quiet;
impl Journal for Quiet {
    fn line(&self, _: String) {}
}

/// Deterministic bytes, so every run ships the same artifact.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn artifact(dir: &Path) {
    for i in 0..2000 {
        let sub = dir.join(format!("assets/{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("file{i}.js")), bytes(i as u64, 10_000)).unwrap();
    }
    for i in 0..3 {
        std::fs::write(dir.join(format!("big{i}.bin")), bytes(1000 + i, 10_000_000)).unwrap();
    }
}

fn sh(script: &str) {
    let ok = Command::new("sh").args(["-c", script]).status().unwrap().success();
    assert!(ok, "{script}");
}

/// The raw baseline for one host: rsync, then `ln -s` + `mv`, as a person would type them.
async fn raw(host: &Host, ssh: &str, artifact: &Path, release: &str, previous: Option<&str>) {
    let path = host.path();
    let link = previous.map(|p| format!("--checksum --link-dest={path}/releases/{p}")).unwrap_or_default();
    let switch =
        format!("mkdir -p {path}/releases && ln -sfn releases/{release} {path}/.c && mv -Tf {path}/.c {path}/current");
    let script = match host {
        Host::Local { .. } => format!(
            "mkdir -p {path}/releases && rsync -rlpD --delete {link} {}/ {path}/releases/{release}/ && {switch}",
            artifact.display()
        ),
        Host::Ssh { user, host: h, port, .. } => {
            let dest = format!("{}@{h}", user.clone().unwrap_or_default());
            let p = port.unwrap_or(22);
            format!(
                "ssh {ssh} -p {p} {dest} mkdir -p {path}/releases && rsync -rlpD --delete {link} -e 'ssh {ssh} -p {p}' {}/ {dest}:{path}/releases/{release}/ && ssh {ssh} -p {p} {dest} '{switch}'",
                artifact.display()
            )
        }
    };
    let ok = tokio::process::Command::new("sh").args(["-c", &script]).status().await.unwrap().success();
    assert!(ok, "{script}");
}

/// crew's steps for one host: prepare, transfer, switch.
async fn crew(t: &Target, artifact: &Path, release: &str) {
    let previous = t.prepare().await.unwrap();
    t.transfer(artifact, release, previous.as_deref()).await.unwrap();
    t.switch(release).await.unwrap();
}

async fn timed<F: std::future::Future<Output = ()>>(f: F) -> Duration {
    let t = Instant::now();
    f.await;
    t.elapsed()
}

fn row(label: &str, crew: Duration, raw: Duration) {
    println!(
        "{label:<44} crew {:>7.3}s   raw {:>7.3}s   {:.2}x",
        crew.as_secs_f64(),
        raw.as_secs_f64(),
        crew.as_secs_f64() / raw.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("artifact");
    artifact(&art);
    let art2 = dir.path().join("artifact2");
    sh(&format!(
        "cp -a {}/. {}/ && echo changed > {}/assets/00/file0.js",
        art.display(),
        art2.display(),
        art2.display()
    ));
    println!(
        "ship benchmark: 50 MB artifact (2,000 × 10 kB + 3 × 10 MB); {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let sshds: Vec<crew_testkit::Sshd> = (0..3).map(|_| crew_testkit::Sshd::start().unwrap()).collect();
    for d in &sshds[1..] {
        d.authorize(&sshds[0]).unwrap();
    }
    let opts = sshds[0].options();
    let ssh_flags = opts.join(" ");
    let user = crew_testkit::whoami();
    let groups: Vec<(&str, Vec<Host>, Vec<String>)> = vec![
        (
            "10 local hosts",
            (0..10).map(|i| Host::Local { path: dir.path().join(format!("local/h{i}")) }).collect(),
            vec![],
        ),
        (
            "3 SSH hosts",
            sshds
                .iter()
                .enumerate()
                .map(|(i, d)| Host::Ssh {
                    user: Some(user.clone()),
                    host: "127.0.0.1".into(),
                    port: Some(d.port),
                    path: dir.path().join(format!("ssh/h{i}")).display().to_string(),
                })
                .collect(),
            opts.clone(),
        ),
    ];
    // Warm up: read both artifacts once, so the first measured run does not pay for it.
    sh(&format!("cat $(find {} {} -type f) > /dev/null", art.display(), art2.display()));
    for (label, hosts, ssh_options) in &groups {
        let targets: Vec<Target> =
            hosts.iter().map(|h| Target { host: h.clone(), ssh_options: ssh_options.clone() }).collect();
        let raw_hosts: Vec<Host> = hosts
            .iter()
            .map(|h| match h {
                Host::Local { path } => Host::Local { path: path.with_extension("raw") },
                Host::Ssh { user, host, port, path } => {
                    Host::Ssh { user: user.clone(), host: host.clone(), port: *port, path: format!("{path}.raw") }
                }
            })
            .collect();
        // First deploy: everything is transferred. The two take turns and each waits for the
        // kernel to write back the other's 500 MB, so neither pays for the other's dirty pages.
        sh("sync");
        let c = timed(async {
            join_all(targets.iter().map(|t| crew(t, &art, "r1"))).await;
        })
        .await;
        sh("sync");
        let r = timed(async {
            join_all(raw_hosts.iter().map(|h| raw(h, &ssh_flags, &art, "r1", None))).await;
        })
        .await;
        row(&format!("{label}: first deploy (all 50 MB)"), c, r);
        // Second deploy: one file changed; the rest hard-linked to the previous release.
        sh("sync");
        let c = timed(async {
            join_all(targets.iter().map(|t| crew(t, &art2, "r2"))).await;
        })
        .await;
        sh("sync");
        let r = timed(async {
            join_all(raw_hosts.iter().map(|h| raw(h, &ssh_flags, &art2, "r2", Some("r1")))).await;
        })
        .await;
        row(&format!("{label}: next deploy (1 file changed)"), c, r);
    }

    // Rollback of the 10 local hosts: switch back to r1 (no build), through crew's rollback.
    let mut environments = BTreeMap::new();
    let hosts: Vec<String> =
        (0..10).map(|i| format!("local:{}", dir.path().join(format!("local/h{i}")).display())).collect();
    let env: Environment = toml::from_str(&format!("hosts = {hosts:?}\nparallel = 10")).unwrap();
    environments.insert("production".to_string(), env);
    let app: AppSection = toml::from_str("name = \"bench\"").unwrap();
    let build: BuildSection = toml::from_str("command = \"true\"\nartifact = \"dist\"").unwrap();
    let cfg = DeployConfig::check(app, build, environments, dir.path()).unwrap();
    let t = Instant::now();
    let out = crew_deploy::run::rollback(&cfg, "production", "r1", &Quiet).await;
    assert_eq!(out.status, crew_deploy::run::Status::Succeeded);
    println!("{:<44} crew {:>7.3}s   (goal ≤ 1 s)", "rollback of 10 local hosts", t.elapsed().as_secs_f64());

    // Build once per commit: the second ensure of the same commit reuses it.
    let repo = dir.path().join("repo");
    sh(&format!(
        "mkdir -p {r} && cd {r} && git init -q -b main && echo hi > index.html && git add -A && git -c user.name=b -c user.email=b@e commit -qm one",
        r = repo.display()
    ));
    let mut environments = BTreeMap::new();
    environments
        .insert("staging".to_string(), toml::from_str::<Environment>("hosts = [\"local:/tmp/unused\"]").unwrap());
    let app: AppSection = toml::from_str(&format!("name = \"bench\"\nrepo = \"{}\"", repo.display())).unwrap();
    let build: BuildSection =
        toml::from_str("command = \"sleep 1 && mkdir -p dist && cp index.html dist/\"\nartifact = \"dist\"").unwrap();
    let cfg = DeployConfig::check(app, build, environments, dir.path()).unwrap();
    let sha = crew_deploy::git::resolve(&cfg.repo, "main", None).await.unwrap();
    let builds = dir.path().join("builds");
    let t = Instant::now();
    crew_deploy::build::ensure(&cfg, &builds, &sha, "staging", &Quiet).await.unwrap();
    let first = t.elapsed();
    let t = Instant::now();
    crew_deploy::build::ensure(&cfg, &builds, &sha, "staging", &Quiet).await.unwrap();
    println!(
        "{:<44} first {:>6.3}s   again {:>6.4}s (reused)",
        "build of one commit (command sleeps 1 s)",
        first.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let _ = PathBuf::new();
}
