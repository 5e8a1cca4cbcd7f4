//! `[app]`, `[build]` and `[environments.*]` of `crew.toml`, as PRODUCT.md §3 gives them. Unknown keys are
//! errors (serde's `deny_unknown_fields`); cross-field rules are checked by [`DeployConfig::check`].

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    pub name: String,
    /// Path (relative to crew.toml) or URL of the git repository.
    #[serde(default = "dot")]
    pub repo: String,
    /// Trunk: deploys take its head unless `--rev` names a commit on it.
    #[serde(default = "main_branch")]
    pub branch: String,
}

fn dot() -> String {
    ".".into()
}
fn main_branch() -> String {
    "main".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// Runs with `sh -c` in a clean checkout of the commit (with `.git`).
    pub command: String,
    /// The folder the command produces, relative to the checkout.
    pub artifact: String,
    /// How long the build (and each hook) may run before it is stopped and the deploy fails.
    #[serde(default = "thirty_minutes")]
    pub timeout: String,
    /// Variables of the server's environment the build and the hooks get, by name. They get nothing else of it
    /// (the server's passwords and URLs are not theirs): PATH, HOME, LANG and crew's `CREW_*` build variables.
    #[serde(default)]
    pub env: Vec<String>,
    /// The OS user builds and hooks run as (crew must run as root to use it): a user that cannot read crew's
    /// data dir, so a build cannot read the admin token or the database.
    pub user: Option<String>,
}

/// The variables crew gives every build and hook itself.
pub const BUILD_VARIABLES: [&str; 3] = ["CREW_REVISION", "CREW_APP", "CREW_ENVIRONMENT"];

/// The OS user of `[build] user`, as /etc/passwd has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl BuildUser {
    /// `name` in `passwd` (the text of /etc/passwd), checked for a server whose effective uid is `euid`: only
    /// root can run a build as another user.
    pub fn find(name: &str, passwd: &str, euid: u32) -> Result<BuildUser, String> {
        if euid != 0 {
            return Err(format!(
                "build.user `{name}`: crew runs as uid {euid}, not root, so it cannot run builds as another user; \
                 run crew as root or remove build.user"
            ));
        }
        let user = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 7 && f[0] == name)
            .ok_or_else(|| format!("build.user `{name}`: no such user in /etc/passwd"))?;
        let number = |s: &str, what: &str| {
            s.parse::<u32>().map_err(|_| format!("build.user `{name}`: /etc/passwd has {what} `{s}`"))
        };
        let (uid, gid) = (number(user[2], "uid")?, number(user[3], "gid")?);
        if uid == 0 {
            return Err(format!("build.user `{name}` is root: name a user that cannot read crew's data dir"));
        }
        Ok(BuildUser { name: name.to_string(), uid, gid, home: PathBuf::from(user[5]) })
    }

    /// `name` on this machine, for this process.
    fn lookup(name: &str) -> Result<BuildUser, String> {
        let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("build.user: /etc/passwd: {e}"))?;
        BuildUser::find(name, &passwd, effective_uid()?)
    }
}

/// This process's effective uid, from /proc (the standard library has no `geteuid`).
fn effective_uid() -> Result<u32, String> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| format!("build.user: /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "build.user: no effective uid in /proc/self/status".to_string())
}

fn thirty_minutes() -> String {
    "30m".into()
}

fn two_minutes() -> String {
    "2m".into()
}

/// A span from crew.toml (checked by [`DeployConfig::check`]).
pub fn span(s: &str) -> Duration {
    crew_core::time::parse_span(s).ok().and_then(|d| d.to_std().ok()).unwrap_or(Duration::from_secs(60))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub hosts: Vec<String>,
    /// How many hosts switch first; the rest only if they stay healthy.
    #[serde(default)]
    pub canary: usize,
    /// Hosts shipped and switched at a time after the canaries.
    #[serde(default = "four")]
    pub parallel: usize,
    #[serde(default = "five")]
    pub keep_releases: usize,
    /// Only commits already live on this environment.
    pub requires: Option<String>,
    /// Runs on each host after the switch, in the new release's folder.
    pub restart: Option<String>,
    /// How long `restart` may run on a host before it counts as failed.
    #[serde(default = "two_minutes")]
    pub restart_timeout: String,
    pub health: Option<Health>,
    #[serde(default)]
    pub hooks: Hooks,
    /// Extra `ssh` arguments for this environment's SSH hosts (e.g. `["-i", "/path/key"]`).
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// The on-call schedule that answers for this environment: a deploy warns when nobody is on call or a
    /// handoff is near.
    pub oncall: Option<String>,
    /// Refuse (rather than warn about) a deploy while nobody is on call.
    #[serde(default)]
    pub require_oncall: bool,
    /// The series the judge compares during and after a deploy (PRODUCT.md §10).
    pub watch: Option<Watch>,
}

/// `[environments.NAME.watch]`: the canary hosts' series judged against the baseline hosts' every `interval`
/// for `window` (or, without canaries, the window after the switch against the window before it).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// How long the canary is judged before the rest switch (`"10m"`).
    #[serde(default = "ten_minutes")]
    pub window: String,
    /// How often it is judged meanwhile (`"1m"`); a failing verdict acts at once.
    #[serde(default = "one_minute")]
    pub interval: String,
    /// What a failing verdict does.
    #[serde(default)]
    pub on_fail: OnFail,
    /// Judge and record, but never act.
    #[serde(default)]
    pub dry_run: bool,
    pub series: Vec<crew_judge::WatchSeries>,
}

/// What a failing canary verdict does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// Switch every switched host back by itself, then page the deployer.
    #[default]
    Rollback,
    /// Page the deployer and hold the canary for their decision (switched back if none comes within the
    /// window).
    Page,
    /// Hold the canary for a decision, announced but not paged (switched back if none comes within the window).
    Pause,
}

impl OnFail {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFail::Rollback => "rollback",
            OnFail::Page => "page",
            OnFail::Pause => "pause",
        }
    }
}

fn ten_minutes() -> String {
    "10m".into()
}
fn one_minute() -> String {
    "1m".into()
}

impl Watch {
    pub fn window(&self) -> Duration {
        span(&self.window)
    }
    pub fn interval(&self) -> Duration {
        span(&self.interval)
    }

    /// Checks spans (whole seconds, the interval within the window) and the series; `at` names the table.
    pub fn check(&self, at: &str) -> Result<(), String> {
        let parse = |key: &str, v: &str| {
            crew_core::time::parse_span(v)
                .map_err(|e| format!("{at}.{key}: {e}"))
                .and_then(|d| d.to_std().map_err(|_| format!("{at}.{key}: `{v}` is not a positive span")))
        };
        let window = parse("window", &self.window)?;
        let interval = parse("interval", &self.interval)?;
        if interval < Duration::from_secs(1) {
            return Err(format!("{at}.interval: `{}` is under 1s", self.interval));
        }
        if interval > window {
            return Err(format!(
                "{at}.interval: `{}` is longer than the window (`{}`): the canary would never be judged",
                self.interval, self.window
            ));
        }
        if window > Duration::from_secs(24 * 3600) {
            return Err(format!("{at}.window: `{}` is over a day: a deploy holds its lock that long", self.window));
        }
        crew_judge::watch::check_all(&self.series, &format!("{at}.series"))
    }
}

fn four() -> usize {
    4
}
fn five() -> usize {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `{host}` is replaced by the host's name (`localhost` for `local:` hosts).
    pub url: String,
    #[serde(default = "thirty_seconds")]
    pub timeout: String,
    #[serde(default = "ok_status")]
    pub expect: u16,
}

fn thirty_seconds() -> String {
    "30s".into()
}
fn ok_status() -> u16 {
    200
}

impl Health {
    pub fn timeout(&self) -> Duration {
        crew_core::time::parse_span(&self.timeout).ok().and_then(|d| d.to_std().ok()).unwrap_or(Duration::from_secs(30))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run on the crew server in the build's checkout before any host is touched; a failure stops the deploy.
    #[serde(default)]
    pub before: Vec<String>,
    /// Run the same way after every host runs the new release; a failure is reported, not rolled back.
    #[serde(default)]
    pub after: Vec<String>,
}

/// A deploy target: `local:/srv/www` or `ssh://deploy@web1:22/srv/www`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Local { path: PathBuf },
    Ssh { user: Option<String>, host: String, port: Option<u16>, path: String },
}

impl Host {
    pub fn parse(s: &str) -> Result<Host, String> {
        if let Some(path) = s.strip_prefix("local:") {
            if !path.starts_with('/') {
                return Err(format!("host `{s}`: a local host needs an absolute path, like local:/srv/www"));
            }
            return Ok(Host::Local { path: PathBuf::from(path) });
        }
        if s.starts_with("ssh://") {
            let u = url::Url::parse(s).map_err(|e| format!("host `{s}`: {e}"))?;
            let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("host `{s}`: no host name"))?;
            let path = u.path().to_string();
            if path.len() < 2 {
                return Err(format!("host `{s}`: no path; expected ssh://user@host:port/srv/www"));
            }
            let user = Some(u.username().to_string()).filter(|u| !u.is_empty());
            if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
                return Err(format!("host `{s}`: a host or user name cannot start with `-`"));
            }
            return Ok(Host::Ssh { user, host: host.to_string(), port: u.port(), path });
        }
        Err(format!("host `{s}`: expected local:/path or ssh://user@host:port/path"))
    }

    /// The name `{host}` stands for in health URLs.
    pub fn name(&self) -> &str {
        match self {
            Host::Local { .. } => "localhost",
            Host::Ssh { host, .. } => host,
        }
    }

    /// The host's name in its series' `host` tag: the host part of an `ssh://` URL, the last folder of a
    /// `local:` path (`local:/srv/www-2` is `www-2`).
    pub fn tag(&self) -> String {
        match self {
            Host::Local { path } => {
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "localhost".into())
            }
            Host::Ssh { host, .. } => host.clone(),
        }
    }

    /// The folder holding `releases/`, `shared/` and `current` on the host.
    pub fn path(&self) -> String {
        match self {
            Host::Local { path } => path.display().to_string(),
            Host::Ssh { path, .. } => path.clone(),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Local { path } => write!(f, "local:{}", path.display()),
            Host::Ssh { user, host, port, path } => {
                write!(f, "ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                write!(f, "{host}")?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                write!(f, "{path}")
            }
        }
    }
}

/// The deploy part of `crew.toml`, checked and with the repository resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    pub app: AppSection,
    pub build: BuildSection,
    pub environments: BTreeMap<String, Environment>,
    /// The repository as git is given it: an absolute path or a URL.
    pub repo: String,
    /// `[build] user`, looked up.
    pub build_user: Option<BuildUser>,
}

impl DeployConfig {
    /// Checks the rules serde cannot: hosts parse, `requires` names an environment, numbers make sense.
    /// `base` is the folder of crew.toml, which a relative `repo` is relative to.
    pub fn check(
        app: AppSection,
        build: BuildSection,
        environments: BTreeMap<String, Environment>,
        base: &Path,
    ) -> Result<DeployConfig, String> {
        if app.name.is_empty() || !app.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(format!("app.name `{}`: use letters, digits, `-`, `_` or `.`", app.name));
        }
        for (name, env) in &environments {
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
                return Err(format!("environments.{name}: use letters, digits, `-` or `_` in environment names"));
            }
            if env.hosts.is_empty() {
                return Err(format!("environments.{name}.hosts: at least one host"));
            }
            for h in &env.hosts {
                Host::parse(h).map_err(|e| format!("environments.{name}.hosts: {e}"))?;
            }
            if env.canary > env.hosts.len() {
                return Err(format!(
                    "environments.{name}.canary: {} is more than its {} hosts",
                    env.canary,
                    env.hosts.len()
                ));
            }
            if env.parallel == 0 {
                return Err(format!("environments.{name}.parallel: at least 1"));
            }
            if env.keep_releases < 2 {
                return Err(format!(
                    "environments.{name}.keep_releases: at least 2, so a rollback has a release to go back to"
                ));
            }
            if let Some(r) = &env.requires {
                if !environments.contains_key(r) || r == name {
                    return Err(format!("environments.{name}.requires: `{r}` is not another environment"));
                }
            }
            if let Some(w) = &env.watch {
                w.check(&format!("environments.{name}.watch"))?;
            }
            crew_core::time::parse_span(&env.restart_timeout)
                .map_err(|e| format!("environments.{name}.restart_timeout: {e}"))?;
            if let Some(h) = &env.health {
                crew_core::time::parse_span(&h.timeout)
                    .map_err(|e| format!("environments.{name}.health.timeout: {e}"))?;
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                    return Err(format!("environments.{name}.health.url: `{}` is not an http(s) URL", h.url));
                }
            }
        }
        crew_core::time::parse_span(&build.timeout).map_err(|e| format!("build.timeout: {e}"))?;
        for name in &build.env {
            let ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(format!("build.env: `{name}` is not a variable name (letters, digits and `_`)"));
            }
            if BUILD_VARIABLES.contains(&name.as_str()) {
                return Err(format!("build.env: `{name}` is crew's own build variable; crew sets it"));
            }
        }
        let build_user = build.user.as_deref().map(BuildUser::lookup).transpose()?;
        if app.repo.contains("://") || app.repo.contains('@') && app.repo.contains(':') {
            return Err(format!(
                "app.repo `{}`: crew builds from a repository on its own disk; clone it on the crew server and give its path",
                app.repo
            ));
        }
        let artifact = Path::new(&build.artifact);
        if build.artifact.is_empty()
            || artifact.is_absolute()
            || artifact.components().any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!("build.artifact `{}`: a folder inside the checkout, like `dist`", build.artifact));
        }
        let repo =
            if app.repo.starts_with('/') { app.repo.clone() } else { base.join(&app.repo).display().to_string() };
        Ok(DeployConfig { app, build, environments, repo, build_user })
    }

    pub fn environment(&self, name: &str) -> Result<&Environment, String> {
        self.environments.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.environments.keys().map(String::as_str).collect();
            format!("no environment `{name}` in crew.toml (known: {})", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let table = [
            ("local:/srv/www", Ok("localhost")),
            ("ssh://deploy@web1:2222/srv/www", Ok("web1")),
            ("ssh://web2/srv/www", Ok("web2")),
            ("local:srv", Err("absolute path")),
            ("ssh://web1", Err("no path")),
            ("ftp://x/y", Err("expected local:/path")),
            ("ssh://-oProxyCommand=x@h/srv", Err("cannot start with `-`")),
        ];
        for (s, want) in table {
            match (Host::parse(s), want) {
                (Ok(h), Ok(name)) => assert_eq!(h.name(), name),
                (Err(e), Err(needle)) => assert!(e.contains(needle) && e.contains(s), "{e}"),
                (got, want) => panic!("{s}: {got:?} vs {want:?}"),
            }
        }
        let h = Host::parse("ssh://deploy@web1:2222/srv/www").unwrap();
        assert_eq!(
            h,
            Host::Ssh { user: Some("deploy".into()), host: "web1".into(), port: Some(2222), path: "/srv/www".into() }
        );
        assert_eq!(h.to_string(), "ssh://deploy@web1:2222/srv/www");
    }

    fn env(hosts: &[&str]) -> Environment {
        toml::from_str(&format!("hosts = {:?}", hosts)).unwrap()
    }

    #[test]
    fn checks() {
        let app: AppSection = toml::from_str("name = \"www\"").unwrap();
        let build: BuildSection = toml::from_str("command = \"make\"\nartifact = \"dist\"").unwrap();
        let mut envs = BTreeMap::new();
        envs.insert("staging".to_string(), env(&["local:/a"]));
        let mut prod = env(&["local:/b", "local:/c"]);
        prod.requires = Some("staging".into());
        prod.canary = 1;
        envs.insert("production".to_string(), prod);
        let c = DeployConfig::check(app.clone(), build.clone(), envs.clone(), Path::new("/repo")).unwrap();
        assert_eq!(c.repo, "/repo/.");
        assert_eq!(c.environments["production"].parallel, 4);
        assert!(c.environment("qa").unwrap_err().contains("known: production, staging"));
        let mut bad = envs.clone();
        bad.get_mut("production").unwrap().requires = Some("qa".into());
        assert!(DeployConfig::check(app.clone(), build.clone(), bad, Path::new("/")).unwrap_err().contains("requires"));
        let mut bad = envs.clone();
        bad.get_mut("production").unwrap().canary = 3;
        assert!(DeployConfig::check(app.clone(), build.clone(), bad, Path::new("/")).unwrap_err().contains("canary"));
        let mut bad = envs.clone();
        bad.get_mut("staging").unwrap().hosts = vec!["nowhere".into()];
        assert!(DeployConfig::check(app.clone(), build.clone(), bad, Path::new("/"))
            .unwrap_err()
            .contains("environments.staging.hosts"));
        for (watch, says) in [
            (
                "interval = \"20m\"\nseries = [{ name = \"a\" }]",
                "environments.production.watch.interval: `20m` is longer than the window",
            ),
            ("window = \"soon\"\nseries = [{ name = \"a\" }]", "environments.production.watch.window"),
            (
                "series = [{ name = \"a\", stat = \"p42\" }]",
                "environments.production.watch.series[0].stat: unknown stat `p42`",
            ),
            ("series = []", "environments.production.watch.series: name at least one"),
        ] {
            let mut bad = envs.clone();
            bad.get_mut("production").unwrap().watch = Some(toml::from_str(watch).unwrap());
            let e = DeployConfig::check(app.clone(), build.clone(), bad, Path::new("/")).unwrap_err();
            assert!(e.contains(says), "{watch}: {e}");
        }
        let w: Result<Watch, _> = toml::from_str("on_fail = \"shrug\"\nseries = []");
        assert!(w.unwrap_err().to_string().contains("unknown variant `shrug`"));
        let unknown: Result<Environment, _> = toml::from_str("hosts = []\ncanaries = 1");
        assert!(unknown.unwrap_err().to_string().contains("unknown field `canaries`"));
    }

    #[test]
    fn build_env_and_user() {
        let app: AppSection = toml::from_str("name = \"www\"").unwrap();
        let envs: BTreeMap<String, Environment> = [("staging".to_string(), env(&["local:/a"]))].into();
        let check = |extra: &str| {
            let build: BuildSection =
                toml::from_str(&format!("command = \"make\"\nartifact = \"dist\"\n{extra}")).unwrap();
            DeployConfig::check(app.clone(), build, envs.clone(), Path::new("/"))
        };
        assert_eq!(check("env = [\"NPM_TOKEN\", \"_X1\"]").unwrap().build.env, ["NPM_TOKEN", "_X1"]);
        for (extra, needle) in [
            ("env = [\"A-B\"]", "build.env: `A-B` is not a variable name"),
            ("env = [\"1A\"]", "build.env: `1A`"),
            ("env = [\"\"]", "build.env: ``"),
            ("env = [\"CREW_REVISION\"]", "crew's own build variable"),
            ("user = \"no-such-user-here\"", "build.user `no-such-user-here`: no such user"),
            ("user = \"root\"", "build.user `root` is root"),
        ] {
            let err = check(extra).unwrap_err();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbuilder:x:1001:1002::/home/builder:/bin/sh\n";
        assert_eq!(
            BuildUser::find("builder", passwd, 0).unwrap(),
            BuildUser { name: "builder".into(), uid: 1001, gid: 1002, home: "/home/builder".into() }
        );
        let err = BuildUser::find("builder", passwd, 1000).unwrap_err();
        assert!(err.contains("build.user `builder`: crew runs as uid 1000, not root"), "{err}");
        let unknown: Result<BuildSection, _> = toml::from_str("command = \"make\"\nartifact = \"dist\"\nusr = \"x\"");
        assert!(unknown.unwrap_err().to_string().contains("unknown field `usr`"));
    }
}
