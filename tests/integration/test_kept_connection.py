"""`db.KeptConnection`: one backend for many calls, a new one after it died, errors raised."""

from __future__ import annotations

import psycopg
import pytest

from clickguard import db
from clickguard.settings import Settings


def _terminate(settings: Settings, pid: int) -> None:
    with db.connect(settings, "superuser", autocommit=True) as su:
        assert db.one(su, "SELECT pg_terminate_backend(%s)", (pid,))[0] is True


def test_calls_share_a_backend_and_survive_its_death(postgres_alone: Settings) -> None:
    settings = postgres_alone
    kept = db.KeptConnection(settings, "writer", setup=["SET lock_timeout = '1234ms'"])
    try:
        pids = {db.one(kept.get(), "SELECT pg_backend_pid()")[0] for _ in range(3)}
        assert len(pids) == 1
        (pid,) = pids
        assert db.one(kept.get(), "SHOW lock_timeout")[0] == "1234ms"  # setup ran

        _terminate(settings, pid)  # what a PostgreSQL restart does to every session
        row = kept.execute("SELECT pg_backend_pid(), current_setting('lock_timeout')").fetchone()
        assert row is not None and row[0] != pid and row[1] == "1234ms"
    finally:
        kept.drop()
    assert kept.conn is None


def test_a_dead_database_and_a_bad_statement_are_raised(postgres_alone: Settings) -> None:
    settings = postgres_alone
    # nothing listens on the port: the fresh connection's error reaches the caller, no retry
    down = db.KeptConnection(settings.model_copy(update={"pg_port": 1}), "writer")
    with pytest.raises(psycopg.OperationalError):
        down.execute("SELECT 1")
    assert down.conn is None

    kept = db.KeptConnection(settings, "writer")
    try:
        pid = db.one(kept.get(), "SELECT pg_backend_pid()")[0]
        # an error of the statement, not of the connection: raised once, the backend is kept
        with pytest.raises(psycopg.errors.UndefinedTable):
            kept.execute("SELECT * FROM no_such_table")
        assert db.one(kept.get(), "SELECT pg_backend_pid()")[0] == pid
    finally:
        kept.drop()


def test_a_transactional_connection_commits_its_setup(postgres_alone: Settings) -> None:
    settings = postgres_alone
    kept = db.KeptConnection(
        settings, "writer", autocommit=False,
        setup=["CREATE TEMP TABLE IF NOT EXISTS kept_probe (x int) ON COMMIT DELETE ROWS"],
    )
    try:
        conn = kept.get()
        # the setup is committed: no transaction is left open for the caller's first block
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with conn.transaction():
            conn.execute("INSERT INTO kept_probe VALUES (1)")
            assert db.one(conn, "SELECT count(*) FROM kept_probe")[0] == 1
    finally:
        kept.drop()
