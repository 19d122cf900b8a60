"""The Dagster instance's storage (clickguard_dagster/storage.py) on the real PostgreSQL: its
pooled engines keep connections between calls and, like the stock storage, get the password
from a token provider (dagster.yaml's ``auth_provider``) on every connect."""

from __future__ import annotations

import time

import pytest
from dagster_postgres.auth import PgTokenProvider

from clickguard import db
from clickguard.settings import Settings
from clickguard_dagster.storage import POOL_SIZE, PooledPostgresStorage

pytestmark = pytest.mark.integration


class PasswordAsToken(PgTokenProvider):
    """Hands out the role's password as the token and counts the calls: a stand-in for a
    cloud identity provider (Azure/GCP workload identity), which is not reachable here."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password
        self.fetches = 0

    def _fetch_token(self) -> tuple[str, float]:
        self.fetches += 1
        return self.password, time.time() + 3600


def url_without_password(s: Settings) -> str:
    return f"postgresql://{s.pg_writer_user}@{s.pg_host}:{s.pg_port}/{s.pg_dagster_db}"


def test_pooled_engines_use_the_token_provider_and_keep_connections(
    postgres_alone: Settings,
) -> None:
    settings = postgres_alone
    provider = PasswordAsToken(settings.pg_writer_password)
    storage = PooledPostgresStorage(url_without_password(settings), token_provider=provider)
    try:
        for part in (storage.run_storage, storage.event_log_storage, storage.schedule_storage):
            engine = part._engine  # type: ignore[attr-defined]
            assert (engine.pool.size(), engine.pool.checkedin()) == (POOL_SIZE, 0)
        # no password in the URL: these calls only authenticate through the provider's token
        storage.run_storage.get_runs(limit=1)
        storage.run_storage.get_runs(limit=1)
        storage.schedule_storage.all_instigator_state()
        assert provider.fetches >= 1
        pool = storage.run_storage._engine.pool  # type: ignore[attr-defined]
        assert pool.checkedin() == 1  # the connection stayed open for the next daemon loop
    finally:
        for part in (storage.run_storage, storage.event_log_storage, storage.schedule_storage):
            part.dispose()



def _sessions(settings: Settings) -> int:
    """Sessions ever opened to the Dagster database (this probe's own included)."""
    with db.connect(settings, "writer", db=settings.pg_dagster_db, autocommit=True) as conn:
        return int(db.one(conn, "SELECT sessions FROM pg_stat_database"
                                " WHERE datname = current_database()")[0])


def test_storages_of_one_process_share_pools_and_check_the_tables_once(
    postgres_alone: Settings,
) -> None:
    """The code server builds a storage per sensor tick: the later ones open no connection."""
    settings = postgres_alone
    url = (f"postgresql://{settings.pg_writer_user}:{settings.pg_writer_password}"
           f"@{settings.pg_host}:{settings.pg_port}/{settings.pg_dagster_db}")
    first = PooledPostgresStorage(url)  # checks (creates) the tables
    first.run_storage.get_runs(limit=1)
    first.schedule_storage.all_instigator_state()
    before = _sessions(settings)
    for _ in range(5):  # five sensor ticks' worth of instances
        storage = PooledPostgresStorage(url)
        storage.run_storage.get_runs(limit=1)
        storage.schedule_storage.all_instigator_state()
        assert storage.run_storage._engine is first.run_storage._engine  # type: ignore[attr-defined]
    assert _sessions(settings) - before == 1  # only the second probe's own session
