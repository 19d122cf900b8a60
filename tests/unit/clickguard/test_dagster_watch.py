"""The webserver's and the daemon's code-server watcher polls at the configured interval."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dagster._grpc import server_watcher
from dagster._grpc.client import DagsterGrpcClient

from clickguard.dagster_env import watch_code_server_every


class _CountingClient(DagsterGrpcClient):
    """A client that answers GetServerId itself and counts the calls (no server needed)."""

    def __init__(self) -> None:
        super().__init__(port=1, host="127.0.0.1")
        self.calls = 0

    def get_server_id(self, timeout: int | float | None = None) -> str:
        self.calls += 1
        return "server-1"


@pytest.fixture(autouse=True)
def _restore_interval() -> Iterator[None]:
    before = server_watcher.WATCH_INTERVAL
    yield
    server_watcher.WATCH_INTERVAL = before


def _calls_in(seconds: float) -> int:
    """GetServerId calls of Dagster's own watch thread (as a workspace starts it) in ``seconds``."""
    client = _CountingClient()
    shutdown, thread = server_watcher.create_grpc_watch_thread(
        "clickguard", client,
        get_location_entry=lambda _name: None, refresh_code_location=lambda _name: None,
        on_disconnect=lambda _n: None, on_reconnected=lambda _n: None,
        on_updated=lambda _n, _id: None, on_error=lambda _n: None,
    )
    thread.start()
    time.sleep(seconds)
    shutdown.set()
    thread.join(timeout=5)
    return client.calls


def test_the_watch_thread_polls_at_the_interval_set_before_it_starts() -> None:
    watch_code_server_every(0.05)
    fast = _calls_in(0.6)
    watch_code_server_every(10.0)
    slow = _calls_in(0.6)
    assert fast >= 6  # ≈ 12 at 50 ms (a busy machine may lose a few)
    assert slow == 1  # the first check, then a 10-s wait


def test_a_dagster_without_the_constant_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(server_watcher, "WATCH_INTERVAL")
    with pytest.raises(RuntimeError, match="WATCH_INTERVAL is gone"):
        watch_code_server_every(10.0)
