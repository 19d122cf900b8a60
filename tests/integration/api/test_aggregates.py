"""Migration 0004: the trigger-maintained aggregates always equal a GROUP BY over anomalies,
through inserts, the stream's upserts, updates that move a row to another hour/type/session,
deletes and truncation."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.api import seed

pytestmark = pytest.mark.integration


def assert_consistent(conn: psycopg.Connection) -> None:
    types = conn.execute(
        "SELECT anomaly_type, anomaly_count, round(score_sum::numeric, 6), last_detected"
        " FROM anomaly_type_stats ORDER BY 1").fetchall()
    assert types == conn.execute(
        "SELECT anomaly_type, count(*), round(sum(anomaly_score)::numeric, 6), max(detected_at)"
        " FROM anomalies GROUP BY 1 ORDER BY 1").fetchall()
    hourly = conn.execute(
        "SELECT hour, anomaly_count, round(score_sum::numeric, 6), unique_sessions"
        " FROM anomaly_hourly ORDER BY 1").fetchall()
    assert hourly == conn.execute(
        "SELECT date_trunc('hour', detected_at, 'UTC'), count(*),"
        " round(sum(anomaly_score)::numeric, 6), count(DISTINCT session_id)"
        " FROM anomalies GROUP BY 1 ORDER BY 1").fetchall()
    sessions = conn.execute(
        "SELECT hour, session_id, anomalies FROM anomaly_hour_sessions ORDER BY 1, 2").fetchall()
    assert sessions == conn.execute(
        "SELECT date_trunc('hour', detected_at, 'UTC'), session_id, count(*) FROM anomalies"
        " WHERE session_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2").fetchall()


def test_aggregates_follow_every_kind_of_write(wpg: psycopg.Connection) -> None:
    seed.seed_anomalies(wpg)  # inserts, then an ON CONFLICT DO UPDATE upsert
    assert_consistent(wpg)
    assert wpg.execute("SELECT sum(anomaly_count) FROM anomaly_type_stats").fetchone() == (45,)

    # move rows to another hour, type and session in one statement
    wpg.execute("UPDATE anomalies SET detected_at = detected_at - interval '3 hours',"
                " session_id = 7, anomaly_type = 'BOT_LIKE' WHERE id %% 5 = 0", {})
    assert_consistent(wpg)

    # delete the newest anomaly of a type: last_detected must fall back to the next one
    wpg.execute("DELETE FROM anomalies WHERE id = (SELECT id FROM anomalies"
                " WHERE anomaly_type = 'HIGH_FREQUENCY' ORDER BY detected_at DESC LIMIT 1)")
    assert_consistent(wpg)

    # delete every anomaly of one type: its row disappears
    wpg.execute("DELETE FROM anomalies WHERE anomaly_type = 'TRAFFIC_SPIKE'")
    assert_consistent(wpg)
    assert wpg.execute(
        "SELECT count(*) FROM anomaly_type_stats WHERE anomaly_type = 'TRAFFIC_SPIKE'"
    ).fetchone() == (0,)

    wpg.execute("TRUNCATE anomalies")
    assert_consistent(wpg)
    for table in ("anomaly_type_stats", "anomaly_hourly", "anomaly_hour_sessions"):
        assert wpg.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_a_rolled_back_batch_leaves_no_trace(wpg: psycopg.Connection) -> None:
    seed.seed_anomalies(wpg)
    before = wpg.execute("SELECT * FROM anomaly_type_stats ORDER BY 1").fetchall()
    with pytest.raises(psycopg.errors.DivisionByZero), wpg.transaction():
        wpg.execute("UPDATE anomalies SET anomaly_score = anomaly_score * 2")
        wpg.execute("SELECT 1 / 0")
    assert wpg.execute("SELECT * FROM anomaly_type_stats ORDER BY 1").fetchall() == before
    assert_consistent(wpg)


def test_popular_items_row_count(wpg: psycopg.Connection) -> None:
    seed.seed_batch_tables(wpg)

    def counted() -> tuple[int, int]:
        kept = wpg.execute("SELECT row_count FROM api_table_counts"
                           " WHERE table_name = 'popular_items'").fetchone()
        real = wpg.execute("SELECT count(*) FROM popular_items").fetchone()
        assert kept is not None and real is not None
        return kept[0], real[0]

    assert counted() == (600, 600)
    # a Dagster asset replaces one day: delete + insert in one transaction
    with wpg.transaction():
        wpg.execute("DELETE FROM popular_items WHERE metric_date = %s", (seed.ANCHOR,))
        wpg.execute("INSERT INTO popular_items SELECT %s, i, 'c', 1, 0, 0, i, 0"
                    " FROM generate_series(1, 5) AS i", (seed.ANCHOR,))
    assert counted() == (575, 575)
    wpg.execute("TRUNCATE popular_items")
    assert counted() == (0, 0)


def test_migration_backfills_existing_anomalies(api_settings) -> None:  # type: ignore[no-untyped-def]
    """0004 applied to a database that already holds anomalies and popular items (the
    production upgrade path) starts with aggregates equal to the data."""
    from psycopg import sql

    from clickguard import db

    scratch = api_settings.model_copy(update={"pg_db": f"{api_settings.pg_db}_mig"})
    with db.connect(api_settings, "superuser", "postgres", autocommit=True) as su:
        su.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(scratch.pg_db)))
        su.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(scratch.pg_db), sql.Identifier(api_settings.pg_writer_user)))
    try:
        with db.connect(scratch, "writer", autocommit=True) as conn:
            for version, text in db.migrations():
                if version < "0004":
                    conn.execute(text)
            seed.seed_anomalies(conn)
            seed.seed_batch_tables(conn)
            (text,) = [t for v, t in db.migrations() if v.startswith("0004")]
            conn.execute(text)
            assert_consistent(conn)
            assert conn.execute("SELECT row_count FROM api_table_counts").fetchone() == (600,)
            seed.seed_anomalies(conn)  # and the triggers work from there on
            assert_consistent(conn)
    finally:
        with db.connect(api_settings, "superuser", "postgres", autocommit=True) as su:
            su.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(
                sql.Identifier(scratch.pg_db)))
