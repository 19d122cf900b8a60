"""GET /anomalies, /anomalies/types, /anomalies/timeline, /anomalies/per-minute,
/anomalies/{session_id}.

Lists are newest first (detected_at DESC, id DESC) and come from index scans; types and timeline
read the trigger-maintained aggregates of migration 0004; per-minute counts the last minutes' rows
in PostgreSQL (an index range scan), so a live chart gets a few dozen rows instead of the
anomalies themselves. An unknown ``anomaly_type`` is not an
error: it matches no rows, so the answer is 200 with ``[]`` (the original filtered in SQL the same
way); a value that cannot be a rule name (not ``[A-Za-z][A-Za-z0-9_]{0,63}``, e.g. an injection
attempt) is rejected with 422. ``since`` / ``until`` (ISO 8601 datetimes, additions to the
original's parameters) bound ``detected_at`` to [since, until); a datetime without an offset is
UTC.
"""

from __future__ import annotations

import itertools
from typing import Annotated, LiteralString

from fastapi import APIRouter, Path, Query, Response

from api.db import fetch_all
from api.deps import PoolDep, ReplyDep
from api.errors import ApiError
from api.schemas import Anomaly, AnomalyMinute, AnomalyTypeStat, IsoDateTime, TimelineBucket

router = APIRouter(tags=["anomalies"])

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"  # rule names; anything else is 422
COLUMNS = (
    "id, session_id, detected_at, window_start, window_end, click_count, unique_items, "
    "anomaly_score, anomaly_type"
)
ORDER = " ORDER BY detected_at DESC, id DESC LIMIT %(limit)s"
# (anomaly_type, min_score, since, until): the condition each set parameter adds
FILTERS: tuple[LiteralString, ...] = (
    "anomaly_type = %(type)s", "anomaly_score >= %(min)s", "detected_at >= %(since)s",
    "detected_at < %(until)s",
)


def _list_sql(used: tuple[bool, ...]) -> LiteralString:
    where: LiteralString = " AND ".join(f for f, on in zip(FILTERS, used, strict=True) if on)
    return "SELECT " + COLUMNS + " FROM anomalies" + (" WHERE " + where if where else "") + ORDER


# one statement per filter combination, so each gets its own (prepared) index plan
LIST_SQL: dict[tuple[bool, ...], LiteralString] = {
    used: _list_sql(used) for used in itertools.product((False, True), repeat=len(FILTERS))
}
BY_SESSION_SQL: LiteralString = (
    "SELECT " + COLUMNS + " FROM anomalies WHERE session_id = %(sid)s"
    " ORDER BY detected_at DESC, id DESC LIMIT %(limit)s"
)
TYPES_SQL = """
SELECT anomaly_type, anomaly_count AS count, score_sum / anomaly_count AS avg_score, last_detected
FROM anomaly_type_stats WHERE anomaly_count > 0
ORDER BY anomaly_count DESC, anomaly_type
"""
# `hours` whole UTC hours ending with the current one, newest first
TIMELINE_SQL = """
SELECT hour, anomaly_count, unique_sessions, score_sum / anomaly_count AS avg_score
FROM anomaly_hourly
WHERE hour >= date_trunc('hour', now(), 'UTC') - make_interval(hours => %(hours)s - 1)
  AND anomaly_count > 0
ORDER BY hour DESC
"""
# `minutes` whole UTC minutes ending with the current one, newest first
PER_MINUTE_SQL = """
SELECT date_trunc('minute', detected_at, 'UTC') AS minute, anomaly_type,
       count(*) AS anomaly_count
FROM anomalies
WHERE detected_at >= date_trunc('minute', now(), 'UTC') - make_interval(mins => %(minutes)s - 1)
GROUP BY 1, 2
ORDER BY 1 DESC, 2
"""

Limit = Annotated[int, Query(ge=1, le=1000, description="Maximum rows (1–1000)")]


@router.get("/anomalies", response_model=list[Anomaly])
async def list_anomalies(
    pool: PoolDep,
    reply: ReplyDep,
    limit: Limit = 100,
    anomaly_type: Annotated[
        str | None,
        Query(pattern=TYPE_PATTERN, description="e.g. HIGH_FREQUENCY; unknown types give []"),
    ] = None,
    min_score: Annotated[
        float | None, Query(allow_inf_nan=False, description="anomaly_score ≥ this")
    ] = None,
    since: Annotated[
        IsoDateTime | None,
        Query(description="detected_at ≥ this (ISO 8601 datetime; no offset = UTC)"),
    ] = None,
    until: Annotated[
        IsoDateTime | None,
        Query(description="detected_at < this (ISO 8601 datetime; no offset = UTC)"),
    ] = None,
) -> Response:
    """Newest anomalies, optionally of one type, above a score and detected in [since, until)."""
    if since is not None and until is not None and since > until:
        raise ApiError(422, "validation_error", "since must not be after until",
                       {"since": since, "until": until})
    used = (anomaly_type is not None, min_score is not None, since is not None,
            until is not None)
    sql = LIST_SQL[used]
    params = {"limit": limit, "type": anomaly_type, "min": min_score, "since": since,
              "until": until}
    return await reply(list[Anomaly], lambda: fetch_all(pool, sql, params))


@router.get("/anomalies/types", response_model=list[AnomalyTypeStat])
async def anomaly_types(pool: PoolDep, reply: ReplyDep) -> Response:
    """Count, mean score and latest detection per anomaly type (most frequent first)."""
    return await reply(list[AnomalyTypeStat], lambda: fetch_all(pool, TYPES_SQL))


@router.get("/anomalies/timeline", response_model=list[TimelineBucket])
async def anomaly_timeline(
    pool: PoolDep,
    reply: ReplyDep,
    hours: Annotated[int, Query(ge=1, le=168, description="UTC hours back (1–168)")] = 24,
) -> Response:
    """Hourly buckets (by detected_at, UTC) of the last ``hours`` hours; empty hours omitted."""
    return await reply(
        list[TimelineBucket], lambda: fetch_all(pool, TIMELINE_SQL, {"hours": hours})
    )


@router.get("/anomalies/per-minute", response_model=list[AnomalyMinute])
async def anomalies_per_minute(
    pool: PoolDep,
    reply: ReplyDep,
    minutes: Annotated[
        int, Query(ge=1, le=1440, description="UTC minutes back, the current one included (1–1440)")
    ] = 30,
) -> Response:
    """Anomalies per UTC minute (of detected_at) and type over the last ``minutes`` minutes,
    newest first; minutes without anomalies are omitted. Exact counts, however many anomalies:
    what a live chart needs, at the cost of a few dozen rows."""
    return await reply(
        list[AnomalyMinute], lambda: fetch_all(pool, PER_MINUTE_SQL, {"minutes": minutes})
    )


@router.get("/anomalies/{session_id}", response_model=list[Anomaly])
async def session_anomalies(
    pool: PoolDep,
    reply: ReplyDep,
    session_id: Annotated[int, Path(ge=BIGINT_MIN, le=BIGINT_MAX)],
    limit: Limit = 1000,
) -> Response:
    """Anomalies of one session, newest first ([] when it has none)."""
    params = {"sid": session_id, "limit": limit}
    return await reply(list[Anomaly], lambda: fetch_all(pool, BY_SESSION_SQL, params))
