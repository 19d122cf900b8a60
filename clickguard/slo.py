"""Per-stage latency percentiles over the events of a window: the one definition.

Stages, from the four timestamps the streaming job stores on each event row:

- produce→Kafka  = ``kafka_ts − ingest_ts``  (producer encode time → broker LogAppendTime)
- Kafka→Spark    = ``batch_start_ts − kafka_ts``
- Spark→DB       = ``commit_ts − batch_start_ts``
- end to end     = ``commit_ts − ingest_ts``

Method: PostgreSQL ``percentile_cont`` (continuous percentile, linear interpolation between the
two nearest ranks — numpy's default ``linear`` method) over the rows whose ``commit_ts`` (or
``ingest_ts``) falls in [start, end); nothing is sampled unless ``max_events`` keeps only the
newest N of the window. ``GET /slo``, ``clickguard slo-report``, the Dagster ``slo_report`` asset
and its checks all call :func:`slo_query` (the API on its async pool, the rest through
:func:`compute_slo`), so for the same window they give the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg


class SloTargets(Protocol):
    """The targets a result is judged against: ``Settings`` or the Dagster ``SloResource``."""

    @property
    def slo_e2e_p95_ms(self) -> float: ...
    @property
    def slo_stage_p50_ms(self) -> float: ...
    @property
    def slo_stage_p95_ms(self) -> float: ...


STAGES: dict[str, tuple[str, str]] = {
    "produce_to_kafka": ("kafka_ts", "ingest_ts"),
    "kafka_to_spark": ("batch_start_ts", "kafka_ts"),
    "spark_to_db": ("commit_ts", "batch_start_ts"),
    "end_to_end": ("commit_ts", "ingest_ts"),
}
STAGE_LABELS = {
    "produce_to_kafka": "produce→Kafka",
    "kafka_to_spark": "Kafka→Spark",
    "spark_to_db": "Spark→DB",
    "end_to_end": "end to end",
}
PERCENTILES = (0.5, 0.95, 0.99)
CDF_QUANTILES = [i / 200 for i in range(201)]
WINDOW_COLUMNS = ("commit_ts", "ingest_ts")
DEFAULT_MIN_EVENTS = 10_000

Window = tuple[datetime, datetime]


@dataclass
class StageLatency:
    """Latency of one stage in milliseconds over every event of the window."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    min: float | None
    max: float | None
    cdf_ms: list[float] = field(default_factory=list)  # value at each of CDF_QUANTILES


@dataclass
class SloResult:
    window_start: datetime
    window_end: datetime
    window_column: str
    events: int
    stages: dict[str, StageLatency]
    method: str = "percentile_cont (linear interpolation) over all rows in PostgreSQL"

    def to_dict(self, with_cdf: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_cdf:
            for s in d["stages"].values():
                s.pop("cdf_ms", None)
        return d


def resolve_window(window: Window | timedelta, now: datetime | None = None) -> Window:
    """A (start, end) pair; a timedelta means the last ``window`` up to now."""
    if isinstance(window, timedelta):
        end = now or datetime.now(UTC)
        return end - window, end
    return window


def slo_query(
    window: Window | timedelta,
    *,
    column: str = "commit_ts",
    cdf: bool = True,
    event_id_prefix: str | None = None,
    max_events: int | None = None,
    now: datetime | None = None,
) -> tuple[str, dict[str, Any], Window]:
    """(SQL, parameters, resolved window) of :func:`compute_slo`; run it on any connection and
    pass its one row to :func:`slo_from_row`."""
    if column not in WINDOW_COLUMNS:
        raise ValueError(f"column must be one of {WINDOW_COLUMNS}")
    start, end = resolve_window(window, now)
    parts = []
    for name, (hi, lo) in STAGES.items():
        expr = f"extract(epoch FROM {hi} - {lo}) * 1000.0"
        parts.append(
            f"percentile_cont(%(pct)s::float8[]) WITHIN GROUP (ORDER BY {expr}) AS {name}_pct, "
            f"avg({expr})::float8 AS {name}_mean, min({expr})::float8 AS {name}_min, "
            f"max({expr})::float8 AS {name}_max"
            + (
                f", percentile_cont(%(cdf)s::float8[]) WITHIN GROUP (ORDER BY {expr}) "
                f"AS {name}_cdf"
                if cdf
                else ""
            )
        )
    rows = (
        f"SELECT {', '.join(sorted({c for pair in STAGES.values() for c in pair}))} "
        f"FROM events WHERE {column} >= %(start)s AND {column} < %(end)s"
        + (" AND event_id LIKE %(prefix)s" if event_id_prefix else "")
        + (f" ORDER BY {column} DESC LIMIT %(limit)s" if max_events is not None else "")
    )
    sql = f"SELECT count(*) AS events, {', '.join(parts)} FROM ({rows}) AS window_events"
    params = {"pct": list(PERCENTILES), "cdf": CDF_QUANTILES, "start": start, "end": end,
              "prefix": f"{event_id_prefix}%", "limit": max_events}
    return sql, params, (start, end)


def slo_from_row(
    row: Any, window: Window, column: str = "commit_ts", cdf: bool = True
) -> SloResult:
    """The :class:`SloResult` of the one row :func:`slo_query` returns (tuple or dict row)."""
    if isinstance(row, dict):
        row = list(row.values())
    assert row is not None
    count = int(row[0])
    stages: dict[str, StageLatency] = {}
    width = 5 if cdf else 4
    for i, name in enumerate(STAGES):
        pct, mean, lo, hi, *rest = row[1 + i * width : 1 + (i + 1) * width]
        p = [float(v) for v in pct] if pct else [None, None, None]
        stages[name] = StageLatency(
            p50=p[0], p95=p[1], p99=p[2], mean=mean, min=lo, max=hi,
            cdf_ms=[float(v) for v in rest[0]] if cdf and rest and rest[0] else [],
        )
    return SloResult(window[0], window[1], column, count, stages)


def compute_slo(
    conn: psycopg.Connection[Any],
    window: Window | timedelta,
    *,
    column: str = "commit_ts",
    cdf: bool = True,
    event_id_prefix: str | None = None,
    max_events: int | None = None,
) -> SloResult:
    """Per-stage p50/p95/p99 (+mean/min/max, CDF) of events with ``column`` in [start, end)
    (and, if given, an ``event_id`` starting with ``event_id_prefix``: one producer run).

    ``max_events`` keeps only the newest N of the window (an index range scan with a LIMIT): a
    monitor that runs every few minutes must not sort millions of rows on the machine it
    monitors (at 5,000 events/s, 60 min hold 18 M). None = every event."""
    sql, params, resolved = slo_query(
        window, column=column, cdf=cdf, event_id_prefix=event_id_prefix, max_events=max_events
    )
    row = conn.execute(sql, params).fetchone()
    return slo_from_row(row, resolved, column, cdf)


def evaluate_targets(result: SloResult, settings: SloTargets) -> dict[str, dict[str, Any]]:
    """Each SLO target of the settings with the measured value and whether it is met."""
    checks: dict[str, dict[str, Any]] = {}
    e2e = result.stages["end_to_end"].p95
    checks["end_to_end.p95"] = {
        "target_ms": settings.slo_e2e_p95_ms, "measured_ms": e2e,
        "ok": e2e is not None and e2e <= settings.slo_e2e_p95_ms,
    }
    for name in ("produce_to_kafka", "kafka_to_spark", "spark_to_db"):
        st = result.stages[name]
        for q, target in (("p50", settings.slo_stage_p50_ms), ("p95", settings.slo_stage_p95_ms)):
            v = getattr(st, q)
            checks[f"{name}.{q}"] = {
                "target_ms": target, "measured_ms": v, "ok": v is not None and v <= target,
            }
    return checks


