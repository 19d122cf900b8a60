"""GET /dlq — the dead-letter queue at a glance: counts by reason and the newest records.

Both queries are range scans of the detected_at index bounded by the window (at most one day).
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


@router.get("/dlq", response_model=DlqReport)
async def dlq(
    pool: PoolDep,
    reply: ReplyDep,
    minutes: Annotated[int, Query(ge=1, le=1440, description="Window in minutes (1–1440)")] = 60,
    limit: Annotated[int, Query(ge=1, le=500, description="Newest records (1–500)")] = 50,
) -> Response:
    """DLQ records detected in the last ``minutes``: counts by reason and the newest ones."""

    async def report() -> dict[str, Any]:
        params = {"minutes": minutes, "limit": limit}
        by_reason = await fetch_all(pool, BY_REASON_SQL, params)
        recent = await fetch_all(pool, RECENT_SQL, params)
        return {
            "window_minutes": minutes,
            "total": sum(r["count"] for r in by_reason),
            "by_reason": by_reason,
            "recent": recent,
        }

    return await reply(DlqReport, report)
