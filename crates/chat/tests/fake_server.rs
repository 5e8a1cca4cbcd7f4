//! The robot's connection against an in-process fake IRC server, for what ngircd cannot be made to show:
//! SASL success and failure, a server whose mechanisms lack ours, SASL EXTERNAL with a TLS client certificate
//! (ngircd has no SASL at all, nor asks for client certificates), a pinned server certificate, a server that
//! stops answering PING, and a flood of announcements held to the rate. Each fake speaks just enough of the
//! protocol for its case.

use crew_chat::irc::{self, IrcConfig, Outgoing};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Conn {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    fn new(s: TcpStream) -> Conn {
        let (r, w) = s.into_split();
        Conn { lines: BufReader::new(r).lines(), w }
    }
    async fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    }
    async fn recv(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("a line within 10 s")
            .unwrap()
            .expect("open")
    }
    /// Reads lines until one starts with `prefix`.
    async fn until(&mut self, prefix: &str) -> String {
        loop {
            let l = self.recv().await;
            if l.starts_with(prefix) {
                return l;
            }
        }
    }
    /// Registers the client: answers CAP LS with `caps`, then welcomes it (after `sasl` decides).
    async fn register(&mut self, caps: &str) {
        assert_eq!(self.recv().await, "CAP LS 302");
        self.send(&format!(":fake CAP * LS :{caps}")).await;
    }
    async fn welcome(&mut self, nick: &str) {
        self.send(&format!(":fake 001 {nick} :Welcome")).await;
    }
}

async fn fake() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn config(port: u16) -> IrcConfig {
    let mut c = IrcConfig::new("127.0.0.1", port, "crew", vec!["#ops".into()]);
    c.backoff = (Duration::from_millis(50), Duration::from_millis(200));
    c
}

async fn state_until(h: &irc::Handle, mut pred: impl FnMut(&irc::State) -> bool) -> irc::State {
    let mut rx = h.state.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if pred(&rx.borrow_and_update()) {
                return rx.borrow().clone();
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("state never matched: {:?}", h.state.borrow()))
}

#[tokio::test]
async fn sasl_plain_logs_in_before_registration_ends() {
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.sasl = Some(("crewbot".into(), "s3cret".into()));
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("multi-prefix sasl=PLAIN account-tag").await;
    let req = c.until("CAP REQ").await;
    assert!(req.contains("sasl") && req.contains("account-tag"), "{req}");
    c.send(":fake CAP crew ACK :account-tag sasl").await;
    assert_eq!(c.until("AUTHENTICATE").await, "AUTHENTICATE PLAIN");
    c.send("AUTHENTICATE +").await;
    let auth = c.until("AUTHENTICATE").await;
    use base64::Engine;
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(auth.strip_prefix("AUTHENTICATE ").unwrap()).unwrap();
    assert_eq!(decoded, b"crewbot\0crewbot\0s3cret");
    c.send(":fake 900 crew crew!crew@h crewbot :You are now logged in").await;
    c.send(":fake 903 crew :SASL authentication successful").await;
    assert_eq!(c.until("CAP END").await, "CAP END");
    c.welcome("crew").await;
    assert_eq!(c.until("JOIN").await, "JOIN #ops");
    let s = state_until(&h, |s| s.connected).await;
    assert_eq!(s.sasl.unwrap().to_string(), "logged in as crewbot (SASL PLAIN)");
    stop.cancel();
}

#[tokio::test]
async fn a_failed_sasl_is_reported_and_registration_goes_on() {
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.sasl = Some(("crewbot".into(), "wrong".into()));
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("sasl").await;
    c.until("CAP REQ").await;
    c.send(":fake CAP crew ACK :sasl").await;
    c.until("AUTHENTICATE PLAIN").await;
    c.send("AUTHENTICATE +").await;
    c.until("AUTHENTICATE ").await;
    c.send(":fake 904 crew :SASL authentication failed").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    let s = state_until(&h, |s| s.connected).await;
    assert_eq!(s.sasl.unwrap().to_string(), "failed: SASL PLAIN: SASL authentication failed");
    stop.cancel();
}

#[tokio::test]
async fn a_server_that_stops_answering_ping_is_left_and_reconnected() {
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.ping_every = Duration::from_millis(300);
    cfg.ping_timeout = Duration::from_millis(300);
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    // The robot PINGs when the server is quiet; this server never answers.
    c.until("PING").await;
    let mut again =
        Conn::new(tokio::time::timeout(Duration::from_secs(5), l.accept()).await.expect("reconnects").unwrap().0);
    again.register("").await;
    again.until("CAP END").await;
    again.welcome("crew").await;
    assert_eq!(again.until("JOIN").await, "JOIN #ops", "and rejoins");
    let s = state_until(&h, |s| s.connected && s.reconnects == 1).await;
    assert!(s.last_error.is_none());
    // The server's own PINGs are answered at once.
    again.send("PING :are-you-there").await;
    assert_eq!(again.until("PONG").await, "PONG :are-you-there");
    stop.cancel();
}

#[tokio::test]
async fn a_flood_of_announcements_is_held_to_the_rate_and_summed_up() {
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.rate.every = Duration::from_millis(50); // 20 lines a second after a burst of 4
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, "http://crew/".into(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    c.until("JOIN").await;
    state_until(&h, |s| s.connected).await;
    for i in 0..100 {
        let kind = if i % 4 == 0 { "deploy.finished" } else { "alert.fired" };
        h.out
            .send(Outgoing::Announce { room: "#ops".into(), kind: kind.into(), text: format!("event {i}") })
            .await
            .unwrap();
    }
    let start = Instant::now();
    let mut notices = Vec::new();
    loop {
        let l = c.until("NOTICE #ops :").await;
        let done = l.contains("… and ");
        notices.push((start.elapsed(), l));
        if done {
            break;
        }
    }
    // The burst goes at once, then one line per 50 ms: never faster than the rule.
    let sent = notices.len() - 1;
    assert!((crew_chat::outbox::ANNOUNCE_QUEUE..=crew_chat::outbox::ANNOUNCE_QUEUE + 4).contains(&sent), "{sent}");
    let last = notices.last().unwrap().0;
    assert!(last >= Duration::from_millis(50 * (notices.len() as u64 - 5)), "{} lines in {last:?}", notices.len());
    // What did not fit is summed up in one line, every announcement accounted for.
    let summary = &notices.last().unwrap().1;
    let more: usize = summary.split("… and ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(sent + more, 100, "{summary}");
    assert!(summary.contains("alert ×") && summary.contains("deploy ×"), "{summary}");
    assert!(summary.contains("see http://crew/"), "{summary}");
    // Nothing else follows: the flood did not grow a queue.
    assert!(tokio::time::timeout(Duration::from_millis(300), c.until("NOTICE")).await.is_err());
    stop.cancel();
}

#[tokio::test]
async fn malformed_and_over_long_lines_are_skipped_and_notices_never_answered() {
    let (l, port) = fake().await;
    let stop = CancellationToken::new();
    let cfg = config(port);
    cfg.whois.store(true, std::sync::atomic::Ordering::Relaxed);
    let (h, mut incoming) = irc::spawn(cfg, String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    c.until("JOIN").await;
    c.send(&format!(":x!y@z PRIVMSG #ops :{}", "a".repeat(20_000))).await;
    c.send(":::: ::: :").await;
    c.send("\u{1}\u{2}garbage").await;
    c.send(":mo!m@h NOTICE #ops :!status").await;
    c.send(":mo!m@h PRIVMSG #ops :!status").await;
    // Without account-tag the robot asks WHOIS which account the sender is logged in to; none here.
    assert_eq!(c.until("WHOIS").await, "WHOIS mo");
    c.send(":fake 318 crew mo :End of WHOIS list").await;
    let m = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await.unwrap().unwrap();
    assert_eq!(m.sender.account, None);
    assert_eq!((m.room.as_str(), m.sender.nick.as_str(), m.text.as_str()), ("#ops", "mo", "!status"));
    assert_eq!(m.sender.mask(), "mo!m@h");
    assert!(h.state.borrow().connected, "still connected");
    assert_eq!(h.state.borrow().reconnects, 0);
    stop.cancel();
}

#[tokio::test]
async fn a_taken_nick_falls_back_to_the_alternates() {
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.alternates = vec!["crewbot".into()];
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("").await;
    assert_eq!(c.until("NICK").await, "NICK crew");
    c.send(":fake 433 * crew :Nickname is already in use").await;
    assert_eq!(c.until("NICK").await, "NICK crewbot");
    c.send(":fake 433 * crewbot :Nickname is already in use").await;
    assert_eq!(c.until("NICK").await, "NICK crew_");
    c.welcome("crew_").await;
    let s = state_until(&h, |s| s.connected).await;
    assert_eq!(s.nick, "crew_");
    stop.cancel();
}

#[tokio::test]
async fn the_services_account_comes_from_account_tag_or_whois() {
    // Without any account: mapping, no WHOIS: a command goes straight through.
    let (l, port) = fake().await;
    let stop = CancellationToken::new();
    let (_h, mut incoming) = irc::spawn(config(port), String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    c.until("JOIN").await;
    c.send(":mo!m@h PRIVMSG #ops :!status").await;
    let m = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await.unwrap().unwrap();
    assert_eq!(m.sender.account, None);
    stop.cancel();

    let (l, port) = fake().await;
    let stop = CancellationToken::new();
    let cfg = config(port);
    cfg.whois.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_h, mut incoming) = irc::spawn(cfg, String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    c.until("JOIN").await;
    c.send(":mo!m@h PRIVMSG #ops :!status").await;
    assert_eq!(c.until("WHOIS").await, "WHOIS mo");
    c.send(":fake 311 crew mo m h * :Mo").await;
    c.send(":fake 330 crew mo moaccount :is logged in as").await;
    c.send(":fake 318 crew mo :End of WHOIS list").await;
    let m = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await.unwrap().unwrap();
    assert_eq!(m.sender.account.as_deref(), Some("moaccount"));
    // Chatter that is not a command is not looked up.
    c.send(":mo!m@h PRIVMSG #ops :hello").await;
    let m = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await.unwrap().unwrap();
    assert_eq!((m.text.as_str(), m.sender.account.as_deref()), ("hello", None));
    stop.cancel();

    // With account-tag, the tag says it at once.
    let (l, port) = fake().await;
    let stop = CancellationToken::new();
    let (_h, mut incoming) = irc::spawn(config(port), String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("account-tag").await;
    c.until("CAP REQ").await;
    c.send(":fake CAP crew ACK :account-tag").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    c.until("JOIN").await;
    c.send("@account=alice :al!a@h PRIVMSG #ops :!status").await;
    let m = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await.unwrap().unwrap();
    assert_eq!(m.sender.account.as_deref(), Some("alice"));
    stop.cancel();
}

/// A page's outcome comes from the server: the PING sent right behind it comes back (delivered), or the
/// server answers 401 for the nick first (refused, with its words). The server's own PING token and other
/// PONGs are not mistaken for a page's.
#[tokio::test]
async fn a_page_is_delivered_when_the_server_has_processed_it_and_refused_for_an_unknown_nick() {
    let (l, port) = fake().await;
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(config(port), String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("").await;
    c.until("CAP END").await;
    c.welcome("crew").await;
    c.until("JOIN").await;
    state_until(&h, |s| s.connected).await;

    let (done, answer) = irc::Confirm::new();
    h.out.send(Outgoing::Page { to: "alice".into(), text: "#1 the site is down".into(), done }).await.unwrap();
    assert_eq!(c.until("PRIVMSG").await, "PRIVMSG alice :#1 the site is down");
    let ping = c.until("PING").await;
    let token = ping.strip_prefix("PING :").expect("a token").to_string();
    c.send(":fake PONG fake :unrelated").await;
    c.send(&format!(":fake PONG fake :{token}")).await;
    let got = tokio::time::timeout(Duration::from_secs(5), answer).await.unwrap().unwrap();
    assert_eq!(got, irc::PageOutcome::Delivered);

    let (done, answer) = irc::Confirm::new();
    h.out.send(Outgoing::Page { to: "Carol".into(), text: "#2 backups failed".into(), done }).await.unwrap();
    c.until("PRIVMSG Carol").await;
    let ping = c.until("PING").await;
    c.send(":fake 401 crew carol :No such nick or channel name").await;
    c.send(&format!(":fake PONG fake :{}", ping.strip_prefix("PING :").unwrap())).await;
    let got = tokio::time::timeout(Duration::from_secs(5), answer).await.unwrap().unwrap();
    assert_eq!(got, irc::PageOutcome::Refused("the IRC server says carol: No such nick or channel name".into()));
    stop.cancel();
}

/// The server's `sasl=` list lacks PLAIN: the robot asks for `sasl` but never sends `AUTHENTICATE PLAIN` (nor
/// its password), ends CAP, registers, and its status says why it is not logged in.
#[tokio::test]
async fn a_server_without_plain_gets_no_password_and_the_status_says_why() {
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.sasl = Some(("crewbot".into(), "s3cret".into()));
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, String::new(), stop.clone());
    let mut c = Conn::new(l.accept().await.unwrap().0);
    c.register("sasl=EXTERNAL,SCRAM-SHA-256").await;
    assert_eq!(c.until("CAP REQ").await, "CAP REQ :sasl");
    c.send(":fake CAP crew ACK :sasl").await;
    let next = c.until("CAP END").await;
    assert_eq!(next, "CAP END");
    c.welcome("crew").await;
    assert_eq!(c.until("JOIN").await, "JOIN #ops", "no AUTHENTICATE went out before");
    let s = state_until(&h, |s| s.connected).await;
    assert_eq!(
        s.sasl.unwrap().to_string(),
        "not logged in: SASL PLAIN not offered by the server (it offers EXTERNAL, SCRAM-SHA-256)"
    );
    stop.cancel();
}

mod tls {
    //! A TLS fake: a self-signed server certificate and a robot's client certificate made by `openssl`, and a
    //! rustls acceptor that asks for (and records) any client certificate.

    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use tokio_rustls::rustls;

    pub fn openssl_cert(dir: &Path, name: &str, cn: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
            .args(["-addext", &format!("subjectAltName=DNS:{cn}"), "-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&path)
            .arg("-out")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian's openssl package)")
            .success();
        assert!(ok, "openssl made {name}");
        path
    }

    pub fn der(
        path: &Path,
    ) -> (Vec<rustls_pki_types::CertificateDer<'static>>, rustls_pki_types::PrivateKeyDer<'static>) {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).unwrap().map(|c| c.unwrap()).collect();
        (certs, rustls_pki_types::PrivateKeyDer::from_pem_file(path).unwrap())
    }

    pub fn sha256(cert: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(cert).into()
    }

    /// Accepts any client certificate (or none): the test looks at what was presented.
    #[derive(Debug)]
    struct AnyClient(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::server::danger::ClientCertVerifier for AnyClient {
        fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
            &[]
        }
        fn client_auth_mandatory(&self) -> bool {
            false
        }
        fn verify_client_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
            Ok(rustls::server::danger::ClientCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn acceptor(server_pem: &Path) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (certs, key) = der(server_pem);
        let config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(AnyClient(provider)))
            .with_single_cert(certs, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// Lines over a TLS stream.
    pub struct TlsConn {
        pub lines: tokio::io::Lines<BufReader<tokio::io::ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>>>,
        pub w: tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>,
    }

    impl TlsConn {
        pub async fn send(&mut self, line: &str) {
            self.w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        }
        pub async fn until(&mut self, prefix: &str) -> String {
            loop {
                let l = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
                    .await
                    .expect("a line within 10 s")
                    .unwrap()
                    .expect("open");
                if l.starts_with(prefix) {
                    return l;
                }
            }
        }
    }
}

/// SASL EXTERNAL: the robot presents `client_cert` in the TLS handshake, asks for EXTERNAL and answers the
/// server's `+` with `+` (no identity, the account is the certificate's). The server's certificate is taken by
/// its pinned fingerprint (self-signed, for a name the robot does not use).
#[tokio::test]
async fn sasl_external_presents_the_client_certificate_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server_pem = tls::openssl_cert(dir.path(), "server", "irc.invalid");
    let robot_pem = tls::openssl_cert(dir.path(), "robot", "crew-robot");
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.tls = true;
    cfg.client_cert = Some(robot_pem.clone());
    cfg.fingerprints = vec![tls::sha256(tls::der(&server_pem).0[0].as_ref())];
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, String::new(), stop.clone());
    let tcp = l.accept().await.unwrap().0;
    let stream = tls::acceptor(&server_pem).accept(tcp).await.expect("the handshake");
    let presented = stream.get_ref().1.peer_certificates().expect("a client certificate").to_vec();
    assert_eq!(presented[0], tls::der(&robot_pem).0[0], "the robot presented client_cert");
    let (r, w) = tokio::io::split(stream);
    let mut c = tls::TlsConn { lines: BufReader::new(r).lines(), w };
    assert_eq!(c.until("CAP LS").await, "CAP LS 302");
    c.send(":fake CAP * LS :sasl=EXTERNAL,PLAIN").await;
    assert_eq!(c.until("CAP REQ").await, "CAP REQ :sasl");
    c.send(":fake CAP crew ACK :sasl").await;
    assert_eq!(c.until("AUTHENTICATE").await, "AUTHENTICATE EXTERNAL");
    c.send("AUTHENTICATE +").await;
    assert_eq!(c.until("AUTHENTICATE").await, "AUTHENTICATE +");
    c.send(":fake 900 crew crew!crew@h crew-robot :You are now logged in as crew-robot").await;
    c.send(":fake 903 crew :SASL authentication successful").await;
    assert_eq!(c.until("CAP END").await, "CAP END");
    c.send(":fake 001 crew :Welcome").await;
    let s = state_until(&h, |s| s.connected).await;
    assert_eq!(s.sasl.unwrap().to_string(), "logged in as crew-robot (SASL EXTERNAL)");
    stop.cancel();
}

/// A server whose certificate is not the pinned one is refused in the handshake, and the status names the
/// fingerprint it had.
#[tokio::test]
async fn a_certificate_that_is_not_pinned_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server_pem = tls::openssl_cert(dir.path(), "server", "irc.invalid");
    let (l, port) = fake().await;
    let mut cfg = config(port);
    cfg.tls = true;
    cfg.fingerprints = vec![[7u8; 32]];
    let stop = CancellationToken::new();
    let (h, _in) = irc::spawn(cfg, String::new(), stop.clone());
    let tcp = l.accept().await.unwrap().0;
    assert!(tls::acceptor(&server_pem).accept(tcp).await.is_err(), "the robot hangs up");
    let s = state_until(&h, |s| s.last_error.is_some()).await;
    let hex: String = tls::sha256(tls::der(&server_pem).0[0].as_ref()).iter().map(|b| format!("{b:02X}")).collect();
    assert!(s.last_error.as_ref().unwrap().contains(&hex), "{:?}", s.last_error);
    assert!(!s.connected);
    stop.cancel();
}

#[test]
fn fingerprints_are_read_as_people_copy_them() {
    let colons = "E1:EE:6D:E2:DB:C0:D4:3E:3B:60:40:7B:5E:E3:89:AE:C9:D2:C5:31:78:E0:FB:14:CD:51:C3:DF:D5:44:AA:2B";
    let bytes = irc::parse_fingerprint(colons).unwrap();
    assert_eq!(bytes[0], 0xE1);
    assert_eq!(irc::parse_fingerprint(&colons.replace(':', "").to_lowercase()), Some(bytes));
    for bad in ["", "E1EE", &"G".repeat(64), &"é".repeat(32), &"0".repeat(66)] {
        assert_eq!(irc::parse_fingerprint(bad), None, "{bad}");
    }
}

/// A client certificate file without its key (or no certificate at all) is named before any connection.
#[test]
fn a_client_cert_file_without_its_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let robot = tls::openssl_cert(dir.path(), "robot", "crew-robot");
    let text = std::fs::read_to_string(&robot).unwrap();
    let cert_only = dir.path().join("cert-only.pem");
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    std::fs::write(&cert_only, &text[begin..]).unwrap();
    let key_only = dir.path().join("key-only.pem");
    std::fs::write(&key_only, &text[..begin]).unwrap();
    let mut cfg = config(1);
    cfg.tls = true;
    cfg.client_cert = Some(robot);
    assert!(irc::tls_config(&cfg).is_ok());
    cfg.client_cert = Some(cert_only);
    let err = irc::tls_config(&cfg).unwrap_err().to_string();
    assert!(err.contains("cert-only.pem: no private key in the file"), "{err}");
    cfg.client_cert = Some(key_only);
    let err = irc::tls_config(&cfg).unwrap_err().to_string();
    assert!(err.contains("key-only.pem: no certificate in the file"), "{err}");
}
