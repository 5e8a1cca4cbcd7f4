//! An SMTP sink: Debian's aiosmtpd (python3-aiosmtpd, for /usr/bin/python3) on a free loopback port,
//! plain SMTP without TLS or authentication, keeping every message it accepts as a file in a Maildir.
//! `stop` and `restart` make a server that refuses connections and comes back on the same port.

use crate::daemon;
use anyhow::Result;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

/// A running SMTP sink; killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts one and waits until it answers a connection with its `220` banner.
    pub fn start() -> Result<SmtpSink> {
        let dir = tempfile::Builder::new().prefix("crew-smtp-").tempdir()?;
        let port = crate::free_port();
        match spawn(port, dir.path()) {
            Ok(child) => Ok(SmtpSink { port, child: Some(child), log: dir.path().join(LOG), dir }),
            Err(e) => {
                let _ = dir.keep(); // for the log file the error names
                Err(e)
            }
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The Maildir the messages land in (`new/`, `cur/`).
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mbox")
    }

    /// Its log file (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Every message received so far, raw (headers and body as stored), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(self.maildir().join(sub)).into_iter().flatten().flatten())
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((modified, e.file_name().to_string_lossy().into_owned(), e.path()))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, _, p)| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// The first message (oldest first) for which `pred` holds, polling every 50 ms; panics after `timeout`,
    /// quoting what did arrive.
    pub async fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.messages();
            if let Some(m) = all.iter().find(|m| pred(m)) {
                return m.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching message in {} after {timeout:?}; {} arrived:\n{}\n-- its log {}:\n{}",
                    self.maildir().display(),
                    all.len(),
                    all.join("\n-----\n"),
                    self.log.display(),
                    daemon::tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server: connections to its port are refused until `restart`.
    pub fn stop(&mut self) {
        daemon::kill(&mut self.child);
    }

    /// Starts it again on the same port, with the same Maildir.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.child = Some(spawn(self.port, self.dir.path())?);
        Ok(())
    }
}

const LOG: &str = "aiosmtpd.log";

/// Starts aiosmtpd on `port` with its Maildir and log in `dir`; waits for its banner (killing it if none).
fn spawn(port: u16, dir: &Path) -> Result<Child> {
    let log = dir.join(LOG);
    let mut child = daemon::spawn_logged(
        Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.join("mbox"))
            .env("PYTHONUNBUFFERED", "1"),
        &log,
        &format!("{PYTHON} -m aiosmtpd (Debian's python3-aiosmtpd package; scripts/test installs it)"),
    )?;
    if let Err(e) = daemon::wait_ready(&mut child, "aiosmtpd", &log, Duration::from_secs(20), || banner(port)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// Whether 127.0.0.1:`port` answers a connection with an SMTP `220` greeting (then says QUIT).
fn banner(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("220");
    let _ = s.write_all(b"QUIT\r\n");
    ok
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
