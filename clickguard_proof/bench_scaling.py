"""`clickguard bench scaling`: the stream's backlog throughput per Spark deployment.

For each deployment the ``streaming`` node is restarted on it (``local[N]``, or the stack's
standalone cluster with 1..N workers of ``spark_worker_cores`` cores each), a warm-up batch
is drained unmeasured, then a backlog is produced as fast as possible and the time until the
stream has committed all of it is measured (:func:`stream_bench.capacity_phase`), ``--repeat``
times. The driver's own log splits each batch into Spark's part (the collect: Kafka read and
Arrow transfer, on the executors) and the driver's part (decode, classify, load, commit), which
is what the scaling model in docs/performance.md reads.

Needs ``clickguard stack up`` and, for cluster deployments, ``spark-master`` and enough
``spark-worker-N`` nodes (``CLICKGUARD_SPARK_WORKERS``); workers beyond a deployment's count
are stopped for it. The stream is left on the last deployment: restart ``streaming`` from a
shell without ``CLICKGUARD_SPARK_MASTER`` to return to the default.
"""

from __future__ import annotations

import re
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from clickguard import db, kafka, procs
from clickguard.cli_types import COUNT
from clickguard.settings import Settings, get_settings
from clickguard_proof.fuzz import private_env
from clickguard_proof.stack_load import load_average, wait_stream_running

BATCH_LINE = re.compile(
    r"^(?P<at>\S+ \S+),\d+ INFO streaming_job\.sink\[\w+\]: batch \d+: input=(?P<rows>\d+) .*"
    # "collect" with the driver sink; "stage" (read, decode, route, COPY) with the executor sink
    r"\((?P<total>\d+) ms, of which Spark (?:collect|stage) (?P<collect>\d+) ms, "
    r"decode (?P<decode>\d+) ms"
)


def deployments(spec: str) -> list[str]:
    """``local[2],1,2`` -> ["local[2]", "cluster-1", "cluster-2"]."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        out.append(part if part.startswith("local") else f"cluster-{int(part)}")
    return out


def batch_split(log: Path, offset: int) -> dict[str, Any]:
    """Sum the sink's per-batch timings logged after byte ``offset`` of the log (its size when
    the run started; a log since rotated is read whole)."""
    rows = total = collect = decode = batches = 0
    for line in procs.log_since(log, offset).splitlines():
        m = BATCH_LINE.match(line)
        if not m:
            continue
        batches += 1
        rows += int(m["rows"])
        total += int(m["total"])
        collect += int(m["collect"])
        decode += int(m["decode"])
    driver = total - collect
    return {
        "batches": batches, "rows": rows, "batch_ms_total": total, "spark_collect_ms": collect,
        "driver_decode_ms": decode, "driver_ms": driver,
        "driver_share": round(driver / total, 3) if total else None,
        "rows_per_driver_s": round(rows / (driver / 1000), 1) if driver else None,
        "rows_per_collect_s": round(rows / (collect / 1000), 1) if collect else None,
    }


def run_deployment(name: str, backlog: int, repeat: int, echo: Any) -> dict[str, Any]:
    base = get_settings()
    if name.startswith("local"):
        master, workers = name, 0
    else:
        workers = int(name.split("-")[1])
        master = f"spark://127.0.0.1:{base.spark_master_port}"
    # the streaming node started below inherits the master; the shell's environment is restored
    with private_env({"CLICKGUARD_SPARK_MASTER": master}):
        return measure_deployment(name, workers, backlog, repeat, echo)


def measure_deployment(
    name: str, workers: int, backlog: int, repeat: int, echo: Any
) -> dict[str, Any]:
    """:func:`run_deployment` once the environment names the deployment's master."""
    from clickguard_producer.core import produce
    from clickguard_proof.stream_bench import bench_records, capacity_phase, wait_caught_up
    from clickguard_stack.manager import Stack

    base = get_settings()
    settings = Settings()
    stack = Stack(settings)
    if workers:
        echo(stack.control("start", "spark-master"))
        for n in range(1, max(workers, base.spark_workers) + 1):
            node = f"spark-worker-{n}"
            echo(stack.control("start" if n <= workers else "stop", node))
    echo(stack.control("stop", "streaming"))
    echo(stack.control("start", "streaming"))
    wait_stream_running(settings, echo=echo)
    conn = db.connect(settings, "reader", autocommit=True)
    try:
        wait_caught_up(settings, conn)
        echo(f"{name}: warm-up of 20,000 events (not measured)")
        produce(settings, bench_records(settings), count=20_000, progress=None)
        wait_caught_up(settings, conn)
        runs = []
        for i in range(repeat):
            log = settings.home / "streaming" / "streaming.log"
            offset = log.stat().st_size if log.exists() else 0
            load_before = load_average()
            cap = capacity_phase(settings, conn, backlog)
            cap.pop("samples")
            cap["load_before"], cap["load_after"] = load_before, load_average()
            cap["split"] = batch_split(log, offset)
            echo(f"{name} run {i + 1}: {cap['sustained_eps']:,.0f} ev/s "
                 f"({cap['batches']} batches, driver share {cap['split']['driver_share']})")
            runs.append(cap)
    finally:
        conn.close()
    eps = [r["sustained_eps"] for r in runs]
    return {"deployment": name, "workers": workers, "runs": runs,
            "eps_median": statistics.median(eps), "eps_min": min(eps), "eps_max": max(eps)}


def on_executors(result: dict[str, Any]) -> bool:
    """Whether the run used the executor-side sink (its Spark part is the whole staging)."""
    return bool(result.get("config", {}).get("stream_decode") == "executors")


def render(result: dict[str, Any]) -> str:
    from clickguard_proof.results import md_table

    rows = []
    for d in result["deployments"]:
        split = [r["split"] for r in d["runs"]]
        rows.append([
            d["deployment"], len(d["runs"]), f"{d['eps_median']:,.0f}",
            f"{d['eps_min']:,.0f}–{d['eps_max']:,.0f}",
            f"{statistics.median(s['driver_share'] or 0 for s in split):.0%}",
            f"{statistics.median(s['rows_per_collect_s'] or 0 for s in split):,.0f}",
            f"{statistics.median(s['rows_per_driver_s'] or 0 for s in split):,.0f}",
            f"{d['runs'][0]['load_before']} → {d['runs'][-1]['load_after']}",
        ])
    partitions = result.get("config", {}).get("raw_partitions", 6)  # older runs: the default
    return (
        "# Stream throughput per Spark deployment\n\n"
        f"Backlog of {result['backlog']:,} events per run, produced as fast as possible into the "
        f"raw topic ({partitions} partitions) while the stream runs; throughput = backlog / "
        "(time from the "
        "first send to the last commit). The whole stack was up. Split from the driver's log: "
        + ("the executor-side sink (`stream_decode = executors`): Spark's staging job (Kafka "
           "read, decode, classify, DLQ/late routing and COPY into `stream_stage`, on the "
           "executors) versus the driver's own work (the commit that moves the staged rows).\n\n"
           if on_executors(result) else
           "Spark's collect (Kafka read + Arrow transfer, on the executors) versus the driver's "
           "own work (decode, classify, COPY, commit).\n\n")
        + md_table(["deployment", "runs", "ev/s median", "min–max", "driver share",
                    "rows/s in " + ("staging" if on_executors(result) else "collect"),
                    "rows/s in driver", "load avg"], rows)
        + f"\n\nMachine: {result['machine']}\n"
    )


def figure(data: dict[str, Any]) -> Any:
    """Throughput per deployment (each run and the median), and where a batch's time goes."""
    import matplotlib.pyplot as plt

    results = data["deployments"]
    names = [d["deployment"] for d in results]
    fig, (ax, parts) = plt.subplots(1, 2, figsize=(13, 3.8))
    executors = on_executors(data)
    for i, d in enumerate(results):
        eps = [r["sustained_eps"] for r in d["runs"]]
        ax.scatter([i] * len(eps), eps, color="tab:blue", zorder=3)
        ax.bar(i, d["eps_median"], color="tab:blue", alpha=0.35)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("events/s (backlog drain)")
    sink = "executor-side sink" if executors else "driver sink"
    ax.set_title(f"throughput, {data['backlog']:,}-event backlog, {sink}")
    bottom = [0.0] * len(results)
    for label, share, color in (
        ("Spark staging: read, decode, route, COPY (executors)" if executors
         else "Spark collect (executors)", lambda s: s["spark_collect_ms"], "tab:green"),
        ("decode (driver, Python)", lambda s: s["driver_decode_ms"], "tab:orange"),
        ("move staged rows + commit (driver, PostgreSQL)" if executors
         else "classify + load + commit (driver, PostgreSQL)",
         lambda s: s["driver_ms"] - s["driver_decode_ms"], "tab:red"),
    ):
        vals = [100 * sum(share(r["split"]) for r in d["runs"])
                / max(1, sum(r["split"]["batch_ms_total"] for r in d["runs"])) for d in results]
        parts.bar(names, vals, bottom=bottom, label=label, color=color)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    parts.set_ylabel("% of the batches' time")
    parts.set_title("where a batch's time goes")
    parts.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


@click.command("scaling")
@click.option("--deployments", "spec", default="local[2],1,2", show_default=True,
              help="Comma-separated: local[N], or a number of standalone workers.")
@click.option("--backlog", type=COUNT, default=300_000, show_default=True)
@click.option("--repeat", type=COUNT, default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def scaling_cmd(spec: str, backlog: int, repeat: int, out: Path | None) -> None:
    """Backlog throughput of the stream on local mode and on 1..N standalone workers."""
    from clickguard_proof.results import machine, write_results

    settings = get_settings()
    started = datetime.now(UTC)
    results = [run_deployment(name, backlog, repeat, click.echo) for name in deployments(spec)]
    data = {"started": started.isoformat(timespec="seconds"), "backlog": backlog,
            "repeat": repeat, "deployments": results, "machine": machine(),
            "config": {"trigger_ms": settings.stream_trigger_ms,
                       "max_offsets_per_trigger": settings.stream_max_offsets_per_trigger,
                       "worker_cores": settings.spark_worker_cores,
                       "stream_decode": settings.stream_decode,
                       # the topic as it is, not the setting (an existing topic keeps its count)
                       "raw_partitions": len(kafka.end_offsets(settings, settings.topic_raw))}}
    fig = figure(data)
    for p in write_results(out or settings.results_dir, "bench-scaling", data, render(data),
                           {"": fig}):
        click.echo(f"wrote {p}")
