"""Incremental, idempotent daily tables: find the changed days, stage them, swap them in.

Every batch table is keyed by a day. A materialization
1. plans the days to compute: the days whose source rows changed since this asset last saw them
   (row count or newest ingestion/update time differs from ``asset_day_watermarks``), or every
   day of a date range from run config;
2. computes those days with Spark and writes them into an UNLOGGED staging table over JDBC;
3. in ONE PostgreSQL transaction deletes the days from the table, inserts the staged rows and
   records the source stats it computed from; readers see the old days or the new, never a mix.
Re-running with unchanged sources therefore finds no day to do, and recomputing a day yields the
same rows (the idempotency check compares fingerprints).

Snapshot mark. The stream keeps adding events while an asset runs, so every read of a run (the
plan, the Spark JDBC reads) and every check of it must see the SAME rows. A run first settles a
mark on its source table (:func:`settle_mark`): ``T = clock_timestamp()``, then it waits until
every transaction that held a write lock on the table at ``T`` has ended. ``events.commit_ts``
(and ``anomalies.updated_at``) is ``clock_timestamp()`` taken inside the writer's transaction
BEFORE it commits, so a batch in flight at ``T`` may later show rows with ``commit_ts < T``; that
batch holds its lock on ``events`` from its INSERT until it commits, hence once those
transactions are over no row with ``commit_ts <= T`` can appear any more: "committed up to T"
is a fixed set of rows. The plan's per-day stats are taken under the mark (count and newest
``commit_ts <= T``); that newest time is the day's mark. Spark reads each day with
``commit_ts <= <day mark>`` in its JDBC predicate, and ``asset_day_watermarks`` stores the day
marks in the same transaction as the rows, so a check reads exactly the events the asset read,
whatever the stream added since. (The day mark selects the same rows as ``T`` itself: no row of
the day lies in ``(day mark, T]``, and none can appear there later.) A run's ``T`` and day marks
are also in its materialization metadata (``snapshot_mark``, ``source_marks``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from clickguard.db import one
from clickguard_dagster.resources import BatchResource, PostgresResource

DayStats = dict[date, tuple[int, datetime | None]]  # day -> (source rows, newest source ts)
DayMarks = Mapping[date, datetime | None]  # day -> newest source ts read (None: no rows)

# writers of a table: transactions holding a lock that INSERT/UPDATE/DELETE/COPY take on it
WRITERS = """
SELECT DISTINCT virtualtransaction, pid FROM pg_locks
WHERE locktype = 'relation' AND granted AND pid <> pg_backend_pid()
  AND relation = ANY(%s::text[]::regclass[])
  AND mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
               'AccessExclusiveLock')
"""
STILL_RUNNING = """
SELECT DISTINCT virtualtransaction, pid FROM pg_locks
WHERE locktype = 'relation' AND virtualtransaction = ANY(%s::text[])
"""


def settle_mark(conn: psycopg.Connection, tables: Sequence[str], timeout_s: float) -> datetime:
    """A time T such that the rows of ``tables`` with an ingestion time <= T never change again.

    The ingestion time (``commit_ts``/``updated_at``) is ``clock_timestamp()`` inside the writer's
    statement, which holds its table lock from before that moment until its transaction ends. So
    every transaction that can still commit a row stamped <= T holds the lock right after T: wait
    until those transactions are over (a micro-batch commit: seconds). Writers must let the
    database stamp the row; a client-chosen past timestamp defeats any mark.
    """
    mark: datetime = one(conn, "SELECT clock_timestamp()")[0]
    pending = conn.execute(WRITERS, (list(tables),)).fetchall()
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while pending:
        pending = conn.execute(STILL_RUNNING, ([v for v, _ in pending],)).fetchall()
        if not pending:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"snapshot of {', '.join(tables)}: writer transaction(s) open since {mark}"
                f" (pids {sorted({p for _, p in pending})}) still running after {timeout_s} s;"
                " end them or raise CLICKGUARD_BATCH_SNAPSHOT_TIMEOUT_S"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    return mark


class DayRangeConfig(dg.Config):
    """Run config of every batch asset. Without dates, only changed days are recomputed."""

    start_date: str | None = None  # inclusive, YYYY-MM-DD
    end_date: str | None = None  # inclusive, YYYY-MM-DD; defaults to start_date
    full_refresh: bool = False  # recompute every day that has source rows

    def date_range(self) -> tuple[date, date] | None:
        if not self.start_date:
            return None
        start = date.fromisoformat(self.start_date)
        end = date.fromisoformat(self.end_date) if self.end_date else start
        if end < start:
            raise ValueError(f"end_date {end} is before start_date {start}")
        return start, end


def marks_params(marks: DayMarks) -> dict[str, Any]:
    """``marks`` as the ``days``/``marks`` parameters of :meth:`TableSource.snapshot_rows`."""
    return {"days": list(marks), "marks": list(marks.values())}


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[first day 00:00, the day after the last 00:00) in UTC: the event-time range of the days."""
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return lo, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)


@dataclass(frozen=True)
class TableSource:
    """A PostgreSQL table the asset reads, with its event-time and change-time columns.

    A row's day is the UTC date of ``day_column``. Every query that names days also bounds
    ``day_column`` itself, so PostgreSQL prunes a table partitioned by it (``events``, by day)
    to the days asked for instead of computing the date of every row in every partition."""

    table: str
    day_column: str  # event time; its UTC date is the row's day
    ts_column: str  # ingestion/update time that moves when rows are added or changed

    @property
    def day_expr(self) -> sql.Composed:
        return sql.SQL("({} AT TIME ZONE 'UTC')::date").format(sql.Identifier(self.day_column))

    def _span(self, days: Sequence[date], alias: str = "") -> sql.Composed:
        """``day_column`` within [first day, last day + 1) in UTC: what pruning keys on."""
        col = sql.Identifier(alias, self.day_column) if alias else sql.Identifier(self.day_column)
        lo, hi = day_bounds(min(days), max(days))
        return sql.SQL("{c} >= {lo} AND {c} < {hi}").format(
            c=col, lo=sql.Literal(lo), hi=sql.Literal(hi))

    def settle(self, conn: psycopg.Connection, timeout_s: float) -> datetime | None:
        return settle_mark(conn, [self.table], timeout_s)

    def stats_query(
        self, days: Sequence[date] | None, mark: datetime | None = None
    ) -> tuple[sql.Composed, dict[str, Any]]:
        """The query of :meth:`stats` and its parameters (tests EXPLAIN it)."""
        conds: list[sql.Composable] = []
        if mark:
            conds.append(sql.SQL("{} <= %(mark)s").format(sql.Identifier(self.ts_column)))
        params: dict[str, Any] = {"mark": mark}
        if days is not None:
            conds.append(sql.SQL("{} = ANY(%(days)s)").format(self.day_expr))
            if days:
                conds.append(self._span(days))
            params["days"] = list(days)
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
        q = sql.SQL("SELECT {d} AS day, count(*), max({ts}) FROM {t}{w} GROUP BY 1").format(
            d=self.day_expr, ts=sql.Identifier(self.ts_column),
            t=sql.Identifier(self.table), w=where,
        )
        return q, params

    def stats(
        self, conn: psycopg.Connection, days: Sequence[date] | None, mark: datetime | None = None
    ) -> DayStats:
        """Per day: rows and newest ingestion time, counting only rows ingested <= ``mark``."""
        q, params = self.stats_query(days, mark)
        return {r[0]: (r[1], r[2]) for r in conn.execute(q, params)}

    def in_marked_day(self, alias: str) -> str:
        """SQL condition for queries over ``unnest(days, marks) AS m(day, mark)``: row ``alias``
        lies in the UTC day ``m.day`` and was ingested <= ``m.mark``. The range is on the
        event-time column itself, so its index and partition pruning apply."""
        d, ts = f"{alias}.{self.day_column}", f"{alias}.{self.ts_column}"
        return (f"{d} >= (m.day::timestamp AT TIME ZONE 'UTC')"
                f" AND {d} < ((m.day + 1)::timestamp AT TIME ZONE 'UTC') AND {ts} <= m.mark")

    def snapshot_rows(self, alias: str) -> str:
        """FROM item of the rows a run read, given its day marks as ``%(days)s``/``%(marks)s``
        (:func:`marks_params`): each day's rows ingested up to the day's mark."""
        return (f"{self.table} {alias} JOIN unnest(%(days)s::date[], %(marks)s::timestamptz[])"
                f" AS m(day, mark) ON {self.in_marked_day(alias)}")

    def stats_at_query(self, marks: DayMarks) -> tuple[sql.Composed, dict[str, Any]]:
        """The query of :meth:`stats_at` and its parameters (tests EXPLAIN it).

        One aggregate per day (LATERAL) over that day's range: a join of every row to its day
        followed by a GROUP BY sorted all of them (1 M events: 1.5 s, spilling to disk)."""
        span = sql.SQL(" AND ") + self._span(list(marks), "t") if marks else sql.SQL("")
        q = sql.SQL(
            "SELECT m.day, s.n, s.newest FROM unnest(%(days)s::date[], %(marks)s::timestamptz[])"
            " AS m(day, mark) CROSS JOIN LATERAL (SELECT count(*) AS n, max(t.{ts}) AS newest"
            " FROM {t} t WHERE {in_day}{span}) s"
        ).format(
            ts=sql.Identifier(self.ts_column), t=sql.Identifier(self.table),
            in_day=sql.SQL(self.in_marked_day("t")), span=span,
        )
        return q, marks_params(marks)

    def stats_at(self, conn: psycopg.Connection, marks: DayMarks) -> DayStats:
        """Per day: rows and newest ingestion time among rows ingested <= that day's mark, i.e.
        the stats a run with these day marks recorded, if nothing it read changed since."""
        q, params = self.stats_at_query(marks)
        return {r[0]: (r[1], r[2]) for r in conn.execute(q, params) if r[1]}

    def candidate_days(
        self, conn: psycopg.Connection, since: datetime, mark: datetime | None = None
    ) -> list[date]:
        """Days that have rows ingested/updated after ``since`` (and <= ``mark``). Ingestion
        time is not the partition key: this probes each partition's ``ts_column`` index."""
        q = sql.SQL("SELECT DISTINCT {d} FROM {t} WHERE {ts} > %s AND {ts} <= %s").format(
            d=self.day_expr, t=sql.Identifier(self.table),
            ts=sql.Identifier(self.ts_column),
        )
        return [r[0] for r in conn.execute(q, (since, mark or datetime.max.replace(tzinfo=UTC)))]


@dataclass(frozen=True)
class UpstreamSource:
    """Another daily asset: its recorded per-day source stats are this asset's input version."""

    asset_key: str

    def settle(self, conn: psycopg.Connection, timeout_s: float) -> datetime | None:
        """No mark of its own: the upstream's recorded day marks are this asset's day marks."""
        return None

    def stats(
        self, conn: psycopg.Connection, days: Sequence[date] | None, mark: datetime | None = None
    ) -> DayStats:
        rows = conn.execute(
            "SELECT day, source_rows, source_max_ts FROM asset_day_watermarks"
            " WHERE asset_key = %s AND (%s::date[] IS NULL OR day = ANY(%s::date[]))",
            (self.asset_key, None if days is None else list(days),
             None if days is None else list(days)),
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    def stats_at(self, conn: psycopg.Connection, marks: DayMarks) -> DayStats:
        return self.stats(conn, list(marks))

    def candidate_days(
        self, conn: psycopg.Connection, since: datetime, mark: datetime | None = None
    ) -> list[date]:
        return list(self.stats(conn, None))


Source = TableSource | UpstreamSource

EVENTS = TableSource("events", "event_ts", "commit_ts")
ANOMALIES = TableSource("anomalies", "window_start", "updated_at")


@dataclass(frozen=True)
class DailyTable:
    """A batch table replaced day by day."""

    asset_key: str
    table: str
    day_column: str
    key_columns: tuple[str, ...]  # order of rows in the fingerprint
    source: Source
    exclude_from_fingerprint: tuple[str, ...] = ()


def recorded_stats(conn: psycopg.Connection, asset_key: str) -> DayStats:
    rows = conn.execute(
        "SELECT day, source_rows, source_max_ts FROM asset_day_watermarks WHERE asset_key = %s",
        (asset_key,),
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def plan_days(
    conn: psycopg.Connection,
    spec: DailyTable,
    config: DayRangeConfig,
    overlap_s: float,
    mark: datetime | None = None,
) -> DayStats:
    """Days to (re)compute with the source stats (rows ingested <= ``mark``) they will be
    computed from; each day's newest ingestion time is the mark its reads apply."""
    rng = config.date_range()
    if rng is not None:
        start, end = rng
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        current = spec.source.stats(conn, days, mark)
        return {d: current.get(d, (0, None)) for d in days}
    seen = recorded_stats(conn, spec.asset_key)
    if config.full_refresh or not seen:
        return spec.source.stats(conn, None, mark)
    newest = max((ts for _, ts in seen.values() if ts is not None), default=None)
    if newest is None:
        return spec.source.stats(conn, None, mark)
    # rows stamped before the newest one we saw may have become visible only later (rows written
    # without a settled mark, e.g. by older versions); the settled mark makes this a no-op
    since = newest - timedelta(seconds=overlap_s)
    candidates = spec.source.candidate_days(conn, since, mark)
    current = spec.source.stats(conn, candidates, mark) if candidates else {}
    return {d: st for d, st in current.items() if seen.get(d) != st}


def day_predicates(
    column: str, days: Sequence[date], marks: DayMarks | None = None, mark_column: str = ""
) -> list[str]:
    """One JDBC partition per day: ``column`` in [day, day + 1) in UTC (uses the ts index) and,
    with ``marks``, ``mark_column`` <= the day's mark (a day without a mark reads nothing)."""
    out = []
    for d in days:
        lo, hi = day_bounds(d, d)
        pred = f"{column} >= '{lo.isoformat()}' AND {column} < '{hi.isoformat()}'"
        if marks is not None:
            m = marks.get(d)
            pred += f" AND {mark_column} <= '{m.isoformat()}'" if m is not None else " AND false"
        out.append(pred)
    return out


def read_days(
    spark: Any,
    postgres: PostgresResource,
    query: str,
    ts_column: str,
    marks: DayMarks,
    mark_column: str,
) -> Any:
    """A Spark DataFrame of ``query`` (a SELECT exposing ``ts_column`` and ``mark_column``)
    restricted to the days of ``marks``, each read up to its mark, one partition per day."""
    props = {**postgres.jdbc_properties, "fetchsize": "10000"}
    return spark.read.jdbc(
        postgres.jdbc_url, f"({query}) AS src",
        predicates=day_predicates(ts_column, sorted(marks), marks, mark_column),
        properties=props,
    )


def read_table_days(
    spark: Any, postgres: PostgresResource, table: str, day_column: str, days: Sequence[date]
) -> Any:
    """Rows of a day-keyed batch table for ``days`` as a Spark DataFrame."""
    props = {**postgres.jdbc_properties, "fetchsize": "10000"}
    preds = [f"{day_column} = DATE '{d.isoformat()}'" for d in days]
    return spark.read.jdbc(postgres.jdbc_url, table, predicates=preds, properties=props)


# stage_<table>_<unix seconds of its creation>_<random>: a run that crashes between creating and
# dropping its stage table (SIGKILL, OOM, power loss) leaves it behind; sweep_stages drops those
# older than STAGE_MAX_AGE_S (no run holds one that long). Names of older versions had no time.
STAGE_NAME = re.compile(r"^stage_[a-z_]+_(?:(\d{10})_[0-9a-f]{6}|[0-9a-f]{10})$")
STAGE_MAX_AGE_S = 24 * 3600.0


def stage(postgres: PostgresResource, like_table: str, df: Any) -> str:
    """Write ``df`` into a fresh UNLOGGED table shaped like ``like_table``; returns its name."""
    name = f"stage_{like_table}_{int(time.time())}_{uuid.uuid4().hex[:6]}"
    with postgres.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                sql.Identifier(name), sql.Identifier(like_table)
            )
        )
    try:
        df.write.jdbc(
            postgres.jdbc_url, name, mode="append",
            # pgjdbc sends each batch as multi-row INSERTs (not one statement per row): less
            # PostgreSQL and driver CPU per staged row
            properties={
                **postgres.jdbc_properties, "batchsize": "5000", "reWriteBatchedInserts": "true",
            },
        )
    except Exception:
        drop_stage(postgres, name)
        raise
    return name


def sweep_stages(postgres: PostgresResource, max_age_s: float = STAGE_MAX_AGE_S) -> list[str]:
    """Drop stage tables left by crashed runs (created more than ``max_age_s`` ago, or named
    without a time by an older version); returns their names."""
    with postgres.connect(autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s"
            " AND pg_table_is_visible(oid)", ("stage\\_%",))]
        now = time.time()
        stale = []
        for name in names:
            m = STAGE_NAME.match(name)
            if m and (m.group(1) is None or now - int(m.group(1)) > max_age_s):
                stale.append(name)
        for name in stale:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    return stale


def drop_stage(postgres: PostgresResource, name: str) -> None:
    with postgres.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def swap_days(
    postgres: PostgresResource, spec: DailyTable, stage_name: str, plan: DayStats, run_id: str
) -> dict[date, int]:
    """Replace ``plan``'s days of the table by the staged rows, in one transaction."""
    days = sorted(plan)
    tbl, stg = sql.Identifier(spec.table), sql.Identifier(stage_name)
    day_col = sql.Identifier(spec.day_column)
    with postgres.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '30s'")
        # one swap per table at a time: a second run's DELETE would miss the rows the first one
        # is inserting and its INSERT would then hit their keys (e.g. the live sensor's run and
        # a user's `dagster asset materialize` at once)
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"swap:{spec.table}",))
        counts = {
            r[0]: r[1]
            for r in conn.execute(
                sql.SQL("SELECT {d}, count(*) FROM {s} GROUP BY 1").format(d=day_col, s=stg)
            )
        }
        stray = set(counts) - set(days)
        if stray:
            raise RuntimeError(f"{spec.table}: computed rows for unplanned days {sorted(stray)}")
        conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {d} = ANY(%s)").format(t=tbl, d=day_col), (days,)
        )
        conn.execute(sql.SQL("INSERT INTO {t} SELECT * FROM {s}").format(t=tbl, s=stg))
        conn.cursor().executemany(
            "INSERT INTO asset_day_watermarks"
            " (asset_key, day, source_rows, source_max_ts, output_rows, computed_at, run_id)"
            " VALUES (%s, %s, %s, %s, %s, now(), %s)"
            " ON CONFLICT (asset_key, day) DO UPDATE SET source_rows = EXCLUDED.source_rows,"
            " source_max_ts = EXCLUDED.source_max_ts, output_rows = EXCLUDED.output_rows,"
            " computed_at = EXCLUDED.computed_at, run_id = EXCLUDED.run_id",
            [(spec.asset_key, d, plan[d][0], plan[d][1], counts.get(d, 0), run_id) for d in days],
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(stg))
    # fresh planner statistics for the checks and the downstream assets that read the table at
    # once: autovacuum's analyze comes up to a minute later, and a plan made for the table as it
    # was (e.g. empty before the first run) can scan it once per row
    with postgres.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(tbl))
    return {d: counts.get(d, 0) for d in days}


def fingerprint(
    conn: psycopg.Connection, spec: DailyTable, days: Sequence[date], table: str | None = None
) -> dict[date, tuple[int, str]]:
    """Per day: (row count, md5 over the rows in key order) of ``table`` (default: the asset's)."""
    cols = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " ORDER BY ordinal_position",
            (spec.table,),
        )
        if r[0] not in spec.exclude_from_fingerprint
    ]
    row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, cols)))
    order = sql.SQL(", ").join(map(sql.Identifier, spec.key_columns))
    q = sql.SQL(
        "SELECT {d}, count(*), md5(string_agg(md5({row}), ',' ORDER BY {order})) FROM {t}"
        " WHERE {d} = ANY(%s) GROUP BY 1"
    ).format(
        d=sql.Identifier(spec.day_column), row=row, order=order,
        t=sql.Identifier(table or spec.table),
    )
    found = {r[0]: (r[1], r[2]) for r in conn.execute(q, (list(days),))}
    return {d: found.get(d, (0, "")) for d in days}


# (spark, postgres, day marks) -> DataFrame of the table's rows for those days
# (spark session, postgres, each day's mark, batch settings) -> the rows of those days
Compute = Callable[[Any, PostgresResource, DayMarks, BatchResource], Any]


def day_marks(plan: DayStats) -> dict[date, datetime | None]:
    return {d: ts for d, (_, ts) in plan.items()}


def materialize_days(
    context: dg.AssetExecutionContext,
    spec: DailyTable,
    compute: Compute,
    config: DayRangeConfig,
    spark: Any,
    postgres: PostgresResource,
    batch: BatchResource,
) -> dg.MaterializeResult:
    """Settle the snapshot mark, plan, compute, stage and swap; metadata lists the days recomputed,
    their row counts and the marks the reads applied (the checks apply the same)."""
    swept = sweep_stages(postgres)
    if swept:
        context.log.warning(f"dropped {len(swept)} stage table(s) left by crashed runs: "
                            f"{', '.join(swept)}")
    with postgres.connect(autocommit=True) as conn:
        mark = spec.source.settle(conn, batch.batch_snapshot_timeout_s)
        plan = plan_days(conn, spec, config, batch.batch_change_overlap_s, mark)
    days = sorted(plan)
    snapshot = {"snapshot_mark": mark.isoformat() if mark else "upstream day marks"}
    if not days:
        context.log.info(f"{spec.asset_key}: no day changed since the last materialization")
        return dg.MaterializeResult(
            metadata={
                "days": dg.MetadataValue.json([]), "days_recomputed": 0, "rows_written": 0,
                **snapshot,
            }
        )
    context.log.info(
        f"{spec.asset_key}: computing {len(days)} day(s): {days[0]} .. {days[-1]}"
        f" from sources ingested up to {snapshot['snapshot_mark']}"
    )
    t0 = time.monotonic()
    df = compute(spark, postgres, day_marks(plan), batch)
    stage_name = stage(postgres, spec.table, df)
    t1 = time.monotonic()
    try:
        counts = swap_days(postgres, spec, stage_name, plan, context.run.run_id)
    finally:
        drop_stage(postgres, stage_name)
    context.log.info(
        f"{spec.asset_key}: computed and staged on Spark in {t1 - t0:.1f} s, replaced"
        f" {len(days)} day(s) ({sum(counts.values()):,} rows) in {time.monotonic() - t1:.1f} s"
    )
    return dg.MaterializeResult(
        metadata={
            "days": dg.MetadataValue.json([d.isoformat() for d in days]),
            "rows_per_day": dg.MetadataValue.json({d.isoformat(): n for d, n in counts.items()}),
            "days_recomputed": len(days),
            "rows_written": sum(counts.values()),
            "source_rows": sum(plan[d][0] for d in days),
            **snapshot,
            "source_marks": dg.MetadataValue.json(
                {d.isoformat(): ts.isoformat() if ts else None for d, (_, ts) in plan.items()}
            ),
        }
    )


def last_run_marks(conn: psycopg.Connection, asset_key: str) -> dict[date, datetime | None]:
    """Days written by the asset's most recent materialization that wrote any day, with the
    day marks its reads applied (stored in the same transaction as the rows: they always
    describe what the table holds, whichever run or instance wrote it)."""
    rows = conn.execute(
        "SELECT day, source_max_ts FROM asset_day_watermarks WHERE asset_key = %s AND run_id = ("
        " SELECT run_id FROM asset_day_watermarks WHERE asset_key = %s"
        " ORDER BY computed_at DESC LIMIT 1) ORDER BY day",
        (asset_key, asset_key),
    )
    return {r[0]: r[1] for r in rows}


def marks_metadata(marks: DayMarks) -> dg.MetadataValue:
    return dg.MetadataValue.json({d.isoformat(): m.isoformat() if m else None
                                  for d, m in marks.items()})
