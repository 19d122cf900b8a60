"""live_batch_sensor on the real database: a run only for new data, never two batch runs at once."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
import pytest

from clickguard_dagster.definitions import defs
from clickguard_dagster.schedules import live_batch_sensor
from tests.integration.clickguard_dagster.conftest import insert_events, make_events

pytestmark = pytest.mark.integration


def evaluate(
    instance: dg.DagsterInstance, resources: dict[str, Any], cursor: str | None
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """(run requests, new cursor, skip message) of one evaluation, as the daemon runs it."""
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"postgres": resources["postgres"]},
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
