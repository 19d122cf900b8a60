"""Metrics domain: ``daily_metrics``, the original API's per-day KPIs."""


from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickguard_dagster.assets.sessions import daily_sessions
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

METRICS = DailyTable(
    "daily_metrics", "daily_metrics", "metric_date", ("metric_date",),
    UpstreamSource("daily_sessions"), exclude_from_fingerprint=("computed_at",),
)


def metrics(sessions: DataFrame, items: DataFrame) -> DataFrame:
    """daily_metrics rows from daily_sessions rows and (event_ts, item_id) of item events."""
    per_day = sessions.groupBy(F.col("session_day").alias("metric_date")).agg(
        F.sum("clicks").cast("long").alias("total_clicks"),
        F.sum("purchases").cast("long").alias("total_purchases"),
        F.countDistinct("session_id").alias("unique_sessions"),
        F.count(F.lit(1)).alias("sessions"),
        F.sum(F.col("converted").cast("int")).alias("converted"),
        F.avg("duration_sec").alias("avg_duration"),
        F.sum("revenue").cast("decimal(14,2)").alias("total_revenue"),
    )
    uniq = items.groupBy(F.to_date("event_ts").alias("metric_date")).agg(
        F.countDistinct("item_id").alias("unique_items")
    )
    m = per_day.join(uniq, "metric_date", "left")
    return m.select(
        "metric_date", "total_clicks", "total_purchases", "unique_sessions",
        F.coalesce("unique_items", F.lit(0)).cast("long").alias("unique_items"),
        F.round(F.col("converted") / F.col("sessions"), 6).alias("conversion_rate"),
        F.round("avg_duration", 6).alias("avg_session_duration_sec"),
        F.round(F.col("total_clicks") / F.col("sessions"), 6).alias("avg_clicks_per_session"),
        "total_revenue",
        F.when(
            F.col("total_purchases") > 0, F.col("total_revenue") / F.col("total_purchases")
        ).otherwise(F.lit(0)).cast("decimal(14,2)").alias("avg_order_value"),
    )


def compute_metrics(
    spark: Any, postgres: PostgresResource, marks: DayMarks, batch: BatchResource
) -> DataFrame:
    """daily_sessions' day marks (its recorded stats are this asset's source) bound the events
    read for unique items, so both inputs describe the same snapshot of ``events``."""
    sessions = read_table_days(spark, postgres, "daily_sessions", "session_day", sorted(marks))
    items = read_days(
        spark, postgres,
        "SELECT event_ts, commit_ts, item_id FROM events WHERE item_id IS NOT NULL",
        "event_ts", marks, EVENTS.ts_column,
    )
    return metrics(sessions, items)


@dg.asset(
    deps=[daily_sessions, stream_events],
    group_name="batch",
    kinds={"spark", "postgres"},
    metadata={"table": "daily_metrics"},
)
def daily_metrics(
    context: dg.AssetExecutionContext,
    config: DayRangeConfig,
    spark: LazyPySparkResource,
    postgres: PostgresResource,
    batch: BatchResource,
) -> dg.MaterializeResult:
    """Per day: total clicks and purchases, unique sessions and items, conversion rate (share of
    sessions with a purchase), average session duration and clicks per session, revenue and
    average order value (revenue / purchase events). Days follow daily_sessions' changes."""
    return materialize_days(
        context, METRICS, compute_metrics, config, spark.spark_session, postgres, batch
    )
