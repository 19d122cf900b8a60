"""GET /dlq — the dead-letter queue at a glance: counts by reason, over time, and the newest
records.

Every query is a range scan of the detected_at index bounded by the window (at most one day).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.db import fetch_all
from api.deps import PoolDep, ReplyDep
from api.schemas import DlqReport

router = APIRouter(tags=["stream"])

BY_REASON_SQL = """
SELECT reason, count(*) AS count FROM dlq_events
WHERE detected_at >= now() - make_interval(mins => %(minutes)s)
GROUP BY reason ORDER BY count DESC, reason
"""
RECENT_SQL = """
SELECT id, source_topic, source_partition, source_offset, reason, detail, event_id, kafka_ts,
       detected_at, replayed_at
FROM dlq_events WHERE detected_at >= now() - make_interval(mins => %(minutes)s)
ORDER BY detected_at DESC, id DESC LIMIT %(limit)s
"""
# buckets counted in steps of the width from 2000-01-01 00:00 UTC (date_bin's origin): from each
# midnight UTC when the width divides a day (1, 5, 30, 60 min), as a chart bins them
OVER_TIME_SQL = """
SELECT date_bin(make_interval(mins => %(bucket)s), detected_at, timestamptz '2000-01-01 00:00Z')
         AS bucket,
       reason, count(*) AS count
FROM dlq_events WHERE detected_at >= now() - make_interval(mins => %(minutes)s)
GROUP BY 1, 2 ORDER BY 1, 2
"""


def reason_totals(over_time: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:data:`BY_REASON_SQL`'s rows (count descending, then reason) from the buckets' rows."""
    totals: dict[str, int] = {}
    for row in over_time:
        totals[row["reason"]] = totals.get(row["reason"], 0) + row["count"]
    return [{"reason": r, "count": n}
            for r, n in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]


@router.get("/dlq", response_model=DlqReport)
async def dlq(
    pool: PoolDep,
    reply: ReplyDep,
    minutes: Annotated[int, Query(ge=1, le=1440, description="Window in minutes (1–1440)")] = 60,
    limit: Annotated[int, Query(ge=1, le=500, description="Newest records (1–500)")] = 50,
    bucket_minutes: Annotated[int | None, Query(
        ge=1, le=1440, description="Also count every record of the window per bucket of this "
        "many minutes and reason (1–1440; `over_time`, null when not asked)")] = None,
) -> Response:
    """DLQ records detected in the last ``minutes``: counts by reason and the newest ones, and
    with ``bucket_minutes`` their counts over time (all records, not only the newest)."""

    async def report() -> dict[str, Any]:
        params = {"minutes": minutes, "limit": limit, "bucket": bucket_minutes}
        over_time = None
        if bucket_minutes is None:
            by_reason = await fetch_all(pool, BY_REASON_SQL, params)
        else:  # the buckets already count every record of the window: one scan, not two
            over_time = await fetch_all(pool, OVER_TIME_SQL, params)
            by_reason = reason_totals(over_time)
        recent = await fetch_all(pool, RECENT_SQL, params)
        return {
            "window_minutes": minutes,
            "total": sum(r["count"] for r in by_reason),
            "by_reason": by_reason,
            "recent": recent,
            "bucket_minutes": bucket_minutes,
            "over_time": over_time,
        }

    return await reply(DlqReport, report)
