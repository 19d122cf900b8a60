"""Node entry of the stack's ``api`` node: ``python -m api.serve``.

Runs uvicorn on ``settings.api_host:api_port`` with ``settings.api_workers`` worker processes,
each building the app with :func:`api.main.create_app`.
"""

from __future__ import annotations

import os

import uvicorn

from clickguard.procs import parent_pid_env
from clickguard.settings import get_settings, refuse_exposed_defaults


def main() -> None:
    s = get_settings()
    refuse_exposed_defaults(s, "api", s.api_host)
    # uvicorn starts its workers as new interpreters with this environment: they die with us
    os.environ.update(parent_pid_env())
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=s.api_host,
        port=s.api_port,
        workers=s.api_workers,
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
