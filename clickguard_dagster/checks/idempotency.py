"""Idempotency: recomputing a day gives exactly the rows stored for it (fingerprints equal).

The check recomputes, with the asset's own Spark code, the days of its latest materialization
(up to idempotency_check_max_days) from the same snapshot: each day's source rows up to
the day mark recorded with the table's rows. Rows the stream added since are beyond the mark and
do not count; a day is skipped only when rows the run read have changed since (count or newest
time under the mark differ: deleted or updated rows). It stages the recomputed rows and compares
per-day row counts and content fingerprints with the table.
"""


from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import dagster as dg

from clickguard_dagster.batch import (
    Compute,
    DailyTable,
    DayMarks,
    drop_stage,
    fingerprint,
    recorded_stats,
    stage,
)
from clickguard_dagster.resources import BatchResource, PostgresResource


def check_idempotent(
    spec: DailyTable, compute: Compute, spark: Any, postgres: PostgresResource,
    batch: BatchResource, marks: DayMarks,
) -> dg.AssetCheckResult:
    """``marks``: the day marks of the asset's last run (what it read, per day)."""
    with postgres.connect() as conn:
        days = list(marks)
        seen = recorded_stats(conn, spec.asset_key)
        current = spec.source.stats_at(conn, marks) if days else {}
    unchanged = [
        d for d in days if current.get(d, (0, None)) == seen.get(d, (0, None))
    ][-batch.idempotency_check_max_days:]
    skipped = [d.isoformat() for d in days if d not in unchanged]
    if not unchanged:
        return dg.AssetCheckResult(
            passed=True,
            metadata={"days_checked": dg.MetadataValue.json([]), "skipped_changed": skipped},
        )
    # the stored rows' fingerprint is read while Spark recomputes (PostgreSQL work beside Spark's)
    with ThreadPoolExecutor(1, thread_name_prefix="stored-fingerprint") as pool:
        stored_later = pool.submit(stored_fingerprint, postgres, spec, unchanged)
        df = compute(spark, postgres, {d: marks[d] for d in unchanged}, batch)
        stage_name = stage(postgres, spec.table, df)
        try:
            with postgres.connect() as conn:
                again = fingerprint(conn, spec, unchanged, table=stage_name)
        finally:
            drop_stage(postgres, stage_name)
        stored = stored_later.result()
    differing = [d.isoformat() for d in unchanged if again[d] != stored[d]]
    return dg.AssetCheckResult(
        passed=not differing,
        metadata={
            "days_checked": dg.MetadataValue.json([d.isoformat() for d in unchanged]),
            "days_differing": dg.MetadataValue.json(differing),
            "skipped_changed": dg.MetadataValue.json(skipped),
            "stored": dg.MetadataValue.json({d.isoformat(): list(v) for d, v in stored.items()}),
            "recomputed": dg.MetadataValue.json({d.isoformat(): list(v) for d, v in again.items()}),
        },
    )


def stored_fingerprint(
    postgres: PostgresResource, spec: DailyTable, days: list[date]
) -> dict[date, tuple[int, str]]:
    with postgres.connect() as conn:
        return fingerprint(conn, spec, days)
