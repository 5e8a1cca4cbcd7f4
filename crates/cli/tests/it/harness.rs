//! Starting `crew serve` for a test: a fresh data folder, port 0, the SQLite default or a fresh PostgreSQL
//! database; the server is killed when the handle drops.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CREW: &str = env!("CARGO_BIN_EXE_crew");

pub struct Server {
    pub url: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub database: Option<String>,
    pub config: Option<PathBuf>,
    /// Where StatsD is received (`127.0.0.1:PORT`), when the test asked for it.
    pub statsd: Option<String>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on the embedded SQLite default.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        Server::spawn(data_dir, None, None, Some(dir))
    }

    /// A server on the SQLite default, reading `config` (a crew.toml).
    pub async fn start_with_config(config: &std::path::Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        Server::spawn_with(data_dir, None, None, Some(dir), Some(config.to_path_buf()))
    }

    /// A server on the SQLite default receiving StatsD on a free port, reading `config` (a crew.toml).
    pub async fn start_with_statsd(config: &std::path::Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let statsd = format!("127.0.0.1:{}", crew_testkit::free_port());
        Server::spawn_full(data_dir, None, None, Some(dir), Some(config.to_path_buf()), Some(statsd))
    }

    /// A replica on `database` receiving StatsD on a free port, reading `config`, with the admin token it should
    /// use (`None`: the first replica, which makes it).
    pub async fn start_replica_with_statsd(database: &str, admin: Option<&str>, config: &std::path::Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let statsd = format!("127.0.0.1:{}", crew_testkit::free_port());
        Server::spawn_full(
            data_dir,
            Some(database.to_string()),
            admin,
            Some(dir),
            Some(config.to_path_buf()),
            Some(statsd),
        )
    }

    /// A server on a fresh PostgreSQL database, reading `config` (a crew.toml).
    pub async fn start_postgres_with_config(config: &std::path::Path) -> Server {
        let url = crew_testkit::fresh_postgres().await;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        Server::spawn_with(data_dir, Some(url), None, Some(dir), Some(config.to_path_buf()))
    }

    /// A server on a fresh PostgreSQL database.
    pub async fn start_postgres() -> Server {
        let url = crew_testkit::fresh_postgres().await;
        Server::start_on(&url, None).await
    }

    /// Another server (a replica) on the same database, with the admin token it should use.
    pub async fn start_on(database: &str, admin: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        Server::spawn(data_dir, Some(database.to_string()), admin, Some(dir))
    }

    /// Starts again on the same data folder and database (after a stop or a kill).
    pub fn restart(&mut self) {
        self.stop_hard();
        let mut again = Server::spawn_full(
            self.data_dir.clone(),
            self.database.clone(),
            Some(&self.admin.clone()),
            None,
            self.config.clone(),
            self.statsd.clone(),
        );
        self.url = again.url.clone();
        self.child = again.child.take();
    }

    fn spawn(
        data_dir: PathBuf,
        database: Option<String>,
        admin: Option<&str>,
        dir: Option<tempfile::TempDir>,
    ) -> Server {
        Server::spawn_with(data_dir, database, admin, dir, None)
    }

    fn spawn_with(
        data_dir: PathBuf,
        database: Option<String>,
        admin: Option<&str>,
        dir: Option<tempfile::TempDir>,
        config: Option<PathBuf>,
    ) -> Server {
        Server::spawn_full(data_dir, database, admin, dir, config, None)
    }

    fn spawn_full(
        data_dir: PathBuf,
        database: Option<String>,
        admin: Option<&str>,
        dir: Option<tempfile::TempDir>,
        config: Option<PathBuf>,
        statsd: Option<String>,
    ) -> Server {
        let mut cmd = Command::new(CREW);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--statsd", statsd.as_deref().unwrap_or("off"), "--data-dir"])
            .arg(&data_dir);
        if let Some(c) = &config {
            cmd.arg("--config").arg(c);
        }
        cmd.env_remove("CREW_TOKEN").env("RUST_LOG", "info,sqlx=warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
        if let Some(db) = &database {
            cmd.args(["--database", db]);
        }
        let mut child = cmd.spawn().expect("start crew serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
        static RETRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let exited_1 = line.is_empty() && child.wait().map(|s| s.code() == Some(1)).unwrap_or(false);
        if exited_1 && statsd.is_some() && RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 20 {
            // The StatsD port chosen for this test was taken by another test meanwhile (free_port only finds a
            // port free at that moment): start again on another one.
            let statsd = Some(format!("127.0.0.1:{}", crew_testkit::free_port()));
            return Server::spawn_full(data_dir, database, admin, dir, config, statsd);
        }
        let url = line
            .trim()
            .strip_prefix("crew listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let admin = match admin {
            Some(a) => a.to_string(),
            None => std::fs::read_to_string(data_dir.join("admin.token")).expect("admin.token").trim().to_string(),
        };
        Server { url, admin, data_dir, database, config, statsd, child: Some(child), _dir: dir }
    }

    /// SIGKILL: the process dies at once, as in a crash.
    pub fn stop_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `deadline` for a graceful exit; returns the exit status if it exited.
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(status) = c.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        None
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// An authenticated request.
    pub fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client().request(method, format!("{}{}", self.url, path)).bearer_auth(token)
    }

    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let res = self.req(reqwest::Method::GET, path, token).send().await.unwrap();
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// Creates a token with a role; returns its secret.
    pub async fn token(&self, name: &str, role: &str) -> String {
        let res = self
            .req(reqwest::Method::POST, "/api/v1/tokens", &self.admin)
            .json(&serde_json::json!({"name": name, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create token {name}");
        let v: serde_json::Value = res.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// Records an event as `token`; returns it.
    pub async fn record(&self, token: &str, body: serde_json::Value) -> serde_json::Value {
        let res = self.req(reqwest::Method::POST, "/api/v1/events", token).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201, "record {body}");
        res.json().await.unwrap()
    }

    /// `crew` with this server and a token in its environment.
    pub fn cli(&self, token: &str) -> Command {
        let mut c = Command::new(CREW);
        c.env("CREW_SERVER", &self.url).env("CREW_TOKEN", token).env_remove("CREW_DATA_DIR");
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_hard();
    }
}

/// `crew serve` with `config` and a data folder in `dir`, expected to refuse to start: its output.
pub fn serve_refused(config: &std::path::Path, dir: &std::path::Path) -> std::process::Output {
    Command::new(CREW)
        .args(["serve", "--listen", "127.0.0.1:0", "--statsd", "off", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap()
}

/// Polls `check` every 50 ms until it is true or `within` has passed.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
