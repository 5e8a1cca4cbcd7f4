"""crew's own client cases, written in irctest's style; copied into irctest/client_tests/ by scripts/irctest.

SASL EXTERNAL with a TLS client certificate (irctest's client tests have no EXTERNAL case; these need the
controller's `client_cert` argument, crew.py): the server side asks for a client certificate, checks that it is
the one configured, and plays the exchange of the IRCv3 SASL 3.1 spec: `AUTHENTICATE EXTERNAL`,
`AUTHENTICATE +`, then `AUTHENTICATE +` (no authorisation identity) from the client.

And an untrusted server certificate refused in the handshake: irctest's testUntrustedCertificate expects the
handshake to complete and the client to hang up after it; crew (rustls) refuses within the handshake, with an
alert, before anything is sent (see crew_known.py).
"""

from pathlib import Path
import re
import shutil
import ssl
import subprocess
import tempfile

from irctest import cases, tls
from irctest.client_tests.tls import BAD_CERT, BAD_KEY, GOOD_CERT, GOOD_FINGERPRINT, GOOD_KEY
from irctest.exceptions import ConnectionClosed
from irctest.irc_utils.message_parser import Message


def make_client_cert(directory: Path) -> Path:
    """A self-signed certificate and its key in one PEM, as Libera's CertFP guide makes it."""
    pem = directory / "robot.pem"
    subprocess.check_call(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=crew-robot", "-keyout", pem, "-out", pem],
        stderr=subprocess.DEVNULL,
    )
    return pem


class CrewTlsTestCase(cases.BaseClientTestCase):
    def testUntrustedCertificateRefusedInHandshake(self):
        (hostname, port) = self.server.getsockname()
        self.controller.run(
            hostname=hostname,
            port=port,
            auth=None,
            tls_config=tls.TlsConfig(enable=True, trusted_fingerprints=[GOOD_FINGERPRINT]),
        )
        with self.assertRaises((ssl.SSLError, ConnectionClosed, ConnectionResetError)):
            self.acceptClient(tls_cert=BAD_CERT, tls_key=BAD_KEY)
            self.getMessage()
        # irctest's tearDown closes the file of a connection the failed accept never made.
        self.conn = None


class CrewSaslExternalTestCase(cases.BaseClientTestCase):
    directory = None

    def tearDown(self):
        super().tearDown()
        if self.directory:
            shutil.rmtree(self.directory)
    def acceptAskingForCertificate(self, client_pem: Path) -> bytes:
        """Accepts the client over TLS (irctest's GOOD_CERT), requiring a client certificate signed by
        `client_pem`'s (itself); returns the certificate the client presented (DER)."""
        while True:
            try:
                (self.conn, _) = self.server.accept()
                break
            except OSError:
                self.controller.check_is_alive()
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "cert.pem").write_text(GOOD_CERT)
            (Path(d) / "key.pem").write_text(GOOD_KEY)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(Path(d) / "cert.pem", Path(d) / "key.pem")
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_pem)
            self.conn = context.wrap_socket(self.conn, server_side=True)
        self.conn_file = self.conn.makefile(newline="\r\n", encoding="utf8")
        return self.conn.getpeercert(binary_form=True)

    def startWithCertificate(self, caps):
        self.directory = Path(tempfile.mkdtemp())
        pem = make_client_cert(self.directory)
        (hostname, port) = self.server.getsockname()
        self.controller.run(
            hostname=hostname,
            port=port,
            auth=None,
            tls_config=tls.TlsConfig(enable=True, trusted_fingerprints=[GOOD_FINGERPRINT]),
            client_cert=pem.read_text(),
        )
        presented = self.acceptAskingForCertificate(pem)
        block = re.search(
            "-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem.read_text(), re.S
        ).group(0)
        self.assertEqual(
            presented, ssl.PEM_cert_to_DER_cert(block), "the client presented its configured certificate"
        )
        m = self.getMessage()
        self.assertEqual(m, Message({}, None, "CAP", ["LS", "302"]))
        self.sendLine("CAP * LS :{}".format(" ".join(caps)))
        return self.negotiateCapabilities(caps, cap_ls=False)

    @cases.skipUnlessHasMechanism("EXTERNAL")
    def testExternal(self):
        """The certificate is the credential: the response is `+`, an empty authorisation identity."""
        m = self.startWithCertificate(["sasl=EXTERNAL,PLAIN"])
        self.assertEqual(m, Message({}, None, "AUTHENTICATE", ["EXTERNAL"]))
        self.sendLine("AUTHENTICATE +")
        m = self.getMessage()
        self.assertEqual(m, Message({}, None, "AUTHENTICATE", ["+"]))
        self.sendLine("900 * * crew-robot :You are now logged in as crew-robot")
        self.sendLine("903 * :SASL authentication successful")
        m = self.negotiateCapabilities(["sasl"], False)
        self.assertEqual(m, Message({}, None, "CAP", ["END"]))

    @cases.skipUnlessHasMechanism("EXTERNAL")
    def testExternalNotAvailable(self):
        """`sasl=PLAIN` is advertised to a client configured for EXTERNAL: it does not try."""
        m = self.startWithCertificate(["sasl=PLAIN,SCRAM-SHA-256"])
        self.assertEqual(self.acked_capabilities, {"sasl"})
        self.assertEqual(m, Message({}, None, "CAP", ["END"]))

    @cases.skipUnlessHasMechanism("EXTERNAL")
    def testExternalFails(self):
        """A 904 ends CAP; the robot registers without an account."""
        m = self.startWithCertificate(["sasl"])
        self.assertEqual(m, Message({}, None, "AUTHENTICATE", ["EXTERNAL"]))
        self.sendLine("AUTHENTICATE +")
        self.assertEqual(self.getMessage(), Message({}, None, "AUTHENTICATE", ["+"]))
        self.sendLine("904 * :SASL authentication failed")
        m = self.negotiateCapabilities(["sasl"], False)
        self.assertEqual(m, Message({}, None, "CAP", ["END"]))
