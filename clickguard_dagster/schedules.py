"""Schedules and the live batch trigger.

- ``daily_batch_schedule`` (``batch_schedule_cron``): the production path, every batch asset
  recomputes its changed days once a day.
- ``event_partitions_schedule`` (``event_partitions_cron``, hourly): ``event_partitions``.
  (The stream's SLO and freshness checks need no run: ``stream_checks_sensor`` evaluates them.)
- ``live_batch_sensor``: while events stream in, runs ``daily_batch`` (changed days only) as
  soon as new rows are committed, one run at a time, at most every ``batch_live_min_gap_s``.
  It is STOPPED by default: each run starts Spark and recomputes today's whole day, cheap on a
  demo but a waste on a production day of tens of millions of events, where the daily schedule
  is enough. ``clickguard demo`` turns it on (so a newcomer's API and asset catalog fill within
  minutes) and off again when it stops; anyone can with ``dagster sensor start
  live_batch_sensor`` or in the UI.
"""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg

from clickguard.db import one
from clickguard_dagster.jobs import daily_batch_job, event_partitions
from clickguard_dagster.resources import BatchResource, PostgresResource


def build_schedules(batch_cron: str, partitions_cron: str) -> list[dg.ScheduleDefinition]:
    """``daily_batch_schedule`` and ``event_partitions_schedule`` on their crons (UTC), both
    running from the start."""
    return [
        dg.ScheduleDefinition(
            name=f"{job.name}_schedule", job=job, cron_schedule=cron, execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
        for job, cron in ((daily_batch_job, batch_cron), (event_partitions, partitions_cron))
    ]


LIVE_BATCH_SENSOR = "live_batch_sensor"
BATCH_GROUP = "batch"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
]
# the batch assets' inputs: newest ingestion time of events and newest anomaly update
# (events.commit_ts is indexed; anomalies holds one row per detection, a small table)
SOURCE_VERSION_SQL = """
SELECT (SELECT max(commit_ts) FROM events), (SELECT max(updated_at) FROM anomalies)
"""


def source_version(postgres: PostgresResource) -> str | None:
    """A string that changes whenever the batch assets' sources change; None = no data yet."""
    with postgres.connect() as conn:
        events_ts, anomalies_ts = one(conn, SOURCE_VERSION_SQL)
    if events_ts is None and anomalies_ts is None:
        return None
    return f"{events_ts and events_ts.isoformat()}|{anomalies_ts and anomalies_ts.isoformat()}"


def batch_run_in_flight(
    instance: dg.DagsterInstance, batch_keys: set[dg.AssetKey]
) -> str | None:
    """Id of a queued or running run that writes a batch table (a sensor's or a user's CLI
    run): two runs swapping the same days at once would only slow each other down."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT), limit=100):
        if run.job_name == daily_batch_job.name or (run.asset_selection or set()) & batch_keys:
            return run.run_id
    return None


def decide_live_run(
    cursor: dict[str, Any], version: str | None, busy_run: str | None, now: float,
    min_gap_s: float,
) -> str | None:
    """Why no run is due (a SkipReason text), or None when a run should be requested."""
    if version is None:
        return "no event stored yet"
    if version == cursor.get("version"):
        return "no new event or anomaly since the last requested batch run"
    if busy_run is not None:
        return f"batch run {busy_run} is still in progress"
    waited = now - float(cursor.get("requested_at", 0.0))
    if waited < min_gap_s:
        return f"last batch run requested {waited:.0f}s ago (batch_live_min_gap_s={min_gap_s:g})"
    return None


def build_live_batch_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor, looking for new data every ``batch_live_interval_s``."""

    @dg.sensor(
        name=LIVE_BATCH_SENSOR,
        job=daily_batch_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "Materializes every batch asset (changed days only) while events stream in: one run "
            "at a time, when new rows were committed, at most every batch_live_min_gap_s. Turned "
            "on by `clickguard demo` while it runs; production relies on daily_batch_schedule."
        ),
    )
    def live_batch_sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource, batch: BatchResource
    ) -> dg.SensorResult | dg.SkipReason:
        """One run per new data version, never two batch runs at once."""
        cursor = json.loads(context.cursor) if context.cursor else {}
        version = source_version(postgres)
        busy = None
        if version is not None and version != cursor.get("version"):
            if context.repository_def is None:
                raise dg.DagsterInvariantViolationError("live_batch_sensor needs its repository")
            keys = dg.AssetSelection.groups(BATCH_GROUP).resolve(context.repository_def.asset_graph)
            busy = batch_run_in_flight(context.instance, set(keys))
        now = time.time()
        skip = decide_live_run(cursor, version, busy, now, batch.batch_live_min_gap_s)
        if skip is not None:
            return dg.SkipReason(skip)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"live-{version}", tags={"clickguard/trigger": "live"})
            ],
            cursor=json.dumps({"version": version, "requested_at": now}),
        )

    return live_batch_sensor
