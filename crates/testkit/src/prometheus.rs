//! Prometheus (Debian's prometheus 2.42) on a free loopback port in a temporary folder, scraping and
//! evaluating every second and resending firing alerts every second, with the remote-write receiver on; rule files and extra configuration (scrape
//! jobs, `alerting:` towards an [`crate::Alertmanager`]) come from the test.

use crate::daemon;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one whose prom.yml is `global: {scrape_interval: 1s, evaluation_interval: 1s}`, then a
    /// `rule_files:` list naming each of `rule_files` (the files' contents, written as rules-N.yml), then
    /// `config_yaml_extra` verbatim (top-level keys such as `scrape_configs:` or `alerting:`; not `global:`
    /// nor `rule_files:`). Waits for `/-/ready`.
    pub fn start_with(config_yaml_extra: &str, rule_files: &[&str]) -> Result<Prometheus> {
        let dir = tempfile::Builder::new().prefix("crew-prometheus-").tempdir()?;
        let d = dir.path();
        let mut config = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if !rule_files.is_empty() {
            config.push_str("rule_files:\n");
            for (i, rules) in rule_files.iter().enumerate() {
                let path = d.join(format!("rules-{i}.yml"));
                std::fs::write(&path, rules)?;
                config.push_str(&format!("  - {}\n", daemon::yaml_str(&path.display().to_string())));
            }
        }
        config.push_str(config_yaml_extra);
        std::fs::write(d.join("prom.yml"), config)?;
        let port = crate::free_port();
        let log = d.join("prometheus.log");
        let mut child = daemon::spawn_logged(
            Command::new("prometheus")
                .arg(format!("--config.file={}", d.join("prom.yml").display()))
                .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-remote-write-receiver")
                // The first notification of a rule that fires at once can go out before the Alertmanagers are
                // discovered, and is dropped; the default resend delay (1 m) would hold the next one back.
                .arg("--rules.alert.resend-delay=1s"),
            &log,
            "prometheus (Debian's prometheus package; scripts/test installs it)",
        )?;
        if let Err(e) = daemon::wait_ready(&mut child, "Prometheus", &log, Duration::from_secs(60), || {
            daemon::http_status(port, "/-/ready") == Some(200)
        }) {
            return Err(daemon::abandon(child, dir, e));
        }
        Ok(Prometheus { port, child: Some(child), log, _dir: dir })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log file (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        daemon::kill(&mut self.child);
    }
}
