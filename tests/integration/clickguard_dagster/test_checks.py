"""Each asset check fails when its condition is broken on purpose, and passes otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from clickguard import db
from clickguard.settings import Settings
from clickguard_dagster.assets.sessions import SESSIONS, compute_sessions
from clickguard_dagster.checks.idempotency import check_idempotent
from clickguard_dagster.checks.keys import check_session_keys
from clickguard_dagster.checks.quality import check_metrics_quality, check_sessions_quality
from clickguard_dagster.definitions import ASSET_CHECKS, BATCH_ASSETS
from tests.integration.clickguard_dagster.conftest import (
    DAYS,
    STATE_TABLES,
    insert_events,
    make_events,
)

pytestmark = pytest.mark.integration
BATCH_CHECKS = [c for c in ASSET_CHECKS if "stream_events" not in str(c.check_keys)]


@pytest.fixture(scope="module")
def materialized(stack: Any, settings: Settings, resources: dict) -> Iterator[psycopg.Connection]:
    """Events of 4 days, every batch asset materialized once (checks not run here)."""
    with db.connect(settings, "writer", autocommit=True) as conn:
        for table in STATE_TABLES:
            conn.execute(f"DELETE FROM {table}")
        insert_events(conn, make_events(sessions_per_day=25, seed=11))
        result = dg.materialize(BATCH_ASSETS, resources=resources)
        assert result.success
        yield conn


def one_session(conn: psycopg.Connection) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT session_id, session_start, session_day FROM daily_sessions"
        " WHERE events >= 2 ORDER BY session_day, session_id, session_start LIMIT 1"
    ).fetchone()


def failed_types(result: dg.AssetCheckResult) -> list[tuple[str, str]]:
    return [
        (f["expectation"], f["kwargs"].get("column") or f["kwargs"].get("column_A"))
        for f in result.metadata["failed_expectations"].value
    ]


def test_keys_check_catches_duplicate_and_phantom_sessions(
    materialized: psycopg.Connection, resources: dict
) -> None:
    pg, postgres = materialized, resources["postgres"]
    assert check_session_keys(postgres).passed
    sid, start, _ = one_session(pg)
    # a duplicated session: same id, starting 1 s later, overlapping the original
    pg.execute(
        "INSERT INTO daily_sessions SELECT session_id, session_start + interval '1 second',"
        " session_day, session_end, duration_sec, events, clicks, cart_adds, purchases, revenue,"
        " converted, entry_page, exit_page FROM daily_sessions"
        " WHERE session_id = %s AND session_start = %s",
        (sid, start),
    )
    try:
        result = check_session_keys(postgres)
        assert not result.passed
        assert result.metadata["duplicate_sessions"].value == 1
        # the copy claims events that do not exist in its (shorter) range
        assert result.metadata["sessions_with_missing_events"].value == 1
    finally:
        pg.execute(
            "DELETE FROM daily_sessions WHERE session_id = %s"
            " AND session_start = %s + interval '1 second'",
            (sid, start),
        )
    assert check_session_keys(postgres).passed
    # a phantom session: its events do not exist in `events`
    pg.execute(
        "INSERT INTO daily_sessions SELECT 999999, session_start, session_day, session_end,"
        " duration_sec, events, clicks, cart_adds, purchases, revenue, converted, entry_page,"
        " exit_page FROM daily_sessions WHERE session_id = %s AND session_start = %s",
        (sid, start),
    )
    try:
        result = check_session_keys(postgres)
        assert not result.passed
        assert result.metadata["duplicate_sessions"].value == 0
        assert result.metadata["sessions_with_missing_events"].value == 1
        assert result.metadata["missing_event_examples"].value[0]["session_id"] == 999999
    finally:
        pg.execute("DELETE FROM daily_sessions WHERE session_id = 999999")
    assert check_session_keys(postgres).passed


def test_quality_check_reports_failed_expectations(
    materialized: psycopg.Connection, resources: dict
) -> None:
    pg, postgres = materialized, resources["postgres"]
    assert check_sessions_quality(postgres).passed
    assert check_metrics_quality(postgres).passed
    sid, start, day = one_session(pg)
    pg.execute(
        "UPDATE daily_sessions SET duration_sec = -duration_sec - 1"
        " WHERE session_id = %s AND session_start = %s",
        (sid, start),
    )
    pg.execute("UPDATE daily_metrics SET total_clicks = total_clicks + 1 WHERE metric_date = %s",
               (day,))
    try:
        sessions, metrics = check_sessions_quality(postgres), check_metrics_quality(postgres)
        assert not sessions.passed
        assert failed_types(sessions) == [("expect_column_values_to_be_between", "duration_sec")]
        assert sessions.metadata["failed_expectations"].value[0]["unexpected_count"] == 1
        assert not metrics.passed
        assert failed_types(metrics) == [("expect_column_pair_values_to_be_equal", "total_clicks")]
    finally:
        pg.execute(
            "UPDATE daily_sessions SET duration_sec = -(duration_sec + 1)"
            " WHERE session_id = %s AND session_start = %s",
            (sid, start),
        )
        pg.execute(
            "UPDATE daily_metrics SET total_clicks = total_clicks - 1 WHERE metric_date = %s",
            (day,),
        )
    # a missing session breaks the per-day totals against the events table
    row = pg.execute(
        "DELETE FROM daily_sessions WHERE session_id = %s AND session_start = %s RETURNING *",
        (sid, start),
    ).fetchone()
    try:
        result = check_sessions_quality(postgres)
        assert failed_types(result) == [
            ("expect_column_pair_values_to_be_equal", "session_events")
        ]
    finally:
        pg.execute(
            f"INSERT INTO daily_sessions VALUES ({', '.join(['%s'] * len(row))})", row
        )
    assert check_sessions_quality(postgres).passed


def test_idempotency_check_detects_a_changed_row(
    materialized: psycopg.Connection, resources: dict
) -> None:
    pg, postgres = materialized, resources["postgres"]
    spark = resources["spark"]
    ok = check_idempotent(SESSIONS, compute_sessions, spark.spark_session, postgres, 3)
    assert ok.passed
    assert len(ok.metadata["days_checked"].value) == 3
    # the check covers the 3 latest days of the last materialization: tamper with one of them
    day = date.fromisoformat(ok.metadata["days_checked"].value[0])
    sid, start = pg.execute(
        "SELECT session_id, session_start FROM daily_sessions WHERE session_day = %s LIMIT 1",
        (day,),
    ).fetchone()
    pg.execute(
        "UPDATE daily_sessions SET revenue = revenue + 1 WHERE session_id = %s"
        " AND session_start = %s",
        (sid, start),
    )
    try:
        bad = check_idempotent(SESSIONS, compute_sessions, spark.spark_session, postgres, 3)
        assert not bad.passed
        assert bad.metadata["days_differing"].value == [day.isoformat()]
    finally:
        pg.execute(
            "UPDATE daily_sessions SET revenue = revenue - 1 WHERE session_id = %s"
            " AND session_start = %s",
            (sid, start),
        )


def test_blocking_quality_check_stops_downstream_assets(
    materialized: psycopg.Connection, resources: dict
) -> None:
    """A late event with an unknown type fails daily_sessions' blocking data-quality check,
    so daily_metrics and session_funnel are not materialized in that run."""
    pg = materialized
    bad = make_events(days=(DAYS[0],), sessions_per_day=1, seed=5,
                      commit_ts=datetime.now(UTC) + timedelta(seconds=1), id_prefix="bogus")[:1]
    bad = [(*bad[0][:9], "teleport", *bad[0][10:])]
    insert_events(pg, bad)
    try:
        result = dg.materialize(
            [*BATCH_ASSETS, *BATCH_CHECKS], resources=resources,
            selection="daily_sessions*", raise_on_error=False,
        )
        materialized_keys = {
            e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
        }
        assert materialized_keys == {"daily_sessions"}
        evals = {(e.asset_key.to_user_string(), e.check_name): e
                 for e in result.get_asset_check_evaluations()}
        quality = evals[("daily_sessions", "data_quality")]
        assert not quality.passed
        assert ("expect_column_values_to_be_in_set", "event_type") in [
            (f["expectation"], f["kwargs"]["column"])
            for f in quality.metadata["failed_expectations"].value
        ]
        assert evals[("daily_sessions", "keys")].passed
    finally:
        pg.execute("DELETE FROM events WHERE event_id LIKE 'bogus%%'")
