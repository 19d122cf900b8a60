"""``slo_report``: per-stage latency over every stored event of the recent window, as an asset.

The figures come from :func:`clickguard.slo.compute_slo` — the same function as ``GET /slo`` and
``clickguard slo-report`` — and are recorded as the materialization's metadata (a Markdown table,
the window, each stage's p50/p95/p99 and the targets); its check compares them with the targets.
``clickguard slo-report --since ... --until ...`` writes the same window's report files.

The window ends at a settled mark on ``events`` (:func:`clickguard_dagster.batch.settle_mark`):
no row with ``commit_ts`` before it can still appear, so the check, which recomputes the window
recorded in the materialization's metadata, judges exactly the rows the report covered.
"""

from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from clickguard.slo import STAGE_LABELS, SloResult, compute_slo, evaluate_targets
from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.batch import settle_mark
from clickguard_dagster.resources import PostgresResource, SloResource


@dg.asset(deps=[stream_events], group_name="stream", kinds={"postgres"})
def slo_report(
    context: dg.AssetExecutionContext, postgres: PostgresResource, slo: SloResource
) -> dg.MaterializeResult:
    """Per-stage latency p50/p95/p99 (produce→Kafka, Kafka→Spark, Spark→DB, end to end) over
    every event committed in the last slo_window_minutes. An asset because the report is a dated
    artefact people look at, with lineage to the stream."""
    with postgres.connect(autocommit=True) as conn:
        end = settle_mark(conn, ["events"], slo.batch_snapshot_timeout_s)
        start = end - timedelta(minutes=slo.slo_window_minutes)
        result = compute_slo(conn, (start, end), cdf=False)
    context.log.info(f"SLO report over {result.events:,} events in [{start}, {end})")
    metadata: dict[str, Any] = {
        "events": result.events,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "report": dg.MetadataValue.md(markdown(result)),
    }
    for name, stage in result.stages.items():
        for q in ("p50", "p95", "p99"):
            value = getattr(stage, q)
            metadata[f"{name}_{q}_ms"] = round(value, 1) if value is not None else -1.0
    metadata["targets"] = dg.MetadataValue.json(evaluate_targets(result, slo))
    return dg.MaterializeResult(metadata=metadata)


def markdown(result: SloResult) -> str:
    """The figures as a Markdown table (milliseconds)."""

    def f(v: float | None) -> str:
        return f"{v:,.1f}" if v is not None else "–"

    lines = ["| stage | p50 ms | p95 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {STAGE_LABELS[name]} | {f(st.p50)} | {f(st.p95)} | {f(st.p99)} | {f(st.max)} |"
        for name, st in result.stages.items()
    ]
    return "\n".join(lines) + f"\n\n{result.events:,} events, {result.method}."


def report_window(instance: dg.DagsterInstance) -> tuple[datetime, datetime] | None:
    """The window of slo_report's latest materialization (None: never materialized here)."""
    event = instance.get_latest_materialization_event(slo_report.key)
    mat = event.asset_materialization if event else None
    if mat is None or "window_start" not in mat.metadata:
        return None
    return (
        datetime.fromisoformat(str(mat.metadata["window_start"].value)),
        datetime.fromisoformat(str(mat.metadata["window_end"].value)),
    )


@dg.asset_check(asset=slo_report, name="slo_targets")
def slo_report_targets(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, slo: SloResource
) -> dg.AssetCheckResult:
    """Every SLO target (e2e p95, per-stage p50/p95) met over the window the
    latest report covered (the last window up to now if it never was materialized)."""
    from clickguard_dagster.checks.stream import check_slo

    return check_slo(postgres, slo, report_window(context.instance))
