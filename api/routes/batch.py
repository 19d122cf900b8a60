"""GET /batch/freshness — when each Dagster batch asset last computed its days.

Read from ``asset_day_watermarks`` (one row per asset and day, written in the same transaction as
the asset's output rows, with the Dagster run id), so it is the assets' last materialization time
as the data itself records it, without a call to Dagster.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.db import fetch_all
from api.deps import PoolDep, ReplyDep
from api.schemas import AssetFreshness, IsoDate

router = APIRouter(tags=["metrics"])

FRESHNESS_SQL = """
SELECT asset_key, max(computed_at) AS last_computed_at,
       (array_agg(run_id ORDER BY computed_at DESC))[1] AS last_run_id,
       count(*) AS days_computed, max(day) AS newest_day,
       max(computed_at) FILTER (WHERE day = %(day)s) AS day_computed_at
FROM asset_day_watermarks GROUP BY asset_key ORDER BY asset_key
"""


@router.get("/batch/freshness", response_model=list[AssetFreshness])
async def freshness(
    pool: PoolDep,
    reply: ReplyDep,
    date: Annotated[
        IsoDate | None, Query(description="Also report when this day was computed (ISO date)")
    ] = None,
) -> Response:
    """Per batch asset: last computation, its run, days computed and (with ``date``) that day's."""
    day: dt.date | None = date
    return await reply(
        list[AssetFreshness], lambda: fetch_all(pool, FRESHNESS_SQL, {"day": day}), batch=True
    )
