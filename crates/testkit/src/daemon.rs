//! Plumbing shared by the peers started as child processes: one log file per peer, its tail for error
//! messages, readiness polls with a deadline, and a plain HTTP/1.0 probe that needs no async runtime.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `cmd` with its stdout and stderr appended to `log`; `what` names the program in the error.
pub(crate) fn spawn_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<Child> {
    let out = File::options().create(true).append(true).open(log).with_context(|| format!("open {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().with_context(|| format!("start {what}"))
}

/// The last `lines` lines of a log file (or why it cannot be read).
pub(crate) fn tail(log: &Path, lines: usize) -> String {
    match fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

/// Polls `ready` every 50 ms until it holds; fails, naming the log file and quoting its tail, when the
/// process exits first or `timeout` passes.
pub(crate) fn wait_ready(
    child: &mut Child,
    what: &str,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before it was ready; its log {}:\n{}", log.display(), tail(log, 30));
        }
        if ready() {
            // Ours, not another test's that took the same free port: it must still be running a moment later.
            std::thread::sleep(Duration::from_millis(300));
            if let Some(status) = child.try_wait()? {
                bail!("{what} exited ({status}) before it was ready; its log {}:\n{}", log.display(), tail(log, 30));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} is not ready after {timeout:?}; its log {}:\n{}", log.display(), tail(log, 30));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status code of `GET path` on 127.0.0.1:`port`, or None when nothing answers.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let k = s.read(&mut head[n..]).ok()?;
        if k == 0 {
            break;
        }
        n += k;
    }
    // `HTTP/1.1 200 OK`
    std::str::from_utf8(&head[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

/// Kills the process by its id and reaps it.
pub(crate) fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A string as a YAML scalar: JSON's double-quoted form, which YAML reads as it is.
pub(crate) fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// A peer that failed to start: kills it and keeps its folder, so that the log file the error names is
/// still there to read.
pub(crate) fn abandon(mut child: Child, dir: tempfile::TempDir, e: anyhow::Error) -> anyhow::Error {
    let _ = child.kill();
    let _ = child.wait();
    let _ = dir.keep();
    e
}
