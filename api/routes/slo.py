"""GET /slo — per-stage latency percentiles of the newest events (every event is a sample).

The figures are :mod:`clickguard.slo`'s — the same query as ``clickguard slo-report`` and the
Dagster ``slo_report`` asset — over the events committed in the window (the last ``minutes``, or
[``since``, ``until``)), keeping the newest ``limit`` of them (a commit_ts index range with a
LIMIT), so the cost is bounded whatever the rate. With a window holding at most ``limit`` events
the three give the same numbers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.db import fetch_one
from api.deps import PoolDep, ReplyDep, SettingsDep
from api.schemas import IsoDateTime, SloReport
from clickguard import slo as slo_core

router = APIRouter(tags=["stream"])


@router.get("/slo", response_model=SloReport)
async def slo(
    pool: PoolDep,
    reply: ReplyDep,
    settings: SettingsDep,
    minutes: Annotated[int, Query(ge=1, le=60, description="Window in minutes (1–60)")] = 5,
    limit: Annotated[
        int, Query(ge=1, le=100_000, description="At most this many newest events (1–100000)")
    ] = 10_000,
    since: Annotated[
        IsoDateTime | None,
        Query(description="Window start, ISO 8601 (replaces `minutes`; no offset = UTC)"),
    ] = None,
    until: Annotated[
        IsoDateTime | None, Query(description="Window end with `since` (default now)")
    ] = None,
) -> Response:
    """p50/p95/p99/max per pipeline stage over the newest events (nulls when there are none)."""
    window: slo_core.Window | timedelta = timedelta(minutes=minutes)
    if since is not None:
        start = since if since.tzinfo else since.replace(tzinfo=UTC)
        end = until or datetime.now(UTC)
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        window = (start, end)  # until <= since: an empty window, no samples (not an error)
        minutes = max(1, math.ceil((end - start).total_seconds() / 60))

    async def report() -> dict[str, Any]:
        # resolved here: a cache refresh re-runs this, and "the last N minutes" moves on
        sql, params, resolved = slo_core.slo_query(
            window, cdf=False, max_events=min(limit, settings.api_slo_max_samples)
        )
        row = await fetch_one(pool, sql, params)
        result = slo_core.slo_from_row(row, resolved, cdf=False)
        stages = [
            {"stage": name, "p50_ms": st.p50, "p95_ms": st.p95, "p99_ms": st.p99,
             "max_ms": st.max}
            for name, st in result.stages.items()
        ]
        return {"window_minutes": minutes, "samples": result.events, "stages": stages}

    return await reply(SloReport, report)
