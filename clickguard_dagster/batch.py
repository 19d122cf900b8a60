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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from clickguard_dagster.resources import PostgresResource

DayStats = dict[date, tuple[int, datetime | None]]  # day -> (source rows, newest source ts)


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


@dataclass(frozen=True)
class TableSource:
    """A PostgreSQL table the asset reads, with its day expression and change timestamp."""

    table: str
    day_expr: str  # e.g. "(event_ts AT TIME ZONE 'UTC')::date"
    ts_column: str  # ingestion/update time that moves when rows are added or changed

    def stats(self, conn: psycopg.Connection, days: Sequence[date] | None) -> DayStats:
        where = sql.SQL("")
        params: dict[str, Any] = {}
        if days is not None:
            where = sql.SQL(" WHERE {} = ANY(%(days)s)").format(sql.SQL(self.day_expr))
            params["days"] = list(days)
        q = sql.SQL("SELECT {d} AS day, count(*), max({ts}) FROM {t}{w} GROUP BY 1").format(
            d=sql.SQL(self.day_expr), ts=sql.Identifier(self.ts_column),
            t=sql.Identifier(self.table), w=where,
        )
        return {r[0]: (r[1], r[2]) for r in conn.execute(q, params)}

    def candidate_days(self, conn: psycopg.Connection, since: datetime) -> list[date]:
        """Days that have rows ingested/updated after ``since`` (uses the ts index)."""
        q = sql.SQL("SELECT DISTINCT {d} FROM {t} WHERE {ts} > %s").format(
            d=sql.SQL(self.day_expr), t=sql.Identifier(self.table),
            ts=sql.Identifier(self.ts_column),
        )
        return [r[0] for r in conn.execute(q, (since,))]


@dataclass(frozen=True)
class UpstreamSource:
    """Another daily asset: its recorded per-day source stats are this asset's input version."""

    asset_key: str

    def stats(self, conn: psycopg.Connection, days: Sequence[date] | None) -> DayStats:
        rows = conn.execute(
            "SELECT day, source_rows, source_max_ts FROM asset_day_watermarks"
            " WHERE asset_key = %s AND (%s::date[] IS NULL OR day = ANY(%s::date[]))",
            (self.asset_key, None if days is None else list(days),
             None if days is None else list(days)),
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    def candidate_days(self, conn: psycopg.Connection, since: datetime) -> list[date]:
        return list(self.stats(conn, None))


Source = TableSource | UpstreamSource

EVENTS = TableSource("events", "(event_ts AT TIME ZONE 'UTC')::date", "commit_ts")
ANOMALIES = TableSource("anomalies", "(window_start AT TIME ZONE 'UTC')::date", "updated_at")


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
    conn: psycopg.Connection, spec: DailyTable, config: DayRangeConfig, overlap_s: float
) -> DayStats:
    """Days to (re)compute with the source stats they will be computed from."""
    rng = config.date_range()
    if rng is not None:
        start, end = rng
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        current = spec.source.stats(conn, days)
        return {d: current.get(d, (0, None)) for d in days}
    seen = recorded_stats(conn, spec.asset_key)
    if config.full_refresh or not seen:
        return spec.source.stats(conn, None)
    newest = max((ts for _, ts in seen.values() if ts is not None), default=None)
    if newest is None:
        return spec.source.stats(conn, None)
    # rows committed slightly before the newest one we saw may have become visible only later
    since = newest - timedelta(seconds=overlap_s)
    candidates = spec.source.candidate_days(conn, since)
    current = spec.source.stats(conn, candidates) if candidates else {}
    return {d: st for d, st in current.items() if seen.get(d) != st}


def day_predicates(column: str, days: Sequence[date]) -> list[str]:
    """One JDBC partition per day: ``column`` in [day, day + 1) in UTC (uses the ts index)."""
    out = []
    for d in days:
        lo = datetime(d.year, d.month, d.day, tzinfo=UTC)
        hi = lo + timedelta(days=1)
        out.append(f"{column} >= '{lo.isoformat()}' AND {column} < '{hi.isoformat()}'")
    return out


def read_days(
    spark: Any, postgres: PostgresResource, query: str, ts_column: str, days: Sequence[date]
) -> Any:
    """A Spark DataFrame of ``query`` (a SELECT) restricted to ``days``, one partition per day."""
    props = {**postgres.jdbc_properties, "fetchsize": "10000"}
    return spark.read.jdbc(
        postgres.jdbc_url, f"({query}) AS src", predicates=day_predicates(ts_column, days),
        properties=props,
    )


def read_table_days(
    spark: Any, postgres: PostgresResource, table: str, day_column: str, days: Sequence[date]
) -> Any:
    """Rows of a day-keyed batch table for ``days`` as a Spark DataFrame."""
    props = {**postgres.jdbc_properties, "fetchsize": "10000"}
    preds = [f"{day_column} = DATE '{d.isoformat()}'" for d in days]
    return spark.read.jdbc(postgres.jdbc_url, table, predicates=preds, properties=props)


def stage(postgres: PostgresResource, like_table: str, df: Any) -> str:
    """Write ``df`` into a fresh UNLOGGED table shaped like ``like_table``; returns its name."""
    name = f"stage_{like_table}_{uuid.uuid4().hex[:10]}"
    with postgres.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                sql.Identifier(name), sql.Identifier(like_table)
            )
        )
    try:
        df.write.jdbc(
            postgres.jdbc_url, name, mode="append",
            properties={**postgres.jdbc_properties, "batchsize": "5000"},
        )
    except Exception:
        drop_stage(postgres, name)
        raise
    return name


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


Compute = Callable[[Any, PostgresResource, list[date]], Any]


def materialize_days(
    context: dg.AssetExecutionContext,
    spec: DailyTable,
    compute: Compute,
    config: DayRangeConfig,
    spark: Any,
    postgres: PostgresResource,
    overlap_s: float,
) -> dg.MaterializeResult:
    """Plan, compute, stage and swap; metadata lists the days recomputed and their row counts."""
    with postgres.connect() as conn:
        plan = plan_days(conn, spec, config, overlap_s)
    days = sorted(plan)
    if not days:
        context.log.info(f"{spec.asset_key}: no day changed since the last materialization")
        return dg.MaterializeResult(
            metadata={"days": dg.MetadataValue.json([]), "days_recomputed": 0, "rows_written": 0}
        )
    context.log.info(f"{spec.asset_key}: computing {len(days)} day(s): {days[0]} .. {days[-1]}")
    df = compute(spark, postgres, days)
    stage_name = stage(postgres, spec.table, df)
    try:
        counts = swap_days(postgres, spec, stage_name, plan, context.run.run_id)
    finally:
        drop_stage(postgres, stage_name)
    return dg.MaterializeResult(
        metadata={
            "days": dg.MetadataValue.json([d.isoformat() for d in days]),
            "rows_per_day": dg.MetadataValue.json({d.isoformat(): n for d, n in counts.items()}),
            "days_recomputed": len(days),
            "rows_written": sum(counts.values()),
            "source_rows": sum(plan[d][0] for d in days),
        }
    )


def last_run_days(conn: psycopg.Connection, asset_key: str) -> list[date]:
    """Days written by the asset's most recent materialization that wrote any day."""
    rows = conn.execute(
        "SELECT day FROM asset_day_watermarks WHERE asset_key = %s AND run_id = ("
        " SELECT run_id FROM asset_day_watermarks WHERE asset_key = %s"
        " ORDER BY computed_at DESC LIMIT 1) ORDER BY day",
        (asset_key, asset_key),
    )
    return [r[0] for r in rows]
