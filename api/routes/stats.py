"""GET /stats — platform totals, read from pre-aggregates (migration 0004), never a table count."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.db import fetch_one
from api.deps import PoolDep, ReplyDep
from api.schemas import Stats

router = APIRouter(tags=["stats"])

# anomaly totals come from anomaly_type_stats (one row per type), popular_items' row count from
# api_table_counts; daily_metrics has one row per day and max(metric_date) is its primary key.
STATS_SQL = """
SELECT (SELECT coalesce(sum(anomaly_count), 0) FROM anomaly_type_stats)::bigint AS total_anomalies,
       (SELECT count(*) FROM daily_metrics) AS days_processed,
       coalesce((SELECT row_count FROM api_table_counts WHERE table_name = 'popular_items'), 0)
           AS total_popular_items,
       (SELECT max(last_detected) FROM anomaly_type_stats) AS last_anomaly_detected,
       (SELECT max(metric_date) FROM daily_metrics) AS last_metrics_date
"""


@router.get("/stats", response_model=Stats)
async def stats(pool: PoolDep, reply: ReplyDep) -> Response:
    """Totals of anomalies, processed days and popular items; latest anomaly and metrics day."""
    return await reply(Stats, lambda: fetch_one(pool, STATS_SQL))
