"""A client written for the ORIGINAL API works unchanged: it knows only the original paths,
parameters and field names (../shared/BRIEF.md) and the types its dashboards relied on."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import psycopg
import pytest

from tests.integration.api import seed

pytestmark = pytest.mark.integration


class OriginalDashboardClient:
    """What the original's dashboards did: plain GETs, JSON bodies, fields by name."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def get(self, path: str, **params: Any) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.base_url + path + query, timeout=10) as resp:
            assert resp.status == 200
            return json.loads(resp.read())


def test_original_client(live_api, wpg: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    seed.seed_anomalies(wpg)
    seed.seed_batch_tables(wpg)
    api = OriginalDashboardClient(live_api.url)

    health = api.get("/health")
    assert health["status"] == "healthy" and health["database"] == "connected"
    assert isinstance(health["version"], str)

    stats = api.get("/stats")
    assert stats["total_anomalies"] == 45 and stats["days_processed"] == 20
    assert stats["total_popular_items"] == 600 and stats["last_metrics_date"] == "2024-03-10"
    assert isinstance(stats["last_anomaly_detected"], str)

    anomalies = api.get("/anomalies", limit=10, anomaly_type="HIGH_FREQUENCY", min_score=1.5)
    assert len(anomalies) == 10
    for a in anomalies:
        assert isinstance(a["session_id"], int) and isinstance(a["id"], int)
        assert a["anomaly_type"] == "HIGH_FREQUENCY" and a["anomaly_score"] >= 1.5
        for k in ("detected_at", "window_start", "window_end", "click_count", "unique_items"):
            assert k in a
    assert len(api.get("/anomalies")) == 45  # default limit 100

    session = anomalies[0]["session_id"]
    assert all(a["session_id"] == session for a in api.get(f"/anomalies/{session}"))

    types = {t["anomaly_type"]: t for t in api.get("/anomalies/types")}
    assert types["HIGH_FREQUENCY"]["count"] > 0
    assert {"avg_score", "last_detected"} <= set(types["BOT_LIKE"])

    timeline = api.get("/anomalies/timeline", hours=24)
    assert timeline and {"hour", "anomaly_count", "unique_sessions", "avg_score"} == set(
        timeline[0])

    daily = api.get("/metrics/daily", start_date="2024-03-01", end_date="2024-03-10")
    assert [d["metric_date"] for d in daily][-1] == "2024-03-10"
    assert {"conversion_rate", "avg_session_duration_sec", "avg_clicks_per_session",
            "total_revenue", "avg_order_value"} <= set(daily[0])
    assert api.get("/metrics/daily/2024-03-10")["total_clicks"] == 1000

    funnel = api.get("/metrics/funnel/2024-03-10")
    assert {"funnel_stage", "session_count", "percentage", "drop_rate"} == set(funnel[0])

    summary = api.get("/metrics/summary", days=7)
    assert summary["days_processed"] == 7
    assert {"total_clicks", "total_purchases", "total_sessions", "avg_conversion_rate",
            "total_revenue", "avg_clicks_per_session"} <= set(summary)

    popular = api.get("/items/popular/2024-03-10", limit=5)
    assert [p["rank"] for p in popular] == [1, 2, 3, 4, 5]
    assert {"item_id", "category", "click_count", "purchase_count", "revenue",
            "click_to_purchase_ratio"} <= set(popular[0])
    categories = api.get("/items/categories/2024-03-10", limit=3)
    assert {"category", "click_count", "purchase_count", "unique_items", "revenue",
            "rank"} == set(categories[0])
    trending = api.get("/items/trending", days=7, limit=5)
    assert len(trending) == 5 and "item_id" in trending[0]
