"""The API's async PostgreSQL pool (psycopg 3) under the READ-ONLY role.

Connections are autocommit (one round trip per query, no BEGIN/COMMIT), return dict rows, run in
UTC and carry a statement timeout so a slow query cannot pile up requests. psycopg prepares a
statement after a few executions, so the hot queries skip parsing and planning.

After PostgreSQL restarts (or anything else ends its sessions) every idle pooled connection is
dead, and each would fail one request before the pool noticed. :func:`run` therefore checks the
pool's idle connections when a query meets a dead one and runs the read again on a fresh
connection. (psycopg_pool's own ``check=`` on every checkout backs off 1 s, 2 s… after each dead
connection it meets, so a pool of dead connections still timed requests out.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from clickguard.settings import Settings

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]  # its connections return dict rows
Conn = AsyncConnection[DictRow]
T = TypeVar("T")


def make_pool(settings: Settings) -> Pool:
    """A closed pool; the app's lifespan opens it (without waiting, so /health can say 'down')."""
    return AsyncConnectionPool(
        conninfo=settings.pg_dsn("reader"),
        connection_class=AsyncConnection[DictRow],
        min_size=settings.api_pool_min,
        max_size=settings.api_pool_max,
        timeout=settings.api_pool_timeout_s,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": max(1, int(settings.api_pool_timeout_s)),
            "options": f"-c statement_timeout={settings.api_statement_timeout_ms} -c TimeZone=UTC",
            "application_name": "clickguard-api",
        },
        open=False,
        name="clickguard-api",
    )


async def run(pool: Pool, work: Callable[[Conn], Awaitable[T]]) -> T:
    """``work`` (reads only: safe to repeat) on a pooled connection; if that connection was dead,
    the idle ones are checked (dead ones dropped) and ``work`` runs once more on a fresh one."""
    conn: Conn | None = None
    try:
        async with pool.connection() as conn:
            return await work(conn)
    except psycopg.OperationalError:
        if conn is None or not conn.broken:  # a timeout or a query error, not a dead session
            raise
    await pool.check()
    async with pool.connection() as conn:
        return await work(conn)


async def fetch_all(
    pool: Pool, query: LiteralString, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """All rows of one parameterized query (values are always bound, never formatted in)."""

    async def work(conn: Conn) -> list[dict[str, Any]]:
        return await (await conn.execute(query, params)).fetchall()

    return await run(pool, work)


async def fetch_one(
    pool: Pool, query: LiteralString, params: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The first row of one parameterized query, or None."""

    async def work(conn: Conn) -> dict[str, Any] | None:
        return await (await conn.execute(query, params)).fetchone()

    return await run(pool, work)
