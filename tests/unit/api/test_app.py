"""The app without a database: validation, the error shape, auth, CORS and the OpenAPI document
are decided before any query; /health reports the database as disconnected (503)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from clickguard.settings import Settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_settings(**changes: object) -> Settings:
    return Settings(_env_file=None, pg_port=_closed_port(), api_pool_timeout_s=0.3,
                    api_cache_ttl_s=0, **changes)


@pytest.fixture
def offline() -> Iterator[TestClient]:
    with TestClient(create_app(offline_settings())) as c:
        yield c


def test_health_without_database_is_503(offline: TestClient) -> None:
    r = offline.get("/health")
    assert r.status_code == 503
    assert r.json() == {
        "status": "unhealthy", "database": "disconnected", "version": "1.0.0", "stream": None
    }


def test_queries_without_database_are_503_in_the_error_shape(offline: TestClient) -> None:
    r = offline.get("/stats")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "database_unavailable"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/anomalies?limit=0", "limit: Input should be greater than or equal to 1"),
        ("/anomalies/timeline?hours=169", "hours: Input should be less than or equal to 168"),
        ("/metrics/summary?days=x",
         "days: Input should be a valid integer, unable to parse string as an integer"),
        ("/metrics/daily/0", "date: Value error, expected an ISO date YYYY-MM-DD"),
        ("/items/trending?days=0&limit=500",
         "days: Input should be greater than or equal to 1; "
         "limit: Input should be less than or equal to 100"),
        ("/anomalies?since=0",
         "since: Value error, expected an ISO 8601 datetime like 2024-03-10T12:00:00Z"),
        ("/anomalies?until=2024-03-10",  # a date alone is not a point in time
         "until: Value error, expected an ISO 8601 datetime like 2024-03-10T12:00:00Z"),
        ("/anomalies?since=2024-13-01T00:00:00Z",
         "since: Input should be a valid datetime or date, month value is outside expected "
         "range of 1-12"),
        ("/anomalies?since=2024-03-10T12:00:00Z&until=2024-03-10T11:59:59Z",
         "since must not be after until"),
        # '+01:00' unencoded arrives as ' 01:00' and is read as the offset: 11:00Z > 10:30Z
        ("/anomalies?since=2024-03-10T12:00:00+01:00&until=2024-03-10T10:30:00Z",
         "since must not be after until"),
        ("/anomalies?since=2024-03-10T12:00:00&until=2024-03-10T13:00:00%2B02:00",  # naive = UTC
         "since must not be after until"),
    ],
)
def test_validation_errors(offline: TestClient, path: str, message: str) -> None:
    r = offline.get(path)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["message"] == message


def test_unknown_path_is_404_in_the_error_shape(offline: TestClient) -> None:
    r = offline.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "Not Found", "details": None}}


def test_api_key_is_checked_before_the_database() -> None:
    with TestClient(create_app(offline_settings(api_key="k1"))) as c:
        assert c.get("/stats").status_code == 401
        assert c.get("/stats", headers={"X-API-Key": "nope"}).status_code == 401
        assert c.get("/stats", headers={"X-API-Key": "k1"}).status_code == 503  # past auth
        assert c.get("/health").status_code == 503  # open, only the DB is down
        doc = c.get("/openapi.json").json()
        assert "401" in doc["paths"]["/stats"]["get"]["responses"]
        assert doc["paths"]["/stats"]["get"]["security"] == [{"APIKeyHeader": []}]


def test_without_api_key_openapi_has_no_security(offline: TestClient) -> None:
    doc = offline.get("/openapi.json").json()
    assert "security" not in doc["paths"]["/stats"]["get"]
    assert "401" not in doc["paths"]["/stats"]["get"]["responses"]


def test_cors_from_settings() -> None:
    app = create_app(offline_settings(api_cors_origins=["https://dash.example"]))
    with TestClient(app) as c:
        r = c.options("/stats", headers={"Origin": "https://dash.example",
                                         "Access-Control-Request-Method": "GET"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://dash.example"
        other = c.options("/stats", headers={"Origin": "https://evil.example",
                                             "Access-Control-Request-Method": "GET"})
        assert other.status_code == 400
