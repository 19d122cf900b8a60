"""Fixtures for the API tests: real PostgreSQL (only that node), a dedicated database, live servers.

The tests own a separate database (``<pg_db>_api_test``) so they can truncate and fill tables
with exactly the rows they compare against, whatever else the stack holds (e.g. the 10 M-event
benchmark set). The API under test is a real uvicorn server in a thread, on a free port, using
the read-only role like in production; the response cache is off unless a test turns it on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from api.main import create_app
from clickguard import db
from clickguard.settings import Settings

pytestmark = pytest.mark.integration

API_TABLES = (
    "anomalies", "events", "dlq_events", "batch_ledger", "stream_heartbeat", "daily_metrics",
    "session_funnel", "popular_items", "popular_categories", "anomaly_type_stats",
    "anomaly_hourly", "anomaly_hour_sessions", "api_table_counts",
)


@pytest.fixture(scope="session")
def api_settings(postgres_alone: Settings) -> Settings:
    """Settings of a test database with migrations applied; PostgreSQL started if needed."""
    settings = postgres_alone
    test = settings.model_copy(
        update={"pg_db": f"{settings.pg_db}_api_test", "api_cache_ttl_s": 0.0, "api_key": None}
    )
    db.bootstrap(test)
    db.migrate(test)
    return test


@pytest.fixture
def wpg(api_settings: Settings) -> Iterator[psycopg.Connection]:
    """Writer connection to the (emptied) test database, autocommit."""
    with db.connect(api_settings, "writer", autocommit=True) as conn:
        conn.execute(
            "TRUNCATE anomalies, events, dlq_events, batch_ledger, stream_heartbeat, "
            "daily_metrics, session_funnel, popular_items, popular_categories RESTART IDENTITY"
        )
        yield conn


def fingerprint(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over all rows of every table the API reads."""
    out = {}
    for table in API_TABLES:
        row = conn.execute(
            f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')"
            f" FROM {table} t"
        ).fetchone()
        assert row is not None
        out[table] = (row[0], row[1])
    return out


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``create_app(settings)`` in a thread (real HTTP, real lifespan)."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="session")
def live_api(api_settings: Settings) -> Iterator[LiveServer]:
    """The API with the cache off and no API key."""
    with LiveServer(api_settings) as server:
        yield server


@pytest.fixture(scope="session")
def make_server(api_settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    """Start extra servers with changed settings (auth on, cache on…); stopped at the end."""
    servers: list[LiveServer] = []

    def make(**changes: Any) -> LiveServer:
        server = LiveServer(api_settings.model_copy(update=changes)).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__()


@pytest.fixture
def client(live_api: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_api.url, timeout=10) as c:
        yield c
