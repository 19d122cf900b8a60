"""The API's async PostgreSQL pool (psycopg 3) under the READ-ONLY role.

Connections are autocommit (one round trip per query, no BEGIN/COMMIT), return dict rows, run in
UTC and carry a statement timeout so a slow query cannot pile up requests. psycopg prepares a
statement after a few executions, so the hot queries skip parsing and planning.
"""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from clickguard.settings import Settings

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]  # its connections return dict rows


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


async def fetch_all(
    pool: Pool, query: LiteralString, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """All rows of one parameterized query (values are always bound, never formatted in)."""
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def fetch_one(
    pool: Pool, query: LiteralString, params: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The first row of one parameterized query, or None."""
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchone()
