"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records every message it accepts."""

from __future__ import annotations

import socket
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from clickguard_dagster.resources import EmailAlertResource

USER, PASSWORD = "alerts", "s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpRecorder:
    """aiosmtpd handler + authenticator: messages as {from, to, subject, body, login}."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.port = free_port()
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, authenticator=self._auth,
            auth_require_tls=False,  # plain AUTH on loopback: the test has no certificate
        )

    @staticmethod
    def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(), PASSWORD.encode()
        )
        return AuthResult(success=ok, auth_data=data if ok else None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        login = session.auth_data.login.decode() if session.auth_data else None
        self.messages.append({
            "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
            "subject": str(msg["subject"]), "body": msg.get_content(), "login": login,
        })
        return "250 Message accepted for delivery"

    def __enter__(self) -> SmtpRecorder:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def resource(self, port: int | None = None, **overrides: Any) -> EmailAlertResource:
        """The Dagster resource pointed at this server (or at ``port``)."""
        return EmailAlertResource(**{
            "host": "127.0.0.1", "port": port or self.port, "user": USER, "password": PASSWORD,
            "from_addr": "clickguard@test.local", "to": "oncall@test.local, data@test.local",
            "starttls": False, "timeout_s": 5.0, **overrides,
        })
