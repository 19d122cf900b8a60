"""Checks of ``stream_events``: per-stage latency SLO and freshness of the stream's output.

``stream_events`` is not materialized by Dagster, so these two judge the stream as it is now (a
window ending at the check's run); ``slo_report``'s target check instead recomputes the exact
window its report covered (``check_slo(window=...)``).
"""


from datetime import timedelta
from typing import Any

import dagster as dg

from clickguard import ledger
from clickguard.slo import Window, compute_slo, evaluate_targets
from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.resources import PostgresResource, SloResource

SLO_CHECK = "latency_slo"
FRESHNESS_CHECK = "freshness"


def breaches_of(result_targets: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable lines for every missed target of ``evaluate_targets``."""
    return [
        f"{key.replace('.', ' ')} {round(t['measured_ms'], 1)} > {t['target_ms']}"
        for key, t in result_targets.items()
        if not t["ok"] and t["measured_ms"] is not None
    ]


def check_slo(
    postgres: PostgresResource, slo: SloResource, window: Window | None = None
) -> dg.AssetCheckResult:
    """Targets over the newest ``slo.slo_check_max_events`` events of ``window`` (default: the
    last slo.slo_window_minutes): the check runs every few minutes on the machine it checks."""
    with postgres.connect() as conn:
        result = compute_slo(
            conn, window or timedelta(minutes=slo.slo_window_minutes), cdf=False,
            max_events=slo.slo_check_max_events,
        )
    figures: dict[str, float] = {}
    for name, stage in result.stages.items():
        for q in ("p50", "p95"):
            value = getattr(stage, q)
            figures[f"{name}_{q}"] = round(value, 1) if value is not None else -1.0
    breaches = breaches_of(evaluate_targets(result, slo)) if result.events else []
    return dg.AssetCheckResult(
        passed=not breaches,
        severity=dg.AssetCheckSeverity.ERROR,
        description="no events in the window" if result.events == 0 else None,
        metadata={
            "samples": result.events,
            **figures,
            "window_minutes": slo.slo_window_minutes,
            "max_samples": slo.slo_check_max_events,
            "window_start": result.window_start.isoformat(),
            "window_end": result.window_end.isoformat(),
            "target_e2e_p95_ms": slo.slo_e2e_p95_ms,
            "target_stage_p50_ms": slo.slo_stage_p50_ms,
            "target_stage_p95_ms": slo.slo_stage_p95_ms,
            "breaches": dg.MetadataValue.json(breaches),
        },
    )


def check_freshness(postgres: PostgresResource, slo: SloResource) -> dg.AssetCheckResult:
    """Fresh = a batch committed or events stored within slo.stream_stale_seconds."""
    with postgres.connect() as conn:
        f = ledger.freshness(conn)
    return dg.AssetCheckResult(
        passed=f.fresh(slo.stream_stale_seconds),
        metadata={
            "last_batch_at": f.last_batch_at.isoformat() if f.last_batch_at else "never",
            "last_event_commit_at": f.last_event_at.isoformat() if f.last_event_at else "never",
            "age_s": round(f.age_s, 1) if f.age_s is not None else -1.0,
            "max_age_s": slo.stream_stale_seconds,
        },
    )


@dg.asset_check(asset=stream_events.key, name=SLO_CHECK)
def stream_events_slo(postgres: PostgresResource, slo: SloResource) -> dg.AssetCheckResult:
    """p95 end-to-end and p50/p95 per stage (produce->Kafka, Kafka->Spark, Spark->DB) of the
    recently stored events against the configured targets; the figures are in the metadata."""
    return check_slo(postgres, slo)


@dg.asset_check(asset=stream_events.key, name=FRESHNESS_CHECK)
def stream_events_freshness(postgres: PostgresResource, slo: SloResource) -> dg.AssetCheckResult:
    """The stream committed a batch (or stored events) within stream_stale_seconds."""
    return check_freshness(postgres, slo)
