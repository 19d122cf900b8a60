"""The Dagster instance's PostgreSQL storage, with connections kept open between daemon loops.

dagster-postgres gives every process but the webserver a ``NullPool``: each loop of each daemon
(sensors, schedules, the run queue, heartbeats) opens a fresh PostgreSQL connection, i.e. a
backend fork and an authentication. On an idle stack that was 157 connections a minute, ≈ 2 %
of a core in PostgreSQL alone (issue 10's idle budget). This class is dagster-postgres' storage
with a small pool per storage; ``pool_pre_ping`` drops connections that died with a PostgreSQL
restart, so the daemon recovers like before. dagster.yaml selects it (``storage: custom``).

The stock ``NullPool`` engines are still built (the parent creates the tables through them) and
then replaced; the replacement keeps the parent's ``auth_provider`` (a cloud token injected as
the password on each connect), so token auth works as with the stock storage.

The code server builds a new instance, so a new storage, for every sensor tick and run launch
it serves: each one inspected the tables through fresh connections and then opened its own
pools, ≈ 35 PostgreSQL connections a minute on an idle stack. In one process, storages of the
same database now share their pools (one per run / event-log / schedule storage) and only the
first one checks the tables.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider
    from sqlalchemy.engine import Engine

POOL_SIZE = 2
"""Connections each storage (runs, event log, schedules) keeps open per process."""
MAX_OVERFLOW = 6
"""Extra connections under concurrency (closed when returned)."""
POOL_RECYCLE_S = 3600


_SHARED: dict[tuple[str, str], Engine] = {}
"""This process's pooled engines, by (database URL, storage class): without a token provider."""
_CHECKED: set[str] = set()
"""Database URLs whose tables a storage of this process has already checked (or created)."""
_LOCK = threading.Lock()


def _pooled_engine(url: str, kind: str, token_provider: PgTokenProvider | None) -> Engine:
    """A pooled engine for ``url``: the process's shared one unless a token provider is given
    (each provider keeps its own token, so its storage keeps its own pools)."""
    if token_provider is None:
        with _LOCK:
            if (url, kind) in _SHARED:
                return _SHARED[(url, kind)]
    engine = create_pg_engine(
        url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_S,
        pool_pre_ping=True,
    )
    if token_provider is None:
        with _LOCK:
            engine = _SHARED.setdefault((url, kind), engine)
    return engine


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose run, event-log and schedule storages pool connections."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        check_tables = should_autocreate_tables and postgres_url not in _CHECKED
        super().__init__(postgres_url, check_tables, inst_data, token_provider=token_provider)
        if check_tables:
            _CHECKED.add(postgres_url)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            old = storage._engine
            storage._engine = _pooled_engine(
                storage.postgres_url, type(storage).__name__, token_provider
            )
            old.dispose()

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledPostgresStorage:
        return cls(
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )
