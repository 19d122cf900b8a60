"""Definitions load without services; instance config and helpers are right."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from clickguard.dagster_env import command, render_instance_yaml
from clickguard.settings import Settings
from clickguard_dagster.batch import DayRangeConfig, day_predicates
from clickguard_dagster.checks.quality import sessions_expectations, validate


def test_loading_the_definitions_leaves_pandas_for_the_checks() -> None:
    """Every Dagster process (code server, each `dagster asset materialize`) loads the
    definitions before anything runs: pandas (0.4-0.7 s) is imported by the checks that use it."""
    code = "import sys, clickguard_dagster.definitions; print(sorted(m for m in sys.modules" \
           " if m.split('.')[0] in ('pandas', 'great_expectations')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_run_with_checks_imports_gx_in_the_background_from_its_start() -> None:
    """Every batch asset's check step requires the ``expectations`` resource; initialising it
    (a run's start) imports GX in a thread, then freezes the interpreter's objects."""
    from clickguard_dagster.checks.batch import batch_asset_checks

    for checks in batch_asset_checks:
        assert "expectations" in checks.required_resource_keys
    code = (
        "import gc, sys, time, dagster as dg\n"
        "from clickguard_dagster.resources import ExpectationsResource\n"
        "with dg.build_resources({'gx': ExpectationsResource()}) as res:\n"
        "    started = 'great_expectations.expectations' in sys.modules\n"
        "    res.gx.wait()\n"
        "    print(started, 'great_expectations.expectations' in sys.modules,"
        " gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=180)
    assert out.stdout.split() == ["False", "True", "True"]


def test_definitions_graph() -> None:
    from clickguard_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "stream_events", "daily_sessions", "session_funnel", "daily_metrics", "popular_items",
        "popular_categories", "anomaly_daily_summary", "slo_report",
    }
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("slo_report")).parent_keys} == {
        "stream_events"
    }
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("daily_metrics")).parent_keys} == {
        "daily_sessions", "stream_events"
    }
    blocking = {
        (k.asset_key.to_user_string(), k.name)
        for k in graph.asset_check_keys
        if graph.get_check_spec(k).blocking
    }
    assert blocking == {
        ("daily_sessions", "keys"), ("daily_sessions", "data_quality"),
        ("daily_metrics", "data_quality"),
    }
    assert len(graph.asset_check_keys) == 16
    assert {s.name for s in defs.sensors} == {
        "dlq_alert_sensor", "stream_health_sensor", "live_batch_sensor", "stream_checks_sensor"
    }
    assert {s.name for s in defs.schedules} == {"daily_batch_schedule",
                                                "event_partitions_schedule"}
    assert defs.resolve_job_def("dlq_replay") is not None
    assert defs.resolve_job_def("event_partitions") is not None


def test_instance_yaml_uses_postgres(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, pg_port=5999, pg_dagster_db="dg")
    cfg = yaml.safe_load(render_instance_yaml(s))
    storage = cfg["storage"]["custom"]
    assert (storage["module"], storage["class"]) == (
        "clickguard_dagster.storage", "PooledPostgresStorage"
    )
    db = storage["config"]["postgres_db"]
    assert (db["hostname"], db["port"], db["db_name"], db["username"]) == (
        "127.0.0.1", 5999, "dg", s.pg_writer_user
    )
    assert db["scheme"] == "postgresql+psycopg2"
    assert cfg["compute_logs"]["config"]["base_dir"] == str(tmp_path / "dagster-home/compute_logs")


def test_launcher_commands(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, dagster_port=3123)
    web = command(s, "webserver")
    assert web[0].endswith("dagster-webserver")
    assert web[1:6] == ["-h", "127.0.0.1", "-p", "3123", "-w"]
    assert web[6].endswith("workspace.yaml")
    assert command(s, "daemon")[1:3] == ["run", "-w"]


def test_day_range_and_predicates() -> None:
    assert DayRangeConfig().date_range() is None
    assert DayRangeConfig(start_date="2026-11-20").date_range() == (
        date(2026, 11, 20), date(2026, 11, 20)
    )
    assert day_predicates("event_ts", [date(2026, 11, 20)]) == [
        "event_ts >= '2026-11-20T00:00:00+00:00' AND event_ts < '2026-11-21T00:00:00+00:00'"
    ]
    # with day marks: each day reads up to its own mark; a day without one reads nothing
    mark = datetime(2026, 11, 21, 8, 30, 1, 123456, tzinfo=UTC)
    days = [date(2026, 11, 20), date(2026, 11, 21)]
    assert day_predicates("event_ts", days, {days[0]: None, days[1]: mark}, "commit_ts") == [
        "event_ts >= '2026-11-20T00:00:00+00:00' AND event_ts < '2026-11-21T00:00:00+00:00'"
        " AND false",
        "event_ts >= '2026-11-21T00:00:00+00:00' AND event_ts < '2026-11-22T00:00:00+00:00'"
        " AND commit_ts <= '2026-11-21T08:30:01.123456+00:00'",
    ]


def test_gx_reports_a_null_key() -> None:
    ts = pd.Timestamp("2026-11-20 10:00", tz="UTC")
    df = pd.DataFrame({
        "session_id": [1, None], "session_start": [ts, ts], "session_day": [ts.date()] * 2,
        "session_end": [ts, ts], "duration_sec": [0.0, 5.0], "events": [1, 2],
        "clicks": [0, 1], "cart_adds": [0, 0], "purchases": [0, 0], "revenue": [0.0, 0.0],
    })
    failed = validate(df, sessions_expectations(), "unit_sessions")
    assert [(f["expectation"], f["kwargs"]["column"], f["unexpected_count"]) for f in failed] == [
        ("expect_column_values_to_not_be_null", "session_id", 1)
    ]


def test_webserver_and_daemon_share_the_stack_code_server(tmp_path: Path) -> None:
    """One `dagster api grpc` node serves both: no code server spawned (and respawned) by each."""
    s = Settings(home=tmp_path, dagster_port=3123)
    code = command(s, "code")
    assert code[1:3] == ["api", "grpc"] and code[code.index("-p") + 1] == "3124"
    workspace = Path(command(s, "webserver")[6])
    assert workspace == Path(command(s, "daemon")[3]) == tmp_path / "dagster-home/workspace.yaml"
    entry = yaml.safe_load(workspace.read_text())["load_from"][0]["grpc_server"]
    assert entry == {"host": "127.0.0.1", "port": 3124, "location_name": "clickguard"}
    assert code[code.index("--location-name") + 1] == entry["location_name"]


def test_resources_follow_the_clickguard_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set CLICKGUARD_* string/int variable reaches its resource as dg.EnvVar and resolves to
    the value Settings reads; an unset one gives the settings default, unchanged."""
    import os

    from clickguard_dagster.resources import build_resources

    for name in [k for k in os.environ if k.upper().startswith("CLICKGUARD_")]:
        if name.upper() != "CLICKGUARD_CACHE_DIR":  # where the Spark jars are
            monkeypatch.delenv(name)
    env = {"CLICKGUARD_HOME": str(tmp_path), "CLICKGUARD_PG_PORT": "25432",
           "CLICKGUARD_TOPIC_DLQ": "t.dlq", "CLICKGUARD_SMTP_PASSWORD": "s3cret",
           "CLICKGUARD_SLO_E2E_P95_MS": "4000", "CLICKGUARD_RESULTS_DIR": str(tmp_path / "r")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings(_env_file=None)  # the variables above only, not a .env file
    res = build_resources(s, env=os.environ)
    assert isinstance(res["postgres"].port, dg.EnvVar.int("X").__class__)
    assert isinstance(res["kafka"].topic_dlq, dg.EnvVar)
    with dg.build_resources({k: v for k, v in res.items() if k != "spark"}) as r:
        assert (r.postgres.port, r.kafka.topic_dlq, r.email.password) == (25432, "t.dlq", "s3cret")
        assert r.slo.slo_e2e_p95_ms == 4000.0  # a float: the value Settings parsed
        assert r.kafka.topic_raw == "km.events.raw.v1"
        assert r.batch.session_gap_minutes == 30.0 and r.batch.popular_items_limit == 500
        assert r.alerts.dagster_url == "http://127.0.0.1:3000"
        assert r.alerts.stream_home == str(tmp_path / "streaming")  # a path, as a string
    plain = build_resources(s)  # no env: plain values, usable outside a run
    assert plain["postgres"].port == 25432
    assert plain["alerts"].stream_home == str(tmp_path / "streaming")


def test_instance_yaml_turns_off_the_community_dialog(tmp_path: Path) -> None:
    """Every browser's first visit of the UI showed Dagster's "Join the Dagster community"
    dialog (an e-mail form, links to Slack) over the asset catalog. The rendered file is read by
    Dagster's own instance loader, which validates it against the instance schema."""
    from dagster._core.instance.ref import InstanceRef

    s = Settings(home=tmp_path)
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(render_instance_yaml(s))
    ref = InstanceRef.from_dir(str(home))
    assert ref.settings["nux"] == {"enabled": False}
    assert ref.settings["telemetry"] == {"enabled": False}
