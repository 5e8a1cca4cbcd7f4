//! Alertmanager (Debian's prometheus-alertmanager 0.25) on a free loopback port in a temporary folder,
//! routing every alert to one webhook receiver with a bearer credential; alerts are added and resolved
//! through its API v2.

use crate::daemon::{self, yaml_str};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const BIN: &str = "/usr/bin/prometheus-alertmanager";

/// A running Alertmanager; killed when dropped.
pub struct Alertmanager {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one that sends every alert (grouped by `alertname`, `group_wait` and `group_interval` 1 s,
    /// resolved ones too) to `webhook_url` with `Authorization: Bearer {bearer}`, and waits for `/-/ready`.
    pub fn start(webhook_url: &str, bearer: &str) -> Result<Alertmanager> {
        let dir = tempfile::Builder::new().prefix("crew-alertmanager-").tempdir()?;
        let d = dir.path();
        let config = format!(
            "route:\n  receiver: crew\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: crew\n    webhook_configs:\n      - url: {url}\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            credentials: {bearer}\n",
            url = yaml_str(webhook_url),
            bearer = yaml_str(bearer),
        );
        std::fs::write(d.join("am.yml"), config)?;
        let port = crate::free_port();
        let log = d.join("alertmanager.log");
        let mut child = daemon::spawn_logged(
            Command::new(BIN)
                .arg(format!("--config.file={}", d.join("am.yml").display()))
                .arg(format!("--storage.path={}", d.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address="),
            &log,
            &format!("{BIN} (Debian's prometheus-alertmanager package; scripts/test installs it)"),
        )?;
        if let Err(e) = daemon::wait_ready(&mut child, "Alertmanager", &log, Duration::from_secs(30), || {
            daemon::http_status(port, "/-/ready") == Some(200)
        }) {
            return Err(daemon::abandon(child, dir, e));
        }
        Ok(Alertmanager { port, child: Some(child), log, http: reqwest::Client::new(), _dir: dir })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log file (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The `alerting:` block of a Prometheus configuration that sends alerts here.
    pub fn prometheus_alerting(&self) -> String {
        format!("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{}']\n", self.port)
    }

    /// Posts a firing alert `alertname={name}` with these labels and annotations (startsAt now, no endsAt).
    pub async fn add_alert(&self, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Result<()> {
        let now = chrono::Utc::now();
        self.post(name, labels, annotations, json!({ "startsAt": now.to_rfc3339() })).await
    }

    /// Posts the same alert (same name and labels) with an endsAt in the past, which resolves it.
    pub async fn resolve_alert(&self, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Result<()> {
        let now = chrono::Utc::now();
        let times = json!({
            "startsAt": (now - chrono::Duration::seconds(2)).to_rfc3339(),
            "endsAt": (now - chrono::Duration::seconds(1)).to_rfc3339(),
        });
        self.post(name, labels, annotations, times).await
    }

    async fn post(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        times: Value,
    ) -> Result<()> {
        let mut l: Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        l.insert("alertname".into(), json!(name));
        let a: Map<String, Value> = annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let mut alert = json!({ "labels": l, "annotations": a, "generatorURL": "http://crew-testkit/" });
        alert.as_object_mut().unwrap().extend(times.as_object().unwrap().clone());
        let url = format!("{}/api/v2/alerts", self.url());
        let r = self.http.post(&url).json(&json!([alert])).send().await.with_context(|| format!("POST {url}"))?;
        let status = r.status();
        if !status.is_success() {
            let body = r.text().await.unwrap_or_default();
            bail!("POST {url}: {status}: {body}; its log {}:\n{}", self.log.display(), daemon::tail(&self.log, 20));
        }
        Ok(())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        daemon::kill(&mut self.child);
    }
}
