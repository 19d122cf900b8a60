"""`clickguard bench latency`: end-to-end latency at a fixed rate with the whole stack up.

One command for issue 10's latency target (p95 ≤ 1,000 ms, p99 ≤ 1,500 ms at 5,000 events/s
over ≥ 5 minutes): it checks that the stream, the API and Dagster are all up, waits until the
stream has drained, leaves it idle for ``--idle`` seconds (an idle stream must be ready for the
first event: no warm-up stall), produces with the realistic generator at ``--rate`` for
``--minutes`` (``ingest_ts`` = real send time), waits until every event is committed, and then
computes latency over EVERY event of the run (``compute_slo`` by ``ingest_ts`` and the run's
event-id prefix), overall and per minute, with the CPU of each node. It writes
``bench-latency.{json,md,png}`` and the standard ``slo.{json,md,png}`` of the same window.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from clickguard import db
from clickguard.cli_types import COUNT, NON_NEGATIVE, POSITIVE
from clickguard.settings import Settings, get_settings
from clickguard.slo import compute_slo
from clickguard_proof.report import Report
from clickguard_proof.slo import slo_report_for
from clickguard_proof.stack_load import (
    CpuSampler,
    load_average,
    missing_nodes,
    node_pids,
    require_whole_stack,
    wait_stream_running,
)
from clickguard_proof.stream import LagMonitor, wait_caught_up

P95_TARGET_MS = 1000.0
P99_TARGET_MS = 1500.0
DRAIN_TIMEOUT_S = 300.0


def windows(
    conn: Any, start: datetime, end: datetime, prefix: str, seconds: int
) -> list[tuple[datetime, int, list[float]]]:
    """(window start, events, e2e [p50, p95, p99] ms) of the run's events ingested in
    [start, end), by ``seconds``-long windows of ``ingest_ts`` counted from ``start``."""
    return conn.execute(
        "SELECT %(t0)s + make_interval(secs => floor(extract(epoch FROM ingest_ts - %(t0)s)"
        "   / %(w)s) * %(w)s) AS w, count(*),"
        " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
        "   (ORDER BY extract(epoch FROM commit_ts - ingest_ts) * 1000.0)"
        " FROM events WHERE ingest_ts >= %(t0)s AND ingest_ts < %(t1)s"
        " AND event_id LIKE %(prefix)s GROUP BY 1 ORDER BY 1",
        {"t0": start, "t1": end, "w": seconds, "prefix": f"{prefix}%"},
    ).fetchall()


def _percentiles(n: int, p: list[float]) -> dict[str, Any]:
    return {"events": int(n), "e2e p50 ms": round(p[0], 1), "e2e p95 ms": round(p[1], 1),
            "e2e p99 ms": round(p[2], 1)}


def per_minute(conn: Any, start: datetime, end: datetime, prefix: str) -> list[dict[str, Any]]:
    """e2e percentiles of the run's events by clock minute of ``ingest_ts`` (the windows count
    from the top of ``start``'s minute; only the run's events carry ``prefix``)."""
    top = start.replace(second=0, microsecond=0)
    return [{"minute": w.strftime("%H:%M"), **_percentiles(n, p)}
            for w, n, p in windows(conn, top, end, prefix, 60)]


def first_minute(conn: Any, start: datetime, prefix: str) -> list[dict[str, Any]]:
    """e2e percentiles of the run's first minute by 10 s of ``ingest_ts`` after ``start``: a
    stream that was idle (or just started) shows its warm-up here, which a minute hides."""
    return [
        {"seconds": f"{s}-{s + 10}", **_percentiles(n, p)}
        for w, n, p in windows(conn, start, start + timedelta(seconds=60), prefix, 10)
        for s in [round((w - start).total_seconds())]
    ]


def run_latency(settings: Settings, rate: int, minutes: float, idle_s: float,
                echo: Any = print) -> dict[str, Any]:
    """Produce at ``rate`` for ``minutes`` after ``idle_s`` of idleness; measure every event."""
    from clickguard_producer.core import produce, register_schemas
    from clickguard_producer.faults import FaultInjector
    from clickguard_producer.generator import Generator, GeneratorConfig

    wait_stream_running(settings, echo=echo)
    if not wait_caught_up(settings, DRAIN_TIMEOUT_S, echo):
        raise click.ClickException("the stream did not drain its backlog before the run")
    schema_id, _ = register_schemas(settings)
    if idle_s > 0:
        echo(f"stream idle for {idle_s:.0f} s before the first event")
        time.sleep(idle_s)
    run_id = f"lat{rate}-{uuid.uuid4().hex[:6]}"
    gen = Generator(GeneratorConfig(seed=rate, run_id=run_id, anomaly_every=0))
    records = FaultInjector(schema_id).records(gen.events())
    cpu = CpuSampler(node_pids(settings), interval=2.0).start()
    lag = LagMonitor(settings, interval=1.0).start()
    duration = minutes * 60.0
    stop_progress = threading.Event()

    def progress() -> None:  # the run is long: one line every 30 s
        t = time.monotonic()
        while not stop_progress.wait(30.0):
            last = lag.samples[-1].lag if lag.samples else None
            echo(f"  {time.monotonic() - t:5.0f}/{duration:.0f} s, consumer lag {last}")

    threading.Thread(target=progress, daemon=True).start()
    t0 = datetime.now(UTC)
    c0 = cpu.mark()
    summary = produce(settings, records, rate=rate, duration=duration, progress=None)
    c1 = cpu.mark()
    stop_progress.set()
    t1 = datetime.now(UTC)
    drained = wait_caught_up(settings, DRAIN_TIMEOUT_S, echo)
    lag.stop()
    cpu.stop()
    with db.connect(settings, "reader", autocommit=True) as conn:
        # window by ingest_ts over the run (+1 s of slack), restricted to the run's events
        window = (t0 - timedelta(seconds=1), t1 + timedelta(seconds=1))
        slo = compute_slo(conn, window, column="ingest_ts", event_id_prefix=f"{run_id}-")
        minutes_rows = per_minute(conn, *window, f"{run_id}-")
        first_rows = first_minute(conn, t0, f"{run_id}-")
    return {
        "run_id": run_id, "rate": rate, "minutes": minutes, "idle_s": idle_s,
        "window": [t0, t1], "acknowledged": summary.acknowledged, "failed": summary.failed,
        "produced_eps": round(summary.acknowledged / max(summary.send_s, 1e-9), 1),
        "stored": slo.events, "drained": drained, "slo": slo,
        "per_minute": minutes_rows, "first_minute": first_rows, "cpu_pct": cpu.percent(c0, c1),
        "lag": [(s.t, s.lag) for s in lag.samples], "load_avg": load_average(),
    }


def latency_report(r: dict[str, Any], partial_stack: bool) -> Report:
    e2e = r["slo"].stages["end_to_end"]
    complete = r["stored"] == r["acknowledged"] and not r["failed"]
    passed = (complete and e2e.p95 is not None and e2e.p95 <= P95_TARGET_MS
              and e2e.p99 is not None and e2e.p99 <= P99_TARGET_MS)
    cpu = r["cpu_pct"]

    def draw(fig: Any) -> None:
        ax1 = fig.add_subplot(1, 2, 1)
        xs = list(range(len(r["per_minute"])))
        for col, style in (("e2e p50 ms", "o-"), ("e2e p95 ms", "s-"), ("e2e p99 ms", "^-")):
            ax1.plot(xs, [m[col] for m in r["per_minute"]], style, label=col.split()[1])
        ax1.axhline(P95_TARGET_MS, color="r", ls="--", lw=0.8, label="p95 target")
        ax1.axhline(P99_TARGET_MS, color="r", ls=":", lw=0.8, label="p99 target")
        ax1.set_xlabel("minute of the run")
        ax1.set_ylabel("end-to-end latency (ms)")
        ax1.legend(fontsize=8)
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot([t for t, _ in r["lag"]], [v if v is not None else float("nan")
                                           for _, v in r["lag"]])
        ax2.set_xlabel("s into the run")
        ax2.set_ylabel("consumer lag (records)")

    return Report(
        name="bench-latency",
        title=f"End-to-end latency at {r['rate']:,} events/s for {r['minutes']:g} min",
        data={k: v for k, v in r.items() if k != "slo"} | {
            "slo": r["slo"].to_dict(), "partial_stack": partial_stack, "complete": complete},
        rows=r["per_minute"] + [{
            "minute": "all", "events": r["stored"], "e2e p50 ms": e2e.p50,
            "e2e p95 ms": e2e.p95, "e2e p99 ms": e2e.p99}],
        notes=[
            f"Targets: p95 ≤ {P95_TARGET_MS:.0f} ms, p99 ≤ {P99_TARGET_MS:.0f} ms over every "
            "event of the run (percentile_cont, no sampling); window by ingest_ts, run's "
            f"event-id prefix `{r['run_id']}-`.",
            f"Acknowledged {r['acknowledged']:,}, stored {r['stored']:,}, failed sends "
            f"{r['failed']} ({'complete' if complete else 'INCOMPLETE'}); producer achieved "
            f"{r['produced_eps']:,.0f} events/s; stream idle {r['idle_s']:.0f} s before the run "
            "(the first minute shows any warm-up).",
            "First minute by 10 s of ingest time, e2e p95 ms: "
            + ", ".join(f"{w['seconds']} s {w['e2e p95 ms']:,.0f}" for w in r["first_minute"])
            + ".",
            "Whole stack up (stream, API, Dagster webserver and daemon)." if not partial_stack
            else "**Partial stack** (--partial-stack): not the figure as a user runs it.",
            "CPU over the run, % of one core per node (process tree): "
            + ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "total")
            + f"; total {cpu.get('total')} % of the machine. Load average at the end "
            f"{r['load_avg']}.",
        ],
        plot=draw,
        passed=passed,
    )


@click.command("latency")
@click.option("--rate", type=COUNT,
              default=5000, show_default=True, help="Events/s.")
@click.option("--minutes", type=POSITIVE,
              default=5.0, show_default=True, help="Run length.")
@click.option("--idle", "idle_s", type=NON_NEGATIVE, default=30.0, show_default=True,
              help="Seconds the drained stream stays idle before the first event.")
@click.option("--partial-stack", is_flag=True,
              help="Measure even if the API or Dagster is down (labelled in the report).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def latency(rate: int, minutes: float, idle_s: float, partial_stack: bool,
            out: Path | None) -> None:
    """e2e p50/p95/p99 over every event at a fixed rate, whole stack up; per minute + CPU."""
    s = get_settings()
    if rate <= 0 or minutes <= 0:
        raise click.BadParameter("--rate and --minutes must be positive")
    if not partial_stack:
        require_whole_stack(s)
    partial_stack = bool(missing_nodes(s))  # the report says what was really up
    click.echo(f"{rate:,} events/s for {minutes:g} min (idle {idle_s:.0f} s first)")
    r = run_latency(s, rate, minutes, idle_s, echo=click.echo)
    report = latency_report(r, partial_stack)
    folder = out or s.results_dir
    paths = report.write(folder)
    slo_paths = slo_report_for(r["slo"], s).write(folder)
    e2e = r["slo"].stages["end_to_end"]
    click.echo(f"{r['stored']:,}/{r['acknowledged']:,} events stored; e2e p50 {e2e.p50} "
               f"p95 {e2e.p95} p99 {e2e.p99} ms -> {'PASS' if report.passed else 'FAIL'}")
    click.echo(f"wrote {paths['md']}, {paths['png']}, {slo_paths['md']}")
    if r["stored"] != r["acknowledged"]:
        raise click.ClickException(
            f"{r['acknowledged'] - r['stored']:,} acknowledged events are not stored"
        )
