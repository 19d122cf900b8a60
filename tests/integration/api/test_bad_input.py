"""Hostile and malformed input: always a 4xx in the one error shape, never a 5xx, and nothing
changes in the database. With an API key configured: missing or wrong key → 401."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.integration.api import seed
from tests.integration.api.conftest import fingerprint

pytestmark = pytest.mark.integration

INJECTION = "'; DROP TABLE anomalies; --"
BAD_REQUESTS = [
    ("/anomalies?limit=0", 422),
    ("/anomalies?limit=1001", 422),
    ("/anomalies?limit=99999999999999999999999", 422),
    ("/anomalies?limit=abc", 422),
    ("/anomalies?limit=1.5", 422),
    ("/anomalies?min_score=nan", 422),
    ("/anomalies?min_score=inf", 422),
    ("/anomalies?min_score=" + INJECTION, 422),
    ("/anomalies?anomaly_type=" + INJECTION, 422),
    ("/anomalies?anomaly_type=BOT_LIKE' OR '1'='1", 422),
    ("/anomalies?anomaly_type=" + "A" * 65, 422),
    ("/anomalies/1;DELETE FROM anomalies", 422),
    ("/anomalies/9223372036854775808", 422),
    ("/anomalies/-9223372036854775809", 422),
    ("/anomalies/timeline?hours=0", 422),
    ("/anomalies/timeline?hours=169", 422),
    ("/anomalies/timeline?hours=" + INJECTION, 422),
    ("/anomalies/per-minute?minutes=0", 422),
    ("/anomalies/per-minute?minutes=1441", 422),
    ("/anomalies/per-minute?minutes=" + INJECTION, 422),
    ("/metrics/daily?start_date=2024-03-01", 422),
    ("/metrics/daily?start_date=2024-02-30&end_date=2024-03-01", 422),
    ("/metrics/daily?start_date=" + INJECTION + "&end_date=2024-03-01", 422),
    ("/metrics/daily/2024-13-01", 422),
    ("/metrics/daily/yesterday", 422),
    ("/metrics/funnel/" + INJECTION, 422),
    ("/metrics/summary?days=0", 422),
    ("/metrics/summary?days=91", 422),
    ("/items/popular/2024-03-10?limit=501", 422),
    ("/items/popular/2024-03-10?limit=-1", 422),
    ("/items/categories/2024-03-10?limit=101", 422),
    ("/items/trending?days=31", 422),
    ("/items/trending?limit=101", 422),
    ("/dlq?minutes=1441", 422),
    ("/dlq?limit=100000", 422),
    ("/dlq?bucket_minutes=0", 422),
    ("/dlq?bucket_minutes=1441", 422),
    ("/slo?minutes=61", 422),
    ("/slo?limit=100001", 422),
    ("/no/such/path", 404),
]


@pytest.mark.parametrize(("path", "status"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_in_the_error_shape(
    client: httpx.Client, path: str, status: int
) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == ("validation_error" if status == 422 else "not_found")
    assert body["error"]["message"]


def test_validation_message_names_the_parameter(client: httpx.Client) -> None:
    body = client.get("/anomalies?limit=5000").json()
    assert body["error"]["message"] == "limit: Input should be less than or equal to 1000"
    assert body["error"]["details"] == [{"loc": ["query", "limit"], "type": "less_than_equal",
                                         "msg": "Input should be less than or equal to 1000"}]


def test_other_methods_are_rejected(client: httpx.Client) -> None:
    r = client.post("/anomalies", json={"limit": 1})
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert client.delete("/anomalies/1").status_code == 405


def test_database_unchanged_by_hostile_requests(
    client: httpx.Client, wpg: psycopg.Connection
) -> None:
    seed.seed_anomalies(wpg)
    seed.seed_batch_tables(wpg)
    seed.seed_stream(wpg)
    before = fingerprint(wpg)
    for path, _ in BAD_REQUESTS:
        assert client.get(path).status_code < 500
    # well-formed but hostile values that are accepted (they only ever reach bound parameters)
    for path in ("/anomalies?anomaly_type=x_DROP_TABLE_anomalies", "/anomalies?min_score=-1e308",
                 "/metrics/daily/0001-01-01", "/items/popular/9999-12-31?limit=500",
                 "/anomalies/-9223372036854775808"):
        assert client.get(path).status_code in (200, 404)
    assert fingerprint(wpg) == before
    assert before["anomalies"][0] == 45


def test_api_role_cannot_write(api_settings, live_api) -> None:  # type: ignore[no-untyped-def]
    """Defence in depth: even a query that slipped through would run read-only."""
    from clickguard import db

    with db.connect(api_settings, "reader", autocommit=True) as conn, pytest.raises(
        psycopg.errors.ReadOnlySqlTransaction
    ):
        conn.execute("DELETE FROM anomalies")


@pytest.fixture(scope="module")
def auth_api(make_server):  # type: ignore[no-untyped-def]
    return make_server(api_key="s3cret-key", api_cache_ttl_s=5.0)


@pytest.mark.parametrize("path", ["/stats", "/anomalies?limit=3", "/metrics/summary", "/metrics",
                                  "/dlq", "/metrics/daily/2024-03-10"])
def test_auth_on_rejects_missing_and_wrong_keys(auth_api, path: str) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=auth_api.url, timeout=10) as c:
        ok = c.get(path, headers={"X-API-Key": "s3cret-key"})
        assert ok.status_code in (200, 404)
        # the URL is now warm in the cache: the key must still be checked
        missing = c.get(path)
        assert missing.status_code == 401
        assert missing.json() == {"error": {"code": "unauthorized",
                                            "message": "missing X-API-Key header",
                                            "details": None}}
        wrong = c.get(path, headers={"X-API-Key": "s3cret-kez"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"] == "invalid X-API-Key"


def test_auth_on_keeps_health_and_docs_open(auth_api) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=auth_api.url, timeout=10) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        doc = c.get("/openapi.json").json()
        assert doc["components"]["securitySchemes"]["APIKeyHeader"] == {
            "type": "apiKey", "in": "header", "name": "X-API-Key",
            "description": "Required when settings.api_key is set"}
