"""``stream_checks_sensor``: the stream's SLO and freshness checks, evaluated in the sensor.

The two checks of ``stream_events`` judge the stream as it is now, so they need no run: a
schedule that launched the ``stream_checks`` job every 10 minutes started a run process each
time (≈ 5 s of a core and ≈ 250 MB RSS on the 2-core machine, issue 10's idle and memory
budget). The sensor computes the same ``check_slo`` / ``check_freshness`` and reports them as
``AssetCheckEvaluation`` events, which the UI shows in each check's history like a run's. The
``stream_checks`` job stays for running them by hand.
"""

from __future__ import annotations

import dagster as dg

from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.checks.stream import (
    FRESHNESS_CHECK,
    SLO_CHECK,
    check_freshness,
    check_slo,
)
from clickguard_dagster.resources import PostgresResource, SloResource


def as_evaluation(check_name: str, result: dg.AssetCheckResult) -> dg.AssetCheckEvaluation:
    """The event a run would have stored for ``result`` of ``stream_events``' ``check_name``."""
    return dg.AssetCheckEvaluation(
        asset_key=stream_events.key,
        check_name=check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
    )


def evaluate_stream_checks(
    postgres: PostgresResource, slo: SloResource
) -> list[dg.AssetCheckEvaluation]:
    """Both checks of ``stream_events``, now."""
    return [
        as_evaluation(SLO_CHECK, check_slo(postgres, slo)),
        as_evaluation(FRESHNESS_CHECK, check_freshness(postgres, slo)),
    ]


def build_stream_checks_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor, every ``stream_checks_interval_s`` (fixed when the code location loads)."""

    @dg.sensor(
        name="stream_checks_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates stream_events' latency_slo and freshness checks (no run).",
    )
    def stream_checks_sensor(postgres: PostgresResource, slo: SloResource) -> dg.SensorResult:
        """The stream's latency SLO and freshness, as asset check evaluations."""
        return dg.SensorResult(asset_events=evaluate_stream_checks(postgres, slo))

    return stream_checks_sensor
