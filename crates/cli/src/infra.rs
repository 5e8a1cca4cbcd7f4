//! `crew infra plan|apply TARGET`: reads crew.toml's [[hosts]] and roles/*.toml, checks everything before any
//! host is touched, then runs the engine for each host, `--forks` at a time: on this machine for `local` hosts
//! (or with `--local`), else over one SSH session per host, running crew's own binary there (copied first when
//! the host lacks this exact build). Prints the changes with diffs and a summary; an apply is recorded on the
//! timeline as `infra.applied` when a crew server is reachable. A host that cannot be reached is reported and
//! the others finish.

use crate::cli::InfraArgs;
use crate::client::Client;
use crate::Exit;
use anyhow::Result;
use crew_infra::engine::{self, Report, Status, Target};
use crew_infra::{Host, Resource};
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
struct HostsFile {
    #[serde(default)]
    hosts: Vec<Host>,
}

/// The hosts TARGET names, each with its resources (its roles in order), all checked.
fn load(config: &Path, target: &str) -> Result<Vec<(Host, Vec<Resource>)>, Exit> {
    let text =
        std::fs::read_to_string(config).map_err(|e| Exit::new(2, format!("cannot read {}: {e}", config.display())))?;
    // Only [[hosts]] is read here; the server checks the rest of the file.
    let file: HostsFile = toml::from_str(&text).map_err(|e| Exit::new(2, format!("{}: {e}", config.display())))?;
    if file.hosts.is_empty() {
        return Err(Exit::new(2, format!("{}: no [[hosts]]", config.display())));
    }
    let base = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let chosen: Vec<&Host> = file
        .hosts
        .iter()
        .filter(|h| target == "all" || h.name == target || h.roles.iter().any(|r| r == target))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = file.hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(Exit::new(
            2,
            format!("`{target}` is no host or role of {} (hosts: {})", config.display(), names.join(", ")),
        ));
    }
    let mut out = Vec::new();
    for h in chosen {
        if h.roles.is_empty() {
            return Err(Exit::new(2, format!("{}: host `{}` has no roles", config.display(), h.name)));
        }
        let mut resources = Vec::new();
        for role in &h.roles {
            let shown = format!("roles/{role}.toml");
            let text = std::fs::read_to_string(base.join(&shown))
                .map_err(|e| Exit::new(2, format!("{shown} (role of host `{}`): {e}", h.name)))?;
            let parsed = crew_infra::parse_role(&shown, &text).map_err(|e| Exit::new(2, e.to_string()))?;
            resources.extend(parsed.resources);
        }
        // The order is checked for every host before any is touched (cycles, unknown references).
        crew_infra::order(&resources).map_err(|e| Exit::new(2, format!("host `{}`: {e}", h.name)))?;
        out.push((h.clone(), resources));
    }
    Ok(out)
}

/// `crew infra engine`: what runs on a host. Resources on stdin, the report on stdout.
pub fn engine_here(root: &Path, apply: bool) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Payload {
        resources: Vec<Resource>,
    }
    let p: Payload =
        serde_json::from_reader(std::io::stdin()).map_err(|e| Exit::new(2, format!("engine input: {e}")))?;
    let target = Target { root: root.to_path_buf(), repo: root.to_path_buf(), context: json!({}) };
    let report = engine::run(&p.resources, &target, apply).map_err(|e| Exit::new(2, e.to_string()))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// What became of one host.
enum HostRun {
    Done(Report),
    Unreachable(String),
}

/// What `crew infra` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
    /// A plan whose changes are drift, recorded on the timeline.
    Check,
}

pub async fn run(args: &InfraArgs, mode: Mode, as_json: bool, client: impl Fn() -> Result<Client>) -> Result<()> {
    let text = !as_json && !args.quiet;
    let apply = mode == Mode::Apply;
    let hosts = load(&args.config, &args.target)?;
    let base = args.config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut jobs = Vec::new();
    for (h, resources) in &hosts {
        let remote = h.address != "local" && !args.local;
        let root = match &args.root {
            Some(r) => r.clone(),
            None => {
                let r = PathBuf::from(&h.root);
                if r.is_absolute() || remote {
                    r
                } else {
                    base.join(r)
                }
            }
        };
        if remote {
            ssh::parse(&h.address).map_err(|e| Exit::new(2, format!("host `{}`: {e}", h.name)))?;
        }
        let mut context = serde_json::to_value(&h.vars).unwrap_or_default();
        context["facts"] = json!({"hostname": h.name, "roles": h.roles, "root": root.display().to_string()});
        // Templates are rendered and sources read here, for every host, before any host is touched.
        let here = Target { root: root.clone(), repo: base.clone(), context };
        let resolved =
            engine::resolve(resources, &here).map_err(|e| Exit::new(2, format!("host `{}`: {e}", h.name)))?;
        if !remote {
            engine::run(&resolved, &here, false).map_err(|e| Exit::new(2, format!("host `{}`: {e}", h.name)))?;
        }
        jobs.push((h.clone(), resolved, root, remote));
    }
    let forks = std::sync::Arc::new(tokio::sync::Semaphore::new(args.forks as usize));
    let mut set = tokio::task::JoinSet::new();
    for (i, (h, resources, root, remote)) in jobs.into_iter().enumerate() {
        let forks = forks.clone();
        set.spawn(async move {
            let _turn = forks.acquire_owned().await.expect("semaphore");
            let result = if remote {
                ssh::run(&h, &resources, &root, apply).await
            } else {
                let target = Target { root, repo: PathBuf::new(), context: json!({}) };
                tokio::task::spawn_blocking(move || engine::run(&resources, &target, apply))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map(HostRun::Done)
            };
            (i, h.name, result)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        results.push(r?);
    }
    results.sort_by_key(|(i, _, _)| *i);
    let mut reports = Vec::new();
    let mut unreachable = Vec::new();
    let mut broken = Vec::new();
    for (_, host, result) in results {
        match result {
            Ok(HostRun::Done(report)) => {
                if text {
                    print_report(&host, &report);
                }
                reports.push((host, report));
            }
            Ok(HostRun::Unreachable(why)) => {
                if text {
                    println!("{host}: unreachable: {why}");
                }
                unreachable.push((host, why));
            }
            Err(e) => {
                if text {
                    println!("{host}: failed: {e}");
                }
                broken.push((host, e));
            }
        }
    }
    if as_json && !args.quiet {
        let mut v: Vec<_> = reports.iter().map(|(h, r)| json!({"host": h, "report": r})).collect();
        v.extend(unreachable.iter().map(|(h, why)| json!({"host": h, "unreachable": why})));
        v.extend(broken.iter().map(|(h, e)| json!({"host": h, "error": e})));
        println!("{}", serde_json::to_string_pretty(&json!({"hosts": v}))?);
    }
    match mode {
        _ if args.no_record => {}
        Mode::Apply => record(&reports, &unreachable, client).await,
        Mode::Check => drift(&reports, client).await,
        Mode::Plan => {}
    }
    if !unreachable.is_empty() || !broken.is_empty() {
        return Err(Exit::new(1, format!("{} host(s) unreachable, {} failed", unreachable.len(), broken.len())).into());
    }
    if reports.iter().any(|(_, r)| r.summary.failed > 0) {
        return Err(Exit::new(1, "some resources failed").into());
    }
    Ok(())
}

/// The SSH transport: one session per step, sharing one connection (ControlMaster), crew's binary copied to
/// `~/.cache/crew/` once per build.
mod ssh {
    use super::HostRun;
    use crew_infra::engine::Report;
    use crew_infra::{Host, Resource};
    use serde_json::json;
    use std::path::Path;
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    use tokio::process::Command;

    pub struct Address {
        dest: String,
        port: Option<u16>,
    }

    pub fn parse(address: &str) -> Result<Address, String> {
        let u = url::Url::parse(address)
            .map_err(|e| format!("address `{address}`: {e}; expected ssh://user@host:port or local"))?;
        if u.scheme() != "ssh" || u.host_str().is_none() {
            return Err(format!("address `{address}`: expected ssh://user@host:port or local"));
        }
        let host = u.host_str().unwrap_or_default().to_string();
        let dest = if u.username().is_empty() { host } else { format!("{}@{host}", u.username()) };
        Ok(Address { dest, port: u.port() })
    }

    fn args(h: &Host, a: &Address, control: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"].iter().map(|s| s.to_string()).collect();
        v.extend(h.ssh_options.iter().cloned());
        // One connection per host shared by every session of this run and, for a minute, of the next runs
        // (as Ansible does): a no-change run then costs one session, not a handshake.
        v.extend([
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}/%C", control.display()),
            "-o".into(),
            "ControlPersist=60".into(),
        ]);
        if let Some(p) = a.port {
            v.extend(["-p".into(), p.to_string()]);
        }
        v.push("--".into());
        v.push(a.dest.clone());
        v
    }

    /// Runs `script` on the host with `stdin`: its output, or its exit code and error output; exit 255 (ssh's
    /// own failure) is the outer error, the host unreachable.
    async fn remote(
        h: &Host,
        a: &Address,
        control: &Path,
        script: &str,
        stdin: &[u8],
    ) -> Result<Result<Vec<u8>, (i32, String)>, String> {
        let mut child = Command::new("ssh")
            .args(args(h, a, control))
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        let mut input = child.stdin.take().expect("piped");
        let data = stdin.to_vec();
        let writer = tokio::spawn(async move {
            let _ = input.write_all(&data).await;
        });
        let out = child.wait_with_output().await.map_err(|e| format!("ssh: {e}"))?;
        let _ = writer.await;
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.status.code() {
            Some(0) => Ok(Ok(out.stdout)),
            Some(255) => Err(if err.is_empty() { "ssh failed".into() } else { err }),
            Some(code) => Ok(Err((code, err))),
            None => Ok(Err((-1, err))),
        }
    }

    /// This build's identity: crew's version and a hash of its binary, so a host runs exactly this engine. The
    /// hash is kept beside the binary's size and modification time in the user's cache, so it is computed once
    /// per build, not once per run.
    fn build() -> Result<(String, std::path::PathBuf), String> {
        use sha2::{Digest, Sha256};
        use std::os::unix::fs::MetadataExt;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find crew's own binary: {e}"))?;
        let meta = std::fs::metadata(&exe).map_err(|e| format!("{}: {e}", exe.display()))?;
        let stamp = format!("{} {} {} {}", exe.display(), meta.len(), meta.mtime(), meta.mtime_nsec());
        let cache = super::cache_dir().map(|d| d.join("self-hash"));
        let cached = cache.as_ref().and_then(|c| std::fs::read_to_string(c).ok()).and_then(|t| {
            let (s, h) = t.rsplit_once('\n')?;
            (s == stamp && h.len() == 16).then(|| h.to_string())
        });
        let hash = match cached {
            Some(h) => h,
            None => {
                let bytes = std::fs::read(&exe).map_err(|e| format!("{}: {e}", exe.display()))?;
                let h = format!("{:x}", Sha256::digest(&bytes))[..16].to_string();
                if let Some(c) = &cache {
                    let tmp = c.with_extension(format!("{}.tmp", std::process::id()));
                    if std::fs::write(&tmp, format!("{stamp}\n{h}")).is_ok() {
                        let _ = std::fs::rename(&tmp, c);
                    }
                }
                h
            }
        };
        Ok((format!("crew-{}-{hash}", env!("CARGO_PKG_VERSION")), exe))
    }

    /// What the remote shell exits with when this build is not on the host yet.
    const MISSING: i32 = 97;

    pub async fn run(h: &Host, resources: &[Resource], root: &Path, apply: bool) -> Result<HostRun, String> {
        let a = parse(&h.address)?;
        // The shared connections' sockets: in a folder only this user can enter, checked as deploys check it.
        let control = crew_deploy::host::control_dir().map_err(|e| e.to_string())?;
        let control = control.as_path();
        let (name, exe) = build()?;
        let bin = format!("$HOME/.cache/crew/{name}");
        let payload = serde_json::to_vec(&json!({ "resources": resources })).map_err(|e| e.to_string())?;
        let root_q = format!("'{}'", root.display().to_string().replace('\'', "'\\''"));
        // One session in the usual case: run the engine if this build is there, else say so and copy it.
        let cmd = format!(
            "test -x \"{bin}\" || exit {MISSING}; exec \"{bin}\" infra engine --root {root_q}{}",
            if apply { " --apply" } else { "" }
        );
        let mut result = remote(h, &a, control, &cmd, &payload).await;
        if matches!(&result, Ok(Err((code, _))) if *code == MISSING) {
            let bytes = std::fs::read(&exe).map_err(|e| format!("{}: {e}", exe.display()))?;
            // A temporary name of this shell's own ($$): two runs copying at once never write the same file.
            let copy = format!(
                "mkdir -p \"$HOME/.cache/crew\" && cat > \"{bin}.$$.tmp\" && chmod 755 \"{bin}.$$.tmp\" && mv \"{bin}.$$.tmp\" \"{bin}\""
            );
            match remote(h, &a, control, &copy, &bytes).await {
                Err(why) => return Ok(HostRun::Unreachable(why)),
                Ok(Err((_, e))) => return Err(format!("copying crew to the host: {e}")),
                Ok(Ok(_)) => {}
            }
            result = remote(h, &a, control, &cmd, &payload).await;
        }
        match result {
            Err(why) => Ok(HostRun::Unreachable(why)),
            Ok(Err((_, e))) => Err(e),
            Ok(Ok(out)) => serde_json::from_slice::<Report>(&out)
                .map(HostRun::Done)
                .map_err(|e| format!("the engine's report: {e}")),
        }
    }
}

/// The user's cache folder for crew (`$XDG_CACHE_HOME/crew` or `~/.cache/crew`), made if missing.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let dir = base.join("crew");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// `infra.drift` for each host whose plan has changes, naming the resources, with the plan as the report.
async fn drift(reports: &[(String, Report)], client: impl Fn() -> Result<Client>) {
    let drifted: Vec<_> = reports.iter().filter_map(|(h, r)| Some((h, r, r.drift_summary(h)?))).collect();
    if drifted.is_empty() {
        return;
    }
    let Ok(client) = client() else {
        eprintln!("crew: no crew server to record the drift on (set CREW_SERVER and CREW_TOKEN)");
        return;
    };
    for (host, r, _) in drifted {
        let body = json!({"outcome": "drift", "host": host, "report": r});
        if let Err(e) = client.json(Method::POST, "/api/v1/infra/reports", Some(&body)).await {
            eprintln!("crew: the drift on {host} was not recorded on the timeline: {e}");
        }
    }
}

fn print_report(host: &str, r: &Report) {
    let verb = if r.applied { "" } else { "would be " };
    println!("{host}:");
    for o in &r.resources {
        match o.status {
            Status::Unchanged if !o.refreshed => {}
            Status::Failed => println!("  ✗ {}: {}", o.resource, o.error.as_deref().unwrap_or("failed")),
            Status::Skipped => println!("  - {} {}", o.resource, o.error.as_deref().unwrap_or("skipped")),
            _ => {
                let mut what = o.changes.join(", ");
                if o.refreshed {
                    what = if what.is_empty() { "refreshed".into() } else { format!("{what}, refreshed") };
                }
                println!("  ~ {} {verb}{what}", o.resource);
                if let Some(d) = &o.diff {
                    for l in d.lines() {
                        println!("      {l}");
                    }
                }
            }
        }
    }
    let s = &r.summary;
    println!(
        "  {} changed, {} unchanged, {} failed, {} skipped, {} refreshed",
        s.changed, s.unchanged, s.failed, s.skipped, s.refreshed
    );
}

/// Each host's apply as an `infra.applied` event (and `infra.unreachable` for a host that could not be reached),
/// when a server answers (the machines changed either way).
async fn record(reports: &[(String, Report)], unreachable: &[(String, String)], client: impl Fn() -> Result<Client>) {
    let Ok(client) = client() else {
        eprintln!("crew: no crew server to record this apply on (set CREW_SERVER and CREW_TOKEN)");
        return;
    };
    for (host, r) in reports {
        let body = json!({"outcome": "applied", "host": host, "report": r});
        if let Err(e) = client.json(Method::POST, "/api/v1/infra/reports", Some(&body)).await {
            eprintln!("crew: the apply on {host} was not recorded on the timeline: {e}");
        }
    }
    for (host, why) in unreachable {
        let body = json!({"outcome": "unreachable", "host": host, "reason": why, "during": "apply"});
        if let Err(e) = client.json(Method::POST, "/api/v1/infra/reports", Some(&body)).await {
            eprintln!("crew: the failure to reach {host} was not recorded on the timeline: {e}");
        }
    }
}
