"""irctest's controller for crew's IRC robot: runs `crew serve` with a crew.toml whose [chat.irc] points at
irctest's listening server, with the SASL and TLS settings a test asks for.

Copied into irctest/controllers/ by scripts/irctest; the crew binary is $CREW.
"""

import json
import os
from pathlib import Path
from typing import Optional, Type

from irctest import authentication, tls
from irctest.basecontrollers import (
    BaseClientController,
    DirectoryBasedController,
    NotImplementedByController,
)


def toml_string(value: str) -> str:
    # A JSON string (non-ASCII as \uXXXX) is a valid TOML basic string.
    return json.dumps(value)


class CrewController(BaseClientController, DirectoryBasedController):
    software_name = "crew"
    supported_sasl_mechanisms = {"PLAIN", "EXTERNAL"}
    supports_sts = False

    def run(
        self,
        hostname: str,
        port: int,
        auth: Optional[authentication.Authentication],
        tls_config: Optional[tls.TlsConfig] = None,
        client_cert: Optional[str] = None,
    ) -> None:
        """Starts the robot. `client_cert` (a PEM with the certificate and its key) is crew's own addition,
        for the SASL EXTERNAL case in crew_cases.py: irctest's Authentication has no EXTERNAL."""
        assert self.proc is None
        # irctest gives the address its server is bound to (0.0.0.0): that is this machine, where crew lets SASL
        # PLAIN go without TLS.
        if hostname in ("0.0.0.0", "::"):
            hostname = "127.0.0.1"
        self.create_config()
        assert self.directory
        env = dict(os.environ)
        lines = [
            "[chat.irc]",
            f"server = {toml_string(hostname)}",
            f"port = {port}",
            'nick = "crew"',
            'channels = ["#crew"]',
        ]
        if tls_config is not None and tls_config.enable:
            lines.append("tls = true")
            if tls_config.trusted_fingerprints:
                fps = ", ".join(toml_string(f) for f in tls_config.trusted_fingerprints)
                lines.append(f"fingerprints = [{fps}]")
        if client_cert is not None:
            path = self.directory / "client.pem"
            path.write_text(client_cert)
            path.chmod(0o600)
            lines.append(f"client_cert = {toml_string(str(path))}")
        if auth is not None:
            if authentication.Mechanisms.plain not in auth.mechanisms:
                raise NotImplementedByController(
                    "SASL mechanisms " + ", ".join(m.to_string() for m in auth.mechanisms)
                )
            env["IRCTEST_SASL_PASSWORD"] = auth.password or ""
            lines.append(
                f"sasl = {{ account = {toml_string(auth.username or '')}, "
                'password_env = "IRCTEST_SASL_PASSWORD" }'
            )
        config = self.directory / "crew.toml"
        config.write_text("\n".join(lines) + "\n")
        crew = os.environ.get("CREW", "crew")
        self.proc = self.execute(
            [
                crew,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--statsd",
                "off",
                "--config",
                config,
                "--data-dir",
                self.directory / "data",
            ],
            env=env,
        )


def get_irctest_controller_class() -> Type[CrewController]:
    return CrewController
