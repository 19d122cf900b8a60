"""GET /metrics/daily, /metrics/daily/{date}, /metrics/funnel/{date}, /metrics/summary.

All read daily_metrics / session_funnel (one row per day or per day and stage, written by the
Dagster assets) by primary key ranges. /metrics/summary covers the ``days`` most recent days
ending at the last computed day (max(metric_date)), so replayed historical data still has a
summary; /metrics/daily lists oldest first; a day without metrics is 404 on /metrics/daily/{date}
and ``[]`` on the funnel.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from api.db import fetch_all, fetch_one
from api.deps import PoolDep, ReplyDep, SettingsDep
from api.errors import ApiError
from api.schemas import DailyMetric, ErrorResponse, FunnelStage, IsoDate, MetricsSummary

router = APIRouter(tags=["metrics"])

DAILY_COLUMNS = (
    "metric_date, total_clicks, total_purchases, unique_sessions, unique_items, conversion_rate, "
    "avg_session_duration_sec, avg_clicks_per_session, total_revenue, avg_order_value"
)
RANGE_SQL = (
    "SELECT " + DAILY_COLUMNS + " FROM daily_metrics"
    " WHERE metric_date BETWEEN %(start)s AND %(end)s ORDER BY metric_date"
)
DAY_SQL = "SELECT " + DAILY_COLUMNS + " FROM daily_metrics WHERE metric_date = %(day)s"
FUNNEL_SQL = """
SELECT funnel_stage, session_count, percentage, drop_rate
FROM session_funnel WHERE metric_date = %(day)s ORDER BY stage_order, funnel_stage
"""
SUMMARY_SQL = """
SELECT count(*) AS days_processed,
       coalesce(sum(total_clicks), 0) AS total_clicks,
       coalesce(sum(total_purchases), 0) AS total_purchases,
       coalesce(sum(unique_sessions), 0) AS total_sessions,
       coalesce(avg(conversion_rate), 0) AS avg_conversion_rate,
       coalesce(sum(total_revenue), 0) AS total_revenue,
       coalesce(avg(avg_clicks_per_session), 0) AS avg_clicks_per_session
FROM daily_metrics
WHERE metric_date > (SELECT max(metric_date) FROM daily_metrics) - %(days)s
"""

Day = Annotated[IsoDate, Path(description="ISO date, e.g. 2014-04-01")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No metrics for that day"}
}


@router.get("/metrics/daily", response_model=list[DailyMetric])
async def daily_metrics(
    pool: PoolDep,
    reply: ReplyDep,
    settings: SettingsDep,
    start_date: Annotated[IsoDate, Query(description="First day (ISO date), inclusive")],
    end_date: Annotated[IsoDate, Query(description="Last day (ISO date), inclusive")],
) -> Response:
    """Daily metrics between two days, oldest first."""
    if end_date < start_date:
        raise ApiError(422, "validation_error", "end_date must not be before start_date",
                       {"start_date": start_date, "end_date": end_date})
    span = (end_date - start_date).days + 1
    if span > settings.api_max_date_span_days:
        raise ApiError(
            422, "validation_error",
            f"date range of {span} days exceeds {settings.api_max_date_span_days} days",
            {"start_date": start_date, "end_date": end_date},
        )
    params = {"start": start_date, "end": end_date}
    return await reply(
        list[DailyMetric], lambda: fetch_all(pool, RANGE_SQL, params), batch=True
    )


@router.get("/metrics/daily/{date}", response_model=DailyMetric, responses=NOT_FOUND)
async def daily_metric(pool: PoolDep, reply: ReplyDep, date: Day) -> Response:
    """The metrics of one day; 404 when that day has not been computed."""

    async def one() -> dict:
        row = await fetch_one(pool, DAY_SQL, {"day": date})
        if row is None:
            raise ApiError(404, "not_found", f"no daily metrics for {date.isoformat()}")
        return row

    return await reply(DailyMetric, one, batch=True)


@router.get("/metrics/funnel/{date}", response_model=list[FunnelStage])
async def funnel(pool: PoolDep, reply: ReplyDep, date: Day) -> Response:
    """Funnel stages of one day in stage order ([] when the day has no funnel)."""
    return await reply(
        list[FunnelStage], lambda: fetch_all(pool, FUNNEL_SQL, {"day": date}), batch=True
    )


@router.get("/metrics/summary", response_model=MetricsSummary)
async def summary(
    pool: PoolDep,
    reply: ReplyDep,
    days: Annotated[int, Query(ge=1, le=90, description="Most recent days (1–90)")] = 7,
) -> Response:
    """Totals and averages over the ``days`` most recent computed days."""
    return await reply(
        MetricsSummary, lambda: fetch_one(pool, SUMMARY_SQL, {"days": days}), batch=True
    )
