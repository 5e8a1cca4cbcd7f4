//! Settings of `crew serve`: command-line flags and `CREW_*` variables over `crew.toml` over defaults.
//!
//! `crew.toml` is read strictly: an unknown key is an error naming the key's path and the file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What the user gave on the command line or in the environment; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub statsd: Option<String>,
    pub database: Option<String>,
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Where StatsD is received; `None` when `off`.
    pub statsd: Option<SocketAddr>,
    pub database: String,
    /// The file the settings came from, if one was read.
    pub config_path: Option<PathBuf>,
    pub file: FileConfig,
    /// The app's deploy configuration, when crew.toml has `[app]` and `[build]`.
    pub deploy: Option<crew_deploy::DeployConfig>,
    /// `[metrics]`, checked (defaults when absent).
    pub metrics: crate::metrics::MetricsConfig,
    /// `[[alerts]]`, checked and parsed.
    pub alerts: Vec<crate::alerts::Rule>,
    /// `[server]`'s limits on connections and streams.
    pub limits: Limits,
    /// `[people]`, `[smtp]`, `[[schedules]]`, `[[escalations]]`, `[incidents]`, checked.
    pub oncall: crate::oncall::OncallConfig,
}

/// `crew.toml`. Sections of areas that land later are accepted as tables and typed strictly when they land.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    pub app: Option<crew_deploy::config::AppSection>,
    pub build: Option<crew_deploy::config::BuildSection>,
    #[serde(default)]
    pub environments: std::collections::BTreeMap<String, crew_deploy::Environment>,
    pub metrics: Option<crate::metrics::MetricsSection>,
    pub chat: Option<crate::chat::ChatSection>,
    #[serde(default)]
    pub dashboards: Vec<crate::metrics::dashboards::DashboardSection>,
    #[serde(default)]
    pub hosts: Vec<crew_infra::Host>,
    pub infra: Option<crate::infra::InfraSection>,
    #[serde(default)]
    pub alerts: Vec<crate::alerts::AlertSection>,
    #[serde(default)]
    pub people: std::collections::BTreeMap<String, crate::oncall::config::PersonSection>,
    pub smtp: Option<crate::oncall::config::SmtpSection>,
    #[serde(default)]
    pub schedules: Vec<crate::oncall::config::ScheduleSection>,
    #[serde(default)]
    pub escalations: Vec<crate::oncall::config::EscalationSection>,
    pub incidents: Option<crate::oncall::config::IncidentsSection>,
    pub drills: Option<crate::drills::DrillsSection>,
    /// `[flags]`: `require_plan_above`, `fractional`.
    pub flags: Option<crate::flags::FlagsSection>,
    /// `[experiments]`: `max_users`, `metrics`.
    pub experiments: Option<crate::experiments::ExperimentsSection>,
}

/// `[server]`: the same settings as `crew serve`'s flags, for a team that keeps them in the repository.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub statsd: Option<String>,
    pub database: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// The URL people reach crew at (`https://crew.example.com`), when a proxy stands in front: links in chat
    /// and webhooks use it, and over `https` the session cookie is `Secure`.
    pub public_url: Option<String>,
    /// How long a client may take to send a request's headers (default `"30s"`).
    pub header_timeout: Option<String>,
    /// Live streams (server-sent events) open at once, in all (default 1000) and per token (default 20).
    pub max_streams: Option<usize>,
    pub max_streams_per_token: Option<usize>,
    /// HTTP connections open at once (default 4096, and never more than half of crew's file descriptors).
    pub max_connections: Option<usize>,
}

/// The server's limits against clients that hold connections: checked `[server]` values.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: std::time::Duration,
    pub max_streams: usize,
    pub max_streams_per_token: usize,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: std::time::Duration::from_secs(30),
            max_streams: 1000,
            // An application's replicas often share one evaluation key, each following the definitions stream.
            max_streams_per_token: 200,
            max_connections: 4096,
        }
    }
}

impl ServerSection {
    /// The limits, or a message naming the key.
    pub fn limits(&self) -> Result<Limits, String> {
        let d = Limits::default();
        let header_timeout = match &self.header_timeout {
            Some(v) => {
                humantime::parse_duration(v).ok().filter(|t| *t >= std::time::Duration::from_millis(100)).ok_or_else(
                    || format!("[server] header_timeout = \"{v}\": a duration of at least 100ms, like \"30s\""),
                )?
            }
            None => d.header_timeout,
        };
        let max_streams = self.max_streams.unwrap_or(d.max_streams);
        let max_streams_per_token = self.max_streams_per_token.unwrap_or(d.max_streams_per_token);
        let max_connections = self.max_connections.unwrap_or(d.max_connections);
        if max_streams == 0 || max_streams_per_token == 0 || max_connections < 16 {
            return Err(
                "[server] max_streams and max_streams_per_token: at least 1; max_connections: at least 16".into()
            );
        }
        Ok(Limits { header_timeout, max_streams, max_streams_per_token, max_connections })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: `{key}`: {message}")]
    Parse { path: PathBuf, key: String, message: String },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("bad {what} `{value}`: {why}")]
    BadValue { what: &'static str, value: String, why: String },
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_STATSD: &str = "127.0.0.1:8125";

impl FileConfig {
    /// Parses `crew.toml` text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string() })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().message().to_string();
            ConfigError::Parse { path: path.to_path_buf(), key, message }
        })
    }
}

impl Settings {
    /// Resolves flags and variables over the config file over defaults.
    pub fn resolve(o: Overrides) -> Result<Settings, ConfigError> {
        let (file, config_path) = match &o.config {
            Some(p) => (read_file(p)?, Some(p.clone())),
            None => {
                let p = PathBuf::from("crew.toml");
                if p.exists() {
                    (read_file(&p)?, Some(p))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };
        let s = &file.server;
        let data_dir = o.data_dir.or(s.data_dir.clone()).unwrap_or_else(|| PathBuf::from(".crew"));
        let listen = o.listen.or(s.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.into());
        check_listen(&listen)?;
        let statsd_raw = o.statsd.or(s.statsd.clone()).unwrap_or_else(|| DEFAULT_STATSD.into());
        let statsd = if statsd_raw == "off" {
            None
        } else {
            Some(statsd_raw.parse().map_err(|e| ConfigError::BadValue {
                what: "statsd address",
                value: statsd_raw.clone(),
                why: format!("{e}; expected HOST:PORT like 127.0.0.1:8125, or off"),
            })?)
        };
        let database = match o.database.or(s.database.clone()) {
            Some(url) => url,
            None => format!("sqlite://{}", data_dir.join("crew.db").display()),
        };
        if !(database.starts_with("sqlite:")
            || database.starts_with("postgres://")
            || database.starts_with("postgresql://"))
        {
            return Err(ConfigError::BadValue {
                what: "database URL",
                value: crew_store::redact(&database),
                why: "expected sqlite://PATH or postgres://USER@HOST:PORT/DB".into(),
            });
        }
        if let Some(u) = &s.public_url {
            let ok = url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
            if !ok {
                return Err(ConfigError::BadValue {
                    what: "[server] public_url",
                    value: u.clone(),
                    why: "expected an http(s) URL like https://crew.example.com".into(),
                });
            }
        }
        let deploy = deploy_config(&file, config_path.as_deref())?;
        if let Some(chat) = &file.chat {
            let shown = config_path.clone().unwrap_or_else(|| PathBuf::from("crew.toml"));
            chat.check().map_err(|message| ConfigError::Invalid { path: shown, message })?;
        }
        if !file.hosts.is_empty() || file.infra.is_some() {
            let shown = config_path.clone().unwrap_or_else(|| PathBuf::from("crew.toml"));
            crate::infra::check(&file.hosts, file.infra.as_ref())
                .map_err(|message| ConfigError::Invalid { path: shown, message })?;
        }
        let invalid = |message| ConfigError::Invalid {
            path: config_path.clone().unwrap_or_else(|| PathBuf::from("crew.toml")),
            message,
        };
        let alerts = crate::alerts::check(&file.alerts).map_err(invalid)?;
        let limits = file.server.limits().map_err(invalid)?;
        file.flags.as_ref().map(crate::flags::FlagsSection::check).transpose().map_err(invalid)?;
        file.experiments.as_ref().map(crate::experiments::ExperimentsSection::check).transpose().map_err(invalid)?;
        crate::metrics::dashboards::check(&file.dashboards).map_err(invalid)?;
        let metrics = file.metrics.clone().unwrap_or_default().check().map_err(|message| ConfigError::Invalid {
            path: config_path.clone().unwrap_or_else(|| PathBuf::from("crew.toml")),
            message,
        })?;
        let mut references: Vec<(String, String, &'static str)> = file
            .alerts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.escalation.clone().map(|e| (format!("alerts[{i}].escalation"), e, "escalation")))
            .collect();
        for (name, env) in &file.environments {
            if let Some(s) = &env.oncall {
                references.push((format!("environments.{name}.oncall"), s.clone(), "schedule"));
            }
        }
        if let Some(d) = &file.drills {
            d.check().map_err(invalid)?;
            references.push(("drills.schedule".into(), d.schedule.clone(), "schedule"));
        }
        let oncall = crate::oncall::config::check(
            &file.people,
            file.smtp.as_ref(),
            &file.schedules,
            &file.escalations,
            file.incidents.as_ref(),
            &references,
        )
        .map_err(invalid)?;
        Ok(Settings { data_dir, listen, statsd, database, config_path, file, deploy, metrics, alerts, limits, oncall })
    }
}

/// The deploy configuration from `[app]`, `[build]` and `[environments.*]`; both of the first two or neither.
pub fn deploy_config(file: &FileConfig, path: Option<&Path>) -> Result<Option<crew_deploy::DeployConfig>, ConfigError> {
    let shown = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("crew.toml"));
    let invalid = |message: String| ConfigError::Invalid { path: shown.clone(), message };
    match (&file.app, &file.build) {
        (None, None) if file.environments.is_empty() => Ok(None),
        (Some(app), Some(build)) => {
            let base = path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            let base = std::fs::canonicalize(&base).unwrap_or(base);
            crew_deploy::DeployConfig::check(app.clone(), build.clone(), file.environments.clone(), &base)
                .map(Some)
                .map_err(invalid)
        }
        (None, _) => Err(invalid("deploys need an [app] section (name, repo, branch)".into())),
        (_, None) => Err(invalid("deploys need a [build] section (command, artifact)".into())),
    }
}

fn check_listen(listen: &str) -> Result<(), ConfigError> {
    // A host name (localhost:7070) is fine too; only the shape HOST:PORT is checked here.
    let ok = listen.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadValue {
            what: "listen address",
            value: listen.into(),
            why: "expected HOST:PORT like 127.0.0.1:7070 (port 0 picks a free port)".into(),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    FileConfig::parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(text, Path::new("crew.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn file_errors_name_the_key_and_file() {
        let table = [
            ("[server]\nlisten = \"127.0.0.1:9\"\n", Ok(())),
            ("[app]\nname = \"www\"\n[environments.production]\nhosts = []\n", Ok(())),
            ("[server]\nlisen = \"x\"\n", Err("crew.toml: `server.lisen`: unknown field `lisen`")),
            ("colour = 1\n", Err("crew.toml: `colour`: unknown field `colour`")),
            ("[server]\nlisten = 7\n", Err("crew.toml: `server.listen`: invalid type")),
            ("[server\n", Err("crew.toml: TOML parse error")),
        ];
        for (text, want) in table {
            match (parse(text), want) {
                (Ok(_), Ok(())) => {}
                (Err(got), Err(prefix)) => assert!(got.starts_with(prefix), "{text:?}: {got}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn hosts_and_the_drift_schedule_are_checked_at_start() {
        let host = "[[hosts]]\nname = \"web1\"\naddress = \"local\"\nroles = [\"web\"]\n";
        let check = |text: &str| {
            let f = parse(text)?;
            crate::infra::check(&f.hosts, f.infra.as_ref())
        };
        assert_eq!(check(&format!("{host}[infra]\ncheck = \"1h\"\n")), Ok(()));
        for (text, says) in [
            (format!("{host}[infra]\ncheck = \"often\"\n"), "[infra] check = \"often\""),
            (format!("{host}[infra]\ncheck = \"1s\"\n"), "at least 10s"),
            (format!("{host}[infra]\ncheks = \"1h\"\n"), "`infra.cheks`: unknown field"),
            (format!("{host}{host}"), "`web1` is named twice"),
            ("[[hosts]]\nname = \"a\"\naddress = \"local\"\nroles = []\n".into(), "`a`: no roles"),
            ("[[hosts]]\nname = \"a\"\nadress = \"local\"\n".into(), "`hosts[0].adress`: unknown field `adress`"),
            ("[infra]\ncheck = \"1h\"\n".into(), "no [[hosts]]"),
        ] {
            let got = check(&text).unwrap_err();
            assert!(got.contains(says), "{text}: {got}");
        }
    }

    #[test]
    fn flags_win_over_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("crew-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("crew.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9000\"\nstatsd = \"off\"\n").unwrap();
        let s = Settings::resolve(Overrides { config: Some(path.clone()), ..Default::default() }).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.statsd, None);
        assert_eq!(s.database, "sqlite://.crew/crew.db");
        let s = Settings::resolve(Overrides {
            config: Some(path),
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((s.listen.as_str(), s.database.as_str()), ("127.0.0.1:0", "sqlite:///tmp/x/crew.db"));
        let bad = Settings::resolve(Overrides { listen: Some("7070".into()), ..Default::default() }).unwrap_err();
        assert!(bad.to_string().contains("bad listen address `7070`"), "{bad}");
        let bad = Settings::resolve(Overrides { database: Some("mysql://u:secret@h/db".into()), ..Default::default() })
            .unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
