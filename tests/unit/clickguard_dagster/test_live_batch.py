"""live_batch_sensor's decision (no services) and how it is wired."""

from __future__ import annotations

import dagster as dg

from clickguard_dagster.schedules import LIVE_BATCH_SENSOR, decide_live_run


def test_a_run_is_due_only_for_new_data_with_no_batch_run_in_flight() -> None:
    now = 1_000.0
    fresh = {"version": "v1", "requested_at": now - 300}
    assert decide_live_run({}, "v1", None, now, 60) is None  # first data ever
    assert decide_live_run(fresh, "v2", None, now, 60) is None
    assert decide_live_run({}, None, None, now, 60) == "no event stored yet"
    assert "no new event" in str(decide_live_run(fresh, "v1", None, now, 60))
    assert "run r-1 is still in progress" in str(decide_live_run(fresh, "v2", "r-1", now, 60))
    recent = {"version": "v1", "requested_at": now - 20}
    assert "requested 20s ago" in str(decide_live_run(recent, "v2", None, now, 60))
    assert decide_live_run(recent, "v2", None, now, 20) is None


def test_the_sensor_is_off_unless_turned_on_and_targets_the_daily_batch() -> None:
    from clickguard_dagster.definitions import defs

    live_batch_sensor = defs.resolve_sensor_def(LIVE_BATCH_SENSOR)
    assert live_batch_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert live_batch_sensor.job_name == "daily_batch"
    assert live_batch_sensor.minimum_interval_seconds == 30
