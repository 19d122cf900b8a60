"""Each asset check fails when its condition is broken on purpose, and passes otherwise."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import psycopg
import pytest

from clickguard import db
from clickguard.settings import Settings
from clickguard_dagster.assets.items import ITEMS, compute_items
from clickguard_dagster.assets.metrics import METRICS, compute_metrics
from clickguard_dagster.assets.sessions import SESSIONS, compute_sessions
from clickguard_dagster.batch import last_run_marks, settle_mark
from clickguard_dagster.checks.batch import last_marks
from clickguard_dagster.checks.idempotency import check_idempotent
from clickguard_dagster.checks.keys import check_session_keys
from clickguard_dagster.checks.quality import check_metrics_quality, check_sessions_quality
from clickguard_dagster.definitions import ASSET_CHECKS, BATCH_ASSETS
from clickguard_dagster.resources import BatchResource
from tests.integration.clickguard_dagster.conftest import (
    COLUMNS,
    DAYS,
    STATE_TABLES,
    insert_events,
    make_events,
)

pytestmark = pytest.mark.integration


def latest3(resources: dict) -> BatchResource:
    """The batch resource with the idempotency check limited to the 3 latest days."""
    return BatchResource(**{**resources["batch"].model_dump(), "idempotency_check_max_days": 3})


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
    assert check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key)).passed
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
        result = check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key))
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
    assert check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key)).passed
    # a phantom session: its events do not exist in `events`
    pg.execute(
        "INSERT INTO daily_sessions SELECT 999999, session_start, session_day, session_end,"
        " duration_sec, events, clicks, cart_adds, purchases, revenue, converted, entry_page,"
        " exit_page FROM daily_sessions WHERE session_id = %s AND session_start = %s",
        (sid, start),
    )
    try:
        result = check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key))
        assert not result.passed
        assert result.metadata["duplicate_sessions"].value == 0
        assert result.metadata["sessions_with_missing_events"].value == 1
        assert result.metadata["missing_event_examples"].value[0]["session_id"] == 999999
    finally:
        pg.execute("DELETE FROM daily_sessions WHERE session_id = 999999")
    assert check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key)).passed


def test_quality_check_reports_failed_expectations(
    materialized: psycopg.Connection, resources: dict
) -> None:
    pg, postgres = materialized, resources["postgres"]
    assert check_sessions_quality(postgres, last_marks(postgres, SESSIONS.asset_key)).passed
    assert check_metrics_quality(postgres, last_marks(postgres, METRICS.asset_key)).passed
    sid, start, day = one_session(pg)
    pg.execute(
        "UPDATE daily_sessions SET duration_sec = -duration_sec - 1"
        " WHERE session_id = %s AND session_start = %s",
        (sid, start),
    )
    pg.execute("UPDATE daily_metrics SET total_clicks = total_clicks + 1 WHERE metric_date = %s",
               (day,))
    try:
        sessions = check_sessions_quality(postgres, last_marks(postgres, SESSIONS.asset_key))
        metrics = check_metrics_quality(postgres, last_marks(postgres, METRICS.asset_key))
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
        result = check_sessions_quality(postgres, last_marks(postgres, SESSIONS.asset_key))
        assert failed_types(result) == [
            ("expect_column_pair_values_to_be_equal", "session_events")
        ]
    finally:
        pg.execute(
            f"INSERT INTO daily_sessions VALUES ({', '.join(['%s'] * len(row))})", row
        )
    assert check_sessions_quality(postgres, last_marks(postgres, SESSIONS.asset_key)).passed


def test_idempotency_check_detects_a_changed_row(
    materialized: psycopg.Connection, resources: dict
) -> None:
    pg, postgres = materialized, resources["postgres"]
    spark = resources["spark"]
    batch = latest3(resources)
    ok = check_idempotent(SESSIONS, compute_sessions, spark.spark_session, postgres, batch,
                              last_marks(postgres, SESSIONS.asset_key))
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
        bad = check_idempotent(SESSIONS, compute_sessions, spark.spark_session, postgres, batch,
                              last_marks(postgres, SESSIONS.asset_key))
        assert not bad.passed
        assert bad.metadata["days_differing"].value == [day.isoformat()]
    finally:
        pg.execute(
            "UPDATE daily_sessions SET revenue = revenue - 1 WHERE session_id = %s"
            " AND session_start = %s",
            (sid, start),
        )


def test_rows_committed_after_the_mark_do_not_count(
    materialized: psycopg.Connection, resources: dict
) -> None:
    """What a live stream does after a materialization (more events of the same days, even of an
    unknown type) is beyond the recorded day marks: every check still judges the rows the
    assets read and passes; the idempotency check still covers the changed-looking days."""
    pg, postgres, spark = materialized, resources["postgres"], resources["spark"].spark_session
    marks = last_run_marks(pg, "daily_sessions")
    assert set(DAYS) <= set(marks) and all(marks.values())
    later = make_events(days=DAYS, sessions_per_day=5, seed=99, commit_ts=datetime.now(UTC),
                        id_prefix="live")
    later[0] = (*later[0][:9], "cart", *later[0][10:])  # not a contract type
    insert_events(pg, later)
    try:
        assert check_sessions_quality(postgres, last_marks(postgres, SESSIONS.asset_key)).passed
        assert check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key)).passed
        assert check_metrics_quality(postgres, last_marks(postgres, METRICS.asset_key)).passed
        for spec, compute in ((SESSIONS, compute_sessions), (METRICS, compute_metrics),
                              (ITEMS, compute_items)):
            result = check_idempotent(spec, compute, spark, postgres, latest3(resources),
                                      last_marks(postgres, spec.asset_key))
            assert result.passed, spec.asset_key
            assert len(result.metadata["days_checked"].value) == 3, spec.asset_key
        assert last_run_marks(pg, "daily_sessions") == marks
    finally:
        pg.execute("DELETE FROM events WHERE event_id LIKE 'live%%'")


def test_missing_events_fail_keys_and_quality(
    materialized: psycopg.Connection, resources: dict
) -> None:
    """Events the asset read that disappeared (below the mark) still fail both checks."""
    pg, postgres = materialized, resources["postgres"]
    sid, start, end = pg.execute(
        "SELECT session_id, session_start, session_end FROM daily_sessions"
        " WHERE events >= 2 AND clicks >= 1 ORDER BY session_day, session_id LIMIT 1"
    ).fetchone()
    gone = pg.execute(
        "DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE session_id = %s"
        " AND event_ts BETWEEN %s AND %s AND event_type = 'click' LIMIT 1) RETURNING *",
        (sid, start, end),
    ).fetchall()
    assert len(gone) == 1
    try:
        keys = check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key))
        assert not keys.passed
        assert keys.metadata["sessions_with_missing_events"].value == 1
        assert keys.metadata["missing_event_examples"].value[0]["session_id"] == sid
        quality = check_sessions_quality(postgres, last_marks(postgres, SESSIONS.asset_key))
        assert failed_types(quality) == [
            ("expect_column_pair_values_to_be_equal", "session_events")
        ]
        metrics = check_metrics_quality(postgres, last_marks(postgres, METRICS.asset_key))
        assert failed_types(metrics) == [
            ("expect_column_pair_values_to_be_equal", "total_clicks")
        ]
    finally:
        with pg.cursor().copy("COPY events FROM STDIN") as copy:
            for row in gone:
                copy.write_row(row)
    assert check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key)).passed
    assert check_sessions_quality(postgres, last_marks(postgres, SESSIONS.asset_key)).passed


def test_mark_waits_for_a_batch_in_flight(stack: Any, settings: Settings) -> None:
    """A writer that stamped commit_ts = clock_timestamp() and has not committed yet when the
    mark is taken: the mark is only returned after that commit, so the in-flight rows (stamped
    before the mark) are visible to every read that applies it; a writer that never ends makes
    the mark fail clearly after its timeout."""
    row = make_events(days=(DAYS[0],), sessions_per_day=1, seed=3, id_prefix="inflight")[0]
    values = ", ".join("clock_timestamp()" if c == "commit_ts" else "%s" for c in COLUMNS)
    with db.connect(settings, "writer") as writer, \
            db.connect(settings, "writer", autocommit=True) as reader:
        writer.execute(
            f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({values})",
            [v for c, v in zip(COLUMNS, row, strict=True) if c != "commit_ts"],
        )
        with pytest.raises(RuntimeError, match=r"still running after 0\.5 s"):
            settle_mark(reader, ["events"], 0.5)
        got: dict[str, Any] = {}
        waiter = threading.Thread(
            target=lambda: got.update(mark=settle_mark(reader, ["events"], 60)), daemon=True
        )
        waiter.start()
        waiter.join(2)
        assert waiter.is_alive(), "the mark must wait while the writer's transaction is open"
        writer.commit()
        waiter.join(60)
        assert not waiter.is_alive()
        stamped = reader.execute(
            "SELECT commit_ts FROM events WHERE event_id = %s", (row[0],)
        ).fetchone()[0]
        assert stamped <= got["mark"]
        reader.execute("DELETE FROM events WHERE event_id = %s", (row[0],))


def test_blocking_quality_check_stops_downstream_assets(
    materialized: psycopg.Connection, resources: dict
) -> None:
    """A late event with an unknown type fails daily_sessions' blocking data-quality check,
    so daily_metrics and session_funnel are not materialized in that run."""
    pg = materialized
    bad = make_events(days=(DAYS[0],), sessions_per_day=1, seed=5,
                      commit_ts=datetime.now(UTC), id_prefix="bogus")[:1]
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


def test_an_event_id_reused_with_another_time_is_counted_not_failed(
    materialized: psycopg.Connection, resources: dict
) -> None:
    """The stream stores a record reusing an event_id with another event time as a distinct
    event (key (event_id, event_ts)); the keys check once failed on it, and being blocking it
    stopped daily_metrics and session_funnel for the rest of the day."""
    from clickguard_dagster.assets.sessions import daily_sessions

    pg, postgres = materialized, resources["postgres"]
    event_id, ts = pg.execute(
        "SELECT event_id, event_ts FROM events ORDER BY event_ts DESC LIMIT 1"
    ).fetchone()
    cols = [c for c in COLUMNS if c not in ("event_ts", "commit_ts")]
    pg.execute(
        f"INSERT INTO events ({', '.join(cols)}, event_ts, commit_ts)"
        f" SELECT {', '.join(cols)}, event_ts + interval '1 millisecond', clock_timestamp()"
        " FROM events"
        " WHERE event_id = %s AND event_ts = %s",
        (event_id, ts),
    )
    try:
        assert dg.materialize([daily_sessions], resources=resources).success
        result = check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key))
        assert result.passed, result.metadata
        assert result.metadata["event_ids_reused_with_another_time"].value == 1
    finally:
        pg.execute("DELETE FROM events WHERE event_id = %s AND event_ts > %s", (event_id, ts))
        # a deletion leaves no newer ingestion time: only a full refresh sees it
        refresh = {"ops": {"daily_sessions": {"config": {"full_refresh": True}}}}
        assert dg.materialize([daily_sessions], resources=resources, run_config=refresh).success
    result = check_session_keys(postgres, last_marks(postgres, SESSIONS.asset_key))
    assert result.passed, {k: v.value for k, v in result.metadata.items()}
    assert result.metadata["event_ids_reused_with_another_time"].value == 0
