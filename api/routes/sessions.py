"""GET /sessions/{session_id} — one session's recent events and its anomalies with the evidence.

The dashboard's drill-down: the events are the newest ``limit`` of the session by event time (a
backward scan of the (session_id, event_ts) index), the anomalies carry what the rule observed
against its threshold (``observed``, ``threshold``, ``baseline`` and the rule's ``details``), which
/anomalies does not return (its fields are the original contract).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from api.db import fetch_all
from api.deps import PoolDep, ReplyDep
from api.routes.anomalies import BIGINT_MAX, BIGINT_MIN
from api.schemas import SessionDetail

router = APIRouter(tags=["anomalies"])

EVENTS_SQL = """
SELECT event_id, event_ts, event_type, item_id, category, price, quantity, page, source,
       commit_ts
FROM events WHERE session_id = %(sid)s ORDER BY event_ts DESC, event_id DESC LIMIT %(limit)s
"""
ANOMALIES_SQL = """
SELECT id, anomaly_type, detected_at, window_start, window_end, click_count, unique_items,
       anomaly_score, observed, threshold, baseline, details
FROM anomalies WHERE session_id = %(sid)s ORDER BY detected_at DESC, id DESC LIMIT %(limit)s
"""


@router.get("/sessions/{session_id}", response_model=SessionDetail)
async def session_detail(
    pool: PoolDep,
    reply: ReplyDep,
    session_id: Annotated[int, Path(ge=BIGINT_MIN, le=BIGINT_MAX)],
    limit: Annotated[int, Query(ge=1, le=500, description="Newest events (1–500)")] = 100,
) -> Response:
    """Newest events of one session and its anomalies, newest first (both [] when unknown)."""

    async def detail() -> dict[str, Any]:
        params = {"sid": session_id, "limit": limit}
        events = await fetch_all(pool, EVENTS_SQL, params)
        anomalies = await fetch_all(pool, ANOMALIES_SQL, {"sid": session_id, "limit": 100})
        return {"session_id": session_id, "events": events, "anomalies": anomalies}

    return await reply(SessionDetail, detail)
