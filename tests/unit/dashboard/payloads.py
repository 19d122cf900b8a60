"""Canned API answers in the API's own shapes (api/schemas.py), with times relative to now,
served to the dashboard through an httpx transport: the dashboard's HTTP client runs for real."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def ago(**kw: float) -> str:
    return iso(dt.datetime.now(dt.UTC) - dt.timedelta(**kw))


def health(state: str = "running", last_error: str | None = None,
           last_error_at: str | None = None) -> dict[str, Any]:
    status = "degraded" if state == "crash-looping" else "healthy"
    return {"status": status, "database": "connected", "version": "1.0.0",
            "stream": {"state": state, "last_error": last_error, "last_error_at": last_error_at,
                       "consecutive_failures": 3 if last_error else 0, "last_batch_id": 41,
                       "since": ago(minutes=5)}}


def stream(state: str = "running", last_error: str | None = None,
           last_error_at: str | None = None) -> dict[str, Any]:
    return {
        "last_batch": {"query_id": "q", "batch_id": 41, "started_at": ago(seconds=2),
                       "committed_at": ago(seconds=1), "input_rows": 1234, "stored": 1200,
                       "dlq": 3, "late": 2, "duplicates": 29, "anomalies": 4,
                       "duration_ms": 812, "watermark": ago(minutes=10)},
        "events_per_sec": 987.5, "batches_last_minute": 60,
        "heartbeats": [{"component": "streaming_driver", "beat_at": ago(seconds=1),
                        "status": "running", "age_sec": 1.2}],
        "consumer_lag": {"total": 4321, "by_partition": {"0": 4000, "1": 321}, "error": None},
        "state": health(state, last_error, last_error_at)["stream"],
        "active_driver": {"driver": "d1:4242@node-a", "epoch": 3, "source": "lease",
                          "since": "2026-12-01T14:00:03.250Z",
                          "lease_expires_at": ago(seconds=-9), "last_commit_at": ago(seconds=1)},
    }


def slo(samples: int = 9000) -> dict[str, Any]:
    stages = []
    for i, name in enumerate(("produce_to_kafka", "kafka_to_spark", "spark_to_db",
                              "end_to_end"), start=1):
        v = None if not samples else 10.0 * i
        stages.append({"stage": name, "p50_ms": v, "p95_ms": v and v * 3,
                       "p99_ms": v and v * 5, "max_ms": v and v * 9})
    return {"window_minutes": 5, "samples": samples, "stages": stages}


def anomalies(n: int = 12) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        t = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=i * 2)
        kind = "BOT_LIKE" if i % 3 == 0 else "HIGH_FREQUENCY"
        span = 60 if kind == "BOT_LIKE" else 10
        out.append({"id": 100 - i, "session_id": 7000 + i % 4, "detected_at": iso(t),
                    "window_start": iso(t - dt.timedelta(seconds=span)), "window_end": iso(t),
                    "click_count": 60 + i, "unique_items": 3 + i % 2,
                    "anomaly_score": 1.2 + i / 10, "anomaly_type": kind})
    out.append({"id": 1, "session_id": None, "detected_at": ago(minutes=3),
                "window_start": ago(minutes=4), "window_end": ago(minutes=3),
                "click_count": 0, "unique_items": 0, "anomaly_score": 5.5,
                "anomaly_type": "TRAFFIC_SPIKE"})
    return out


def types() -> list[dict[str, Any]]:
    return [{"anomaly_type": "HIGH_FREQUENCY", "count": 8, "avg_score": 1.5,
             "last_detected": ago(minutes=2)},
            {"anomaly_type": "BOT_LIKE", "count": 4, "avg_score": 1.8,
             "last_detected": ago(minutes=0)},
            {"anomaly_type": "TRAFFIC_SPIKE", "count": 1, "avg_score": 5.5,
             "last_detected": ago(minutes=3)}]


def session(sid: int) -> dict[str, Any]:
    events = [{"event_id": f"e-{i}", "event_ts": ago(seconds=i), "event_type": "click",
               "item_id": 55, "category": "shoes", "price": None, "quantity": None,
               "page": None, "source": "demo", "commit_ts": ago(seconds=i - 0.5)}
              for i in range(1, 6)]
    events.append({"event_id": "e-buy", "event_ts": ago(seconds=7), "event_type": "purchase",
                   "item_id": 56, "category": None, "price": 19.5, "quantity": 2, "page": None,
                   "source": "demo", "commit_ts": ago(seconds=6)})
    ev = [{"id": 100, "anomaly_type": "HIGH_FREQUENCY", "detected_at": ago(minutes=0),
           "window_start": ago(seconds=10), "window_end": ago(seconds=0), "click_count": 60,
           "unique_items": 3, "anomaly_score": 1.2, "observed": 60.0, "threshold": 50.0,
           "baseline": None, "details": {"rule": "clicks in one session within a 10 s tumbling "
                                                 "window > threshold", "window_seconds": 10}}]
    return {"session_id": sid, "events": events, "anomalies": ev}


def dlq(total: int = 30, limit: int = 500, bucket_minutes: int | None = None) -> dict[str, Any]:
    """``total`` records one minute apart, the newest ``limit``, and with ``bucket_minutes``
    every record counted per bucket (UTC multiples of its width) and reason, as the API does."""
    reasons = ["not_wire_format", "avro_decode_error", "missing_required"]
    now = dt.datetime.now(dt.UTC)
    detected = [now - dt.timedelta(minutes=i) for i in range(total)]
    recent = [{"id": 500 - i, "source_topic": "km.events.raw.v1", "source_partition": i % 3,
               "source_offset": 9000 + i, "reason": reasons[i % 3], "detail": f"detail {i}",
               "event_id": f"e-{i}" if i % 2 else None, "kafka_ts": iso(detected[i]),
               "detected_at": iso(detected[i]), "replayed_at": None}
              for i in range(total)]
    counts = Counter(r["reason"] for r in recent)
    by_reason = [{"reason": k, "count": v} for k, v in sorted(counts.items(),
                                                             key=lambda kv: (-kv[1], kv[0]))]
    over_time = None
    if bucket_minutes:
        width = bucket_minutes * 60
        bins = Counter((dt.datetime.fromtimestamp(t.timestamp() // width * width, dt.UTC),
                        r["reason"]) for t, r in zip(detected, recent, strict=True))
        over_time = [{"bucket": iso(b), "reason": reason, "count": n}
                     for (b, reason), n in sorted(bins.items())]
    return {"window_minutes": 60, "total": total, "by_reason": by_reason,
            "recent": recent[:limit], "bucket_minutes": bucket_minutes, "over_time": over_time}


def dlq_route(r: httpx.Request) -> dict[str, Any]:
    params = r.url.params
    bucket = params.get("bucket_minutes")
    return dlq(limit=int(params.get("limit", 50)), bucket_minutes=int(bucket) if bucket else None)


# Dagster's answer to dashboard.client.RUNS_QUERY (dagster-webserver 1.13 /graphql): a run in
# progress, a failed one, a success, and a queued one (no start yet)
DAGSTER_RUNS = {"data": {"runsOrError": {"__typename": "Runs", "results": [
    {"runId": "4b7c3f0e-9d1a-4c57-8e2b-5a6f0c1d2e3f", "status": "STARTED",
     "creationTime": 1796137200.1, "startTime": 1796137201.5, "endTime": None},
    {"runId": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "status": "FAILURE",
     "creationTime": 1796133600.0, "startTime": 1796133601.0, "endTime": 1796133726.4},
    {"runId": "9a8b7c6d-5e4f-4321-9876-0fedcba98765", "status": "SUCCESS",
     "creationTime": 1796130000.0, "startTime": 1796130000.25, "endTime": 1796130004.75},
    {"runId": "11111111-2222-3333-4444-555555555555", "status": "QUEUED",
     "creationTime": 1796126400.0, "startTime": None, "endTime": None},
]}}}

DAY = dt.date(2024, 3, 10)


def daily(start: str, end: str) -> list[dict[str, Any]]:
    out = []
    d = dt.date.fromisoformat(start)
    while d <= dt.date.fromisoformat(end):
        if d <= DAY:
            k = (DAY - d).days
            out.append({"metric_date": d.isoformat(), "total_clicks": 1000 + k * 10,
                        "total_purchases": 20 + k, "unique_sessions": 100 + k,
                        "unique_items": 300 + k, "conversion_rate": 0.2,
                        "avg_session_duration_sec": 60.5, "avg_clicks_per_session": 10.0,
                        "total_revenue": 123.45 + k, "avg_order_value": 6.17})
        d += dt.timedelta(days=1)
    return out


FUNNEL = [{"funnel_stage": "view", "session_count": 100, "percentage": 100.0, "drop_rate": 0.0},
          {"funnel_stage": "click", "session_count": 50, "percentage": 50.0, "drop_rate": 50.0},
          {"funnel_stage": "purchase", "session_count": 5, "percentage": 5.0, "drop_rate": 90.0}]
ITEMS = [{"item_id": 900 + i, "category": None if i == 2 else f"cat-{i % 3}",
          "click_count": 500 - i * 10, "purchase_count": 50 - i, "revenue": 75.5 - i,
          "rank": i + 1, "click_to_purchase_ratio": 0.1} for i in range(5)]
CATEGORIES = [{"category": f"cat-{c}", "click_count": 900 - c * 100, "purchase_count": 90 - c,
               "unique_items": 10 - c, "revenue": 99.5 - c, "rank": c + 1} for c in range(4)]
FRESHNESS = [{"asset_key": "daily_metrics", "last_computed_at": ago(minutes=3),
              "last_run_id": "0123456789abcdef", "days_computed": 20, "newest_day": "2024-03-10",
              "day_computed_at": ago(minutes=3)}]
SUMMARY = {"days_processed": 7, "total_clicks": 7210, "total_purchases": 161,
           "total_sessions": 721, "avg_conversion_rate": 0.2, "total_revenue": 885.15,
           "avg_clicks_per_session": 10.0}


def stats(last_metrics_date: str | None = "2024-03-10") -> dict[str, Any]:
    return {"total_anomalies": 13, "days_processed": 20 if last_metrics_date else 0,
            "total_popular_items": 600, "last_anomaly_detected": ago(minutes=0),
            "last_metrics_date": last_metrics_date}


Route = Callable[[httpx.Request], Any]


def since_filtered(rows: list[dict[str, Any]], request: httpx.Request) -> list[dict[str, Any]]:
    """/anomalies' ``since`` as the API applies it (detected_at ≥ since)."""
    since = request.url.params.get("since")
    if since is None:
        return rows
    bound = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    return [r for r in rows
            if dt.datetime.fromisoformat(r["detected_at"].replace("Z", "+00:00")) >= bound]


def per_minute(rows: list[dict[str, Any]], request: httpx.Request) -> list[dict[str, Any]]:
    """/anomalies/per-minute as the API computes it: counts per UTC minute and type over the last
    ``minutes`` minutes (the current one included), newest first."""
    minutes = int(request.url.params.get("minutes", "30"))
    start = (dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
             - dt.timedelta(minutes=minutes - 1))
    counts: Counter[tuple[dt.datetime, str]] = Counter()
    for r in rows:
        t = dt.datetime.fromisoformat(r["detected_at"].replace("Z", "+00:00"))
        if t >= start:
            counts[(t.replace(second=0, microsecond=0), r["anomaly_type"])] += 1
    return [{"minute": iso(m), "anomaly_type": k, "anomaly_count": n}
            for (m, k), n in sorted(counts.items(), key=lambda e: (-e[0][0].timestamp(), e[0][1]))]


def full() -> dict[str, Route]:
    """An API with data on every page."""
    return {
        "/health": lambda r: health(),
        "/stream": lambda r: stream(),
        "/slo": lambda r: slo(),
        "/anomalies": lambda r: since_filtered(anomalies(), r),
        "/anomalies/per-minute": lambda r: per_minute(anomalies(), r),
        "/anomalies/types": lambda r: types(),
        "/sessions/*": lambda r: session(int(r.url.path.rsplit("/", 1)[1])),
        "/dlq": dlq_route,
        "/stats": lambda r: stats(),
        "/metrics/daily": lambda r: daily(r.url.params["start_date"], r.url.params["end_date"]),
        "/metrics/funnel/*": lambda r: FUNNEL,
        "/items/categories/*": lambda r: CATEGORIES,
        "/items/popular/*": lambda r: ITEMS,
        "/batch/freshness": lambda r: FRESHNESS,
        "/metrics/summary": lambda r: SUMMARY,
        "/graphql": lambda r: DAGSTER_RUNS,
    }


def empty() -> dict[str, Route]:
    """A fresh platform: the API answers, no data anywhere yet."""
    return {
        "/health": lambda r: health("unknown"),
        "/stream": lambda r: {"last_batch": None, "events_per_sec": 0.0,
                              "batches_last_minute": 0, "heartbeats": [],
                              "consumer_lag": {"total": None, "by_partition": {},
                                               "error": "no ledger offsets for km.events.raw.v1"},
                              "state": {"state": "unknown"}},
        "/slo": lambda r: slo(0),
        "/anomalies": lambda r: [],
        "/anomalies/per-minute": lambda r: [],
        "/anomalies/types": lambda r: [],
        "/dlq": lambda r: {"window_minutes": 60, "total": 0, "by_reason": [], "recent": []},
        "/stats": lambda r: stats(None),
        "/batch/freshness": lambda r: [],
        "/graphql": lambda r: {"data": {"runsOrError": {"__typename": "Runs", "results": []}}},
    }


class FakeApi:
    """An httpx transport answering from ``routes`` (path, or prefix + '*'); records requests."""

    def __init__(self, routes: dict[str, Route], status: dict[str, int] | None = None) -> None:
        self.routes, self.status = routes, status or {}
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        route = self.routes.get(path) or next(
            (fn for p, fn in self.routes.items() if p.endswith("*") and path.startswith(p[:-1])),
            None)
        if path in self.status:
            body = {"error": {"code": "database_unavailable", "message": "database unavailable",
                              "details": None}}
            return httpx.Response(self.status[path], content=json.dumps(body))
        if route is None:
            body = {"error": {"code": "not_found", "message": "Not Found", "details": None}}
            return httpx.Response(404, content=json.dumps(body))
        return httpx.Response(200, content=json.dumps(route(request)),
                              headers={"content-type": "application/json"})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]
