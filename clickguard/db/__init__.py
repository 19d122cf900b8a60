"""PostgreSQL: connections, roles and databases, versioned schema migrations.

The SQL of every table lives in ``migrations/NNNN_*.sql`` beside this file; a migration is applied
once, in order, and recorded in ``schema_migrations``. Tables are owned by the writer role; the
reader role (used by the API) gets SELECT only and a read-only default transaction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from clickguard.db import partitions
from clickguard.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
T = TypeVar("T")
REGISTRY_DB = "registry"  # the schema registry's storage, owned by its own role


def connect(
    settings: Settings, role: str = "writer", db: str | None = None, **kw: Any
) -> psycopg.Connection:
    """A psycopg 3 connection as ``role`` (:meth:`Settings.pg_credentials`)."""
    return psycopg.connect(settings.pg_dsn(role, db), connect_timeout=5, **kw)


def connect_failure(exc: BaseException) -> str | None:
    """One line for a CLI error when a connection never opened (refused, timed out, login
    refused): psycopg's own words and what to do. None for any other error (a query that
    failed on an open connection keeps its traceback). A command run before `stack up` or
    after `make stop` ended in a psycopg traceback (`migrate`, `init`, `slo-report`,
    `fuzz-stream`), `dlq-replay` after 20 s of Dagster's retries."""
    text = str(exc)
    if not isinstance(exc, psycopg.OperationalError) or not text.startswith(
        ("connection failed", "connection timeout expired")
    ):
        return None
    said = " ".join(text.removeprefix("connection failed: ").split("\n")[0].split())
    if "refused" in said or "timeout" in said or "could not translate host" in said:
        todo = ("is it running? `clickguard stack up` (or `make run`) starts the local stack; "
                "CLICKGUARD_PG_HOST and CLICKGUARD_PG_PORT point at another server")
    else:
        todo = "check the CLICKGUARD_PG_* settings (`clickguard config` shows them)"
    return f"PostgreSQL: {said}; {todo}"


class KeptConnection:
    """One connection kept across calls, reopened on the next call after it died.

    For a process's periodic small writes (heartbeats, lease renewals, batch commits): a fresh
    connection per call costs PostgreSQL a backend fork and both sides a SCRAM authentication
    (an idle driver's heartbeat alone opened 12 a minute; docs/performance.md, eleventh pass).
    ``setup`` statements run (and are committed) once on each new connection.
    """

    def __init__(
        self, settings: Settings, role: str = "writer", *, autocommit: bool = True,
        setup: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.role = role
        self.autocommit = autocommit
        self.setup = tuple(setup)
        self.conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        """The kept connection, opened (with ``setup``) when there is none or it was closed."""
        if self.conn is None or self.conn.closed:
            conn = connect(self.settings, self.role, autocommit=self.autocommit)
            try:
                for statement in self.setup:
                    conn.execute(statement)
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self.conn = conn
        return self.conn

    def drop(self) -> None:
        """Forget the connection (closed if it still can be: a dead one may fail to close)."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None

    def call(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """``fn(connection)`` for idempotent work; if the kept connection turns out dead
        (PostgreSQL restarted, the backend terminated), once more on a new one. An error on a
        new connection is raised: the database is down, and the caller decides what that costs."""
        fresh = self.conn is None or self.conn.closed
        try:
            return fn(self.get())
        except psycopg.OperationalError:
            self.drop()
            if fresh:
                raise
        return fn(self.get())

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        """:meth:`call` of one idempotent statement."""
        return self.call(lambda conn: conn.execute(query, params))


def one(conn: psycopg.Connection, query: Any, params: Any = None) -> tuple[Any, ...]:
    """The row of a query that always returns exactly one (an aggregate, ``SELECT now()``)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise psycopg.DataError(f"no row from a single-row query: {query!r}")
    return row


def bootstrap(settings: Settings) -> None:
    """Create roles and databases if missing (as the superuser). Idempotent."""
    s = settings
    with connect(s, "superuser", "postgres", autocommit=True) as conn:
        for user, password in (
            (s.pg_writer_user, s.pg_writer_password),
            (s.pg_reader_user, s.pg_reader_password),
            (s.pg_registry_user, s.pg_registry_password),
        ):
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(user), sql.Literal(password)
                )
            )
        conn.execute(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                sql.Identifier(s.pg_reader_user)
            )
        )
        for db, owner in (
            (s.pg_db, s.pg_writer_user),
            (s.pg_dagster_db, s.pg_writer_user),
            (REGISTRY_DB, s.pg_registry_user),
        ):
            if not conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db), sql.Identifier(owner)
                    )
                )
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(REGISTRY_DB), sql.Identifier(s.pg_registry_user)))
    _hand_over_registry(s)
    with connect(s, "superuser", s.pg_db, autocommit=True) as conn:
        writer, reader = sql.Identifier(s.pg_writer_user), sql.Identifier(s.pg_reader_user)
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(writer))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reader))
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}"
            ).format(writer, reader)
        )


def _hand_over_registry(s: Settings) -> None:
    """The registry's own role owns its database and every table in it. A stack created before
    that role existed has the registry's tables owned by the superuser: they change hands here
    (idempotent), so the registry never needs the superuser."""
    role = sql.Identifier(s.pg_registry_user)
    with connect(s, "superuser", REGISTRY_DB, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
        kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW",
                 "S": "SEQUENCE"}  # sequences last: a table's own sequences move with it
        for kind, keyword in kinds.items():
            rows = conn.execute(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = 'public' and c.relkind = %s "
                "and pg_get_userbyid(c.relowner) <> %s",
                (kind, s.pg_registry_user),
            ).fetchall()
            for (name,) in rows:
                conn.execute(sql.SQL("ALTER {} public.{} OWNER TO {}").format(
                    sql.SQL(keyword), sql.Identifier(name), role))


def migrations() -> list[tuple[str, str]]:
    """(version, sql) of every migration file, in order."""
    return [(p.stem, p.read_text()) for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]


def migrate(settings: Settings, attempts: int = 5) -> list[str]:
    """Apply pending migrations as the writer role, then create the ``events`` day partitions
    of today and the next ``events_partitions_ahead_days`` that are missing (migration 0009 made
    only the two days around its own run; after that the hourly Dagster job keeps them, but a
    stack up after midnight or after days down must not wait for its first tick). Returns the
    versions applied.

    Its last statement grants the reader every table, which updates each table's catalog row:
    on a running stack a Dagster run may drop its stage table (or the retention a partition)
    at that moment, and PostgreSQL then fails the grant with "tuple concurrently deleted"
    (XX000), which made `clickguard stack up` on a running stack exit 1. The whole transaction
    rolled back, so it is simply run again.
    """
    applied = _migrate_retrying(settings, attempts)
    with connect(settings, "writer", autocommit=True) as conn:
        partitions.ensure_ahead(conn, settings.events_partitions_ahead_days)
    return applied


def _migrate_retrying(settings: Settings, attempts: int) -> list[str]:
    for attempt in range(1, attempts):
        try:
            return _migrate_once(settings)
        except psycopg.errors.InternalError_ as exc:
            if "concurrently" not in str(exc):
                raise
            time.sleep(0.1 * attempt)
    return _migrate_once(settings)  # the last attempt: its error is the caller's


def _migrate_once(settings: Settings) -> list[str]:
    applied: list[str] = []
    with connect(settings, "writer") as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("SELECT pg_advisory_xact_lock(424242)")  # one migrator at a time
        done = {r[0] for r in conn.execute("select version from schema_migrations")}
        for version, text in migrations():
            if version in done:
                continue
            conn.execute(text)
            conn.execute("insert into schema_migrations(version) values (%s)", (version,))
            applied.append(version)
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(settings.pg_reader_user)
            )
        )
        conn.commit()
    return applied
