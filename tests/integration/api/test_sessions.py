"""GET /sessions/{session_id} and GET /batch/freshness (the dashboard's drill-down and the batch
assets' last computation) against real rows; values checked by direct SQL on the base tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.api import seed

pytestmark = pytest.mark.integration


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


SESSION_EVENTS = """
INSERT INTO events (event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts, source,
    session_id, event_type, item_id, category, price, quantity, kafka_partition, kafka_offset,
    batch_id)
SELECT 's-' || i, t, t, t, t, t + interval '1 second', 'test', 1002,
       CASE WHEN i %% 10 = 0 THEN 'purchase' ELSE 'click' END, 500 + i %% 4,
       CASE WHEN i %% 3 = 0 THEN NULL ELSE 'cat-' || i %% 3 END,
       CASE WHEN i %% 10 = 0 THEN 9.99 END, CASE WHEN i %% 10 = 0 THEN 2 END, 0, 1000 + i, 1
FROM generate_series(1, 30) AS i,
     LATERAL (SELECT now() - make_interval(secs => 300 - i) AS t) AS ts
"""


@pytest.fixture
def session_rows(wpg: psycopg.Connection) -> psycopg.Connection:
    seed.seed_anomalies(wpg)
    seed.seed_stream(wpg)  # events of sessions 0–9: must not show up for 1002
    wpg.execute(SESSION_EVENTS, {})
    return wpg


def test_session_detail_lists_newest_events_and_evidence(
    client: httpx.Client, session_rows: psycopg.Connection
) -> None:
    r = client.get("/sessions/1002?limit=7")
    assert r.status_code == 200
    body = r.json()
    assert body["session_id"] == 1002
    ev = session_rows.execute(
        "SELECT event_id, event_ts, event_type, item_id, category, price, quantity, commit_ts"
        " FROM events WHERE session_id = 1002 ORDER BY event_ts DESC LIMIT 7"
    ).fetchall()
    assert [e["event_id"] for e in body["events"]] == [r[0] for r in ev] == [
        f"s-{i}" for i in range(30, 23, -1)
    ]
    first = body["events"][0]
    assert first == {
        "event_id": "s-30", "event_ts": iso(ev[0][1]), "event_type": "purchase", "item_id": 502,
        "category": None, "price": 9.99, "quantity": 2, "page": None, "source": "test",
        "commit_ts": iso(ev[0][7]),
    }
    an = session_rows.execute(
        "SELECT id, anomaly_type, click_count, unique_items, anomaly_score, observed, threshold"
        " FROM anomalies WHERE session_id = 1002 ORDER BY detected_at DESC, id DESC"
    ).fetchall()
    assert len(an) >= 2
    got = [(a["id"], a["anomaly_type"], a["click_count"], a["unique_items"],
            a["anomaly_score"], a["observed"], a["threshold"]) for a in body["anomalies"]]
    assert got == [tuple(a) for a in an]
    assert all(isinstance(a["details"], dict) for a in body["anomalies"])


def test_session_detail_of_an_unknown_session_is_empty(
    client: httpx.Client, session_rows: psycopg.Connection
) -> None:
    r = client.get("/sessions/424242")
    assert r.status_code == 200
    assert r.json() == {"session_id": 424242, "events": [], "anomalies": []}


@pytest.mark.parametrize(
    "path", ["/sessions/x", "/sessions/1?limit=0", "/sessions/1?limit=501",
             "/sessions/99999999999999999999", "/batch/freshness?date=0"],
)
def test_bad_parameters_are_422(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


def test_batch_freshness(client: httpx.Client, wpg: psycopg.Connection) -> None:
    wpg.execute("DELETE FROM asset_day_watermarks")
    assert client.get("/batch/freshness").json() == []
    wpg.execute(
        """
        INSERT INTO asset_day_watermarks (asset_key, day, source_rows, output_rows, computed_at,
            run_id)
        VALUES ('daily_metrics', '2024-03-09', 10, 1, now() - interval '2 hours', 'run-a'),
               ('daily_metrics', '2024-03-10', 10, 1, now() - interval '1 hour', 'run-b'),
               ('popular_items', '2024-03-10', 10, 30, now() - interval '3 hours', 'run-c')
        """
    )
    try:
        times: dict[tuple[str, str], Any] = {
            (k, d.isoformat()): t for k, d, t in wpg.execute(
                "SELECT asset_key, day, computed_at FROM asset_day_watermarks").fetchall()
        }
        r = client.get("/batch/freshness?date=2024-03-09")
        assert r.status_code == 200
        assert r.json() == [
            {"asset_key": "daily_metrics",
             "last_computed_at": iso(times[("daily_metrics", "2024-03-10")]),
             "last_run_id": "run-b", "days_computed": 2, "newest_day": "2024-03-10",
             "day_computed_at": iso(times[("daily_metrics", "2024-03-09")])},
            {"asset_key": "popular_items",
             "last_computed_at": iso(times[("popular_items", "2024-03-10")]),
             "last_run_id": "run-c", "days_computed": 1, "newest_day": "2024-03-10",
             "day_computed_at": None},
        ]
        assert [a["day_computed_at"] for a in client.get("/batch/freshness").json()] == [
            None, None]
    finally:
        wpg.execute("DELETE FROM asset_day_watermarks")
