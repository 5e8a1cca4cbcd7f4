//! Test harness: real peers for crew's tests. PostgreSQL is started from Debian's package on a free port in a
//! temporary folder, once per machine and shared by every test process (each test gets its own database).
//! The others ([`Sshd`], [`Ngircd`], [`Alertmanager`], [`Prometheus`], [`SmtpSink`]) are one per test, each on
//! free ports in its own temporary folder, killed by process id when dropped.
//!
//! `CREW_TEST_DATABASE_URL=postgres://...` makes tests use that server instead (it must allow CREATE DATABASE).

mod alertmanager;
mod daemon;
mod prometheus;
mod smtp;

pub use alertmanager::Alertmanager;
pub use prometheus::Prometheus;
pub use smtp::SmtpSink;

use anyhow::{bail, Context, Result};
use sqlx::Connection;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the shared test cluster lives. `scripts/test` stops it when the run ends.
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("CREW_TEST_PG_DIR").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("crew-test-pg"))
}

/// A free TCP port on loopback (bound, then released for the peer to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// A fresh, empty PostgreSQL database for one test; returns its URL.
pub async fn fresh_postgres() -> String {
    let admin = match std::env::var("CREW_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => tokio::task::spawn_blocking(shared_cluster).await.unwrap().expect("start the test PostgreSQL"),
    };
    let name = format!("crew_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.with_context(|| format!("connect {admin}")).unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    let mut url = url::Url::parse(&admin).expect("a valid database URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Starts (or finds running) the shared cluster; returns an admin URL. A file lock makes concurrent test
/// processes take turns, so exactly one starts it.
fn shared_cluster() -> Result<String> {
    let dir = cluster_dir();
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let lock = File::create(dir.join("lock"))?;
    lock.lock().context("lock the test cluster folder")?;
    let port_file = dir.join("port");
    if let Ok(port) = fs::read_to_string(&port_file) {
        let port = port.trim();
        if Command::new(bin("pg_isready")?).args(["-q", "-h", "127.0.0.1", "-p", port]).status()?.success() {
            return Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
        }
    }
    let as_root = running_as_root();
    let data = dir.join("db");
    if as_root {
        chown_postgres(&dir)?;
    }
    if !data.join("PG_VERSION").exists() {
        let _ = fs::remove_dir_all(&data);
        run(
            as_root,
            &format!("{} -D {} -A trust -U postgres --no-sync -E UTF8", bin("initdb")?.display(), data.display()),
        )
        .context("initdb (is Debian's postgresql package installed?)")?;
    }
    let port = free_port();
    let opts = format!(
        "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
        dir = dir.display()
    );
    run(
        as_root,
        &format!(
            "{} -D {} -l {} -o '{opts}' -w -t 60 start",
            bin("pg_ctl")?.display(),
            data.display(),
            dir.join("log").display()
        ),
    )
    .with_context(|| format!("pg_ctl start; see {}", dir.join("log").display()))?;
    fs::write(&port_file, port.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new(bin("pg_isready")?).args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()]).status()?.success()
    {
        if Instant::now() > deadline {
            bail!("test PostgreSQL on port {port} is not ready after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// PostgreSQL's server programs: Debian keeps them out of PATH, under /usr/lib/postgresql/<version>/bin.
pub fn bin(name: &str) -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
        .filter(|(_, p): &(u32, PathBuf)| p.exists())
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return Ok(p);
    }
    Ok(PathBuf::from(name))
}

/// initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
fn run(as_root: bool, cmd: &str) -> Result<()> {
    let status = if as_root {
        Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", cmd]).status()?
    } else {
        Command::new("sh").args(["-c", cmd]).status()?
    };
    if !status.success() {
        bail!("`{cmd}` failed with {status}");
    }
    Ok(())
}

fn chown_postgres(dir: &Path) -> Result<()> {
    let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status()?;
    if !status.success() {
        bail!("chown postgres {} failed", dir.display());
    }
    Ok(())
}

fn running_as_root() -> bool {
    // `id -u` rather than libc, to keep the harness free of unsafe code.
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// An OpenSSH server (Debian's openssh-server) on a free loopback port, with its own host key and one
/// authorised user key; stopped when dropped.
pub struct Sshd {
    pub port: u16,
    /// The private key that logs in (as the user running the tests).
    pub key: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Sshd {
    pub fn start() -> Result<Sshd> {
        let dir = tempfile::Builder::new().prefix("crew-sshd-").tempdir()?;
        let d = dir.path().to_path_buf();
        fs::create_dir_all("/run/sshd").ok();
        for name in ["host_key", "user_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(d.join(name))
                .status()?;
            if !status.success() {
                bail!("ssh-keygen failed");
            }
        }
        fs::copy(d.join("user_key.pub"), d.join("authorized_keys"))?;
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
             LogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n",
            d = d.display()
        );
        fs::write(d.join("sshd_config"), config)?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start /usr/sbin/sshd (Debian's openssh-server package)")?;
        let sshd = Sshd { port, key: d.join("user_key"), child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new("ssh")
                .args(sshd.options())
                .args(["-p", &port.to_string(), &format!("{}@127.0.0.1", whoami()), "true"])
                .stderr(std::process::Stdio::null())
                .status()?
                .success();
            if ok {
                return Ok(sshd);
            }
            if Instant::now() > deadline {
                bail!("sshd on port {port} does not accept the test key");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Lets `other`'s key log in here too, so one set of ssh options reaches several hosts.
    pub fn authorize(&self, other: &Sshd) -> Result<()> {
        use std::io::Write;
        let key = fs::read_to_string(other.key.with_extension("pub"))?;
        let dir = self.key.parent().expect("key in its folder");
        fs::OpenOptions::new().append(true).open(dir.join("authorized_keys"))?.write_all(key.as_bytes())?;
        Ok(())
    }

    /// The `ssh` options that log in to this server without questions.
    pub fn options(&self) -> Vec<String> {
        [
            "-i",
            &self.key.display().to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Sshd {
    /// Kills the server and every session it serves (with what runs in them), as when a machine dies.
    pub fn kill(&mut self) {
        let family = descendants(self.child.id());
        let _ = self.child.kill();
        for pid in family {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let _ = self.child.wait();
    }
}

/// Every process below `pid`, read from /proc (children first found, grandchildren after).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // /proc/PID/stat: `pid (comm) state ppid ...`; comm may hold spaces, so read after the last ')'.
        if let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some(ppid) = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == q {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The user the tests run as.
pub fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "root".into())
}

/// An IRC server (Debian's ngircd) on free loopback ports, plain and TLS (a self-signed certificate for
/// `localhost`, in `cert`), with flood penalties off; killed when dropped. `restart` brings it back on the
/// same ports, for reconnect tests.
pub struct Ngircd {
    pub port: u16,
    pub tls_port: u16,
    /// The server's certificate (PEM): the CA file a client trusts.
    pub cert: PathBuf,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl Ngircd {
    pub fn start() -> Result<Ngircd> {
        let dir = tempfile::Builder::new().prefix("crew-ngircd-").tempdir()?;
        let d = dir.path().to_path_buf();
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"])
            // An end-entity certificate (CA:FALSE): rustls refuses a CA certificate as the server's own.
            .args([
                "-addext",
                "subjectAltName=DNS:localhost",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-days",
                "2",
            ])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem"))
            .stderr(std::process::Stdio::null())
            .status()
            .context("openssl (Debian's openssl package)")?;
        if !status.success() {
            bail!("openssl could not make the test certificate");
        }
        // ngircd drops root for `nobody`, which must be able to read its key.
        for f in ["key.pem", "cert.pem"] {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(d.join(f), fs::Permissions::from_mode(0o644))?;
        }
        fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let mut s = Ngircd { port: free_port(), tls_port: free_port(), cert: d.join("cert.pem"), child: None, dir };
        let config = format!(
            "[Global]\n  Name = irc.test\n  Info = crew tests\n  Listen = 127.0.0.1\n  Ports = {port}\n\
             [Limits]\n  MaxPenaltyTime = 0\n  MaxNickLength = 30\n  MaxConnectionsIP = 50\n\
             [Options]\n  DNS = no\n  Ident = no\n  PAM = no\n\
             [SSL]\n  CertFile = {d}/cert.pem\n  KeyFile = {d}/key.pem\n  Ports = {tls}\n",
            port = s.port,
            tls = s.tls_port,
            d = d.display()
        );
        fs::write(d.join("ngircd.conf"), config)?;
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("/usr/sbin/ngircd")
            .args(["-n", "-f"])
            .arg(self.dir.path().join("ngircd.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start /usr/sbin/ngircd (Debian's ngircd package)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_err()
        {
            if Instant::now() > deadline {
                bail!("ngircd did not listen on {} and {}", self.port, self.tls_port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills the server (every client sees its connection drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Ngircd {
    fn drop(&mut self) {
        self.kill();
    }
}
