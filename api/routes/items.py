"""GET /items/popular/{date}, /items/categories/{date}, /items/trending.

Popular items and categories are read by the (metric_date, rank) indexes. Trending compares, per
item, the clicks of the last ``days`` days with the ``days`` days before, both ending at the
newest day in popular_items (the anchor), over each day's top ``settings.api_trending_rank_depth``
items (the popular_items index range, so the work is bounded):
``growth = (recent_clicks − previous_clicks) / max(previous_clicks, 1)``; items without recent
clicks are not trending; ``rank`` 1 is the fastest growing (ties: more recent clicks, lower id).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.db import fetch_all
from api.deps import PoolDep, ReplyDep, SettingsDep
from api.schemas import IsoDate, PopularCategory, PopularItem, TrendingItem

router = APIRouter(tags=["items"])

POPULAR_SQL = """
SELECT item_id, category, click_count, purchase_count, revenue, rank, click_to_purchase_ratio
FROM popular_items WHERE metric_date = %(day)s ORDER BY rank, item_id LIMIT %(limit)s
"""
CATEGORIES_SQL = """
SELECT category, click_count, purchase_count, unique_items, revenue, rank
FROM popular_categories WHERE metric_date = %(day)s ORDER BY rank, category LIMIT %(limit)s
"""
TRENDING_SQL = """
WITH anchor AS (SELECT max(metric_date) AS d FROM popular_items),
w AS (
    SELECT p.item_id, p.metric_date, p.click_count, p.category,
           p.metric_date > a.d - %(days)s AS recent
    FROM popular_items p, anchor a
    WHERE p.metric_date > a.d - 2 * %(days)s AND p.metric_date <= a.d AND p.rank <= %(depth)s
),
agg AS (
    SELECT item_id,
           coalesce(sum(click_count) FILTER (WHERE recent), 0) AS recent_clicks,
           coalesce(sum(click_count) FILTER (WHERE NOT recent), 0) AS previous_clicks,
           (array_agg(category ORDER BY metric_date DESC))[1] AS category
    FROM w GROUP BY item_id
),
g AS (
    SELECT item_id, category, recent_clicks, previous_clicks,
           (recent_clicks - previous_clicks)::float8 / greatest(previous_clicks, 1) AS growth
    FROM agg WHERE recent_clicks > 0
)
SELECT item_id, category, recent_clicks, previous_clicks, growth,
       row_number() OVER (ORDER BY growth DESC, recent_clicks DESC, item_id) AS rank
FROM g ORDER BY rank LIMIT %(limit)s
"""

Day = Annotated[IsoDate, Path(description="ISO date, e.g. 2014-04-01")]


@router.get("/items/popular/{date}", response_model=list[PopularItem])
async def popular_items(
    pool: PoolDep,
    reply: ReplyDep,
    date: Day,
    limit: Annotated[int, Query(ge=1, le=500, description="Maximum rows (1–500)")] = 50,
) -> Response:
    """The day's most clicked items by rank ([] when the day is not computed)."""
    params = {"day": date, "limit": limit}
    return await reply(
        list[PopularItem], lambda: fetch_all(pool, POPULAR_SQL, params), batch=True
    )


@router.get("/items/categories/{date}", response_model=list[PopularCategory])
async def popular_categories(
    pool: PoolDep,
    reply: ReplyDep,
    date: Day,
    limit: Annotated[int, Query(ge=1, le=100, description="Maximum rows (1–100)")] = 20,
) -> Response:
    """The day's categories by rank ([] when the day is not computed)."""
    params = {"day": date, "limit": limit}
    return await reply(
        list[PopularCategory], lambda: fetch_all(pool, CATEGORIES_SQL, params), batch=True
    )


@router.get("/items/trending", response_model=list[TrendingItem])
async def trending_items(
    pool: PoolDep,
    reply: ReplyDep,
    settings: SettingsDep,
    days: Annotated[int, Query(ge=1, le=30, description="Period length in days (1–30)")] = 7,
    limit: Annotated[int, Query(ge=1, le=100, description="Maximum rows (1–100)")] = 20,
) -> Response:
    """Items whose clicks grew most in the last ``days`` against the ``days`` before."""
    params = {"days": days, "limit": limit, "depth": settings.api_trending_rank_depth}
    return await reply(
        list[TrendingItem], lambda: fetch_all(pool, TRENDING_SQL, params), batch=True
    )
