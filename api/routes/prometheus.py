"""GET /metrics — Prometheus text exposition (format 0.0.4), written by hand.

Platform gauges come from the database (pre-aggregates and small index reads); request counters
and latency sums are per worker process (label ``worker`` = pid), as with any multi-process server
without a shared registry: sum them in PromQL.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.db import fetch_all, fetch_one
from api.deps import PoolDep
from clickguard import ledger

router = APIRouter(tags=["metrics"])

TYPES_SQL = "SELECT anomaly_type, anomaly_count, last_detected FROM anomaly_type_stats"
DLQ_SQL = """
SELECT reason, count(*) AS n FROM dlq_events
WHERE detected_at >= now() - interval '1 hour' GROUP BY reason
"""
BEATS_SQL = """
SELECT component, extract(epoch FROM now() - beat_at)::float8 AS age FROM stream_heartbeat
"""


class RequestStats:
    """Per-worker request count and latency sum by (method, route template, status)."""

    def __init__(self) -> None:
        self.count: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.seconds: defaultdict[tuple[str, str, int], float] = defaultdict(float)


class RequestStatsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware) recording every request."""

    def __init__(self, app: ASGIApp, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = (
                getattr(scope.get("route"), "path", None) or scope.get("cached_route")
                or "unmatched"
            )
            key = (scope.get("method", "GET"), path, status)
            self.stats.count[key] += 1
            self.stats.seconds[key] += time.perf_counter() - t0


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(out: list[str], name: str, kind: str, help_: str) -> Callable[..., None]:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")

    def sample(value: float, suffix: str = "", **labels: object) -> None:
        lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        out.append(f"{name}{suffix}{{{lab}}} {value}" if lab else f"{name}{suffix} {value}")

    return sample


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, pool: PoolDep) -> PlainTextResponse:
    """Anomaly totals, DLQ counts, stream freshness and this worker's request counters."""
    out: list[str] = []
    up = _family(out, "clickguard_database_up", "gauge", "1 when PostgreSQL answered")
    try:
        types = await fetch_all(pool, TYPES_SQL)
        dlq = await fetch_all(pool, DLQ_SQL)
        fresh = ledger.freshness_from(await fetch_one(pool, ledger.FRESHNESS_SQL))
        rate = await fetch_one(pool, ledger.RATE_SQL, {"window_s": ledger.RATE_WINDOW_S})
        beats = await fetch_all(pool, BEATS_SQL)
    except Exception:  # noqa: BLE001 - the exposition still reports database_up 0
        up(0)
        types, dlq, fresh, rate, beats = [], [], ledger.freshness_from(None), None, []
    else:
        up(1)
    s = _family(out, "clickguard_anomalies", "gauge", "Anomalies stored, by type")
    for r in types:
        s(r["anomaly_count"], anomaly_type=r["anomaly_type"])
    s = _family(out, "clickguard_anomaly_last_detected_seconds", "gauge",
                "Unix time of the newest anomaly, by type")
    for r in types:
        if r["last_detected"] is not None:
            s(r["last_detected"].timestamp(), anomaly_type=r["anomaly_type"])
    s = _family(out, "clickguard_dlq_events_last_hour", "gauge", "DLQ records in the last hour")
    for r in dlq:
        s(r["n"], reason=r["reason"])
    if fresh.last_batch_at is not None:
        s = _family(out, "clickguard_stream_last_commit_seconds", "gauge",
                    "Unix time of the newest committed micro-batch")
        s(fresh.last_batch_at.timestamp())
    if fresh.age_s is not None:
        s = _family(out, "clickguard_stream_freshness_seconds", "gauge",
                    "Seconds since the newest committed batch or stored event")
        s(fresh.age_s)
    s = _family(out, "clickguard_stream_events_per_second", "gauge",
                "Input rows of batches committed in the last 60 s, per second"
                " (over the time since the stream's first batch with rows while that is shorter)")
    s(ledger.rate_from(rate))
    s = _family(out, "clickguard_stream_heartbeat_age_seconds", "gauge",
                "Seconds since each streaming component's heartbeat")
    for r in beats:
        s(r["age"], component=r["component"])
    stats: RequestStats = request.app.state.request_stats
    worker = os.getpid()
    c = _family(out, "clickguard_api_requests_total", "counter", "Requests served by this worker")
    d = _family(out, "clickguard_api_request_seconds_total", "counter",
                "Seconds spent serving requests, by this worker")
    for (method, route, status), n in sorted(stats.count.items()):
        labels = {"worker": worker, "method": method, "route": route, "status": status}
        c(n, **labels)
        d(round(stats.seconds[(method, route, status)], 6), **labels)
    cache = request.app.state.cache
    h = _family(out, "clickguard_api_cache_hits_total", "counter", "Response cache hits")
    h(cache.hits, worker=worker)
    m = _family(out, "clickguard_api_cache_misses_total", "counter", "Response cache misses")
    m(cache.misses, worker=worker)
    return PlainTextResponse("\n".join(out) + "\n", media_type="text/plain; version=0.0.4")
