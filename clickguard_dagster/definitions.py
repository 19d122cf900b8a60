"""The code location: ``dagster asset materialize --select daily_sessions`` loads this module.

The one place the configuration is read: the resources (``build_resources``) and the sensors'
intervals and schedules' crons come from ``clickguard.settings`` here, and every asset, check,
sensor and op receives what it needs as a resource.
"""

from __future__ import annotations

import os

import dagster as dg

from clickguard.settings import get_settings
from clickguard_dagster.assets.anomalies import anomaly_daily_summary
from clickguard_dagster.assets.items import popular_categories, popular_items
from clickguard_dagster.assets.metrics import daily_metrics
from clickguard_dagster.assets.sessions import daily_sessions, session_funnel
from clickguard_dagster.assets.slo import slo_report, slo_report_targets
from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.checks.batch import batch_asset_checks
from clickguard_dagster.checks.stream import stream_events_freshness, stream_events_slo
from clickguard_dagster.jobs import (
    daily_batch_job,
    dlq_replay,
    event_partitions,
    stream_checks_job,
)
from clickguard_dagster.resources import build_resources
from clickguard_dagster.schedules import build_live_batch_sensor, build_schedules
from clickguard_dagster.sensors.dlq import build_dlq_alert_sensor
from clickguard_dagster.sensors.stream_checks import build_stream_checks_sensor
from clickguard_dagster.sensors.stream_health import build_stream_health_sensor

BATCH_ASSETS = [
    daily_sessions, session_funnel, daily_metrics, popular_items, popular_categories,
    anomaly_daily_summary,
]
ASSET_CHECKS = [
    *batch_asset_checks, stream_events_slo, stream_events_freshness, slo_report_targets,
]

settings = get_settings()
defs = dg.Definitions(
    assets=[stream_events, *BATCH_ASSETS, slo_report],
    asset_checks=ASSET_CHECKS,
    jobs=[daily_batch_job, stream_checks_job, dlq_replay, event_partitions],
    schedules=build_schedules(settings.batch_schedule_cron, settings.event_partitions_cron),
    sensors=[
        build_dlq_alert_sensor(settings.dlq_poll_interval_s),
        build_stream_health_sensor(settings.stream_health_interval_s),
        build_stream_checks_sensor(settings.stream_checks_interval_s),
        build_live_batch_sensor(settings.batch_live_interval_s),
    ],
    # CLICKGUARD_* variables set in the environment reach the resources as dg.EnvVar
    resources=build_resources(settings, env=os.environ),
    # one process per run: one Spark session serves every asset and check of the run
    executor=dg.in_process_executor,
)
