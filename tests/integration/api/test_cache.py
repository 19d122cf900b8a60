"""The response cache on a real server: warm URLs are answered without a query, at most 2 × TTL
stale, refreshed in the background; errors are never cached."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

pytestmark = pytest.mark.integration

TTL = 0.5


@pytest.fixture(scope="module")
def cached_api(make_server):  # type: ignore[no-untyped-def]
    return make_server(api_cache_ttl_s=TTL)


def total(c: httpx.Client) -> int:
    r = c.get("/stats")
    assert r.status_code == 200
    return r.json()["total_anomalies"]


def insert_anomaly(conn: psycopg.Connection, entity: str) -> None:
    conn.execute(
        "INSERT INTO anomalies (anomaly_type, entity, session_id, window_start, window_end,"
        " detected_at, updated_at, anomaly_score, observed) VALUES"
        " ('HIGH_FREQUENCY', %s, 1, now(), now(), now(), now(), 1.5, 60)", (entity,))


def test_cached_then_refreshed(cached_api, wpg: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    cache = cached_api.app.state.cache
    with httpx.Client(base_url=cached_api.url, timeout=10) as c:
        time.sleep(2 * TTL)  # entries of earlier tests expire
        assert total(c) == 0
        insert_anomaly(wpg, "a")
        hits = cache.hits
        assert total(c) == 0  # within the TTL: the cached body
        assert cache.hits == hits + 1
        time.sleep(TTL + 0.05)  # stale but servable: old body now, refresh in the background
        assert total(c) == 0
        deadline = time.monotonic() + 5
        while total(c) != 1:
            assert time.monotonic() < deadline, "background refresh never landed"
            time.sleep(0.05)
        time.sleep(2 * TTL + 0.1)  # past the stale window: a miss, answered fresh
        insert_anomaly(wpg, "b")
        assert total(c) == 2


def test_parameter_order_shares_an_entry_and_errors_are_not_cached(cached_api) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=cached_api.url, timeout=10) as c:
        a = c.get("/anomalies?limit=3&min_score=1")
        b = c.get("/anomalies?min_score=1&limit=3")
        assert a.status_code == b.status_code == 200
        assert a.content == b.content
        for _ in range(2):
            r = c.get("/metrics/daily/1999-01-01")
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "not_found"
        assert c.get("/anomalies?limit=0").status_code == 422


def test_request_metrics_count_cached_answers(cached_api) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=cached_api.url, timeout=10) as c:
        for _ in range(5):
            assert c.get("/metrics/summary?days=3").status_code == 200
    stats = cached_api.app.state.request_stats
    assert stats.count[("GET", "/metrics/summary", 200)] >= 5
