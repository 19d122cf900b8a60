"""Anomalies domain: ``anomaly_daily_summary`` from the stream's ``anomalies`` table."""


from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.batch import (
    ANOMALIES,
    DailyTable,
    DayMarks,
    DayRangeConfig,
    materialize_days,
    read_days,
)
from clickguard_dagster.resources import BatchResource, PostgresResource

SUMMARY = DailyTable(
    "anomaly_daily_summary", "anomaly_daily_summary", "metric_date", ("anomaly_type",), ANOMALIES
)


def summarize(anomalies: DataFrame) -> DataFrame:
    """Per day (of the window start) and type: count, distinct entities, mean and max score."""
    return anomalies.groupBy(
        F.to_date("window_start").alias("metric_date"), "anomaly_type"
    ).agg(
        F.count(F.lit(1)).alias("anomaly_count"),
        F.countDistinct("entity").alias("unique_entities"),
        F.round(F.avg("anomaly_score"), 6).alias("avg_score"),
        F.max("anomaly_score").alias("max_score"),
    )


def compute_summary(
    spark: Any, postgres: PostgresResource, marks: DayMarks, batch: BatchResource
) -> DataFrame:
    """Each day's anomalies as updated up to the day's mark (``updated_at``)."""
    rows = read_days(
        spark, postgres,
        "SELECT window_start, updated_at, anomaly_type, entity, anomaly_score FROM anomalies",
        "window_start", marks, ANOMALIES.ts_column,
    )
    return summarize(rows)


@dg.asset(
    deps=[stream_events], group_name="batch", kinds={"spark", "postgres"},
    metadata={"table": "anomaly_daily_summary"},
)
def anomaly_daily_summary(
    context: dg.AssetExecutionContext,
    config: DayRangeConfig,
    spark: LazyPySparkResource,
    postgres: PostgresResource,
    batch: BatchResource,
) -> dg.MaterializeResult:
    """Anomalies per day and type (HIGH_FREQUENCY, BOT_LIKE, ...): count, distinct entities,
    average and max score. Days whose anomalies were inserted/updated since the last run."""
    return materialize_days(
        context, SUMMARY, compute_summary, config, spark.spark_session, postgres, batch
    )
