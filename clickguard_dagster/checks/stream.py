"""Checks of ``stream_events``: per-stage latency SLO and freshness of the stream's output."""


import dagster as dg

from clickguard.settings import Settings, get_settings
from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.resources import PostgresResource

# stage name -> latency expression (ms) over `events` (see 0001_stream_core.sql)
STAGES = {
    "produce_to_kafka": "kafka_ts - ingest_ts",
    "kafka_to_spark": "batch_start_ts - kafka_ts",
    "spark_to_db": "commit_ts - batch_start_ts",
    "end_to_end": "commit_ts - ingest_ts",
}


def slo_figures(postgres: PostgresResource, window_minutes: float) -> dict[str, float]:
    """p50/p95 (ms) per stage over events committed in the last ``window_minutes``."""
    parts = []
    for name, expr in STAGES.items():
        ms = f"extract(epoch FROM ({expr})) * 1000"
        for q in (50, 95):
            parts.append(
                f"percentile_cont({q / 100}) WITHIN GROUP (ORDER BY {ms}) AS {name}_p{q}"
            )
    sql = (
        f"SELECT count(*) AS samples, {', '.join(parts)} FROM events"
        " WHERE commit_ts > now() - make_interval(secs => %s)"
    )
    with postgres.connect() as conn:
        cur = conn.execute(sql, (window_minutes * 60,))
        row = cur.fetchone()
        names = [d.name for d in cur.description or []]
    return {
        n: round(float(v), 1) if v is not None else -1.0
        for n, v in zip(names, row, strict=True)
    }


def check_slo(postgres: PostgresResource, settings: Settings) -> dg.AssetCheckResult:
    figures = slo_figures(postgres, settings.slo_window_minutes)
    breaches = []
    if figures["samples"] > 0:
        if figures["end_to_end_p95"] > settings.slo_e2e_p95_ms:
            breaches.append(
                f"end_to_end p95 {figures['end_to_end_p95']} > {settings.slo_e2e_p95_ms}"
            )
        for stage in ("produce_to_kafka", "kafka_to_spark", "spark_to_db"):
            for q, target in ((50, settings.slo_stage_p50_ms), (95, settings.slo_stage_p95_ms)):
                value = figures[f"{stage}_p{q}"]
                if value > target:
                    breaches.append(f"{stage} p{q} {value} > {target}")
    return dg.AssetCheckResult(
        passed=not breaches,
        severity=dg.AssetCheckSeverity.ERROR,
        description="no events in the window" if figures["samples"] == 0 else None,
        metadata={
            **{k: (int(v) if k == "samples" else v) for k, v in figures.items()},
            "window_minutes": settings.slo_window_minutes,
            "target_e2e_p95_ms": settings.slo_e2e_p95_ms,
            "target_stage_p50_ms": settings.slo_stage_p50_ms,
            "target_stage_p95_ms": settings.slo_stage_p95_ms,
            "breaches": dg.MetadataValue.json(breaches),
        },
    )


def check_freshness(postgres: PostgresResource, settings: Settings) -> dg.AssetCheckResult:
    """Fresh = a batch committed or events stored within settings.stream_stale_seconds."""
    with postgres.connect() as conn:
        row = conn.execute(
            "SELECT (SELECT max(committed_at) FROM batch_ledger),"
            " (SELECT max(commit_ts) FROM events),"
            " extract(epoch FROM now() - GREATEST("
            "  (SELECT max(committed_at) FROM batch_ledger), (SELECT max(commit_ts) FROM events)))"
        ).fetchone()
    last_batch, last_event, age = row
    fresh = age is not None and float(age) <= settings.stream_stale_seconds
    return dg.AssetCheckResult(
        passed=fresh,
        metadata={
            "last_batch_at": last_batch.isoformat() if last_batch else "never",
            "last_event_commit_at": last_event.isoformat() if last_event else "never",
            "age_s": round(float(age), 1) if age is not None else -1.0,
            "max_age_s": settings.stream_stale_seconds,
        },
    )


@dg.asset_check(asset=stream_events.key, name="latency_slo")
def stream_events_slo(postgres: PostgresResource) -> dg.AssetCheckResult:
    """p95 end-to-end and p50/p95 per stage (produce->Kafka, Kafka->Spark, Spark->DB) of the
    recently stored events against the configured targets; the figures are in the metadata."""
    return check_slo(postgres, get_settings())


@dg.asset_check(asset=stream_events.key, name="freshness")
def stream_events_freshness(postgres: PostgresResource) -> dg.AssetCheckResult:
    """The stream committed a batch (or stored events) within settings.stream_stale_seconds."""
    return check_freshness(postgres, get_settings())
