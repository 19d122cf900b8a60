"""``clickguard slo-report``: the SLO report (JSON, Markdown, CDF plot) of a window.

The figures are :mod:`clickguard.slo`'s (the same function as ``GET /slo`` and the Dagster
``slo_report`` asset); this module adds the report files, the targets' verdict and the command.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from clickguard.cli_types import COUNT, ISO_TIME, POSITIVE
from clickguard.settings import get_settings
from clickguard.slo import (
    CDF_QUANTILES,
    DEFAULT_MIN_EVENTS,
    STAGE_LABELS,
    WINDOW_COLUMNS,
    SloResult,
    SloTargets,
    compute_slo,
    evaluate_targets,
)
from clickguard_proof.report import Report


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


@click.command("slo-report")
@click.option("--minutes", type=POSITIVE, default=None,
              help="Window = the last N minutes (default: settings.slo_window_minutes).")
@click.option("--since", type=ISO_TIME, default=None,
              help="Window start, ISO 8601 (overrides --minutes).")
@click.option("--until", type=ISO_TIME, default=None,
              help="Window end, ISO 8601 (default now).")
@click.option("--by", "column", type=click.Choice(WINDOW_COLUMNS), default="commit_ts",
              show_default=True, help="Which timestamp must fall in the window.")
@click.option("--event-id-prefix", default=None,
              help="Only events whose event_id starts with this (one producer run).")
@click.option("--min-events", type=COUNT, default=DEFAULT_MIN_EVENTS, show_default=True,
              help="Fewer events than this in the window = failure (exit 1).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def slo_report(
    minutes: float | None, since: datetime | None, until: datetime | None, column: str,
    event_id_prefix: str | None, min_events: int, out: Path | None,
) -> None:
    """Per-stage p50/p95/p99 latency over every stored event of a window, with a CDF plot."""
    from clickguard import db

    s = get_settings()
    end = until or datetime.now(UTC)
    start = since or end - timedelta(minutes=minutes or s.slo_window_minutes)
    if start >= end:
        raise click.UsageError(f"the window is empty: --since {start.isoformat()} is not before "
                               f"--until {end.isoformat()}")
    with db.connect(s, "reader") as conn:
        result = compute_slo(conn, (start, end), column=column, event_id_prefix=event_id_prefix)
    report = slo_report_for(result, s, min_events)
    for row in report.rows:
        click.echo(
            f"{row['stage']:<14} p50 {_f(row['p50 ms'])} p95 {_f(row['p95 ms'])} "
            f"p99 {_f(row['p99 ms'])} ms"
        )
    folder = out or s.results_dir
    if result.events < min_events:  # no report: it would replace the last real one in folder
        raise click.ClickException(
            f"only {result.events:,} events in the window (< {min_events:,}): nothing written to "
            f"{folder}; widen the window or produce more (e.g. `clickguard produce --rate 5000 "
            "--duration 10`)"
        )
    paths = report.write(folder)
    click.echo(f"{result.events:,} events; wrote {paths['json']}, {paths['md']}, {paths['png']}")


def _f(v: float | None) -> str:
    return f"{v:9.1f}" if v is not None else "        –"
