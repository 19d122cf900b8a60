"""PostgreSQL: connections, roles and databases, versioned schema migrations.

The SQL of every table lives in ``migrations/NNNN_*.sql`` beside this file; a migration is applied
once, in order, and recorded in ``schema_migrations``. Tables are owned by the writer role; the
reader role (used by the API) gets SELECT only and a read-only default transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from clickguard.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
EXTRA_DATABASES = ("registry",)  # the schema registry's storage


def connect(
    settings: Settings, role: str = "writer", db: str | None = None, **kw: Any
) -> psycopg.Connection:
    """A psycopg 3 connection as ``role`` ("writer", "reader" or "superuser")."""
    return psycopg.connect(settings.pg_dsn(role, db), connect_timeout=5, **kw)


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
            *((d, s.pg_superuser) for d in EXTRA_DATABASES),
        ):
            if not conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db), sql.Identifier(owner)
                    )
                )
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


def migrations() -> list[tuple[str, str]]:
    """(version, sql) of every migration file, in order."""
    return [(p.stem, p.read_text()) for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]


def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations as the writer role; returns the versions applied."""
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
