"""Each batch asset's checks as one step, the checks running side by side.

An asset's checks read different things: data quality and keys query PostgreSQL (and run Great
Expectations in Python), the idempotency check recomputes the asset's days on Spark. As separate
steps of the in-process executor they ran one after the other. Here one step per asset runs
the selected checks in threads, so PostgreSQL's, Python's and Spark's work overlap (measured
before and after: docs/dagster.md, section Checks). The checks keep
their names, their blocking flags and their results; ``can_subset`` lets the UI or a selection
run any one of them alone. Each result's metadata adds ``seconds``, the check's own run time.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from clickguard_dagster.assets.anomalies import SUMMARY, anomaly_daily_summary, compute_summary
from clickguard_dagster.assets.items import (
    CATEGORIES,
    ITEMS,
    compute_categories,
    compute_items,
    popular_categories,
    popular_items,
)
from clickguard_dagster.assets.metrics import METRICS, compute_metrics, daily_metrics
from clickguard_dagster.assets.sessions import (
    FUNNEL,
    SESSIONS,
    compute_funnel,
    compute_sessions,
    daily_sessions,
    session_funnel,
)
from clickguard_dagster.batch import Compute, DailyTable, DayMarks, last_run_marks
from clickguard_dagster.checks.idempotency import check_idempotent
from clickguard_dagster.checks.keys import check_session_keys
from clickguard_dagster.checks.quality import (
    check_metrics_quality,
    check_ranges,
    check_sessions_quality,
)
from clickguard_dagster.resources import BatchResource, ExpectationsResource, PostgresResource


@dataclass(frozen=True)
class Inputs:
    """What the checks read: the database, the batch settings, (for idempotency) Spark, and
    the day marks of the asset's last run, read once for all of its checks."""

    postgres: PostgresResource
    batch: BatchResource
    spark: Any  # the run's Spark session, or None when no selected check needs one
    marks: DayMarks


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: Callable[[Inputs], dg.AssetCheckResult]
    blocking: bool = False
    needs_spark: bool = False


def idempotency(spec: DailyTable, compute: Compute) -> Check:
    return Check(
        "idempotency",
        f"Recomputing {spec.table}'s latest days gives identical rows (fingerprint).",
        lambda i: check_idempotent(spec, compute, i.spark, i.postgres, i.batch, i.marks),
        needs_spark=True,
    )


def value_ranges(table: str) -> Check:
    return Check("value_ranges", f"GX value domains of {table}",
                 lambda i: check_ranges(i.postgres, table, i.marks))


def _timed(check: Check, inputs: Inputs) -> tuple[dg.AssetCheckResult, float]:
    t0 = time.monotonic()
    result = check.run(inputs)
    return result, time.monotonic() - t0


def last_marks(postgres: PostgresResource, asset_key: str) -> DayMarks:
    """The day marks of the asset's last run (:func:`clickguard_dagster.batch.last_run_marks`)."""
    with postgres.connect() as conn:
        return last_run_marks(conn, asset_key)


def asset_checks(
    asset: Any, checks: list[Check],
    read_marks: Callable[[PostgresResource, str], DayMarks] = last_marks,
) -> dg.AssetChecksDefinition:
    """One multi-asset check (step ``<asset>_checks``) running ``checks`` of ``asset`` in
    parallel; a check that raises fails the step after the others' results are recorded.
    ``read_marks`` is called once per step; every check gets its answer in ``Inputs.marks``."""
    key: dg.AssetKey = asset.key
    specs = [dg.AssetCheckSpec(c.name, asset=key, description=c.description,
                               blocking=c.blocking) for c in checks]

    @dg.multi_asset_check(specs=specs, can_subset=True, name=f"{key.to_python_identifier()}_checks")
    def _checks(
        context: dg.AssetCheckExecutionContext, postgres: PostgresResource,
        batch: BatchResource, spark: LazyPySparkResource,
        expectations: ExpectationsResource,  # GX, importing since the run started
    ) -> Iterator[dg.AssetCheckResult]:
        selected = [c for c in checks
                    if dg.AssetCheckKey(key, c.name) in context.selected_asset_check_keys]
        # the session is made here, in the run's main thread, and only if a check needs it
        session = spark.spark_session if any(c.needs_spark for c in selected) else None
        inputs = Inputs(postgres, batch, session, read_marks(postgres, key.to_user_string()))
        with ThreadPoolExecutor(max_workers=max(1, len(selected)),
                                thread_name_prefix=f"{key.to_python_identifier()}-check") as pool:
            futures = [(c, pool.submit(_timed, c, inputs)) for c in selected]
            failures: list[BaseException] = []
            for c, future in futures:
                try:
                    result, seconds = future.result()
                except Exception as exc:  # noqa: BLE001 - reported below, after the others
                    failures.append(exc)
                    context.log.error(f"check {c.name} of {key.to_user_string()} raised: {exc!r}")
                    continue
                yield dg.AssetCheckResult(
                    asset_key=key, check_name=c.name, passed=result.passed,
                    severity=result.severity, description=result.description,
                    metadata={**(result.metadata or {}), "seconds": round(seconds, 2)},
                )
        if failures:
            raise failures[0]

    return _checks


batch_asset_checks = [
    asset_checks(daily_sessions, [
        Check("data_quality",
              "GX: non-null keys, duration >= 0, counts >= 0, end >= start, allowed event "
              "types, and per-day event totals equal to the events table. Blocks downstream "
              "assets on failure.",
              lambda i: check_sessions_quality(i.postgres, i.marks), blocking=True),
        Check("keys",
              "No duplicate (overlapping) sessions; each session's events exist in `events`. "
              "Blocks the downstream assets when it fails. Event ids stored again with another "
              "event time (distinct events by the stream's contract) are counted, not failed.",
              lambda i: check_session_keys(i.postgres, i.marks), blocking=True),
        idempotency(SESSIONS, compute_sessions),
    ]),
    asset_checks(daily_metrics, [
        Check("data_quality",
              "GX: daily totals (clicks, purchases, sessions, items) equal counts in events.",
              lambda i: check_metrics_quality(i.postgres, i.marks), blocking=True),
        idempotency(METRICS, compute_metrics),
    ]),
    asset_checks(session_funnel, [value_ranges("session_funnel"),
                                  idempotency(FUNNEL, compute_funnel)]),
    asset_checks(popular_items, [value_ranges("popular_items"),
                                 idempotency(ITEMS, compute_items)]),
    asset_checks(popular_categories, [value_ranges("popular_categories"),
                                      idempotency(CATEGORIES, compute_categories)]),
    asset_checks(anomaly_daily_summary, [value_ranges("anomaly_daily_summary"),
                                         idempotency(SUMMARY, compute_summary)]),
]
