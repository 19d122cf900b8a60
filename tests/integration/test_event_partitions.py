"""``events`` by day on a real PostgreSQL: migration 0009, the partitions job, pruning.

Test days are in 1990, far from any other test's rows, so the retention below drops only them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from clickguard import db
from clickguard.db import partitions
from clickguard.settings import Settings

pytestmark = pytest.mark.integration

D1, D2, D3, D4, D5 = (date(1990, 1, d) for d in range(1, 6))
COLUMNS = ("event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts, source, "
           "session_id, event_type, kafka_partition, kafka_offset, batch_id")
INSERT = (f"INSERT INTO events ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, 'test', 1, 'click', "
          "0, 0, 0)")


def insert(conn: psycopg.Connection, event_id: str, ts: datetime, dedup: bool = True) -> None:
    """One event; ``dedup``: as the stream inserts (ON CONFLICT on the partitioned key)."""
    conflict = " ON CONFLICT (event_id, event_ts) DO NOTHING" if dedup else ""
    conn.execute(INSERT + conflict, (event_id, ts, ts, ts, ts, ts))


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def where(conn: psycopg.Connection, event_id: str) -> list[str]:
    """The partitions holding rows of ``event_id``."""
    return [r[0] for r in conn.execute(
        "SELECT tableoid::regclass::text FROM events WHERE event_id = %s ORDER BY 1", (event_id,))]


@pytest.fixture
def conn(postgres_alone: Settings) -> Iterator[psycopg.Connection]:
    db.migrate(postgres_alone)
    with db.connect(postgres_alone, "writer", autocommit=True) as c:
        yield c
        c.execute("DELETE FROM events WHERE event_ts < '1990-02-01'")
        for day in partitions.event_days(c):
            if day.year == 1990:
                c.execute(f"DROP TABLE {partitions.partition_name(day)}")


def test_days_are_created_filled_from_the_default_pruned_and_dropped(
    conn: psycopg.Connection, postgres_alone: Settings,
) -> None:
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass").fetchone()
    assert kind == ("p",)  # partitioned by the migration
    # db.migrate (the fixture's, as every `stack up`'s) made today and the days ahead, however
    # long ago the database was first migrated
    today = datetime.now(UTC).date()
    ahead = postgres_alone.events_partitions_ahead_days
    assert {today + timedelta(days=i) for i in range(ahead + 1)} <= set(partitions.event_days(conn))

    tag = uuid.uuid4().hex[:8]
    assert partitions.ensure_days(conn, D1, D3).created == ["events_p19900101", "events_p19900102",
                                                            "events_p19900103"]
    assert partitions.ensure_days(conn, D1, D3) == partitions.Days()  # idempotent
    for day in (D1, D2, D3, D5):
        insert(conn, f"{tag}-{day}", at(day))
    insert(conn, f"{tag}-{D2}", at(D2))  # the same event again (a retry): deduplicated
    insert(conn, f"{tag}-{D2}", at(D2, 13))  # same id, another time: another event
    assert where(conn, f"{tag}-{D2}") == ["events_p19900102", "events_p19900102"]
    assert where(conn, f"{tag}-{D5}") == ["events_default"]  # no partition for that day yet

    # a day created later takes its rows out of the default partition
    assert partitions.ensure_days(conn, D4, D5).created == ["events_p19900104", "events_p19900105"]
    assert where(conn, f"{tag}-{D5}") == ["events_p19900105"]
    assert conn.execute("SELECT count(*) FROM events_default WHERE event_id LIKE %s",
                        (f"{tag}-%",)).fetchone() == (0,)

    # a one-day query reads that day's partition only (plan-time pruning, as the API's
    # parameterized queries get at execution time)
    plan = conn.execute(
        "EXPLAIN (FORMAT JSON) SELECT count(*) FROM events WHERE event_ts >= %s AND event_ts < %s",
        (at(D2, 0), at(D3, 0))).fetchone()
    assert plan is not None
    assert relations(plan[0]) == {"events_p19900102"}

    # retention: days before the cutoff are dropped whole, old default rows deleted
    insert(conn, f"{tag}-old", datetime(1989, 6, 1, tzinfo=UTC))  # lands in the default
    done = partitions.drop_days_before(conn, D3)
    assert done.dropped == ["events_p19900101", "events_p19900102"] and done.busy == []
    assert done.default_rows_deleted >= 1 and where(conn, f"{tag}-old") == []
    assert where(conn, f"{tag}-{D1}") == where(conn, f"{tag}-{D2}") == []
    assert where(conn, f"{tag}-{D3}") == ["events_p19900103"]
    with pytest.raises(ValueError, match="autocommit"):
        with db.connect(postgres_alone, "writer") as tx:
            partitions.drop_days_before(tx, D3)


def plan_relations(conn: psycopg.Connection, query: sql.Composable, params: Any = None) -> set[str]:
    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone()
    assert plan is not None
    return relations(plan[0])


def test_batch_asset_reads_prune_to_the_days_they_need(conn: psycopg.Connection) -> None:
    """The batch assets' reads of ``events`` touch only the partitions of their days: the
    Spark JDBC reads (one query per day, as Spark words it) and the per-day stats queries
    that decide which days to recompute. Planned with the values a run binds."""
    from clickguard_dagster.assets.items import ITEM_EVENTS
    from clickguard_dagster.assets.sessions import EVENT_COLUMNS
    from clickguard_dagster.batch import EVENTS, day_predicates

    partitions.ensure_days(conn, D1, D4)
    mark = at(D4)
    for query in (EVENT_COLUMNS, ITEM_EVENTS):
        for day, pred in zip((D2, D3), day_predicates(
                "event_ts", [D2, D3], {D2: mark, D3: mark}, EVENTS.ts_column), strict=True):
            # Spark's JDBCRDD: SELECT <columns> FROM <dbtable> WHERE (<partition predicate>)
            spark_sql = sql.SQL(f"SELECT * FROM ({query}) AS src WHERE ({pred})")
            assert plan_relations(conn, spark_sql) == {partitions.partition_name(day)}, query

    q, params = EVENTS.stats_query([D2], mark)
    assert plan_relations(conn, q, params) == {"events_p19900102"}
    q, params = EVENTS.stats_query([D2, D3])
    assert plan_relations(conn, q, params) == {"events_p19900102", "events_p19900103"}
    q, params = EVENTS.stats_at_query({D3: mark})
    assert plan_relations(conn, q, params) == {"events_p19900103"}
    # the date expression alone prunes nothing: every day's partition is read
    unbounded = sql.SQL("SELECT count(*) FROM events"
                        " WHERE (event_ts AT TIME ZONE 'UTC')::date = ANY(%s::date[])")
    assert {"events_p19900101", "events_p19900104"} <= plan_relations(conn, unbounded, ([D2],))


def relations(plan: Any) -> set[str]:
    """Every "Relation Name" in an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(plan, dict):
        found = {plan["Relation Name"]} if "Relation Name" in plan else set()
        return found.union(*(relations(v) for v in plan.values()))
    if isinstance(plan, list):
        return set().union(*(relations(v) for v in plan))
    return set()


def test_two_callers_creating_the_same_day_do_not_collide(
    conn: psycopg.Connection, postgres_alone: Settings,
) -> None:
    """`stack up` and the hourly job may create the same day at once: the second waits for the
    first's transaction, then finds the day there instead of failing on CREATE TABLE."""
    with db.connect(postgres_alone, "writer") as first:
        first.execute("SELECT 1")  # a transaction open: ensure_days' own becomes a savepoint
        assert partitions.ensure_days(first, D1, D1).created == ["events_p19900101"]
        with ThreadPoolExecutor(1) as pool:  # `first` has not committed yet
            second = pool.submit(partitions.ensure_days, conn, D1, D1)
            time.sleep(1.0)
            assert not second.done()  # waiting for `first`, not racing it
            first.commit()
            assert second.result(timeout=30) == partitions.Days()
    assert D1 in partitions.event_days(conn)


T = TypeVar("T")


def beside_an_idle_reader(
    settings: Settings, role: str, work: Callable[[], T],
    statement: Callable[[psycopg.Connection, int], object],
) -> tuple[T, int]:
    """``work()`` in a thread while a session sits idle in a transaction after reading
    ``events``, and ``statement(conn, n)`` every 50 ms meanwhile on a ``role`` connection whose
    statements time out after 20 s (queued behind a waiting lock = a failure); (work's result,
    statements served). The idle session ends before anything waits for ``work``."""
    idle_in_tx = db.connect(settings, "reader")
    other = db.connect(settings, role, autocommit=True)
    pool = ThreadPoolExecutor(1)
    try:
        idle_in_tx.execute("SELECT count(*) FROM events")  # its transaction stays open
        other.execute("SET statement_timeout = '20s'")
        running = pool.submit(work)
        served = 0
        while not running.done() and served < 200:
            statement(other, served)
            served += 1
            time.sleep(0.05)
        return running.result(timeout=30), served  # not waiting for idle_in_tx to end
    finally:
        idle_in_tx.close()  # a failed test must not leave `work` waiting for it
        other.close()
        pool.shutdown()


def test_a_reader_left_in_a_transaction_delays_a_new_day_but_blocks_no_one(
    conn: psycopg.Connection, postgres_alone: Settings,
) -> None:
    """A session idle in a transaction after reading ``events`` (a psql left open, a stuck
    client) holds ``events_default``, which ATTACH needs exclusively. An ATTACH waiting for it
    queued every other reader of the default behind it (the stream stopped committing until
    that session ended): now each try gives up after SHORT_LOCK_TIMEOUT, other readers get
    through meanwhile, and the day is created by the first call after the session ends."""
    result, reads = beside_an_idle_reader(
        postgres_alone, "reader", lambda: partitions.ensure_days(conn, D1, D2, 4, 1.0),
        lambda other, _: other.execute("SELECT count(*) FROM events").fetchone(),
    )
    # D2 needs the same lock: left at once, not tried four more times
    assert result == partitions.Days(busy=["events_p19900101", "events_p19900102"])
    assert reads >= 10  # the other reader was served all along (the four tries take > 3 s)
    assert not {D1, D2} & set(partitions.event_days(conn))
    # the session has ended: the next call creates the day
    assert partitions.ensure_days(conn, D1, D2).created == ["events_p19900101", "events_p19900102"]


def test_a_reader_left_in_a_transaction_delays_a_drop_but_blocks_no_one(
    conn: psycopg.Connection, postgres_alone: Settings,
) -> None:
    """Dropping a day partition locks ``events`` exclusively, and while the DROP waits for a
    session idle in a transaction, the stream's inserts into ``events`` queue behind it: each
    try gives up after SHORT_LOCK_TIMEOUT, the inserts get through meanwhile, the job goes on
    (the days stay for a later run), and the first call after the session ends drops them."""
    partitions.ensure_days(conn, D1, D3)
    insert(conn, "drop-old", at(D1))
    result, inserts = beside_an_idle_reader(
        postgres_alone, "writer", lambda: partitions.drop_days_before(conn, D3, 4, 1.0),
        lambda writer, n: insert(writer, f"drop-new-{n}", at(D3)),  # as the stream's batches
    )
    # D2 needs the same lock: left at once, not tried four more times
    assert result.dropped == [] and result.busy == ["events_p19900101", "events_p19900102"]
    assert inserts >= 10  # the writer was served all along (the four tries take > 3 s)
    assert {D1, D2} <= set(partitions.event_days(conn)) and where(conn, "drop-old")
    # the session has ended: the next call drops the days
    assert partitions.drop_days_before(conn, D3).dropped == ["events_p19900101",
                                                             "events_p19900102"]
    assert where(conn, "drop-old") == []
    assert conn.execute("SELECT count(*) FROM events WHERE event_id LIKE 'drop-new-%'"
                        ).fetchone() == (inserts,)


def test_the_dagster_job_keeps_days_ahead_and_drops_past_the_retention(
    conn: psycopg.Connection, postgres_alone: Settings,
) -> None:
    from clickguard_dagster.jobs import event_partitions
    from clickguard_dagster.resources import RetentionResource, build_resources

    partitions.ensure_days(conn, D1, D2)
    insert(conn, "job-old", at(D1))
    result = event_partitions.execute_in_process(resources={
        "postgres": build_resources(postgres_alone)["postgres"],
        "retention": RetentionResource(
            events_retention_days=30, dlq_retention_days=30, ledger_retention_days=30,
            events_partitions_ahead_days=3,
        ),
    })
    assert result.success
    summary = result.output_for_node("maintain_event_partitions")
    assert {"events_p19900101", "events_p19900102"} <= set(summary["dropped"])
    today = datetime.now(UTC).date()
    days = set(partitions.event_days(conn))
    assert {today + timedelta(days=i) for i in range(4)} <= days
    assert min(days) >= today - timedelta(days=30)
    assert where(conn, "job-old") == []
    assert set(summary["trimmed"]) == set(partitions.SIDE_TABLES)


SIDE_ROWS = {
    "late_events": (
        "INSERT INTO late_events (source_topic, source_partition, source_offset, event_id, "
        "event_ts, session_id, event_type, watermark, lateness_ms, payload, detected_at) "
        "VALUES (%(tag)s, 0, %(n)s, %(tag)s, %(at)s, 1, 'click', %(at)s, 1, '{}', %(at)s)"
    ),
    "anomalies": (
        "INSERT INTO anomalies (anomaly_type, entity, window_start, window_end, detected_at, "
        "updated_at, anomaly_score, observed) "
        "VALUES (%(tag)s, %(n)s::text, %(at)s, %(at)s, %(at)s, %(at)s, 1, 1)"
    ),
    "minute_counts": (
        "INSERT INTO minute_counts (scope, key, minute) VALUES (%(tag)s, %(n)s::text, %(at)s)"
    ),
    "dlq_events": (
        "INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason, "
        "detected_at) VALUES (%(tag)s, 0, %(n)s, 'test', %(at)s)"
    ),
}
SIDE_KEYS = {  # table: (the column holding the test's tag, the column numbering its rows)
    "late_events": ("source_topic", "source_offset"), "anomalies": ("anomaly_type", "entity"),
    "minute_counts": ("scope", "key"), "dlq_events": ("source_topic", "source_offset"),
}
LEDGER = (
    "INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows, stored, "
    "dlq, late, duplicates, anomalies, duration_ms) VALUES (%s, %s, %s, %s, 0, 0, 0, 0, 0, 0, 0)"
)


def test_side_tables_are_trimmed_by_their_retention_in_chunks(conn: psycopg.Connection) -> None:
    """Rows before each table's cutoff are deleted, two per DELETE here, the rest kept; a
    query's newest ledger batch stays however old (the sink reads its watermark)."""
    tag = f"trim-{uuid.uuid4().hex[:8]}"
    old, recent = at(D1), at(D1 + timedelta(days=5))  # 1990-01-01, 1990-01-06
    try:
        for statement in SIDE_ROWS.values():
            for n, ts in enumerate((old, old, old, recent)):  # rows 0-2 old, row 3 recent
                conn.execute(statement, {"tag": tag, "n": n, "at": ts})
        for batch, ts in enumerate((old, old, old, recent)):
            conn.execute(LEDGER, (f"{tag}-a", batch, ts, ts))
        for batch in range(2):  # an idle query: both batches old
            conn.execute(LEDGER, (f"{tag}-b", batch, old, old))

        # cutoffs: events' tables 1990-01-05, DLQ 1990-01-07 (its recent row goes too),
        # ledger 1990-01-05
        retention = partitions.Retention(events_days=5, dlq_days=3, ledger_days=5)
        deleted = partitions.trim_tables(conn, retention, today=date(1990, 1, 10), chunk=2)

        assert set(deleted) == set(partitions.SIDE_TABLES)
        for table in ("late_events", "anomalies", "minute_counts"):
            assert deleted[table] >= 3
        assert deleted["dlq_events"] >= 4 and deleted["batch_ledger"] >= 4
        left = {
            table: sorted(str(r[0]) for r in conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} = %s").format(
                    sql.Identifier(number), sql.Identifier(table), sql.Identifier(tagged)),
                (tag,)))
            for table, (tagged, number) in SIDE_KEYS.items()
        }
        assert left == {"late_events": ["3"], "anomalies": ["3"], "minute_counts": ["3"],
                        "dlq_events": []}
        ledger = conn.execute(
            "SELECT query_id, batch_id FROM batch_ledger WHERE query_id LIKE %s ORDER BY 1, 2",
            (f"{tag}-%",)).fetchall()
        assert ledger == [(f"{tag}-a", 3), (f"{tag}-b", 1)]

        assert partitions.trim_tables(conn, retention, today=date(1990, 1, 10), chunk=2) == {
            table: 0 for table in partitions.SIDE_TABLES}  # nothing left to trim
        unlimited = partitions.Retention(events_days=0, dlq_days=0, ledger_days=0)
        assert partitions.trim_tables(conn, unlimited, today=date(2100, 1, 1)) == {}
    finally:
        for table, (tagged, _) in SIDE_KEYS.items():
            conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(tagged)), (tag,))
        conn.execute("DELETE FROM batch_ledger WHERE query_id LIKE %s", (f"{tag}-%",))


def test_migration_moves_an_unpartitioned_table_with_its_rows(postgres_alone: Settings) -> None:
    """A database at migration 0008 with events in the plain table (an existing install):
    0009 keeps every row, puts recent days in their partitions and old ones in the default."""
    s = postgres_alone.model_copy(update={"pg_db": f"cg_migrate_{uuid.uuid4().hex[:8]}"})
    db.bootstrap(s)
    try:
        with db.connect(s, "writer") as c:
            c.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                      " applied_at timestamptz NOT NULL DEFAULT now())")
            for version, text in db.migrations():
                if version < "0009":
                    c.execute(text)
                    c.execute("INSERT INTO schema_migrations(version) VALUES (%s)", (version,))
            now = datetime.now(UTC)
            rows = [(f"m-{i}", now - timedelta(days=i)) for i in (0, 1, 5)]
            rows.append(("m-old", now - timedelta(days=400)))
            for event_id, ts in rows:
                insert(c, event_id, ts, dedup=False)  # the plain table's key is event_id
            c.commit()
        assert db.migrate(s) == [v for v, _ in db.migrations() if v >= "0009"]
        with db.connect(s, "writer") as c:
            got = dict(c.execute("SELECT event_id, tableoid::regclass::text FROM events"))
        assert got == {
            **{f"m-{i}": partitions.partition_name((now - timedelta(days=i)).date())
               for i in (0, 1, 5)},
            "m-old": "events_default",
        }
    finally:
        with db.connect(s, "superuser", "postgres", autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(s.pg_db)))
