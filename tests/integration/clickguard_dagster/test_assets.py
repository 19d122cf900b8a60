"""Batch assets on real Spark + PostgreSQL: numbers equal an independent pandas computation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import pandas as pd
import psycopg
import pytest

from clickguard.settings import Settings
from clickguard_dagster.definitions import ASSET_CHECKS, BATCH_ASSETS
from tests.integration.clickguard_dagster import expected
from tests.integration.clickguard_dagster.conftest import DAYS, insert_events, make_events

pytestmark = pytest.mark.integration


def materialize(resources: dict[str, Any], run_config: dict | None = None, select: str = "*"):
    return dg.materialize(
        [*BATCH_ASSETS, *ASSET_CHECKS_BATCH],
        resources=resources,
        run_config=run_config,
        selection=select,
    )


ASSET_CHECKS_BATCH = [c for c in ASSET_CHECKS if "stream_events" not in str(c.check_keys)]


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    mats = result.asset_materializations_for_node(asset)
    assert len(mats) == 1
    return {k: v.value for k, v in mats[0].metadata.items()}


def insert_anomalies(conn: psycopg.Connection) -> None:
    rows = []
    for i, (day, typ, score) in enumerate(
        [(DAYS[0], "HIGH_FREQUENCY", 1.2), (DAYS[0], "HIGH_FREQUENCY", 2.5),
         (DAYS[0], "BOT_LIKE", 1.5), (DAYS[1], "BOT_LIKE", 3.0)]
    ):
        start = datetime(day.year, day.month, day.day, 10, i, tzinfo=UTC)
        rows.append((typ, f"session:{i % 2}", i % 2, start, start + timedelta(seconds=10),
                     start, start, 60, 3, score, 60.0))
    conn.cursor().executemany(
        "INSERT INTO anomalies (anomaly_type, entity, session_id, window_start, window_end,"
        " detected_at, updated_at, click_count, unique_items, anomaly_score, observed)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        rows,
    )


def assert_frames(actual: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:
    cols = list(want.columns)
    a = actual[cols].sort_values(keys).reset_index(drop=True)
    w = want[cols].sort_values(keys).reset_index(drop=True)
    for col in cols:
        av, wv = list(a[col]), list(w[col])
        if col in {"duration_sec", "conversion_rate", "avg_session_duration_sec",
                   "avg_clicks_per_session", "percentage", "drop_rate"}:
            assert av == pytest.approx(wv, abs=1e-6), col
        else:
            norm = lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else v  # noqa: E731
            assert [norm(v) for v in av] == [norm(v) for v in wv], col


def test_every_asset_matches_pandas(
    events: list, clean: psycopg.Connection, resources: dict, settings: Settings
) -> None:
    insert_anomalies(clean)
    result = materialize(resources)
    assert result.success
    for check in result.get_asset_check_evaluations():
        assert check.passed, (check.asset_check_key, check.metadata)
    assert len(result.get_asset_check_evaluations()) == 13

    ev = expected.events_frame(clean)
    ses = expected.sessions(ev, settings.session_gap_minutes * 60)
    days = sorted({r[1].date().isoformat() for r in events})  # some sessions cross midnight
    assert len(days) == 4
    assert metadata(result, "daily_sessions")["days"] == days
    assert metadata(result, "popular_items")["days"] == days
    assert metadata(result, "daily_sessions")["rows_written"] == len(ses)
    assert_frames(expected.table(clean, "SELECT * FROM daily_sessions"), ses,
                  ["session_id", "session_start"])
    assert_frames(expected.table(clean, "SELECT * FROM daily_metrics"),
                  expected.metrics(ev, ses), ["metric_date"])
    assert_frames(expected.table(clean, "SELECT * FROM session_funnel"),
                  expected.funnel(ses), ["metric_date", "stage_order"])
    assert_frames(expected.table(clean, "SELECT * FROM popular_items"),
                  expected.items(ev, settings.popular_items_limit), ["metric_date", "item_id"])
    assert_frames(expected.table(clean, "SELECT * FROM popular_categories"),
                  expected.categories(ev), ["metric_date", "category"])
    summary = expected.table(
        clean, "SELECT metric_date, anomaly_type, anomaly_count, unique_entities, avg_score,"
        " max_score FROM anomaly_daily_summary ORDER BY 1, 2"
    )
    assert summary.values.tolist() == [
        [DAYS[0], "BOT_LIKE", 1, 1, 1.5, 1.5],
        [DAYS[0], "HIGH_FREQUENCY", 2, 2, 1.85, 2.5],
        [DAYS[1], "BOT_LIKE", 1, 1, 3.0, 3.0],
    ]
    # a second run finds no changed day and writes nothing
    again = materialize(resources)
    assert metadata(again, "daily_sessions")["days_recomputed"] == 0
    assert metadata(again, "popular_items")["days_recomputed"] == 0
    assert metadata(again, "daily_metrics")["days_recomputed"] == 0
    assert Decimal(0) <= expected.table(clean, "SELECT min(revenue) r FROM daily_sessions")["r"][0]


def test_late_events_recompute_only_touched_days(
    events: list, clean: psycopg.Connection, resources: dict
) -> None:
    first = materialize(resources, select="daily_sessions*")
    assert metadata(first, "daily_sessions")["days_recomputed"] == 4
    late = make_events(days=(DAYS[0],), sessions_per_day=5, seed=99,
                       commit_ts=datetime.now(UTC), id_prefix="late")
    touched = sorted({r[1].date() for r in late})
    assert touched == [DAYS[0]]  # this seed keeps the late sessions inside the day
    untouched = "SELECT * FROM daily_sessions WHERE session_day <> %s ORDER BY 1, 2"
    before = expected.table(clean, untouched.replace("%s", f"'{DAYS[0]}'"))
    insert_events(clean, late)
    second = materialize(resources, select="daily_sessions*")
    md = metadata(second, "daily_sessions")
    assert md["days"] == [DAYS[0].isoformat()]
    assert md["source_rows"] == sum(1 for r in events if r[1].date() == DAYS[0]) + len(late)
    # downstream assets follow daily_sessions' changed day only
    assert metadata(second, "daily_metrics")["days"] == [DAYS[0].isoformat()]
    assert metadata(second, "session_funnel")["days"] == [DAYS[0].isoformat()]
    after = expected.table(clean, untouched.replace("%s", f"'{DAYS[0]}'"))
    pd.testing.assert_frame_equal(before, after)
    ses = expected.sessions(expected.events_frame(clean))
    assert_frames(expected.table(clean, "SELECT * FROM daily_sessions"), ses,
                  ["session_id", "session_start"])


def test_date_range_config_recomputes_exactly_that_range(
    events: list, clean: psycopg.Connection, resources: dict
) -> None:
    materialize(resources, select="daily_sessions")
    cfg = {"ops": {"daily_sessions": {"config": {
        "start_date": DAYS[0].isoformat(), "end_date": DAYS[1].isoformat()}}}}
    result = materialize(resources, run_config=cfg, select="daily_sessions")
    md = metadata(result, "daily_sessions")
    assert md["days"] == [DAYS[0].isoformat(), DAYS[1].isoformat()]
    assert md["rows_written"] == clean.execute(
        "SELECT count(*) FROM daily_sessions WHERE session_day <= %s", (DAYS[1],)
    ).fetchone()[0]


def test_a_swap_leaves_fresh_planner_statistics(
    events: list, clean: psycopg.Connection, resources: dict
) -> None:
    """The checks query the table right after the swap: planned with the statistics of the
    empty table, the keys check's old self-join scanned it once per row (> 11 min on 125,001
    sessions). ANALYZE after the swap: pg_class counts every row (exact below 30,000 rows)."""
    clean.execute("DELETE FROM daily_sessions")
    clean.execute("ANALYZE daily_sessions")
    assert clean.execute(
        "SELECT reltuples FROM pg_class WHERE relname = 'daily_sessions'").fetchone()[0] == 0
    materialize(resources, select="daily_sessions")
    stored = clean.execute("SELECT count(*) FROM daily_sessions").fetchone()[0]
    assert stored > 0
    assert clean.execute(
        "SELECT reltuples FROM pg_class WHERE relname = 'daily_sessions'").fetchone()[0] == stored


def test_a_run_drops_stage_tables_left_by_crashed_runs(
    events: list, clean: psycopg.Connection, resources: dict
) -> None:
    """A run SIGKILLed between creating and dropping its stage table left it behind for good
    (a trial: `stage_daily_sessions_6257dd4f8e` after a kill mid-run). The next run drops
    those of crashed runs, says so, and leaves a stage table a running run may still use."""
    now = int(time.time())
    crashed = f"stage_daily_sessions_{now - 2 * 86400}_abc123"
    older_version = "stage_popular_items_6257dd4f8e"
    in_use = f"stage_daily_sessions_{now - 60}_def456"
    query = "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'stage\\_%'"
    others = {r[0] for r in clean.execute(query)}  # recent ones of other runs (kept)
    for name in (crashed, older_version, in_use):
        clean.execute(f"CREATE UNLOGGED TABLE {name} (LIKE daily_sessions)")
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([*BATCH_ASSETS, *ASSET_CHECKS_BATCH], resources=resources,
                                    selection="daily_sessions", instance=instance)
            assert result.success
            said = [e.user_message for e in instance.all_logs(result.run_id)
                    if "left by crashed runs" in e.user_message]
        left = {r[0] for r in clean.execute(query)}
        assert left - others == {in_use}  # the run's own stage table is gone too
        assert len(said) == 1 and crashed in said[0] and older_version in said[0]
    finally:
        for name in (crashed, older_version, in_use):
            clean.execute(f"DROP TABLE IF EXISTS {name}")
