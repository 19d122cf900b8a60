"""SLO and freshness checks of stream_events on rows in the real events/batch_ledger tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from clickguard.settings import Settings
from clickguard_dagster.checks.stream import check_freshness, check_slo
from clickguard_dagster.resources import PostgresResource, SloResource, build_resources
from tests.integration.clickguard_dagster.conftest import insert_events, make_events

pytestmark = pytest.mark.integration


def recent_events(conn: psycopg.Connection, spark_to_db_ms: int, prefix: str) -> int:
    """Events committed just now whose Spark->DB stage took ``spark_to_db_ms``."""
    rows = []
    now = datetime.now(UTC)
    for r in make_events(sessions_per_day=10, seed=3, id_prefix=prefix):
        r = list(r)
        r[5] = now  # commit_ts
        r[4] = now - timedelta(milliseconds=spark_to_db_ms)  # batch_start_ts
        r[3] = r[4] - timedelta(milliseconds=300)  # kafka_ts
        r[2] = r[3] - timedelta(milliseconds=20)  # ingest_ts
        rows.append(tuple(r))
    insert_events(conn, rows)
    return len(rows)


def test_slo_passes_on_fast_events_and_fails_on_a_slow_stage(
    clean: psycopg.Connection, settings: Settings
) -> None:
    n = recent_events(clean, 200, "fast")
    ok = check_slo(_postgres(settings), _slo(settings))
    assert ok.passed
    assert ok.metadata["samples"].value == n
    assert ok.metadata["spark_to_db_p50"].value == pytest.approx(200.0, abs=1.0)
    assert ok.metadata["end_to_end_p95"].value == pytest.approx(520.0, abs=1.0)
    clean.execute("DELETE FROM events")
    recent_events(clean, 20_000, "slow")
    bad = check_slo(_postgres(settings), _slo(settings))
    assert not bad.passed
    assert bad.metadata["breaches"].value == [
        "end_to_end p95 20320.0 > 5000.0",
        "spark_to_db p50 20000.0 > 1500.0",
        "spark_to_db p95 20000.0 > 3000.0",
    ]


def test_freshness_follows_the_last_batch(clean: psycopg.Connection, settings: Settings) -> None:
    assert not check_freshness(_postgres(settings), _slo(settings)).passed  # nothing ever committed
    ledger = (
        "INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows,"
        " stored, dlq, late, duplicates, anomalies, duration_ms) VALUES"
        " ('q', %s, %s, %s, 0, 0, 0, 0, 0, 0, 10)"
    )
    old = datetime.now(UTC) - timedelta(seconds=settings.stream_stale_seconds + 60)
    clean.execute(ledger, (1, old, old))
    stale = check_freshness(_postgres(settings), _slo(settings))
    assert not stale.passed
    assert stale.metadata["age_s"].value > settings.stream_stale_seconds
    now = datetime.now(UTC)
    clean.execute(ledger, (2, now, now))
    fresh = check_freshness(_postgres(settings), _slo(settings))
    assert fresh.passed
    assert fresh.metadata["age_s"].value < 10


def _postgres(settings: Settings) -> PostgresResource:
    return build_resources(settings)["postgres"]


def _slo(settings: Settings, **changes: object) -> SloResource:
    return SloResource(**{**build_resources(settings)["slo"].model_dump(), **changes})


def test_slo_report_asset_reports_the_figures_and_checks_targets(
    clean: psycopg.Connection, settings: Settings
) -> None:
    import dagster as dg

    from clickguard_dagster.assets.slo import slo_report, slo_report_targets

    n = recent_events(clean, 200, "asset")
    slo = _slo(settings)
    result = dg.materialize(
        [slo_report, slo_report_targets], resources={"postgres": _postgres(settings), "slo": slo}
    )
    (mat,) = result.get_asset_materialization_events()
    meta = mat.materialization.metadata
    assert meta["events"].value == n
    assert meta["spark_to_db_p50_ms"].value == pytest.approx(200.0, abs=1.0)
    assert meta["end_to_end_p95_ms"].value == pytest.approx(520.0, abs=1.0)
    assert "| end to end |" in meta["report"].value  # the figures as a Markdown table
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    # the check judged the report's own window, recorded in the materialization
    window = (
        datetime.fromisoformat(meta["window_start"].value),
        datetime.fromisoformat(meta["window_end"].value),
    )
    assert check.metadata["window_end"].value == meta["window_end"].value
    assert check.metadata["samples"].value == n
    # slow events the stream stores after the report do not change its verdict...
    recent_events(clean, 20_000, "later")
    again = check_slo(_postgres(settings), _slo(settings), window)
    assert again.passed and again.metadata["samples"].value == n
    # ...while the same events inside the report's window would fail it
    assert not check_slo(_postgres(settings), _slo(settings)).passed


def test_slo_check_reads_only_the_newest_events_of_its_window(
    clean: psycopg.Connection, settings: Settings
) -> None:
    """A bounded sample: the newest ``slo_check_max_events`` by commit time, not the window."""
    slow = recent_events(clean, 20_000, "old-slow")
    fast = recent_events(clean, 200, "new-fast")  # committed after the slow ones
    bounded = check_slo(_postgres(settings), _slo(settings, slo_check_max_events=fast))
    assert bounded.passed
    assert bounded.metadata["samples"].value == fast
    assert bounded.metadata["max_samples"].value == fast
    assert bounded.metadata["spark_to_db_p95"].value == pytest.approx(200.0, abs=1.0)
    everything = check_slo(_postgres(settings), _slo(settings, slo_check_max_events=10**9))
    assert everything.metadata["samples"].value == slow + fast
    assert not everything.passed  # the slow half is in the window


def test_stream_checks_sensor_reports_both_checks_without_a_run(
    clean: psycopg.Connection, settings: Settings
) -> None:
    """The sensor's evaluations land in the instance as the checks' history; no run starts."""
    import dagster as dg

    from clickguard_dagster.sensors.stream_checks import build_stream_checks_sensor

    n = recent_events(clean, 20_000, "sensor-slow")  # stored just now, but far too slow
    sensor = build_stream_checks_sensor(600)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={"postgres": _postgres(settings), "slo": _slo(settings)},
        )
        result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        assert not result.run_requests
        by_name = {e.check_name: e for e in result.asset_events}
        assert set(by_name) == {"latency_slo", "freshness"}
        slo, fresh = by_name["latency_slo"], by_name["freshness"]
        assert all(e.asset_key == dg.AssetKey("stream_events") for e in by_name.values())
        assert not slo.passed and slo.metadata["samples"].value == n
        assert slo.metadata["breaches"].value[0].startswith("end_to_end p95 20320.0")
        assert fresh.passed  # the events were committed a moment ago
        assert instance.get_runs() == []
