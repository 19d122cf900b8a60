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
"""

from __future__ import annotations

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

POOL_SIZE = 2
"""Connections each storage (runs, event log, schedules) keeps open per process."""
MAX_OVERFLOW = 6
"""Extra connections under concurrency (closed when returned)."""
POOL_RECYCLE_S = 3600


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose run, event-log and schedule storages pool connections."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data,
                         token_provider=token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            old = storage._engine
            storage._engine = create_pg_engine(
                storage.postgres_url,
                token_provider,
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_S,
                pool_pre_ping=True,
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
