"""Contract: every endpoint against real PostgreSQL rows; values checked by direct SQL on the base
tables (not on the API's pre-aggregates, so the 0004 triggers are checked too)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from clickguard import ledger
from tests.integration.api import seed
from tests.integration.api.conftest import free_port

pytestmark = pytest.mark.integration


def iso(ts: dt.datetime) -> str:
    """The API's datetime format: ISO 8601 in UTC with 'Z'."""
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def rows(conn: psycopg.Connection, sql: str, params: Any = None) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


@pytest.fixture
def seeded(wpg: psycopg.Connection) -> psycopg.Connection:
    seed.seed_anomalies(wpg)
    seed.seed_batch_tables(wpg)
    seed.seed_stream(wpg)
    return wpg


def test_health(client: httpx.Client, wpg: psycopg.Connection) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "healthy", "database": "connected", "version": "1.0.0",
        "stream": {  # no supervisor heartbeat in this database
            "state": "unknown", "last_error": None, "last_error_at": None,
            "consecutive_failures": 0,
            "last_batch_id": None, "since": None,
        },
    }


def test_stats(client: httpx.Client, seeded: psycopg.Connection) -> None:
    total, last = rows(seeded, "SELECT count(*), max(detected_at) FROM anomalies")[0]
    days, last_day = rows(seeded, "SELECT count(*), max(metric_date) FROM daily_metrics")[0]
    items = rows(seeded, "SELECT count(*) FROM popular_items")[0][0]
    r = client.get("/stats")
    assert r.status_code == 200
    assert r.json() == {
        "total_anomalies": total, "days_processed": days, "total_popular_items": items,
        "last_anomaly_detected": iso(last), "last_metrics_date": last_day.isoformat(),
    }
    assert (total, days, items) == (45, 20, 600)


def test_stats_on_empty_database(client: httpx.Client, wpg: psycopg.Connection) -> None:
    assert client.get("/stats").json() == {
        "total_anomalies": 0, "days_processed": 0, "total_popular_items": 0,
        "last_anomaly_detected": None, "last_metrics_date": None,
    }


ANOMALY_SQL = """
SELECT id, session_id, detected_at, window_start, window_end, click_count, unique_items,
       anomaly_score, anomaly_type FROM anomalies {where}
ORDER BY detected_at DESC, id DESC LIMIT {limit}
"""


def as_api(r: tuple) -> dict[str, Any]:
    keys = ("id", "session_id", "detected_at", "window_start", "window_end", "click_count",
            "unique_items", "anomaly_score", "anomaly_type")
    out = dict(zip(keys, r, strict=True))
    for k in ("detected_at", "window_start", "window_end"):
        out[k] = iso(out[k])
    return out


@pytest.mark.parametrize(
    ("query", "where", "limit"),
    [
        ("", "", 100),
        ("?limit=7", "", 7),
        ("?anomaly_type=BOT_LIKE", "WHERE anomaly_type = 'BOT_LIKE'", 100),
        ("?min_score=3.05", "WHERE anomaly_score >= 3.05", 100),
        ("?anomaly_type=HIGH_FREQUENCY&min_score=2&limit=5",
         "WHERE anomaly_type = 'HIGH_FREQUENCY' AND anomaly_score >= 2", 5),
        ("?anomaly_type=NO_SUCH_RULE", "WHERE false", 100),
    ],
)
def test_anomalies_list(
    client: httpx.Client, seeded: psycopg.Connection, query: str, where: str, limit: int
) -> None:
    expected = [as_api(r) for r in rows(seeded, ANOMALY_SQL.format(where=where, limit=limit))]
    r = client.get(f"/anomalies{query}")
    assert r.status_code == 200
    assert r.json() == expected
    if "NO_SUCH" not in query:
        assert len(expected) > 0


def test_anomalies_time_range(client: httpx.Client, seeded: psycopg.Connection) -> None:
    """since/until bound detected_at to [since, until), with the original's filters too."""
    (t1,), (t2,) = rows(seeded, "SELECT detected_at FROM anomalies ORDER BY detected_at DESC"
                                " OFFSET 5 LIMIT 2")[::-1]  # t1 < t2, real detection times
    bounds = {"since": t1, "until": t2}
    cases = [
        ({"since": iso(t1)}, "WHERE detected_at >= %(since)s"),
        ({"until": iso(t2)}, "WHERE detected_at < %(until)s"),
        ({"since": iso(t1), "until": iso(t2)},
         "WHERE detected_at >= %(since)s AND detected_at < %(until)s"),
        # the same instant with another offset, and without one (= UTC)
        ({"since": t1.astimezone(dt.timezone(dt.timedelta(hours=9))).isoformat()},
         "WHERE detected_at >= %(since)s"),
        ({"until": t2.astimezone(dt.UTC).replace(tzinfo=None).isoformat()},
         "WHERE detected_at < %(until)s"),
        ({"until": iso(t2), "anomaly_type": "HIGH_FREQUENCY", "min_score": 2, "limit": 7},
         "WHERE detected_at < %(until)s AND anomaly_type = 'HIGH_FREQUENCY'"
         " AND anomaly_score >= 2"),
    ]
    for params, where in cases:
        limit = params.get("limit", 100)
        expected = [as_api(r) for r in rows(seeded, ANOMALY_SQL.format(where=where, limit=limit),
                                            bounds)]
        r = client.get("/anomalies", params=params)
        assert r.status_code == 200, r.text
        assert r.json() == expected, params
        assert 0 < len(expected) < 45
    # [since, until): the row detected at t1 is in, the one at t2 is out
    (only,) = client.get("/anomalies", params={"since": iso(t1), "until": iso(t2)}).json()
    assert only["detected_at"] == iso(t1)
    assert client.get("/anomalies", params={"since": iso(t2), "until": iso(t2)}).json() == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2024-03-10T12:00:00Z", "until": "2024-03-10T11:00:00Z"},
         "since must not be after until"),
        ({"since": "yesterday"},
         "since: Value error, expected an ISO 8601 datetime like 2024-03-10T12:00:00Z"),
        ({"until": "1710000000"},  # a Unix time is not ISO 8601
         "until: Value error, expected an ISO 8601 datetime like 2024-03-10T12:00:00Z"),
    ],
)
def test_anomalies_bad_time_range_is_422(
    client: httpx.Client, seeded: psycopg.Connection, params: dict[str, str], message: str
) -> None:
    r = client.get("/anomalies", params=params)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["message"] == message


def test_anomalies_types(client: httpx.Client, seeded: psycopg.Connection) -> None:
    expected = [
        {"anomaly_type": t, "count": n, "avg_score": pytest.approx(avg), "last_detected": iso(ld)}
        for t, n, avg, ld in rows(seeded, """
            SELECT anomaly_type, count(*), avg(anomaly_score), max(detected_at) FROM anomalies
            GROUP BY anomaly_type ORDER BY count(*) DESC, anomaly_type""")
    ]
    r = client.get("/anomalies/types")
    assert r.status_code == 200
    assert r.json() == expected
    assert [e["anomaly_type"] for e in expected] == ["HIGH_FREQUENCY", "BOT_LIKE", "TRAFFIC_SPIKE"]


@pytest.mark.parametrize("hours", [1, 6, 24, 168])
def test_anomalies_timeline(client: httpx.Client, seeded: psycopg.Connection, hours: int) -> None:
    expected = [
        {"hour": iso(h), "anomaly_count": n, "unique_sessions": s, "avg_score": pytest.approx(a)}
        for h, n, s, a in rows(seeded, """
            SELECT date_trunc('hour', detected_at, 'UTC'), count(*), count(DISTINCT session_id),
                   avg(anomaly_score)
            FROM anomalies
            WHERE detected_at >= date_trunc('hour', now(), 'UTC') - make_interval(hours => %s - 1)
            GROUP BY 1 ORDER BY 1 DESC""", (hours,))
    ]
    r = client.get(f"/anomalies/timeline?hours={hours}")
    assert r.status_code == 200
    assert r.json() == expected
    if hours == 168:
        assert sum(e["anomaly_count"] for e in expected) == 45
        # some hour holds two anomalies of one session: distinct sessions < count
        assert any(e["unique_sessions"] < e["anomaly_count"] for e in expected)


@pytest.mark.parametrize("minutes", [1, 60, 1440])
def test_anomalies_per_minute(client: httpx.Client, seeded: psycopg.Connection,
                              minutes: int) -> None:
    # two more of one type and one of another in the current minute: counts, not rows
    if dt.datetime.now(dt.UTC).second >= 55:  # keep insert and request in one minute
        time.sleep(61 - dt.datetime.now(dt.UTC).second)
    seeded.execute("""
        INSERT INTO anomalies (anomaly_type, entity, session_id, window_start, window_end,
            detected_at, updated_at, click_count, unique_items, anomaly_score, observed, threshold)
        SELECT t, 'session-' || s, s, now() - interval '10 seconds', now(), now(), now(),
               60, 2, 1.5, 60, 50
        FROM (VALUES ('HIGH_FREQUENCY', 9001), ('HIGH_FREQUENCY', 9002), ('BOT_LIKE', 9003))
             AS v(t, s)""")
    expected = [
        {"minute": iso(m), "anomaly_type": t, "anomaly_count": n}
        for m, t, n in rows(seeded, """
            SELECT date_trunc('minute', detected_at, 'UTC'), anomaly_type, count(*)
            FROM anomalies
            WHERE detected_at >= date_trunc('minute', now(), 'UTC')
                                 - make_interval(mins => %s - 1)
            GROUP BY 1, 2 ORDER BY 1 DESC, 2""", (minutes,))
    ]
    r = client.get(f"/anomalies/per-minute?minutes={minutes}")
    assert r.status_code == 200
    assert r.json() == expected
    assert expected[0]["anomaly_count"] == 1 and expected[1]["anomaly_count"] == 2  # BOT, HF
    total = sum(e["anomaly_count"] for e in expected)
    assert total == {1: 3, 60: 3 + 2, 1440: 3 + 40}[minutes]  # seeded: 20, 40, … min ago


def test_anomalies_timeline_default_is_24_hours(
    client: httpx.Client, seeded: psycopg.Connection
) -> None:
    assert client.get("/anomalies/timeline").json() == client.get(
        "/anomalies/timeline?hours=24").json()


def test_anomalies_by_session(client: httpx.Client, seeded: psycopg.Connection) -> None:
    expected = [as_api(r) for r in rows(
        seeded, ANOMALY_SQL.format(where="WHERE session_id = 1002", limit=1000))]
    r = client.get("/anomalies/1002")
    assert r.status_code == 200
    assert r.json() == expected and len(expected) >= 2
    assert client.get("/anomalies/424242").json() == []


def daily_row(r: tuple) -> dict[str, Any]:
    keys = ("metric_date", "total_clicks", "total_purchases", "unique_sessions", "unique_items",
            "conversion_rate", "avg_session_duration_sec", "avg_clicks_per_session",
            "total_revenue", "avg_order_value")
    out = dict(zip(keys, r, strict=True))
    out["metric_date"] = out["metric_date"].isoformat()
    out["total_revenue"] = float(out["total_revenue"])
    out["avg_order_value"] = float(out["avg_order_value"])
    return out


DAILY_SQL = """
SELECT metric_date, total_clicks, total_purchases, unique_sessions, unique_items, conversion_rate,
       avg_session_duration_sec, avg_clicks_per_session, total_revenue, avg_order_value
FROM daily_metrics {where} ORDER BY metric_date
"""


def test_metrics_daily_range_and_day(client: httpx.Client, seeded: psycopg.Connection) -> None:
    expected = [daily_row(r) for r in rows(seeded, DAILY_SQL.format(
        where="WHERE metric_date BETWEEN '2024-03-01' AND '2024-03-05'"))]
    r = client.get("/metrics/daily", params={"start_date": "2024-03-01", "end_date": "2024-03-05"})
    assert r.status_code == 200
    assert r.json() == expected and len(expected) == 5
    one = client.get("/metrics/daily/2024-03-10")
    assert one.status_code == 200
    assert one.json() == daily_row(rows(seeded, DAILY_SQL.format(
        where="WHERE metric_date = '2024-03-10'"))[0])


def test_metrics_daily_missing_day_is_404(client: httpx.Client, seeded: psycopg.Connection) -> None:
    r = client.get("/metrics/daily/2023-01-01")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found",
                                  "message": "no daily metrics for 2023-01-01", "details": None}}


def test_metrics_daily_range_validation(client: httpx.Client, wpg: psycopg.Connection) -> None:
    back = client.get("/metrics/daily", params={"start_date": "2024-03-05",
                                                "end_date": "2024-03-01"})
    assert back.status_code == 422
    assert back.json()["error"]["message"] == "end_date must not be before start_date"
    wide = client.get("/metrics/daily", params={"start_date": "2020-01-01",
                                                "end_date": "2024-01-01"})
    assert wide.status_code == 422
    assert wide.json()["error"]["message"] == "date range of 1462 days exceeds 366 days"
    missing = client.get("/metrics/daily", params={"start_date": "2024-03-05"})
    assert missing.status_code == 422
    assert missing.json()["error"]["message"] == "end_date: Field required"


def test_metrics_funnel(client: httpx.Client, seeded: psycopg.Connection) -> None:
    expected = [
        {"funnel_stage": s, "session_count": n, "percentage": p, "drop_rate": d}
        for s, n, p, d in rows(seeded, """
            SELECT funnel_stage, session_count, percentage, drop_rate FROM session_funnel
            WHERE metric_date = '2024-03-10' ORDER BY stage_order""")
    ]
    assert client.get("/metrics/funnel/2024-03-10").json() == expected
    assert [e["funnel_stage"] for e in expected] == ["view", "click", "cart", "purchase"]
    assert client.get("/metrics/funnel/2024-03-09").json() == []


@pytest.mark.parametrize("days", [1, 7, 90])
def test_metrics_summary(client: httpx.Client, seeded: psycopg.Connection, days: int) -> None:
    (n, clicks, purchases, sessions, conv, revenue, cps), = rows(seeded, """
        SELECT count(*), sum(total_clicks), sum(total_purchases), sum(unique_sessions),
               avg(conversion_rate), sum(total_revenue), avg(avg_clicks_per_session)
        FROM daily_metrics WHERE metric_date > DATE '2024-03-10' - %s""", (days,))
    r = client.get(f"/metrics/summary?days={days}")
    assert r.status_code == 200
    assert r.json() == {
        "days_processed": n, "total_clicks": clicks, "total_purchases": purchases,
        "total_sessions": sessions, "avg_conversion_rate": pytest.approx(conv),
        "total_revenue": pytest.approx(float(revenue)),
        "avg_clicks_per_session": pytest.approx(cps),
    }
    assert n == min(days, 20)
    if days == 7:
        assert client.get("/metrics/summary").json() == r.json()


def test_items_popular_and_categories(client: httpx.Client, seeded: psycopg.Connection) -> None:
    expected = [
        {"item_id": i, "category": c, "click_count": n, "purchase_count": p,
         "revenue": float(rev), "rank": rank, "click_to_purchase_ratio": pytest.approx(ratio)}
        for i, c, n, p, rev, rank, ratio in rows(seeded, """
            SELECT item_id, category, click_count, purchase_count, revenue, rank,
                   click_to_purchase_ratio
            FROM popular_items WHERE metric_date = '2024-03-10' ORDER BY rank LIMIT 12""")
    ]
    assert client.get("/items/popular/2024-03-10?limit=12").json() == expected
    assert len(client.get("/items/popular/2024-03-10").json()) == 30  # default 50, 30 stored
    cats = [
        {"category": c, "click_count": n, "purchase_count": p, "unique_items": u,
         "revenue": float(rev), "rank": rank}
        for c, n, p, u, rev, rank in rows(seeded, """
            SELECT category, click_count, purchase_count, unique_items, revenue, rank
            FROM popular_categories WHERE metric_date = '2024-03-10' ORDER BY rank""")
    ]
    assert client.get("/items/categories/2024-03-10").json() == cats
    assert client.get("/items/categories/2024-03-10?limit=2").json() == cats[:2]
    assert client.get("/items/popular/2020-01-01").json() == []


@pytest.mark.parametrize(("days", "limit"), [(7, 20), (3, 5), (10, 100)])
def test_items_trending(
    client: httpx.Client, seeded: psycopg.Connection, days: int, limit: int
) -> None:
    """Recomputed in Python from the raw popular_items rows, with the documented definition."""
    recent: dict[int, int] = {}
    previous: dict[int, int] = {}
    category: dict[int, tuple[dt.date, str | None]] = {}
    anchor = seed.ANCHOR
    for day, item, cat, clicks in rows(
        seeded, "SELECT metric_date, item_id, category, click_count FROM popular_items"
    ):
        age = (anchor - day).days
        if age < days:
            recent[item] = recent.get(item, 0) + clicks
        elif age < 2 * days:
            previous[item] = previous.get(item, 0) + clicks
        else:
            continue
        if item not in category or category[item][0] < day:
            category[item] = (day, cat)
    growth = {
        i: (recent[i] - previous.get(i, 0)) / max(previous.get(i, 0), 1) for i in recent
    }
    order = sorted(recent, key=lambda i: (-growth[i], -recent[i], i))[:limit]
    expected = [
        {"item_id": i, "category": category[i][1], "recent_clicks": recent[i],
         "previous_clicks": previous.get(i, 0), "growth": pytest.approx(growth[i]), "rank": k}
        for k, i in enumerate(order, start=1)
    ]
    r = client.get(f"/items/trending?days={days}&limit={limit}")
    assert r.status_code == 200
    assert r.json() == expected
    assert growth[order[0]] > 0  # odd items grow in the seed


def test_dlq(client: httpx.Client, seeded: psycopg.Connection) -> None:
    by_reason = [{"reason": r, "count": n} for r, n in rows(seeded, """
        SELECT reason, count(*) FROM dlq_events WHERE detected_at >= now() - interval '60 minutes'
        GROUP BY reason ORDER BY count(*) DESC, reason""")]
    recent_ids = [r[0] for r in rows(seeded, """
        SELECT id FROM dlq_events WHERE detected_at >= now() - interval '60 minutes'
        ORDER BY detected_at DESC, id DESC LIMIT 3""")]
    r = client.get("/dlq?limit=3")
    assert r.status_code == 200
    body = r.json()
    assert body["window_minutes"] == 60
    assert body["by_reason"] == by_reason
    assert body["total"] == sum(b["count"] for b in by_reason) == 8  # i*7 min < 60: i = 1..8
    assert [x["id"] for x in body["recent"]] == recent_ids
    first = body["recent"][0]
    assert set(first) == {"id", "source_topic", "source_partition", "source_offset", "reason",
                          "detail", "event_id", "kafka_ts", "detected_at", "replayed_at"}
    assert (first["source_offset"], first["detail"], first["event_id"]) == (1, "detail 1", None)
    assert client.get("/dlq?minutes=1440&limit=500").json()["total"] == 30
    assert body["bucket_minutes"] is None and body["over_time"] is None  # only when asked


@pytest.mark.parametrize("bucket", [5, 60])
def test_dlq_over_time_counts_every_record_of_the_window(
    client: httpx.Client, seeded: psycopg.Connection, bucket: int
) -> None:
    """``over_time`` counts all records (not the ``limit`` newest) per bucket counted from
    midnight UTC and reason, oldest bucket first."""
    origin, width = dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.timedelta(minutes=bucket)
    expected: dict[tuple[str, str], int] = {}
    for detected_at, reason in rows(seeded, """
            SELECT detected_at, reason FROM dlq_events
            WHERE detected_at >= now() - interval '1440 minutes'"""):
        start = origin + (detected_at - origin) // width * width
        key = (start.isoformat().replace("+00:00", "Z"), reason)
        expected[key] = expected.get(key, 0) + 1
    r = client.get(f"/dlq?minutes=1440&limit=1&bucket_minutes={bucket}")
    assert r.status_code == 200
    body = r.json()
    assert body["bucket_minutes"] == bucket and len(body["recent"]) == 1
    got = [(dt.datetime.fromisoformat(b["bucket"]).astimezone(dt.UTC), b["reason"], b["count"])
           for b in body["over_time"]]
    assert [(t.isoformat().replace("+00:00", "Z"), reason, n) for t, reason, n in got] == [
        (t, reason, n) for (t, reason), n in sorted(expected.items())]
    assert sum(n for *_, n in got) == body["total"] == 30
    # by_reason, summed from the buckets here, is what the one-query path counts
    assert body["by_reason"] == client.get("/dlq?minutes=1440&limit=1").json()["by_reason"]


def test_slo(client: httpx.Client, seeded: psycopg.Connection) -> None:
    lat = rows(seeded, """
        SELECT extract(epoch FROM kafka_ts - ingest_ts) * 1000,
               extract(epoch FROM batch_start_ts - kafka_ts) * 1000,
               extract(epoch FROM commit_ts - batch_start_ts) * 1000,
               extract(epoch FROM commit_ts - ingest_ts) * 1000
        FROM events""")
    arr = np.array(lat, dtype=float)
    r = client.get("/slo")
    assert r.status_code == 200
    body = r.json()
    assert (body["window_minutes"], body["samples"]) == (5, 200)
    names = ["produce_to_kafka", "kafka_to_spark", "spark_to_db", "end_to_end"]
    assert [s["stage"] for s in body["stages"]] == names
    for i, stage in enumerate(body["stages"]):
        assert stage["p50_ms"] == pytest.approx(np.percentile(arr[:, i], 50))
        assert stage["p95_ms"] == pytest.approx(np.percentile(arr[:, i], 95))
        assert stage["p99_ms"] == pytest.approx(np.percentile(arr[:, i], 99))
        assert stage["max_ms"] == pytest.approx(arr[:, i].max())
    # a LIMIT takes the newest events by commit_ts
    small = client.get("/slo?limit=10").json()
    assert small["samples"] == 10
    assert small["stages"][3]["max_ms"] == pytest.approx(np.sort(arr[:, 3])[:10].max())


def test_slo_without_events(client: httpx.Client, wpg: psycopg.Connection) -> None:
    body = client.get("/slo").json()
    assert body["samples"] == 0
    assert all(s["p50_ms"] is None and s["p99_ms"] is None for s in body["stages"])


def test_stream(client: httpx.Client, seeded: psycopg.Connection) -> None:
    r = client.get("/stream")
    assert r.status_code == 200
    body = r.json()
    last = body["last_batch"]
    assert (last["query_id"], last["batch_id"], last["input_rows"], last["stored"]) == (
        "q", 4, 400, 360)
    assert body["batches_last_minute"] == 2
    assert body["events_per_sec"] == pytest.approx((300 + 400) / 60)
    (beat,) = body["heartbeats"]
    assert beat["component"] == "job" and beat["status"] == "running"
    assert 3 <= beat["age_sec"] < 30


def test_a_new_stream_rates_over_the_time_since_its_first_rows(
    client: httpx.Client, wpg: psycopg.Connection
) -> None:
    """A new stream's first minute is not divided by 60 s: 1,000 events/s read 66 at 5 s."""
    insert = (
        "INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows,"
        " stored, dlq, late, duplicates, anomalies, duration_ms)"
        " VALUES ('q', %s, now() - make_interval(secs => %s), now() - make_interval(secs => %s),"
        " %s, 0, 0, 0, 0, 0, 10)"
    )
    assert client.get("/stream").json()["events_per_sec"] == 0.0  # no batch yet
    wpg.execute(insert, (9, 50, 49, 0))  # the query's empty first batch, as `stack up` leaves it
    assert client.get("/stream").json()["events_per_sec"] == 0.0
    wpg.execute(insert, (10, 1.5, 1, 900))  # the first batch with rows: at least 5 s
    assert client.get("/stream").json()["events_per_sec"] == pytest.approx(900 / 5)
    wpg.execute(insert, (11, 20, 19.5, 500))  # now the first batch with rows started 20 s ago
    body = client.get("/stream").json()
    assert body["events_per_sec"] == pytest.approx(1400 / 20, rel=0.02)
    assert body["batches_last_minute"] == 3
    metric = next(line for line in client.get("/metrics").text.splitlines()
                  if line.startswith("clickguard_stream_events_per_second "))
    assert float(metric.split()[1]) == pytest.approx(1400 / 20, rel=0.02)
    assert ledger.events_per_second(wpg) == pytest.approx(1400 / 20, rel=0.02)
    assert ledger.events_per_second(wpg, 10) == pytest.approx(900 / 10)  # the window is shorter
    wpg.execute(insert, (12, 301, 300, 60_000))  # traffic older than the window: the window
    assert client.get("/stream").json()["events_per_sec"] == pytest.approx(1400 / 60)


LEASE = """
INSERT INTO stream_lease (name, holder, holder_backend, epoch, acquired_at, renewed_at, expires_at)
VALUES (%s, %s, 1, %s, now() - %s::interval, now() - %s::interval, now() + %s::interval)
RETURNING acquired_at, expires_at
"""


def test_stream_active_driver(client: httpx.Client, seeded: psycopg.Connection) -> None:
    """The lease holder, else the newest batch's driver; with the epoch and since-when."""
    seeded.execute("TRUNCATE stream_lease")
    try:
        # ledger rows from before migration 0008 name no driver, and no lease is held
        assert client.get("/stream").json()["active_driver"] is None

        seeded.execute("UPDATE batch_ledger SET driver = 'd0:100@h', driver_epoch = 1")
        body = client.get("/stream").json()
        (newest,) = rows(seeded, "SELECT max(committed_at) FROM batch_ledger")[0]
        assert body["active_driver"] == {
            "driver": "d0:100@h", "epoch": 1, "source": "ledger", "since": None,
            "lease_expires_at": None, "last_commit_at": iso(newest),
        }
        assert (body["last_batch"]["driver"], body["last_batch"]["driver_epoch"]) == (
            "d0:100@h", 1)

        # a standby took over (epoch 2) and has committed nothing yet; a stale lease of an
        # older checkpoint (expired a day ago) must not win
        seeded.execute(LEASE, ("/old/checkpoint", "d9:9@old", 7, "2 days", "1 day", "-1 day"))
        acquired, expires = seeded.execute(
            LEASE, ("/ckpt", "d1:200@h", 2, "3 seconds", "0 seconds", "10 seconds")).fetchone()
        expected = {"driver": "d1:200@h", "epoch": 2, "source": "lease",
                    "since": iso(acquired), "lease_expires_at": iso(expires),
                    "last_commit_at": None}
        assert client.get("/stream").json()["active_driver"] == expected

        (committed,) = seeded.execute(
            "INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows,"
            " stored, dlq, late, duplicates, anomalies, duration_ms, driver, driver_epoch)"
            " VALUES ('q', 5, now(), now(), 1, 1, 0, 0, 0, 0, 10, 'd1:200@h', 2)"
            " RETURNING committed_at").fetchone()
        body = client.get("/stream").json()
        assert body["active_driver"] == dict(expected, last_commit_at=iso(committed))
        assert body["last_batch"]["batch_id"] == 5

        # released on a clean stop: the ledger's newest batch names the driver again
        seeded.execute("UPDATE stream_lease SET holder = NULL")
        assert client.get("/stream").json()["active_driver"] == {
            "driver": "d1:200@h", "epoch": 2, "source": "ledger", "since": None,
            "lease_expires_at": None, "last_commit_at": iso(committed)}
    finally:
        seeded.execute("TRUNCATE stream_lease")


def test_prometheus_metrics(client: httpx.Client, seeded: psycopg.Connection) -> None:
    client.get("/stats")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    counts = dict(rows(seeded, "SELECT anomaly_type, count(*) FROM anomalies GROUP BY 1"))
    for t, n in counts.items():
        assert f'clickguard_anomalies{{anomaly_type="{t}"}} {n}' in lines
    assert "clickguard_database_up 1" in lines
    assert "# TYPE clickguard_api_requests_total counter" in lines
    assert any(ln.startswith("clickguard_api_requests_total{") and 'route="/stats"' in ln
               and 'status="200"' in ln for ln in lines)
    assert any(ln.startswith('clickguard_stream_heartbeat_age_seconds{component="job"}')
               for ln in lines)


def test_openapi_documents_every_endpoint(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    paths = set(doc["paths"])
    assert paths >= {
        "/health", "/stats", "/anomalies", "/anomalies/types", "/anomalies/timeline",
        "/anomalies/per-minute", "/anomalies/{session_id}", "/metrics/daily",
        "/metrics/daily/{date}",
        "/metrics/funnel/{date}", "/metrics/summary", "/items/popular/{date}",
        "/items/categories/{date}", "/items/trending", "/dlq", "/slo", "/stream", "/metrics",
    }
    anomalies = doc["paths"]["/anomalies"]["get"]
    params = {p["name"]: p["schema"] for p in anomalies["parameters"]}
    assert params["limit"]["minimum"] == 1 and params["limit"]["maximum"] == 1000
    assert params["limit"]["default"] == 100
    assert anomalies["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"}
    assert client.get("/docs").status_code == 200


def test_stream_lag_is_null_with_a_reason_when_kafka_is_unreachable(
    make_server, wpg: psycopg.Connection  # type: ignore[no-untyped-def]
) -> None:
    seed.seed_stream(wpg, ledger_offsets={"0": [0, 9]})
    server = make_server(kafka_bootstrap=f"127.0.0.1:{free_port()}", api_lag_timeout_s=0.5)
    t0 = time.monotonic()
    lag = httpx.get(f"{server.url}/stream", timeout=10).json()["consumer_lag"]
    assert time.monotonic() - t0 < 3  # bounded by the probe timeout
    assert lag["total"] is None and lag["by_partition"] == {}
    assert lag["error"].startswith("Kafka ")


def test_stream_lag_without_ledger_offsets(client: httpx.Client, wpg: psycopg.Connection) -> None:
    seed.seed_stream(wpg, ledger_offsets={})
    lag = client.get("/stream").json()["consumer_lag"]
    assert lag == {"total": None, "by_partition": {}, "error": "no ledger offsets for "
                   "km.events.raw.v1"}
