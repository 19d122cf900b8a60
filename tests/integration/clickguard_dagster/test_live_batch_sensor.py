"""live_batch_sensor on the real database: a run only for new data, never two batch runs at
once; and two runs that swap the same day anyway (a user's CLI run) do it one after the other."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import psycopg
import pytest

from clickguard import procs
from clickguard_dagster.assets.anomalies import SUMMARY
from clickguard_dagster.batch import swap_days
from clickguard_dagster.definitions import defs
from clickguard_dagster.schedules import build_live_batch_sensor
from tests.integration.clickguard_dagster.conftest import insert_events, make_events

pytestmark = pytest.mark.integration
live_batch_sensor = build_live_batch_sensor(30)


def evaluate(
    instance: dg.DagsterInstance, resources: dict[str, Any], cursor: str | None
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """(run requests, new cursor, skip message) of one evaluation, as the daemon runs it."""
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor,
        resources={"postgres": resources["postgres"], "batch": resources["batch"]},
        repository_def=defs.get_repository_def(),
    )
    result = live_batch_sensor(ctx)
    if isinstance(result, dg.SkipReason):
        return [], cursor, result.skip_message
    return list(result.run_requests or []), result.cursor, None


def version_ts(cursor: str) -> datetime:
    """The events' newest commit_ts recorded in the sensor's cursor."""
    return datetime.fromisoformat(json.loads(cursor)["version"].split("|")[0])


def running(instance: dg.DagsterInstance, job_name: str, assets: set[str]) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name=job_name, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
        asset_selection=frozenset(dg.AssetKey(a) for a in assets) or None,
    )
    return instance.add_run(run)


def test_runs_once_per_new_data_and_waits_for_the_batch_run_in_flight(
    clean: psycopg.Connection, resources: dict[str, Any]
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        requests, cursor, skip = evaluate(instance, resources, None)
        assert (requests, skip) == ([], "no event stored yet")

        now = datetime.now(UTC)
        insert_events(clean, make_events(sessions_per_day=3, commit_ts=now))
        requests, cursor, skip = evaluate(instance, resources, None)
        assert skip is None and len(requests) == 1
        assert requests[0].job_name in (None, "daily_batch")
        assert requests[0].tags["clickguard/trigger"] == "live"
        assert cursor is not None and version_ts(cursor) == now

        # nothing new: no run, whatever the time
        assert evaluate(instance, resources, cursor)[2] == (
            "no new event or anomaly since the last requested batch run"
        )

        # new rows, but a user's `dagster asset materialize --select daily_sessions` is running
        later = datetime.now(UTC)
        insert_events(clean, make_events(sessions_per_day=3, commit_ts=later, id_prefix="n"))
        old = json.dumps({**json.loads(cursor), "requested_at": 0})
        user_run = running(instance, "__ASSET_JOB", {"daily_sessions"})
        requests, _, skip = evaluate(instance, resources, old)
        assert requests == [] and skip == f"batch run {user_run.run_id} is still in progress"

        # it finished: the new data gets its run
        instance.report_run_failed(user_run)
        requests, cursor2, skip = evaluate(instance, resources, old)
        assert skip is None and len(requests) == 1
        assert cursor2 is not None and version_ts(cursor2) == later
        assert requests[0].run_key != f"live-{json.loads(cursor)['version']}"


def test_a_run_of_another_job_does_not_hold_the_batch_back(
    clean: psycopg.Connection, resources: dict[str, Any]
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        insert_events(clean, make_events(sessions_per_day=2))
        running(instance, "dlq_replay", set())
        requests, _, skip = evaluate(instance, resources, None)
        assert skip is None and len(requests) == 1


def test_two_runs_swapping_the_same_day_one_after_the_other(
    clean: psycopg.Connection, resources: dict[str, Any]
) -> None:
    """The sensor's run and a user's CLI run may finish together: the second swap must replace
    the first one's rows, not collide with them (it used to fail on the primary key)."""
    postgres = resources["postgres"]
    day = date(2026, 11, 20)
    clean.execute("INSERT INTO anomaly_daily_summary VALUES (%s, 'BOT_LIKE', 1, 1, 1, 1)", (day,))
    clean.execute(
        "INSERT INTO asset_day_watermarks (asset_key, day, source_rows, output_rows)"
        " VALUES ('anomaly_daily_summary', %s, 1, 1)", (day,),
    )
    stages = []
    for n in (2, 3):
        name = f"stage_anomaly_daily_summary_race{n}"
        clean.execute(f"DROP TABLE IF EXISTS {name}")
        clean.execute(f"CREATE UNLOGGED TABLE {name} (LIKE anomaly_daily_summary)")
        clean.execute(f"INSERT INTO {name} VALUES (%s, 'BOT_LIKE', %s, %s, 1, 1)", (day, n, n))
        stages.append(name)
    plan = {day: (5, None)}
    errors: dict[str, BaseException] = {}

    def swap(stage: str, run_id: str) -> None:
        try:
            swap_days(postgres, SUMMARY, stage, plan, run_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors[run_id] = exc

    def waiting() -> int:
        return clean.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).fetchone()[0]

    # run A deletes and inserts its rows, then waits (we hold its watermark row) before commit
    with psycopg.connect(clean.info.dsn, password=postgres.password) as holder:
        holder.execute(
            "SELECT 1 FROM asset_day_watermarks WHERE asset_key = 'anomaly_daily_summary'"
            " FOR UPDATE"
        )
        a = threading.Thread(target=swap, args=(stages[0], "run-a"))
        a.start()
        assert procs.wait_until(lambda: waiting() >= 1, 30)
        b = threading.Thread(target=swap, args=(stages[1], "run-b"))  # run B arrives meanwhile
        b.start()
        assert procs.wait_until(lambda: waiting() >= 2, 30)
        holder.rollback()  # A commits, then B
    a.join(60)
    b.join(60)
    assert errors == {}
    rows = clean.execute(
        "SELECT anomaly_count FROM anomaly_daily_summary WHERE metric_date = %s", (day,)
    ).fetchall()
    assert rows == [(3,)]  # the later swap's rows, once
    assert clean.execute(
        "SELECT run_id FROM asset_day_watermarks WHERE asset_key = 'anomaly_daily_summary'"
    ).fetchone() == ("run-b",)
