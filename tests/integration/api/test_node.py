"""The stack runs the API as node `api` (`python -m api.serve`, uvicorn with N workers): /health
and /docs answer on settings.api_port, and stopping the node leaves no worker behind."""

from __future__ import annotations

import signal

import httpx
import pytest

from clickguard import procs
from clickguard.settings import Settings
from clickguard_stack.manager import Stack

pytestmark = pytest.mark.integration


def test_api_node(settings: Settings, api_settings: Settings) -> None:
    stack = Stack(settings, echo=lambda _msg: None)
    node = stack.node("api")
    was_running = node.status().healthy
    stack.up(["postgres", "api"])
    workers: list[int] = []
    try:
        base = f"http://{settings.api_host}:{settings.api_port}"
        health = httpx.get(f"{base}/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["database"] == "connected"
        docs = httpx.get(f"{base}/docs", timeout=10)
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        pid = node.pid()
        assert pid is not None
        workers = procs.descendants(pid)
        assert len(workers) >= settings.api_workers
    finally:
        if not was_running:
            node.stop()
            assert procs.wait_dead(workers, 15)
            assert not procs.port_open(settings.api_port)


def test_a_sigkilled_master_takes_its_workers_along(
    settings: Settings, api_settings: Settings
) -> None:
    """uvicorn's master SIGKILLed: its workers used to serve on, orphaned (`stack status`: down),
    and the next start died on "address already in use"; now they end with it and a new start
    serves."""
    stack = Stack(settings, echo=lambda _msg: None)
    node = stack.node("api")
    was_running = node.status().healthy
    stack.up(["postgres", "api"])
    try:
        pid = node.pid()
        assert pid is not None
        base = f"http://{settings.api_host}:{settings.api_port}"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200  # workers up
        workers = procs.descendants(pid)
        assert workers
        procs.send(pid, signal.SIGKILL)  # the master alone
        assert procs.wait_dead(workers, 15), "a worker outlived its master"
        assert procs.wait_until(lambda: not procs.port_open(settings.api_port), 5)
        stack.up(["api"])
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        assert node.pid() not in (None, pid)
    finally:
        if not was_running:
            node.stop()
