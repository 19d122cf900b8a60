"""A local HTTP server standing in for Slack's Web API: records chat.postMessage calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from clickguard_dagster.resources import SlackAlertResource


class SlackStandIn(ThreadingHTTPServer):
    """Records chat.postMessage calls; answers like Slack (``ok`` true, or an error if told)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_next = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def __enter__(self) -> SlackStandIn:
        """Serve in a thread until the block ends (the same lifecycle as ``SmtpRecorder``)."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def resource(self, token: str = "xoxb-test") -> SlackAlertResource:
        return SlackAlertResource(
            token=token, channel="#clickguard-test",
            base_url=f"http://127.0.0.1:{self.server_address[1]}/api/",
        )


class _Handler(BaseHTTPRequestHandler):
    server: SlackStandIn

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if "json" in (self.headers.get("Content-Type") or ""):
            payload = json.loads(body)
        else:
            payload = {k: v[0] for k, v in parse_qs(body).items()}
            if "blocks" in payload:
                payload["blocks"] = json.loads(payload["blocks"])
        if self.server.fail_next:
            self.server.fail_next -= 1
            answer = {"ok": False, "error": "ratelimited"}
        else:
            self.server.calls.append(
                {"method": self.path.rsplit("/", 1)[-1],
                 "auth": self.headers.get("Authorization"), **payload}
            )
            answer = {"ok": True, "channel": "C0TEST", "ts": f"{len(self.server.calls)}.0001"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass
