"""Items domain: ``popular_items`` and ``popular_categories`` per day."""


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
    materialize_days,
    read_days,
)
from clickguard_dagster.resources import BatchResource, PostgresResource

ITEMS = DailyTable(
    "popular_items", "popular_items", "metric_date", ("item_id",), EVENTS
)
CATEGORIES = DailyTable(
    "popular_categories", "popular_categories", "metric_date", ("category",), EVENTS
)
ITEM_EVENTS = (
    "SELECT event_ts, commit_ts, event_type, item_id, category, price, quantity FROM events"
    " WHERE item_id IS NOT NULL"
)


def _counts() -> list[Any]:
    purchase = F.col("event_type") == "purchase"
    return [
        F.sum(F.when(F.col("event_type") == "click", 1).otherwise(0)).cast("long")
        .alias("click_count"),
        F.sum(F.when(purchase, 1).otherwise(0)).cast("long").alias("purchase_count"),
        F.coalesce(F.sum(F.when(purchase, F.col("price") * F.col("quantity"))), F.lit(0))
        .cast("decimal(14,2)").alias("revenue"),
    ]


def popular(events: DataFrame, limit: int) -> DataFrame:
    """Top ``limit`` items per day by clicks (then purchases, then item id)."""
    g = events.groupBy(F.to_date("event_ts").alias("metric_date"), "item_id").agg(
        F.max("category").alias("category"), *_counts()
    )
    w = Window.partitionBy("metric_date").orderBy(
        F.desc("click_count"), F.desc("purchase_count"), F.asc("item_id")
    )
    ranked = g.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= limit)
    return ranked.select(
        "metric_date", "item_id", "category", "click_count", "purchase_count", "revenue",
        F.col("rank").cast("int").alias("rank"),
        F.when(
            F.col("click_count") > 0, F.round(F.col("purchase_count") / F.col("click_count"), 6)
        ).alias("click_to_purchase_ratio"),
    )


def categories(events: DataFrame) -> DataFrame:
    """Every category per day, ranked by clicks (then purchases, then name)."""
    g = (
        events.where(F.col("category").isNotNull())
        .groupBy(F.to_date("event_ts").alias("metric_date"), "category")
        .agg(*_counts(), F.countDistinct("item_id").alias("unique_items"))
    )
    w = Window.partitionBy("metric_date").orderBy(
        F.desc("click_count"), F.desc("purchase_count"), F.asc("category")
    )
    return g.select(
        "metric_date", "category", "click_count", "purchase_count", "unique_items", "revenue",
        F.row_number().over(w).cast("int").alias("rank"),
    )


def compute_items(
    spark: Any, postgres: PostgresResource, marks: DayMarks, batch: BatchResource
) -> DataFrame:
    events = read_days(spark, postgres, ITEM_EVENTS, "event_ts", marks, EVENTS.ts_column)
    return popular(events, batch.popular_items_limit)


def compute_categories(
    spark: Any, postgres: PostgresResource, marks: DayMarks, batch: BatchResource
) -> DataFrame:
    return categories(read_days(spark, postgres, ITEM_EVENTS, "event_ts", marks, EVENTS.ts_column))


@dg.asset(
    deps=[stream_events], group_name="batch", kinds={"spark", "postgres"},
    metadata={"table": "popular_items"},
)
def popular_items(
    context: dg.AssetExecutionContext,
    config: DayRangeConfig,
    spark: LazyPySparkResource,
    postgres: PostgresResource,
    batch: BatchResource,
) -> dg.MaterializeResult:
    """Top items per day (settings.popular_items_limit): clicks, purchases, revenue, rank and
    purchase/click ratio; category = the item's category (max if it changed during the day)."""
    return materialize_days(
        context, ITEMS, compute_items, config, spark.spark_session, postgres, batch
    )


@dg.asset(
    deps=[stream_events], group_name="batch", kinds={"spark", "postgres"},
    metadata={"table": "popular_categories"},
)
def popular_categories(
    context: dg.AssetExecutionContext,
    config: DayRangeConfig,
    spark: LazyPySparkResource,
    postgres: PostgresResource,
    batch: BatchResource,
) -> dg.MaterializeResult:
    """Categories per day: clicks, purchases, distinct items, revenue and rank by clicks."""
    return materialize_days(
        context, CATEGORIES, compute_categories, config, spark.spark_session, postgres, batch
    )
