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
from typing import Any

import psycopg

log = logging.getLogger(__name__)

ATTACH_LOCK = 424243
"""Advisory lock of :func:`ensure_days` (``db.migrate`` holds 424242 while it migrates)."""
ATTACH = "SELECT clickguard_attach_event_day(%s)"
"""Creates one day's partition (migration 0009's function); false if it was there."""
SHORT_LOCK_TIMEOUT = "200ms"
"""How long one try at creating or dropping a day waits for its table locks. ATTACH takes an
ACCESS EXCLUSIVE lock on ``events_default``, DROP one on ``events``, and while either waits every
statement that locks that table queues behind it: one session left idle in a transaction after
reading ``events`` stopped the stream's commits for as long as it stayed open (docs/dagster.md).
A try that times out is retried; each holds that queue at most this long."""
TRIES = 10
RETRY_S = 1.0
"""Tries per day and the pause between them; a day still locked after them is left for the next
call (the hourly job, the next `stack up`): a day to create keeps its rows in
``events_default`` meanwhile, a day to drop keeps its rows a little longer."""
TRIM_CHUNK = 10_000
"""Rows one trimming DELETE removes: each chunk is its own short transaction."""


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


def _briefly(
    conn: psycopg.Connection, statement: str, params: tuple[Any, ...], tries: int,
    retry_s: float, advisory: int | None = None,
) -> tuple[bool, tuple[Any, ...] | None]:
    """``statement`` in its own transaction whose table locks are waited for
    :data:`SHORT_LOCK_TIMEOUT`, tried ``tries`` times ``retry_s`` apart; (done, its first row).
    ``advisory``: an advisory lock taken first and waited for however long (another caller
    doing the same work holds it for milliseconds)."""
    for attempt in range(1, tries + 1):
        try:
            with conn.transaction():
                if advisory is not None:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory,))
                conn.execute(f"SET LOCAL lock_timeout = '{SHORT_LOCK_TIMEOUT}'")
                cur = conn.execute(statement, params)
                return True, cur.fetchone() if cur.description else None
        except psycopg.errors.LockNotAvailable:
            if attempt < tries:
                time.sleep(retry_s)
    return False, None


def ensure_days(
    conn: psycopg.Connection, first: date, last: date,
    tries: int = TRIES, retry_s: float = RETRY_S,
) -> Days:
    """Create the partitions of ``first``..``last`` that are missing (rows of those days waiting
    in the default partition move into them). One transaction per try and day.

    Callers take turns: `clickguard stack up` (every ``db.migrate``) and the hourly job may
    create the same day at once, and without the advisory lock both would find it missing and
    the second CREATE TABLE would fail; with it the second waits, then finds the day there.
    The table locks are waited for :data:`SHORT_LOCK_TIMEOUT` a try, never longer."""
    done = Days()
    day = first
    while day <= last:
        ok, row = _briefly(conn, ATTACH, (day,), tries, retry_s, advisory=ATTACH_LOCK)
        if not ok:
            # the days after it need the same lock: left too, not tried ten times each
            while day <= last:
                done.busy.append(partition_name(day))
                day += timedelta(days=1)
            log.warning(
                "day partitions %s not created: events_default stayed locked through %d tries"
                " (%s); their rows wait in events_default until the hourly job "
                "event_partitions or the next `clickguard stack up` creates them",
                ", ".join(done.busy), tries, holders(conn, "events_default"))
            return done
        if row and row[0]:
            done.created.append(partition_name(day))
        day += timedelta(days=1)
    return done


def holders(conn: psycopg.Connection, table: str) -> str:
    """Who holds a lock on ``table``, oldest transaction first: what a stuck day names."""
    rows = conn.execute(
        "SELECT a.pid, a.state,"
        " extract(epoch FROM clock_timestamp() - a.xact_start)::int, left(a.query, 60)"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.relation = to_regclass(%s) AND l.granted"
        " AND a.pid <> pg_backend_pid() ORDER BY a.xact_start NULLS LAST LIMIT 3",
        (table,),
    ).fetchall()
    return "; ".join(
        f"held by pid {pid} ({state}, transaction open {age} s: {query!r})" if state is not None
        else f"held by pid {pid} (another role's session: pg_stat_activity shows its state and "
        "query to a superuser)"
        for pid, state, age, query in rows
    ) or "its holders have gone since"


@dataclass
class Dropped:
    """What one :func:`drop_days_before` call did."""

    dropped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    """Not dropped: another session held ``events`` through every try."""
    default_rows_deleted: int = 0


def drop_days_before(
    conn: psycopg.Connection, cutoff: date, tries: int = TRIES, retry_s: float = RETRY_S,
) -> Dropped:
    """Drop every day partition older than ``cutoff`` and delete the default partition's rows
    older than it. Each drop is its own transaction (``conn`` in autocommit mode), so one left
    locked keeps the drops before it; a drop waits :data:`SHORT_LOCK_TIMEOUT` a try for
    ``events`` (DROP of a partition locks its parent exclusively), never longer.

    (``DETACH PARTITION CONCURRENTLY`` would need no exclusive lock, but PostgreSQL refuses it
    on a table with a default partition; the drop's lock is held for milliseconds.)
    """
    if not conn.autocommit:
        raise ValueError("drop_days_before needs an autocommit connection")
    done = Dropped()
    old = [d for d in event_days(conn) if d < cutoff]
    for i, day in enumerate(old):
        name = partition_name(day)  # digits only: safe in the statement
        ok, _ = _briefly(conn, f"DROP TABLE {name}", (), tries, retry_s)
        if not ok:
            # the older days after it need the same lock: left too, not tried ten times each
            done.busy = [partition_name(d) for d in old[i:]]
            log.warning(
                "day partitions %s not dropped: events stayed locked through %d tries (%s); "
                "the hourly job event_partitions drops them on a later run",
                ", ".join(done.busy), tries, holders(conn, "events"))
            break
        done.dropped.append(name)
    cur = conn.execute(
        "DELETE FROM events_default WHERE event_ts < %s",
        (datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC),),
    )
    done.default_rows_deleted = cur.rowcount
    return done


@dataclass
class Maintenance:
    """What one :func:`maintain` call did."""

    days: Days = field(default_factory=Days)
    drops: Dropped = field(default_factory=Dropped)
    trimmed: dict[str, int] = field(default_factory=dict)
    partitions: int = 0
    oldest_day: date | None = None


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
    done = Maintenance(days=ensure_ahead(conn, ahead_days, today))
    if retention.events_days > 0:
        done.drops = drop_days_before(conn, today - timedelta(days=retention.events_days))
    done.trimmed = trim_tables(conn, retention, today)
    kept = event_days(conn)
    done.partitions, done.oldest_day = len(kept), (kept[0] if kept else None)
    return done
