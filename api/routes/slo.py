"""GET /slo — per-stage latency percentiles of the newest events (every event is a sample).

Stages from the latency columns of ``events``: produce→Kafka = kafka_ts − ingest_ts,
Kafka→Spark = batch_start_ts − kafka_ts, Spark→DB = commit_ts − batch_start_ts,
end to end = commit_ts − ingest_ts. The sample is the newest ``limit`` events committed in the
last ``minutes`` (a commit_ts index range with a LIMIT), so the cost is bounded whatever the rate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.db import fetch_all
from api.deps import PoolDep, ReplyDep, SettingsDep
from api.schemas import SloReport

router = APIRouter(tags=["stream"])

STAGES = ("produce_to_kafka", "kafka_to_spark", "spark_to_db", "end_to_end")
SLO_SQL = """
WITH s AS (
    SELECT ingest_ts, kafka_ts, batch_start_ts, commit_ts FROM events
    WHERE commit_ts >= now() - make_interval(mins => %(minutes)s)
    ORDER BY commit_ts DESC LIMIT %(limit)s
), d AS (
    SELECT 1 AS ord, (extract(epoch FROM kafka_ts - ingest_ts) * 1000)::float8 AS ms FROM s
    UNION ALL SELECT 2, (extract(epoch FROM batch_start_ts - kafka_ts) * 1000)::float8 FROM s
    UNION ALL SELECT 3, (extract(epoch FROM commit_ts - batch_start_ts) * 1000)::float8 FROM s
    UNION ALL SELECT 4, (extract(epoch FROM commit_ts - ingest_ts) * 1000)::float8 FROM s
)
SELECT ord, count(*) AS samples,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99_ms,
       max(ms) AS max_ms
FROM d GROUP BY ord ORDER BY ord
"""


@router.get("/slo", response_model=SloReport)
async def slo(
    pool: PoolDep,
    reply: ReplyDep,
    settings: SettingsDep,
    minutes: Annotated[int, Query(ge=1, le=60, description="Window in minutes (1–60)")] = 5,
    limit: Annotated[
        int, Query(ge=1, le=100_000, description="At most this many newest events (1–100000)")
    ] = 10_000,
) -> Response:
    """p50/p95/p99/max per pipeline stage over the newest events (nulls when there are none)."""
    params = {"minutes": minutes, "limit": min(limit, settings.api_slo_max_samples)}

    async def report() -> dict[str, Any]:
        rows = {r["ord"]: r for r in await fetch_all(pool, SLO_SQL, params)}
        stages = []
        for i, name in enumerate(STAGES, start=1):
            r = rows.get(i, {})
            stages.append({"stage": name, **{k: r.get(k) for k in
                                              ("p50_ms", "p95_ms", "p99_ms", "max_ms")}})
        samples = rows[1]["samples"] if 1 in rows else 0
        return {"window_minutes": minutes, "samples": samples, "stages": stages}

    return await reply(SloReport, report)
