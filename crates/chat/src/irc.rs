//! The IRC connection: TLS (CA-checked or pinned by fingerprint, with an optional client certificate),
//! registration (`CAP LS 302`, SASL PLAIN or EXTERNAL as [`crate::cap`] negotiates it, `CAP END`), PING/PONG both ways with a timeout,
//! alternate nicks on 433/432 and regaining the wanted one later, reconnect with capped exponential backoff and
//! jitter, rejoining the channels, and every outgoing line through the [`Outbox`] (flood rule, PONG first,
//! bounded announcements). Messages go out as NOTICE for announcements and PRIVMSG for replies and pages; a page's
//! outcome is the server's (a `PING` token behind it comes back, or a 401/403/404 names its target first).
//!
//! Written on `irc-proto` (message parsing and serialising) rather than wrapping the `irc` crate: that crate's
//! flood control, SASL and reconnect are missing or broken (its issues say so), and they are the parts a robot
//! that must stay in the channel through a netsplit depends on. Framing is tokio-util's delimiter codec with a
//! length bound, so an over-long or non-UTF-8 line from the server is skipped, never fatal.

use crate::cap::{Login, Negotiation, SaslStatus};
use crate::mask::Sender;
use crate::outbox::{Line, Outbox, Rate};
use crate::text;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use irc_proto::{Command, Message, Prefix, Response};
use rand::Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder, Encoder, Framed};
use tokio_util::sync::CancellationToken;

/// How to reach the server and whom to be there.
#[derive(Debug, Clone)]
pub struct IrcConfig {
    pub server: String,
    pub port: u16,
    pub tls: bool,
    /// Extra CA certificates (PEM) to trust, for a server with a private or self-signed certificate.
    pub ca_file: Option<PathBuf>,
    pub nick: String,
    pub alternates: Vec<String>,
    pub channels: Vec<String>,
    /// SASL PLAIN account and password.
    pub sasl: Option<(String, String)>,
    /// A PEM file with the TLS client certificate and its private key; when set, the robot logs in with SASL
    /// EXTERNAL (the certificate is the credential) instead of PLAIN.
    pub client_cert: Option<PathBuf>,
    /// SHA-256 fingerprints of the server's certificate: when any are given, the certificate must be one of
    /// them, instead of being checked against CAs and the server's name.
    pub fingerprints: Vec<[u8; 32]>,
    pub rate: Rate,
    /// Silence before we PING the server, and how long its PONG may take.
    pub ping_every: Duration,
    pub ping_timeout: Duration,
    /// Reconnect backoff: first wait and cap (each wait doubles, with ±25% jitter).
    pub backoff: (Duration, Duration),
    /// Ask WHOIS for a command's services account when the server sends no account-tag. Only worth a round
    /// trip when some mapping names an `account:`; the server turns it on when one does.
    pub whois: Arc<std::sync::atomic::AtomicBool>,
}

impl IrcConfig {
    pub fn new(server: &str, port: u16, nick: &str, channels: Vec<String>) -> Self {
        IrcConfig {
            server: server.into(),
            port,
            tls: false,
            ca_file: None,
            nick: nick.into(),
            alternates: Vec::new(),
            channels,
            sasl: None,
            client_cert: None,
            fingerprints: Vec::new(),
            rate: Rate::default(),
            ping_every: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(30),
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            whois: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// How the robot logs in: EXTERNAL with a client certificate, else PLAIN with an account, else not.
    pub fn login(&self) -> Option<Login> {
        match (&self.client_cert, &self.sasl) {
            (Some(_), _) => Some(Login::External),
            (None, Some((account, password))) => {
                Some(Login::Plain { account: account.clone(), password: password.clone() })
            }
            (None, None) => None,
        }
    }
}

/// A message addressed to the robot: in a channel, or privately (then `room` is the sender's nick).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub room: String,
    pub sender: Sender,
    pub text: String,
}

/// What the robot is asked to say.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An announcement (NOTICE) of an event of `kind`, subject to the room's queue bound.
    Announce { room: String, kind: String, text: String },
    /// A reply to a person (PRIVMSG).
    Reply { room: String, text: String },
    /// A page (PRIVMSG to a nick or a room) whose outcome is reported through `done`: `Delivered` once the
    /// server has processed it (a `PING` with a token goes out right behind it, and its `PONG` comes back),
    /// `Refused` with the server's words when it answered 401/403/404 (no such nick or channel, cannot send).
    Page { to: String, text: String, done: Confirm },
}

/// What became of a page, as the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOutcome {
    /// The server processed the message without complaint.
    Delivered,
    /// The server refused it: its numeric's text (`carol: No such nick or channel name`).
    Refused(String),
    /// It could not be sent whole (the robot's queue was full).
    Failed(String),
}

/// The one-shot answer to a page, cloneable so that [`Outgoing`] stays `Clone` (only the first answer counts).
#[derive(Clone)]
pub struct Confirm(Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<PageOutcome>>>>);

impl std::fmt::Debug for Confirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Confirm")
    }
}

impl Confirm {
    /// A confirmation and the receiver its outcome arrives on.
    pub fn new() -> (Confirm, tokio::sync::oneshot::Receiver<PageOutcome>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Confirm(Arc::new(std::sync::Mutex::new(Some(tx)))), rx)
    }

    fn answer(&self, outcome: PageOutcome) {
        if let Some(tx) = self.0.lock().expect("confirm").take() {
            let _ = tx.send(outcome);
        }
    }
}

/// A page sent and not yet answered: its token (in the `PING` behind it) and target.
struct Pending {
    token: u64,
    to: String,
    done: Confirm,
    since: Instant,
}

/// Pages waiting for the server's answer, kept across reconnects with the outbox (their lines may still be
/// queued there); given up after [`PENDING_FOR`] (the caller has stopped waiting by then).
#[derive(Default)]
struct Pages {
    next: u64,
    pending: std::collections::VecDeque<Pending>,
}

const PENDING_FOR: Duration = Duration::from_secs(120);
const PAGE_TOKEN: &str = "crew-page-";

/// The connection as the status page shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct State {
    pub connected: bool,
    pub nick: String,
    pub channels: Vec<String>,
    pub server: String,
    /// Unix seconds of the current connection's registration.
    pub since: Option<i64>,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// Announcements waiting or held back by the flood rule.
    pub backlog: usize,
    /// The login's outcome on the latest connection (shown as a sentence: why the robot is not logged in).
    pub sasl: Option<SaslStatus>,
}

/// The running robot connection.
#[derive(Clone)]
pub struct Handle {
    pub out: mpsc::Sender<Outgoing>,
    pub state: watch::Receiver<State>,
}

/// Starts the connection task; it reconnects until `shutdown`.
pub fn spawn(cfg: IrcConfig, timeline_url: String, shutdown: CancellationToken) -> (Handle, mpsc::Receiver<Incoming>) {
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (in_tx, in_rx) = mpsc::channel(256);
    let (state_tx, state_rx) =
        watch::channel(State { server: format!("{}:{}", cfg.server, cfg.port), ..State::default() });
    tokio::spawn(run(cfg, timeline_url, out_rx, in_tx, state_tx, shutdown));
    (Handle { out: out_tx, state: state_rx }, in_rx)
}

async fn run(
    cfg: IrcConfig,
    timeline_url: String,
    mut out: mpsc::Receiver<Outgoing>,
    incoming: mpsc::Sender<Incoming>,
    state: watch::Sender<State>,
    shutdown: CancellationToken,
) {
    let mut outbox = Outbox::new(cfg.rate, Instant::now());
    outbox.timeline_url = timeline_url;
    let mut pages = Pages::default();
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session(&cfg, &mut outbox, &mut pages, &mut out, &incoming, &state, &shutdown) => r,
        };
        state.send_modify(|s| {
            s.connected = false;
            s.channels.clear();
            s.since = None;
            // The next connection logs in again (or not): no stale "logged in as".
            s.sasl = None;
        });
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(server = %cfg.server, port = cfg.port, error = %e, "IRC connection lost; reconnecting");
                state.send_modify(|s| {
                    s.last_error = Some(e.to_string());
                    s.reconnects += 1;
                });
            }
        }
        // A connection that lasted a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(120) {
            failures = 0;
        }
        let wait = backoff(cfg.backoff, failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The wait before reconnect attempt `n` (0-based): doubling from `first`, capped, ±25% jitter.
pub fn backoff((first, cap): (Duration, Duration), n: u32) -> Duration {
    let base = first.saturating_mul(1u32 << n.min(16)).min(cap);
    base.mul_f64(rand::rng().random_range(0.75..1.25))
}

#[derive(Debug, thiserror::Error)]
pub enum IrcError {
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server said: {0}")]
    ServerError(String),
    #[error("no PONG within {0:?}")]
    PingTimeout(Duration),
    #[error("not registered within {0:?}")]
    NotRegistered(Duration),
    #[error("no nick accepted (tried {0})")]
    NoNick(String),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(cfg: &IrcConfig) -> Result<Box<dyn Stream>, IrcError> {
    let addr = format!("{}:{}", cfg.server, cfg.port);
    let tcp = tokio::time::timeout(Duration::from_secs(15), tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| IrcError::Connect(addr.clone(), std::io::ErrorKind::TimedOut.into()))?
        .map_err(|e| IrcError::Connect(addr.clone(), e))?;
    tcp.set_nodelay(true)?;
    if !cfg.tls {
        return Ok(Box::new(tcp));
    }
    let config = tls_config(cfg)?;
    let name = rustls_pki_types::ServerName::try_from(cfg.server.clone())
        .map_err(|e| IrcError::Tls(format!("server name {}: {e}", cfg.server)))?;
    // A server that takes the connection and never finishes the handshake does not hold the robot.
    let tls = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| IrcError::Tls("no TLS handshake within 15 s".into()))?
    .map_err(|e| IrcError::Tls(e.to_string()))?;
    Ok(Box::new(tls))
}

use tokio_rustls::rustls;

/// The TLS client configuration: the trusted CAs (webpki's roots and `ca_file`) or the pinned fingerprints,
/// and the client certificate if any. Built at every connect, so a renewed certificate is picked up on the
/// next one; the server calls it once at start-up too, so that a mistake in a file is named before it runs.
pub fn tls_config(cfg: &IrcConfig) -> Result<rustls::ClientConfig, IrcError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| IrcError::Tls(e.to_string()))?;
    let builder = if cfg.fingerprints.is_empty() {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &cfg.ca_file {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .map_err(|e| IrcError::Tls(format!("{}: {e}", ca.display())))?;
            for c in certs {
                let c = c.map_err(|e| IrcError::Tls(format!("{}: {e}", ca.display())))?;
                roots.add(c).map_err(|e| IrcError::Tls(format!("{}: {e}", ca.display())))?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        let pinned =
            Pinned { fingerprints: cfg.fingerprints.clone(), algorithms: provider.signature_verification_algorithms };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(pinned))
    };
    match &cfg.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some(path) => {
            let (certs, key) = client_cert(path).map_err(IrcError::Tls)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| IrcError::Tls(format!("{}: {e}", path.display())))
        }
    }
}

/// The certificate chain and private key in one PEM file, as Libera's and OFTC's CertFP guides make it
/// (`openssl req -x509 -newkey ... -keyout crew.pem -out crew.pem`).
fn client_cert(
    path: &std::path::Path,
) -> Result<(Vec<rustls_pki_types::CertificateDer<'static>>, rustls_pki_types::PrivateKeyDer<'static>), String> {
    use rustls_pki_types::pem::PemObject;
    let at = path.display();
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{at}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{at}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{at}: no certificate in the file (it should hold the certificate and its key)"));
    }
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("{at}: no private key in the file (it should hold the certificate and its key)")
        }
        e => format!("{at}: {e}"),
    })?;
    Ok((certs, key))
}

/// A server certificate accepted by its SHA-256 fingerprint alone (no CA, name or dates), for a server with a
/// self-signed certificate; the handshake's signatures are still checked against that certificate's key.
#[derive(Debug)]
struct Pinned {
    fingerprints: Vec<[u8; 32]>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if self.fingerprints.contains(&got) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            let hex: String = got.iter().map(|b| format!("{b:02X}")).collect();
            Err(rustls::Error::General(format!(
                "the server's certificate (SHA-256 {hex}) is not one of chat.irc.fingerprints"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A SHA-256 fingerprint as people copy it (`openssl x509 -fingerprint -sha256`: hex, colons allowed, any
/// case) → its bytes; `None` if it is not one.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Lines up to this long are read (512 plus IRCv3 tags); longer ones are skipped.
const MAX_LINE: usize = 8192 + 512;

/// IRC lines: read up to LF with a length bound, an over-long line given as `None` (skipped, and the stream
/// goes on: tokio-util ends a framed stream after any decoder error); written with CRLF.
struct Lines(AnyDelimiterCodec);

impl Lines {
    fn new() -> Self {
        Lines(AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), MAX_LINE))
    }
}

impl Decoder for Lines {
    type Item = Option<Bytes>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Option<Bytes>>, std::io::Error> {
        match self.0.decode(src) {
            Ok(line) => Ok(line.map(Some)),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(None)),
            Err(AnyDelimiterCodecError::Io(e)) => Err(e),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Option<Bytes>>, std::io::Error> {
        match self.0.decode_eof(src) {
            Ok(line) => Ok(line.map(Some)),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(None)),
            Err(AnyDelimiterCodecError::Io(e)) => Err(e),
        }
    }
}

impl Encoder<String> for Lines {
    type Error = std::io::Error;

    fn encode(&mut self, line: String, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.reserve(line.len() + 2);
        dst.put(line.as_bytes());
        dst.put(&b"\r\n"[..]);
        Ok(())
    }
}

async fn session(
    cfg: &IrcConfig,
    outbox: &mut Outbox,
    pages: &mut Pages,
    out: &mut mpsc::Receiver<Outgoing>,
    incoming: &mpsc::Sender<Incoming>,
    state: &watch::Sender<State>,
    shutdown: &CancellationToken,
) -> Result<(), IrcError> {
    let stream = connect(cfg).await?;
    let mut io = Framed::new(stream, Lines::new());
    // Registration lines go out first and at once; they are not subject to the flood rule.
    let user = cfg.nick.chars().filter(|c| c.is_ascii_alphanumeric()).take(10).collect::<String>();
    let user = if user.is_empty() { "crew".to_string() } else { user };
    let mut nicks = std::iter::once(cfg.nick.clone()).chain(cfg.alternates.iter().cloned()).collect::<Vec<_>>();
    nicks.dedup();
    let mut nick_index = 0;
    let mut nick = nicks[0].clone();
    send(&mut io, "CAP LS 302").await?;
    send(&mut io, &format!("NICK {nick}")).await?;
    send(&mut io, &format!("USER {user} 0 * :crew robot")).await?;

    let mut registered = false;
    let mut negotiation = Negotiation::new(cfg.login());
    let mut account_tag = false;
    let connected_at = Instant::now();
    let mut last_read = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut regain_at = Instant::now() + Duration::from_secs(60);
    let mut joined: Vec<String> = Vec::new();
    let mut whois: std::collections::HashMap<String, Whois> = std::collections::HashMap::new();
    let mut wake = tokio::time::interval(Duration::from_millis(250));
    wake.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Until registered nothing queued is written (the server would refuse it).
    loop {
        if registered {
            while let Ok(line) = outbox.next(Instant::now()) {
                send(&mut io, &render(&line)).await?;
            }
            state.send_if_modified(|s| {
                let b = outbox.backlog();
                let changed = s.backlog != b;
                s.backlog = b;
                changed
            });
        } else {
            while let Some(Line::Raw(raw)) = outbox.next_urgent() {
                send(&mut io, &raw).await?;
            }
        }
        let wait = match outbox.next_wait(Instant::now()) {
            Some(d) if registered => d.max(Duration::from_millis(5)),
            _ => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = send(&mut io, "QUIT :crew is stopping").await;
                return Ok(());
            }
            line = io.next() => {
                let bytes = match line {
                    None => return Err(IrcError::Closed),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(None)) => {
                        tracing::warn!("skipped an over-long line from the IRC server");
                        continue;
                    }
                    Some(Ok(Some(b))) => b,
                };
                last_read = Instant::now();
                ping_sent = None;
                let msg = match parse_line(&bytes) {
                    None => continue,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        let raw = String::from_utf8_lossy(&bytes);
                        tracing::debug!(line = %text::truncate(&raw, 200), error = %e, "unparsable IRC line skipped");
                        continue;
                    }
                };
                if !negotiation.ended() {
                    for line in negotiation.on(&msg.command) {
                        outbox.urgent(line);
                    }
                    account_tag = negotiation.account_tag;
                    if let Some(now) = negotiation.status() {
                        if state.borrow().sasl.as_ref() != Some(now) {
                            match now {
                                SaslStatus::LoggedIn { .. } => tracing::info!(sasl = %now, "IRC login"),
                                why => tracing::warn!(sasl = %why, "IRC login: continuing without an account"),
                            }
                            state.send_modify(|s| s.sasl = Some(now.clone()));
                        }
                    }
                }
                match &msg.command {
                    Command::PING(a, b) => {
                        outbox.urgent(match b { Some(b) => format!("PONG {a} :{b}"), None => format!("PONG :{a}") });
                    }
                    // The server's words reach the status page: no control or format characters, and bounded.
                    Command::ERROR(e) => return Err(IrcError::ServerError(crate::cap::said(e, 300))),
                    // The token of a page's PING: the server processed the page without complaint.
                    Command::PONG(a, b) => {
                        let token = [b.as_deref(), Some(a.as_str())]
                            .into_iter()
                            .flatten()
                            .find_map(|t| t.strip_prefix(PAGE_TOKEN)?.parse::<u64>().ok());
                        if let Some(token) = token {
                            if let Some(i) = pages.pending.iter().position(|p| p.token == token) {
                                let p = pages.pending.remove(i).expect("found");
                                p.done.answer(PageOutcome::Delivered);
                            }
                        }
                    }
                    // A page the server refused (`<me> <target> :<reason>`): the oldest pending one to that target.
                    Command::Response(
                        Response::ERR_NOSUCHNICK | Response::ERR_NOSUCHCHANNEL | Response::ERR_CANNOTSENDTOCHAN,
                        args,
                    ) if args.len() >= 2 => {
                        let target = &args[1];
                        if let Some(i) = pages.pending.iter().position(|p| p.to.eq_ignore_ascii_case(target)) {
                            let p = pages.pending.remove(i).expect("found");
                            let why = args.get(2).map(String::as_str).unwrap_or("refused");
                            p.done.answer(PageOutcome::Refused(format!("the IRC server says {target}: {why}")));
                        }
                    }
                    Command::Response(Response::RPL_WELCOME, args) => {
                        registered = true;
                        if let Some(n) = args.first() { nick = n.clone(); }
                        for c in &cfg.channels { outbox.urgent(format!("JOIN {c}")); }
                        state.send_modify(|s| {
                            s.connected = true;
                            s.nick = nick.clone();
                            s.since = Some(chrono::Utc::now().timestamp());
                            s.last_error = None;
                        });
                    }
                    Command::Response(Response::ERR_NICKNAMEINUSE | Response::ERR_ERRONEOUSNICKNAME | Response::ERR_UNAVAILRESOURCE, _) if !registered => {
                        {
                            nick_index += 1;
                            nick = match nicks.get(nick_index) {
                                Some(n) => n.clone(),
                                // Out of alternates: the wanted nick with underscores (a few times, then give up).
                                None if nick_index < nicks.len() + 4 => format!("{}{}", cfg.nick, "_".repeat(nick_index + 1 - nicks.len())),
                                None => return Err(IrcError::NoNick(nicks.join(", "))),
                            };
                            outbox.urgent(format!("NICK {nick}"));
                        }
                    }
                    Command::NICK(new) if msg.source_nickname() == Some(nick.as_str()) => {
                        nick = new.clone();
                        state.send_modify(|s| s.nick = nick.clone());
                    }
                    Command::JOIN(chan, _, _) if msg.source_nickname() == Some(nick.as_str()) => {
                        if !joined.iter().any(|c| c.eq_ignore_ascii_case(chan)) { joined.push(chan.clone()); }
                        state.send_modify(|s| s.channels = joined.clone());
                    }
                    Command::KICK(chan, who, _) if who.eq_ignore_ascii_case(&nick) => {
                        joined.retain(|c| !c.eq_ignore_ascii_case(chan));
                        state.send_modify(|s| s.channels = joined.clone());
                        outbox.urgent(format!("JOIN {chan}"));
                    }
                    Command::PRIVMSG(target, body) => {
                        // Never answer a NOTICE (loops between robots); only PRIVMSG reaches the commands.
                        if let Some(Prefix::Nickname(n, u, h)) = &msg.prefix {
                            let account = if account_tag { tag(&msg, "account") } else { None };
                            let room = if target.eq_ignore_ascii_case(&nick) { n.clone() } else { target.clone() };
                            let sender = Sender { nick: n.clone(), user: u.clone(), host: h.clone(), account };
                            let m = Incoming { room, sender, text: body.clone() };
                            let ask = !account_tag && cfg.whois.load(std::sync::atomic::Ordering::Relaxed);
                            if !ask || !body.trim_start().starts_with('!') {
                                // A full queue drops the message rather than stalling the connection.
                                let _ = incoming.try_send(m);
                            } else {
                                // No account-tag, and accounts matter: a command waits for WHOIS to say which
                                // services account (if any) its sender is logged in to. The WHOIS goes through
                                // the flood rule.
                                let key = n.to_ascii_lowercase();
                                let waiting = whois.entry(key).or_insert_with(|| {
                                    outbox.reply(Line::Raw(format!("WHOIS {n}")));
                                    Whois { since: Instant::now(), account: None, held: Vec::new() }
                                });
                                if waiting.held.len() < 5 {
                                    waiting.held.push(m);
                                }
                            }
                        }
                    }
                    // RPL_WHOISACCOUNT (330, not in irc-proto's table): `<me> <nick> <account> :is logged in as`.
                    Command::Raw(code, args) if code == "330" && args.len() >= 3 => {
                        if let Some(w) = whois.get_mut(&args[1].to_ascii_lowercase()) {
                            w.account = Some(args[2].clone());
                        }
                    }
                    Command::Response(Response::RPL_ENDOFWHOIS, args) if args.len() >= 2 => {
                        if let Some(w) = whois.remove(&args[1].to_ascii_lowercase()) {
                            for mut m in w.held {
                                m.sender.account = w.account.clone();
                                let _ = incoming.try_send(m);
                            }
                        }
                    }
                    _ => {}
                }
            }
            o = out.recv(), if registered => {
                let Some(o) = o else { return Ok(()) };
                match o {
                    Outgoing::Announce { room, kind, text } => {
                        let pieces = text::split(&text, text::budget("NOTICE", &room));
                        outbox.announce(&room, &kind, pieces, Instant::now());
                    }
                    Outgoing::Reply { room, text } => {
                        for piece in text::split(&text, text::budget("PRIVMSG", &room)).into_iter().take(5) {
                            outbox.reply(Line::Privmsg { target: room.clone(), text: piece });
                        }
                    }
                    Outgoing::Page { to, text, done } => {
                        let mut whole = true;
                        for piece in text::split(&text, text::budget("PRIVMSG", &to)).into_iter().take(5) {
                            whole &= outbox.reply(Line::Privmsg { target: to.clone(), text: piece });
                        }
                        pages.next += 1;
                        let token = pages.next;
                        whole &= outbox.reply(Line::Raw(format!("PING :{PAGE_TOKEN}{token}")));
                        if whole {
                            pages.pending.push_back(Pending { token, to, done, since: Instant::now() });
                        } else {
                            done.answer(PageOutcome::Failed("the robot's reply queue is full".into()));
                        }
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = wake.tick() => {
                let now = Instant::now();
                while pages.pending.front().is_some_and(|p| now.duration_since(p.since) > PENDING_FOR) {
                    pages.pending.pop_front();
                }
                if let Some(at) = ping_sent {
                    if now.duration_since(at) > cfg.ping_timeout {
                        return Err(IrcError::PingTimeout(cfg.ping_timeout));
                    }
                } else if now.duration_since(last_read) > cfg.ping_every {
                    ping_sent = Some(now);
                    outbox.urgent(format!("PING :{}", cfg.server));
                }
                // A WHOIS that was never answered releases its commands without an account.
                let stale: Vec<String> = whois.iter().filter(|(_, w)| now.duration_since(w.since) > Duration::from_secs(10)).map(|(k, _)| k.clone()).collect();
                for k in stale {
                    if let Some(w) = whois.remove(&k) {
                        for m in w.held {
                            let _ = incoming.try_send(m);
                        }
                    }
                }
                if registered && nick != cfg.nick && now > regain_at {
                    regain_at = now + Duration::from_secs(60);
                    outbox.urgent(format!("NICK {}", cfg.nick));
                }
                // However chatty, a server that has not welcomed the robot by then is left (and tried again).
                if !registered && now.duration_since(connected_at) > cfg.ping_every + cfg.ping_timeout {
                    return Err(IrcError::NotRegistered(cfg.ping_every + cfg.ping_timeout));
                }
            }
        }
    }
}

/// Commands from one person held until WHOIS answers.
struct Whois {
    since: Instant,
    account: Option<String>,
    held: Vec<Incoming>,
}

/// One line as read from the server (its LF, and a CR before it, may still be there) turned into a message:
/// bytes that are not UTF-8 are replaced, the line break trimmed, and `irc-proto` parses the rest. `None` for an
/// empty line (skipped); `Err` for a line irc-proto refuses (skipped too, and logged). Public so that the fuzz
/// targets and property tests feed it arbitrary bytes.
pub fn parse_line(bytes: &[u8]) -> Option<Result<Message, irc_proto::error::ProtocolError>> {
    let raw = String::from_utf8_lossy(bytes);
    let raw = raw.trim_end_matches(['\r', '\n']);
    if raw.is_empty() {
        return None;
    }
    Some(raw.parse())
}

fn tag(msg: &Message, name: &str) -> Option<String> {
    msg.tags.as_ref()?.iter().find(|t| t.0 == name).and_then(|t| t.1.clone())
}

fn render(line: &Line) -> String {
    match line {
        Line::Raw(r) => r.clone(),
        Line::Notice { target, text } => format!("NOTICE {target} :{text}"),
        Line::Privmsg { target, text } => format!("PRIVMSG {target} :{text}"),
    }
}

/// A line as the log may show it: the SASL payload (the password, base64) and a server password never.
pub fn for_log(line: &str) -> std::borrow::Cow<'_, str> {
    let upper = line.to_ascii_uppercase();
    let secret = match upper.split_once(' ') {
        Some(("AUTHENTICATE", arg)) => !matches!(arg, "PLAIN" | "EXTERNAL" | "+" | "*"),
        Some(("PASS", _)) => true,
        _ => false,
    };
    if secret {
        let verb = line.split(' ').next().unwrap_or("");
        std::borrow::Cow::Owned(format!("{verb} ***"))
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(io: &mut Framed<S, Lines>, line: &str) -> Result<(), IrcError> {
    // No CR, LF or NUL can reach the wire inside a line: they would end it early or be refused.
    let clean: String = line.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')).collect();
    tracing::trace!(line = %for_log(&clean), "IRC >");
    io.send(clean).await.map_err(IrcError::Io)
}

#[cfg(test)]
mod log_tests {
    use super::for_log;

    #[test]
    fn the_log_never_shows_a_password() {
        assert_eq!(for_log("AUTHENTICATE Y3JldwBjcmV3AHMzY3JldA=="), "AUTHENTICATE ***");
        assert_eq!(for_log("PASS s3cret"), "PASS ***");
        assert_eq!(for_log("AUTHENTICATE PLAIN"), "AUTHENTICATE PLAIN");
        assert_eq!(for_log("AUTHENTICATE +"), "AUTHENTICATE +");
        assert_eq!(for_log("PRIVMSG #ops :hi"), "PRIVMSG #ops :hi");
    }
}
