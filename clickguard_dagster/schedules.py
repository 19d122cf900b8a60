"""Schedules: the daily batch and the periodic stream checks (crons from settings)."""

from __future__ import annotations

import dagster as dg

from clickguard.settings import get_settings
from clickguard_dagster.jobs import daily_batch_job, stream_checks_job

daily_batch_schedule = dg.ScheduleDefinition(
    name="daily_batch_schedule",
    job=daily_batch_job,
    cron_schedule=get_settings().batch_schedule_cron,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
stream_checks_schedule = dg.ScheduleDefinition(
    name="stream_checks_schedule",
    job=stream_checks_job,
    cron_schedule=get_settings().stream_checks_cron,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
