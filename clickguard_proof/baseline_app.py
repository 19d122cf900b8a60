"""The ceiling of this machine: a bare ASGI app under uvicorn returning a constant JSON body.

Benchmarked in the same run as the API (api_bench.py) so the API's numbers can be read
against what uvicorn alone does on the same cores:
``uvicorn clickguard_proof.baseline_app:app --port 48100 --workers 2``.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status":"ok","source":"baseline"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Every HTTP request gets 200 and BODY; lifespan events are acknowledged."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
