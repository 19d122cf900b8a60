"""``slo_report``: per-stage latency over every stored event of the recent window, as an asset.

The figures come from :func:`clickguard.proof.slo.compute_slo` — the same code as
``clickguard slo-report`` — and the report files (JSON, Markdown, CDF plot) land in the results
folder; its check compares the figures with the configured targets.
"""

from datetime import timedelta

import dagster as dg

from clickguard.proof.slo import compute_slo, evaluate_targets, slo_report_for
from clickguard.settings import get_settings
from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.resources import PostgresResource


@dg.asset(
    deps=[stream_events],
    group_name="stream",
    kinds={"postgres"},
    description="Per-stage latency p50/p95/p99 (produce→Kafka, Kafka→Spark, Spark→DB, end to end) "
    "over every event committed in the last settings.slo_window_minutes, with a CDF plot.",
)
def slo_report(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Why an asset: the report is a dated artefact people look at, with lineage to the stream."""
    settings = get_settings()
    with postgres.connect() as conn:
        result = compute_slo(conn, timedelta(minutes=settings.slo_window_minutes))
    report = slo_report_for(result, settings, min_events=1)
    paths = report.write(settings.results_dir)
    context.log.info(f"SLO report over {result.events:,} events written to {paths['md']}")
    metadata: dict[str, object] = {
        "events": result.events,
        "report": dg.MetadataValue.path(str(paths["md"])),
        "plot": dg.MetadataValue.path(str(paths["png"])),
    }
    for name, stage in result.stages.items():
        for q in ("p50", "p95", "p99"):
            value = getattr(stage, q)
            metadata[f"{name}_{q}_ms"] = round(value, 1) if value is not None else -1.0
    metadata["targets"] = dg.MetadataValue.json(evaluate_targets(result, settings))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=slo_report, name="slo_targets")
def slo_report_targets(postgres: PostgresResource) -> dg.AssetCheckResult:
    """Every SLO target of the settings (e2e p95, per-stage p50/p95) met over the window."""
    from clickguard_dagster.checks.stream import check_slo

    return check_slo(postgres, get_settings())
