"""The literal ``dagster asset materialize --select daily_sessions``, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from clickguard.dagster_env import MODULE_NAME, prepare_home
from clickguard.settings import REPO_ROOT, Settings
from tests.integration.clickguard_dagster.conftest import insert_events, make_events

pytestmark = pytest.mark.integration


def test_dagster_asset_materialize_cli_lands_in_the_postgres_instance(
    clean: psycopg.Connection, settings: Settings, stack: Any
) -> None:
    insert_events(clean, make_events(sessions_per_day=10, seed=21))
    home = prepare_home(settings)
    bin_dir = Path(sys.executable).parent
    # what `source .venv/bin/activate` provides: the venv on PATH, DAGSTER_HOME, the module
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "DAGSTER_MODULE_NAME": MODULE_NAME,
    }
    proc = subprocess.run(
        "dagster asset materialize --select daily_sessions", shell=True, cwd=REPO_ROOT,
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    sessions = clean.execute("SELECT count(*) FROM daily_sessions").fetchone()[0]
    assert sessions > 0
    # the run is in the PostgreSQL-backed instance that the webserver shows
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_run_records(limit=5)
        latest = runs[0].dagster_run
        assert latest.status == dg.DagsterRunStatus.SUCCESS
        assert latest.asset_selection == {dg.AssetKey("daily_sessions")}
        mat = instance.get_latest_materialization_event(dg.AssetKey("daily_sessions"))
        assert mat is not None and mat.run_id == latest.run_id
        assert mat.asset_materialization.metadata["rows_written"].value == sessions
    finally:
        instance.dispose()
