"""Retention: day partitions of ``events`` (migration 0009), and the stream's side tables trimmed.

``events`` would otherwise grow forever (at the original's 15,000 events/s, 1.3 billion rows a
day). Dropping a day's partition frees its space at once, with no DELETE, no bloat and no
VACUUM; queries over a time range read only the partitions of their days. The side tables
(``late_events``, ``anomalies``, ``minute_counts``, ``dlq_events``, ``batch_ledger``) are far
smaller and keyed without a time column, so they are trimmed by age in short DELETE chunks
instead (:func:`trim_tables`). The Dagster job ``event_partitions`` runs :func:`maintain` every
hour.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg

log = logging.getLogger(__name__)

ATTACH_LOCK = 424243
"""Advisory lock of :func:`ensure_days` (``db.migrate`` holds 424242 while it migrates)."""
LOCK_TIMEOUT = "2s"
"""How long dropping a partition waits for its lock on ``events`` before giving up until the
next run: statements that arrive meanwhile queue behind it, so the stream's inserts and the
API's reads wait at most this long."""
ATTACH_LOCK_TIMEOUT = "200ms"
"""How long one try at creating a day waits for its locks. ATTACH takes an ACCESS EXCLUSIVE lock
on ``events_default``, and while it waits every statement that locks the default partition
queues behind it: one session left idle in a transaction after reading ``events`` stopped the
stream's commits for as long as it stayed open (docs/dagster.md). A try that times out is
retried; each holds that queue at most this long."""
ATTACH_TRIES = 10
ATTACH_RETRY_S = 1.0
"""Tries per day and the pause between them; a day still locked after them is left for the next
call (the hourly job, the next `stack up`) and its rows wait in ``events_default`` meanwhile."""
TRIM_CHUNK = 10_000
"""Rows one trimming DELETE removes: each chunk is its own short transaction."""


@dataclass
class Maintenance:
    """What one :func:`maintain` call did."""

    created: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    default_rows_deleted: int = 0
    trimmed: dict[str, int] = field(default_factory=dict)
    partitions: int = 0
    oldest_day: date | None = None


def partition_name(day: date) -> str:
    return f"events_p{day:%Y%m%d}"


def event_days(conn: psycopg.Connection) -> list[date]:
    """The days that have a partition, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'"
    ).fetchall()
    return sorted(datetime.strptime(r[0][len("events_p"):], "%Y%m%d").date() for r in rows)


@dataclass
class Days:
    """What one :func:`ensure_days` call did."""

    created: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    """Not created: another session held ``events_default`` through every try."""


def ensure_days(
    conn: psycopg.Connection, first: date, last: date,
    tries: int = ATTACH_TRIES, retry_s: float = ATTACH_RETRY_S,
) -> Days:
    """Create the partitions of ``first``..``last`` that are missing (rows of those days waiting
    in the default partition move into them). One transaction per try and day.

    Callers take turns: `clickguard stack up` (every ``db.migrate``) and the hourly job may
    create the same day at once, and without the advisory lock both would find it missing and
    the second CREATE TABLE would fail; with it the second waits, then finds the day there.
    The table locks are waited for :data:`ATTACH_LOCK_TIMEOUT` a try, never longer."""
    done = Days()
    day = first
    while day <= last:
        name = partition_name(day)
        for attempt in range(1, tries + 1):
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ATTACH_LOCK,))
                    conn.execute(f"SET LOCAL lock_timeout = '{ATTACH_LOCK_TIMEOUT}'")
                    row = conn.execute("SELECT clickguard_attach_event_day(%s)", (day,)).fetchone()
            except psycopg.errors.LockNotAvailable:
                if attempt < tries:
                    time.sleep(retry_s)
                    continue
                # the days after it need the same lock: left too, not tried ten times each
                while day <= last:
                    done.busy.append(partition_name(day))
                    day += timedelta(days=1)
                log.warning(
                    "day partitions %s not created: events_default stayed locked through %d tries"
                    " (%s); their rows wait in events_default until the hourly job "
                    "event_partitions or the next `clickguard stack up` creates them",
                    ", ".join(done.busy), tries, holders(conn))
                return done
            if row and row[0]:
                done.created.append(name)
            break
        day += timedelta(days=1)
    return done


def holders(conn: psycopg.Connection) -> str:
    """Who holds ``events_default``, oldest transaction first: what a stuck day creation names."""
    rows = conn.execute(
        "SELECT a.pid, a.state,"
        " extract(epoch FROM clock_timestamp() - a.xact_start)::int, left(a.query, 60)"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.relation = to_regclass('events_default') AND l.granted"
        " AND a.pid <> pg_backend_pid() ORDER BY a.xact_start NULLS LAST LIMIT 3"
    ).fetchall()
    return "; ".join(
        f"held by pid {pid} ({state}, transaction open {age} s: {query!r})" if state is not None
        else f"held by pid {pid} (another role's session: pg_stat_activity shows its state and "
        "query to a superuser)"
        for pid, state, age, query in rows
    ) or "its holders have gone since"


def drop_days_before(conn: psycopg.Connection, cutoff: date) -> tuple[list[str], int]:
    """Drop every day partition older than ``cutoff`` and delete the default partition's rows
    older than it; (names dropped, default rows deleted). Each drop is its own transaction
    (``conn`` in autocommit mode), so one that times out on its lock keeps the drops before it.

    (``DETACH PARTITION CONCURRENTLY`` would need no exclusive lock, but PostgreSQL refuses it
    on a table with a default partition; the drop's lock is held for milliseconds.)
    """
    if not conn.autocommit:
        raise ValueError("drop_days_before needs an autocommit connection")
    dropped = []
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    for day in event_days(conn):
        if day >= cutoff:
            break
        name = partition_name(day)
        conn.execute(f"DROP TABLE {name}")  # name from partition_name: digits only
        dropped.append(name)
    cur = conn.execute(
        "DELETE FROM events_default WHERE event_ts < %s",
        (datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC),),
    )
    conn.execute("RESET lock_timeout")
    return dropped, cur.rowcount


@dataclass(frozen=True)
class Retention:
    """Days kept (0 = keep everything) of the events and the tables that follow them, of the
    DLQ, and of the batch ledger."""

    events_days: int
    dlq_days: int
    ledger_days: int


@dataclass(frozen=True)
class SideTable:
    """A table trimmed by age: its time column (indexed: migrations 0001, 0010, 0011), the
    :class:`Retention` field that says how many days it keeps, and a SQL condition on its rows
    (alias ``t``) that must also hold for a row to go."""

    column: str
    days: str
    also: str = ""


SIDE_TABLES: dict[str, SideTable] = {
    "late_events": SideTable("detected_at", "events_days"),
    "anomalies": SideTable("detected_at", "events_days"),
    "minute_counts": SideTable("minute", "events_days"),
    "dlq_events": SideTable("detected_at", "dlq_days"),
    # each query's newest ledger row stays whatever its age: the sink reads the previous
    # batch's watermark from it, so an idle stream restarted after the retention still routes
    # late events
    "batch_ledger": SideTable(
        "committed_at", "ledger_days",
        also="batch_id < (SELECT max(m.batch_id) FROM batch_ledger m "
        "WHERE m.query_id = t.query_id)",
    ),
    # scratch rows left by a driver that died mid-batch (executor-side sink); normally none
    "stream_stage": SideTable("staged_at", "ledger_days"),
}


def trim_tables(
    conn: psycopg.Connection, retention: Retention, today: date, chunk: int = TRIM_CHUNK
) -> dict[str, int]:
    """Delete the side tables' rows older than their retention, ``chunk`` rows per
    transaction (``conn`` in autocommit mode), so the stream's inserts never wait behind one
    long DELETE; rows deleted per table (tables with retention 0 are left out)."""
    if not conn.autocommit:
        raise ValueError("trim_tables needs an autocommit connection")
    deleted: dict[str, int] = {}
    for table, side in SIDE_TABLES.items():
        days = getattr(retention, side.days)
        if days <= 0:
            continue
        cutoff = datetime.combine(today - timedelta(days=days), datetime.min.time(), UTC)
        also = f" AND {side.also}" if side.also else ""
        # names from SIDE_TABLES above, not from input
        statement = (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {table} t WHERE {side.column} < %s{also} LIMIT %s))"
        )
        deleted[table] = 0
        while True:
            n = conn.execute(statement, (cutoff, chunk)).rowcount
            deleted[table] += n
            if n < chunk:
                break
    return deleted


def ensure_ahead(conn: psycopg.Connection, ahead_days: int, today: date | None = None) -> Days:
    """Partitions for today and the next ``ahead_days`` days: today's rows
    never wait in the default partition, whether or not the hourly job has run since midnight
    or since a stack that was down for days came back."""
    today = today or datetime.now(UTC).date()
    return ensure_days(conn, today, today + timedelta(days=ahead_days))


def maintain(
    conn: psycopg.Connection, retention: Retention, ahead_days: int, today: date | None = None
) -> Maintenance:
    """Partitions for today and the next ``ahead_days`` days; none older than the events'
    retention before today; side tables trimmed by theirs. ``conn`` in autocommit mode."""
    today = today or datetime.now(UTC).date()
    days = ensure_ahead(conn, ahead_days, today)
    done = Maintenance(created=days.created, busy=days.busy)
    if retention.events_days > 0:
        done.dropped, done.default_rows_deleted = drop_days_before(
            conn, today - timedelta(days=retention.events_days)
        )
    done.trimmed = trim_tables(conn, retention, today)
    kept = event_days(conn)
    done.partitions, done.oldest_day = len(kept), (kept[0] if kept else None)
    return done
