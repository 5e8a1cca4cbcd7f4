//! The StatsD receive path. UDP: one thread reads datagrams in batches of up to 64 per system call
//! (`recvmmsg`) into a pooled buffer and hands the whole buffer to the parser thread, so the socket is read
//! again at once; a 32 MiB socket buffer absorbs bursts. TCP: newline-framed lines, at most 64 KiB each. The
//! parser thread owns the aggregator: it parses every line (no allocation per line) and, when the flush task
//! asks, ends the interval. Drops are never silent: datagrams the kernel dropped on this socket (the `drops`
//! column of /proc/net/udp) are counted and exported with everything else.

use super::{Live, Totals};
use crew_metrics::agg::Aggregator;
use crew_metrics::statsd::{Parser, MAX_LINE};
use crew_metrics::{Kind, Point};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Datagrams per `recvmmsg` call, and the room for each.
const BATCH: usize = 64;
const SLOT: usize = 65536;
/// Batches in flight between the receiving and the parsing thread.
const POOL: usize = 16;

/// What the parser thread is given.
pub enum Msg {
    Datagrams { buf: Vec<u8>, lens: Vec<usize> },
    Lines(Vec<u8>),
    Flush(tokio::sync::oneshot::Sender<Vec<(Arc<str>, Kind, Point)>>),
}

/// The bound sockets, made at start so a bad or busy address stops the server with a clear message.
pub struct Sockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    pub addr: SocketAddr,
    /// The socket buffer the kernel granted, in bytes.
    pub recv_buffer: usize,
}

pub fn bind(addr: SocketAddr) -> std::io::Result<Sockets> {
    if addr.port() != 0 {
        return bind_once(addr);
    }
    // Port 0: the kernel picks a free UDP port, which may be taken for TCP; then pick again.
    let mut last = None;
    for _ in 0..50 {
        match bind_once(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

fn bind_once(addr: SocketAddr) -> std::io::Result<Sockets> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // 32 MiB, so bursts wait here and not on the floor: SO_RCVBUFFORCE when crew may (root or CAP_NET_ADMIN),
    // else as much as net.core.rmem_max allows. `GET /api/v1/metrics/status` shows what the kernel gave.
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20)).is_err() {
        let _ = s.set_recv_buffer_size(32 << 20);
    }
    s.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    s.bind(&addr.into())?;
    let udp: std::net::UdpSocket = s.into();
    let addr = udp.local_addr()?;
    let recv_buffer = socket2::SockRef::from(&udp).recv_buffer_size().unwrap_or(0);
    // TCP on the same port as UDP (a port the kernel picked for UDP may be taken for TCP: then say so).
    let tcp = std::net::TcpListener::bind(addr)?;
    tcp.set_nonblocking(true)?;
    Ok(Sockets { udp, tcp, addr, recv_buffer })
}

/// Starts the receiving threads and the TCP listener; returns the parser thread's inbox.
pub fn start(sockets: Sockets, metrics: Arc<Live>, stop: Arc<AtomicBool>) -> SyncSender<Msg> {
    let (tx, rx) = sync_channel::<Msg>(POOL);
    let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(POOL);
    let port = sockets.addr.port();
    {
        let (m, pool_tx) = (metrics.clone(), pool_tx.clone());
        std::thread::Builder::new()
            .name("crew-statsd-parse".into())
            .spawn(move || parse_loop(rx, pool_tx, m, port))
            .expect("a thread");
    }
    {
        let (tx, m, stop) = (tx.clone(), metrics.clone(), stop.clone());
        let udp = sockets.udp;
        std::thread::Builder::new()
            .name("crew-statsd-recv".into())
            .spawn(move || recv_loop(udp, tx, pool_rx, &m.totals, stop))
            .expect("a thread");
    }
    let tcp = tokio::net::TcpListener::from_std(sockets.tcp).expect("a tokio listener");
    tokio::spawn(accept_loop(tcp, tx.clone(), metrics, stop));
    tx
}

/// An open connection's place in the count, given back however its task ends.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The StatsD TCP cap in force: the configured one, but never more than a quarter of this process's file
/// descriptors, so StatsD clients can never take the descriptors HTTP, the store and deploys need.
fn tcp_cap(configured: usize) -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft as usize).unwrap_or(1024);
    configured.min((soft / 4).max(1))
}

/// Accepts StatsD TCP connections, at most `tcp_connections` at once (more are closed at once and counted).
/// An accept error (out of file descriptors, say) is counted and followed by a pause that doubles up to a
/// second, so a full descriptor table never turns this loop into a spin that starves the HTTP side.
async fn accept_loop(tcp: tokio::net::TcpListener, tx: SyncSender<Msg>, m: Arc<Live>, stop: Arc<AtomicBool>) {
    let cap = tcp_cap(m.config.tcp_connections);
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let conn = match tcp.accept().await {
            Ok((conn, _)) => {
                pause = std::time::Duration::from_millis(10);
                conn
            }
            Err(e) => {
                if m.totals.tcp_accept_errors.fetch_add(1, Ordering::Relaxed).is_multiple_of(100) {
                    tracing::warn!(error = %e, "StatsD TCP accept failed; pausing");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let open = m.tcp_open.clone();
        if open.fetch_add(1, Ordering::AcqRel) >= cap {
            open.fetch_sub(1, Ordering::AcqRel);
            m.totals.tcp_refused.fetch_add(1, Ordering::Relaxed);
            drop(conn);
            continue;
        }
        let (tx, m) = (tx.clone(), m.clone());
        let slot = Slot(open);
        tokio::spawn(async move {
            let _slot = slot;
            tcp_conn(conn, tx, m).await;
        });
    }
}

fn recv_loop(
    udp: std::net::UdpSocket,
    tx: SyncSender<Msg>,
    pool: Receiver<Vec<u8>>,
    totals: &Totals,
    stop: Arc<AtomicBool>,
) {
    use nix::errno::Errno;
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut spare: Option<Vec<u8>> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut buf = spare.take().or_else(|| pool.try_recv().ok()).unwrap_or_else(|| vec![0u8; BATCH * SLOT]);
        let mut lens = Vec::with_capacity(BATCH);
        {
            let mut iovs: Vec<[IoSliceMut; 1]> = buf.chunks_mut(SLOT).map(|c| [IoSliceMut::new(c)]).collect();
            match recvmmsg(fd, &mut headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(got) => lens.extend(got.map(|m| m.bytes)),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "statsd receive failed");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        if lens.is_empty() {
            spare = Some(buf);
            continue;
        }
        totals.packets.fetch_add(lens.len() as u64, Ordering::Relaxed);
        if tx.send(Msg::Datagrams { buf, lens }).is_err() {
            return;
        }
    }
}

async fn tcp_conn(mut conn: tokio::net::TcpStream, tx: SyncSender<Msg>, m: Arc<Live>) {
    use tokio::io::AsyncReadExt;
    let mut pending: Vec<u8> = Vec::with_capacity(8192);
    let mut skipping = false;
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = match tokio::time::timeout(m.config.tcp_idle, conn.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                m.totals.tcp_idle_closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        let mut data = &chunk[..n];
        if skipping {
            // The rest of a line that was too long.
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    data = &data[i + 1..];
                    skipping = false;
                }
                None => continue,
            }
        }
        pending.extend_from_slice(data);
        if let Some(last) = pending.iter().rposition(|&b| b == b'\n') {
            let rest = pending.split_off(last + 1);
            let lines = std::mem::replace(&mut pending, rest);
            let tx = tx.clone();
            if tokio::task::spawn_blocking(move || tx.send(Msg::Lines(lines))).await.map(|r| r.is_err()).unwrap_or(true)
            {
                return;
            }
        }
        if pending.len() > MAX_LINE {
            m.totals.bad_lines.fetch_add(1, Ordering::Relaxed);
            m.totals.lines.fetch_add(1, Ordering::Relaxed);
            pending.clear();
            skipping = true;
        }
    }
    if !pending.is_empty() {
        let _ = tokio::task::spawn_blocking(move || tx.send(Msg::Lines(pending))).await;
    }
}

fn parse_loop(rx: Receiver<Msg>, pool: SyncSender<Vec<u8>>, m: Arc<Live>, port: u16) {
    let mut agg = Aggregator::new(m.config.max_series);
    let mut parser = Parser::new();
    let t = &m.totals;
    let mut feed = |data: &[u8], agg: &mut Aggregator| {
        let (mut lines, mut bad) = (0u64, 0u64);
        for line in data.split(|&b| b == b'\n') {
            if line.is_empty() || line == b"\r" {
                continue;
            }
            lines += 1;
            if parser.parse(line, |k, kind, v, r| agg.add(k, kind, v, r)).is_err() {
                bad += 1;
            }
        }
        t.lines.fetch_add(lines, Ordering::Relaxed);
        t.bad_lines.fetch_add(bad, Ordering::Relaxed);
    };
    // What was last exported of each running total, to send the change as a counter.
    let mut sent = [0u64; 5];
    let mut kernel_base: Option<u64> = None;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Datagrams { buf, lens } => {
                for (i, len) in lens.iter().enumerate() {
                    feed(&buf[i * SLOT..i * SLOT + len], &mut agg);
                }
                let _ = pool.try_send(buf);
            }
            Msg::Lines(data) => feed(&data, &mut agg),
            Msg::Flush(reply) => {
                let kernel = kernel_drops(port);
                let base = *kernel_base.get_or_insert(kernel);
                t.kernel_drops.store(kernel.saturating_sub(base), Ordering::Relaxed);
                t.rcvbuf_errors.store(rcvbuf_errors(), Ordering::Relaxed);
                t.series_limited.store(agg.counts.series_limited, Ordering::Relaxed);
                let now = [
                    t.packets.load(Ordering::Relaxed),
                    t.lines.load(Ordering::Relaxed),
                    t.bad_lines.load(Ordering::Relaxed),
                    t.kernel_drops.load(Ordering::Relaxed),
                    t.series_limited.load(Ordering::Relaxed),
                ];
                for (i, name) in [
                    "crew.statsd.packets",
                    "crew.statsd.lines",
                    "crew.statsd.bad_lines",
                    "crew.statsd.drops",
                    "crew.statsd.series_limited",
                ]
                .iter()
                .enumerate()
                {
                    agg.add_internal(name, Kind::Counter, now[i].saturating_sub(sent[i]) as f64);
                }
                sent = now;
                agg.add_internal("crew.metrics.series", Kind::Gauge, agg.len() as f64);
                // In base units, as Prometheus names them (`crew_metrics_flush_seconds`).
                agg.add_internal(
                    "crew.metrics.flush_seconds",
                    Kind::Gauge,
                    t.last_flush_us.load(Ordering::Relaxed) as f64 / 1_000_000.0,
                );
                t.series.store(agg.len() as u64, Ordering::Relaxed);
                let mut out = Vec::with_capacity(agg.len());
                agg.flush(&mut out);
                let _ = reply.send(out);
            }
        }
    }
}

/// The host's UDP `RcvbufErrors` (/proc/net/snmp): every socket's overflows, not only crew's.
pub fn rcvbuf_errors() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/snmp") else { return 0 };
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Datagrams the kernel dropped on the UDP socket bound to `port` (the last column of /proc/net/udp{,6}).
pub fn kernel_drops(port: u16) -> u64 {
    let want = format!(":{port:04X}");
    let mut total = 0;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for l in text.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.get(1).is_some_and(|local| local.ends_with(&want)) {
                total += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_a_port_free_for_udp_and_tcp() {
        // Take 1,000 TCP ports from the range the kernel picks from: about one UDP port in 28 it picks is then
        // taken for TCP, so 300 binds without picking again would almost surely fail once (p > 0.9999).
        let taken: Vec<std::net::TcpListener> =
            (0..1000).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a TCP port")).collect();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for i in 0..300 {
            let s = bind(addr).unwrap_or_else(|e| panic!("bind {i}: {e}"));
            assert_ne!(s.addr.port(), 0);
            assert_eq!(s.tcp.local_addr().unwrap(), s.addr, "TCP on UDP's port");
            assert_eq!(s.udp.local_addr().unwrap(), s.addr);
        }
        drop(taken);
    }

    #[test]
    fn a_port_asked_for_is_not_changed() {
        let s = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let busy = s.addr;
        match bind(busy) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}"),
            Ok(other) => panic!("{busy} was busy, yet bound {}", other.addr),
        }
    }
}
