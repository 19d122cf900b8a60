"""Sessions domain: ``daily_sessions`` (30-minute sessionization) and ``session_funnel``.

Sessions are cut per UTC day: a new session starts at a user's first event of the day or after
an inactivity gap longer than ``settings.session_gap_minutes``, so recomputing a day needs only
that day's events.
"""


from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.batch import (
    EVENTS,
    DailyTable,
    DayMarks,
    DayRangeConfig,
    UpstreamSource,
    materialize_days,
    read_days,
    read_table_days,
)
from clickguard_dagster.resources import BatchResource, PostgresResource

SESSIONS = DailyTable(
    "daily_sessions", "daily_sessions", "session_day", ("session_id", "session_start"), EVENTS
)
FUNNEL = DailyTable(
    "session_funnel", "session_funnel", "metric_date", ("funnel_stage",),
    UpstreamSource("daily_sessions"),
)
EVENT_COLUMNS = (
    "SELECT event_id, event_ts, commit_ts, session_id, event_type, item_id, category, price,"
    " quantity, page FROM events"
)
# (stage, order, condition on a daily_sessions row): a session reached a stage when it did that
# or any later step (a purchase implies the cart), so counts never grow down the funnel
FUNNEL_STAGES = (
    ("session", 1, "true"),
    ("click", 2, "clicks > 0 OR cart_adds > 0 OR purchases > 0"),
    ("add_to_cart", 3, "cart_adds > 0 OR purchases > 0"),
    ("purchase", 4, "purchases > 0"),
)


def sessionize(events: DataFrame, gap_minutes: float) -> DataFrame:
    """daily_sessions rows from events (columns of EVENT_COLUMNS)."""
    gap_us = int(gap_minutes * 60 * 1_000_000)
    ev = events.withColumn("day", F.to_date("event_ts")).withColumn(
        "us", F.unix_micros("event_ts")
    )
    w = Window.partitionBy("session_id", "day").orderBy("event_ts", "event_id")
    gap = F.col("us") - F.lag("us").over(w)
    ev = ev.withColumn("starts", F.when(gap.isNull() | (gap > gap_us), 1).otherwise(0))
    ev = ev.withColumn("seq", F.sum("starts").over(w.rowsBetween(Window.unboundedPreceding, 0)))
    is_type = lambda t: F.when(F.col("event_type") == t, 1).otherwise(0)  # noqa: E731
    order = F.struct("event_ts", "event_id")
    line_value = F.when(
        F.col("event_type") == "purchase", F.col("price") * F.col("quantity")
    )
    s = ev.groupBy("session_id", "day", "seq").agg(
        F.min("event_ts").alias("session_start"),
        F.max("event_ts").alias("session_end"),
        F.min("us").alias("start_us"),
        F.max("us").alias("end_us"),
        F.count(F.lit(1)).cast("int").alias("events"),
        F.sum(is_type("click")).cast("int").alias("clicks"),
        F.sum(is_type("add_to_cart")).cast("int").alias("cart_adds"),
        F.sum(is_type("purchase")).cast("int").alias("purchases"),
        F.coalesce(F.sum(line_value), F.lit(0)).cast("decimal(14,2)").alias("revenue"),
        F.min_by("page", order).alias("entry_page"),
        F.max_by("page", order).alias("exit_page"),
    )
    return s.select(
        "session_id",
        "session_start",
        F.col("day").alias("session_day"),
        "session_end",
        ((F.col("end_us") - F.col("start_us")) / F.lit(1_000_000.0)).alias("duration_sec"),
        "events", "clicks", "cart_adds", "purchases", "revenue",
        (F.col("purchases") > 0).alias("converted"),
        "entry_page", "exit_page",
    )


def compute_sessions(
    spark: Any, postgres: PostgresResource, marks: DayMarks, batch: BatchResource
) -> DataFrame:
    """Each day's events committed up to the day's mark (see clickguard_dagster.batch)."""
    events = read_days(spark, postgres, EVENT_COLUMNS, "event_ts", marks, EVENTS.ts_column)
    return sessionize(events, batch.session_gap_minutes)


def funnel(sessions: DataFrame) -> DataFrame:
    """session_funnel rows: sessions reaching each stage, % of all sessions, drop vs previous."""
    counts = sessions.groupBy(F.col("session_day").alias("metric_date")).agg(
        *[
            F.sum(F.when(F.expr(cond), 1).otherwise(0)).cast("long").alias(f"s{order}")
            for _, order, cond in FUNNEL_STAGES
        ]
    )
    rows = []
    for stage, order, _ in FUNNEL_STAGES:
        n, first = F.col(f"s{order}"), F.col("s1")
        prev = F.col(f"s{order - 1}") if order > 1 else None
        pct = F.when(first > 0, F.round(n * 100.0 / first, 4)).otherwise(F.lit(0.0))
        drop = (
            F.when(prev > 0, F.round((F.lit(1.0) - n / prev) * 100.0, 4)).otherwise(F.lit(0.0))
            if prev is not None
            else F.lit(0.0)
        )
        rows.append(
            F.struct(
                F.lit(stage).alias("funnel_stage"), F.lit(order).alias("stage_order"),
                n.alias("session_count"), pct.cast("double").alias("percentage"),
                drop.cast("double").alias("drop_rate"),
            )
        )
    return counts.select("metric_date", F.explode(F.array(*rows)).alias("r")).select(
        "metric_date", "r.funnel_stage", "r.stage_order", "r.session_count", "r.percentage",
        "r.drop_rate",
    )


def compute_funnel(
    spark: Any, postgres: PostgresResource, marks: DayMarks, batch: BatchResource
) -> DataFrame:
    return funnel(read_table_days(spark, postgres, "daily_sessions", "session_day", sorted(marks)))


@dg.asset(
    deps=[stream_events],
    group_name="batch",
    kinds={"spark", "postgres"},
    metadata={"table": "daily_sessions"},
)
def daily_sessions(
    context: dg.AssetExecutionContext,
    config: DayRangeConfig,
    spark: LazyPySparkResource,
    postgres: PostgresResource,
    batch: BatchResource,
) -> dg.MaterializeResult:
    """Sessions per day (30-min inactivity gap): start, end, duration, events, clicks, cart adds,
    purchases, revenue, converted, entry and exit page. Recomputes only the days whose events
    changed since the last run (by ingestion time), or the date range of the run config."""
    return materialize_days(
        context, SESSIONS, compute_sessions, config, spark.spark_session, postgres, batch
    )


@dg.asset(
    deps=[daily_sessions],
    group_name="batch",
    kinds={"spark", "postgres"},
    metadata={"table": "session_funnel"},
)
def session_funnel(
    context: dg.AssetExecutionContext,
    config: DayRangeConfig,
    spark: LazyPySparkResource,
    postgres: PostgresResource,
    batch: BatchResource,
) -> dg.MaterializeResult:
    """Per day, sessions reaching session -> click -> add_to_cart -> purchase, with the share of
    all sessions and the drop from the previous stage (percent)."""
    return materialize_days(
        context, FUNNEL, compute_funnel, config, spark.spark_session, postgres, batch
    )
