"""Per-stage latency SLO over EVERY stored event of a window (the original used 4 samples).

Stages, from the four timestamps the streaming job stores on each event row:

- produce→Kafka  = ``kafka_ts − ingest_ts``  (producer encode time → broker LogAppendTime)
- Kafka→Spark    = ``batch_start_ts − kafka_ts``
- Spark→DB       = ``commit_ts − batch_start_ts``
- end to end     = ``commit_ts − ingest_ts``

Method: PostgreSQL ``percentile_cont`` (continuous percentile, linear interpolation between the
two nearest ranks — the same definition as numpy's default ``linear`` method) over all rows whose
``commit_ts`` (or ``ingest_ts``) falls in the window; nothing is sampled. The CDF plot uses the same
function at 201 evenly spaced quantiles. :func:`compute_slo` is pure (a connection in, numbers
out) so the Dagster asset ``slo_report`` and the capacity bench call it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import click
import psycopg

from clickguard.proof.report import Report
from clickguard.settings import get_settings


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


def compute_slo(
    conn: psycopg.Connection,
    window: Window | timedelta,
    *,
    column: str = "commit_ts",
    cdf: bool = True,
    event_id_prefix: str | None = None,
    max_events: int | None = None,
) -> SloResult:
    """Per-stage p50/p95/p99 (+mean/min/max, CDF) of events with ``column`` in [start, end)
    (and, if given, an ``event_id`` starting with ``event_id_prefix``: one producer run).

    ``max_events`` keeps only the newest N of the window (an index range scan with a LIMIT, as
    the API's /slo does): a monitor that runs every few minutes must not sort millions of rows
    on the machine it monitors (at 5,000 events/s, 60 min hold 18 M). None = every event."""
    if column not in WINDOW_COLUMNS:
        raise ValueError(f"column must be one of {WINDOW_COLUMNS}")
    start, end = resolve_window(window)
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
    sql = f"SELECT count(*), {', '.join(parts)} FROM ({rows}) AS window_events"
    row = conn.execute(
        sql, {"pct": list(PERCENTILES), "cdf": CDF_QUANTILES, "start": start, "end": end,
              "prefix": f"{event_id_prefix}%", "limit": max_events},
    ).fetchone()
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
    return SloResult(start, end, column, count, stages)


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


def slo_rows(result: SloResult) -> list[dict[str, Any]]:
    """One Markdown row per stage."""
    return [
        {
            "stage": STAGE_LABELS[name],
            "events": result.events,
            "p50 ms": st.p50, "p95 ms": st.p95, "p99 ms": st.p99,
            "mean ms": st.mean, "max ms": st.max,
        }
        for name, st in result.stages.items()
    ]


def plot_cdf(result: SloResult) -> Any:
    """A plot function drawing each stage's latency CDF (log x axis)."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for name, st in result.stages.items():
            if st.cdf_ms:
                xs = [max(v, 0.1) for v in st.cdf_ms]
                ax.plot(xs, [q * 100 for q in CDF_QUANTILES], label=STAGE_LABELS[name])
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale; values ≤ 0.1 ms drawn at 0.1)")
        ax.set_ylabel("events (%)")
        ax.axhline(95, color="grey", lw=0.6, ls="--")
        ax.axhline(99, color="grey", lw=0.6, ls=":")
        ax.grid(True, which="both", alpha=0.3)
        if result.events:
            ax.legend(loc="lower right")
        ax.set_title(f"Per-stage latency CDF over {result.events:,} events", fontsize=10)

    return draw


def slo_report_for(
    result: SloResult, settings: SloTargets, min_events: int = DEFAULT_MIN_EVENTS
) -> Report:
    """The Report (JSON/MD/PNG) of an SLO result, with targets and the ≥ min_events rule."""
    targets = evaluate_targets(result, settings)
    enough = result.events >= min_events
    return Report(
        name="slo",
        title="SLO report: per-stage latency over every event",
        data={**result.to_dict(with_cdf=True), "targets": targets, "min_events": min_events,
              "enough_events": enough},
        rows=slo_rows(result),
        notes=[
            f"Window: `{result.window_column}` in [{result.window_start:%Y-%m-%d %H:%M:%S}, "
            f"{result.window_end:%Y-%m-%d %H:%M:%S}) UTC, {result.events:,} events "
            f"(minimum {min_events:,}: {'met' if enough else 'NOT met'}).",
            f"Method: {result.method}; no sampling. Stages: produce→Kafka = kafka_ts − ingest_ts, "
            "Kafka→Spark = batch_start_ts − kafka_ts, Spark→DB = commit_ts − batch_start_ts, "
            "end to end = commit_ts − ingest_ts.",
            "Targets: " + ", ".join(
                f"{k} ≤ {v['target_ms']:.0f} ms ({'ok' if v['ok'] else 'MISSED'})"
                for k, v in targets.items()
            ) + ".",
            "Original (4 samples): p50 produce→Kafka 828 ms, Kafka→Spark 2,648 ms, "
            "Spark→DB 6,586 ms; p95 end to end 13,169 ms.",
        ],
        plot=plot_cdf(result),
        passed=enough and all(v["ok"] for v in targets.values()),
    )


def _parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@click.command("slo-report")
@click.option("--minutes", type=float, default=None,
              help="Window = the last N minutes (default: settings.slo_window_minutes).")
@click.option("--since", default=None, help="Window start, ISO 8601 (overrides --minutes).")
@click.option("--until", default=None, help="Window end, ISO 8601 (default now).")
@click.option("--by", "column", type=click.Choice(WINDOW_COLUMNS), default="commit_ts",
              show_default=True, help="Which timestamp must fall in the window.")
@click.option("--event-id-prefix", default=None,
              help="Only events whose event_id starts with this (one producer run).")
@click.option("--min-events", default=DEFAULT_MIN_EVENTS, show_default=True,
              help="Fewer events than this in the window = failure (exit 1).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def slo_report(
    minutes: float | None, since: str | None, until: str | None, column: str,
    event_id_prefix: str | None, min_events: int, out: Path | None,
) -> None:
    """Per-stage p50/p95/p99 latency over every stored event of a window, with a CDF plot."""
    from clickguard import db

    s = get_settings()
    end = _parse_ts(until) or datetime.now(UTC)
    start = _parse_ts(since) or end - timedelta(minutes=minutes or s.slo_window_minutes)
    with db.connect(s, "reader") as conn:
        result = compute_slo(conn, (start, end), column=column, event_id_prefix=event_id_prefix)
    report = slo_report_for(result, s, min_events)
    paths = report.write(out or s.results_dir)
    for row in report.rows:
        click.echo(
            f"{row['stage']:<14} p50 {_f(row['p50 ms'])} p95 {_f(row['p95 ms'])} "
            f"p99 {_f(row['p99 ms'])} ms"
        )
    click.echo(f"{result.events:,} events; wrote {paths['json']}, {paths['md']}, {paths['png']}")
    if result.events < min_events:
        raise click.ClickException(
            f"only {result.events:,} events in the window (< {min_events:,}): widen it or "
            "produce more (e.g. `clickguard produce --rate 5000 --duration 10`)"
        )


def _f(v: float | None) -> str:
    return f"{v:9.1f}" if v is not None else "        –"
