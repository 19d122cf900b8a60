"""After PostgreSQL drops the API's connections (a restart, a failover, an idle-connection
reaper), the next requests are answered from fresh connections, not with 503s.

The pool's connections are really closed by the server (``pg_terminate_backend``), which is what
a restart does to them; PostgreSQL itself stays up so the other tests are not disturbed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from clickguard import db
from clickguard.settings import Settings

pytestmark = pytest.mark.integration


def api_backends(conn: psycopg.Connection, database: str) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'clickguard-api'"
        " AND datname = %s", (database,))]


def kill_api_sessions(admin: psycopg.Connection, database: str, expect: int) -> None:
    """End every session the API's pool holds, once the pool has opened ``expect`` of them."""
    deadline = time.monotonic() + 20
    while len(api_backends(admin, database)) < expect:  # the pool opens in the background
        assert time.monotonic() < deadline, f"the API's pool never held {expect} connections"
        time.sleep(0.1)
    pids = api_backends(admin, database)
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    while set(api_backends(admin, database)) & set(pids):
        time.sleep(0.05)


PATHS = ["/health", "/stats", "/anomalies?limit=1", "/dlq"] * 3


@pytest.mark.parametrize("at_once", [1, 8], ids=["one-by-one", "8-at-once"])
def test_requests_after_the_server_closed_every_pooled_connection_succeed(
    api_settings: Settings, make_server: Callable[..., object], at_once: int,
) -> None:
    server = make_server(api_pool_min=4, api_pool_max=8)  # its own pool
    url = server.url  # type: ignore[attr-defined]

    def get(client: httpx.Client, path: str) -> tuple[str, int, str, float]:
        r = client.get(path)
        return path, r.status_code, r.text[:200], r.elapsed.total_seconds()

    with db.connect(api_settings, "superuser", autocommit=True) as admin, \
            httpx.Client(base_url=url, timeout=10) as client, \
            ThreadPoolExecutor(at_once) as pool:
        assert client.get("/health").status_code == 200
        kill_api_sessions(admin, api_settings.pg_db, expect=4)
        answers = list(pool.map(lambda path: get(client, path), PATHS))
    assert [a for a in answers if a[1] != 200] == []
