"""Streaming job benchmark (a measurement, not a test): latency at a fixed rate, then capacity.

Phase 1 — latency: produce at ``--rate`` events/s for ``--duration`` s, wait until the ledger has
committed everything, then per-stage latency over EVERY event of the phase (rows whose
``ingest_ts`` falls in the phase): end to end = commit_ts − ingest_ts.
Phase 2 — capacity: produce a ``--backlog`` of events as fast as possible and time how long the
job takes to commit them all (sustained events/s = backlog / drain time), sampling lag meanwhile.

Needs a running stack with the streaming node (``clickguard stack up``). Writes
``<out>/stream-bench.json|.md`` and PNGs (latency CDF, lag over time). Usage:

    python clickguard_proof/stream_bench.py --rate 5000 --duration 60 --backlog 300000
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import psycopg

from clickguard import db, ledger
from clickguard.kafka import end_offsets
from clickguard.settings import Settings, get_settings
from clickguard.slo import compute_slo
from clickguard_producer.core import produce, register_schemas
from clickguard_producer.faults import FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig
from clickguard_proof.results import machine, md_table, write_results
from clickguard_proof.slo import plot_cdf
from clickguard_stack.manager import Stack


def _query_id(settings: Settings) -> str:
    meta = settings.checkpoint_dir / "metadata"
    return json.loads(meta.read_text().splitlines()[0])["id"]


def lag(settings: Settings, conn: psycopg.Connection, qid: str) -> int:
    """Records of the raw topic not yet committed by THIS query (:mod:`clickguard.ledger`)."""
    ends = end_offsets(settings, settings.topic_raw)
    return ledger.total_lag(ends, ledger.committed_offsets(conn, qid))


def wait_caught_up(
    settings: Settings, conn: psycopg.Connection, timeout: float = 900.0,
    samples: list[tuple[float, int]] | None = None, t0: float | None = None,
) -> float:
    """Poll until the job has committed everything in the topic; returns when (monotonic)."""
    qid = _query_id(settings)
    deadline, last_note = time.monotonic() + timeout, 0.0
    while True:
        n = lag(settings, conn, qid)
        now = time.monotonic()
        if samples is not None and t0 is not None:
            samples.append((round(now - t0, 2), n))
        if n == 0:
            return now
        if now > deadline:
            raise SystemExit(f"still {n:,} records behind after {timeout:.0f}s")
        if now - last_note > 5:
            print(f"  lag: {n:,} records not committed yet", flush=True)
            last_note = now
        time.sleep(1.0)


def bench_records(settings: Settings) -> Any:
    """The benchmarks' event stream: generated events with the producer's fault mix."""
    contract_id, _ = register_schemas(settings, settings.topic_raw)
    gen = Generator(GeneratorConfig(seed=int(time.time())))
    return FaultInjector(contract_id).records(gen.events())


def latency_phase(
    settings: Settings, conn: psycopg.Connection, rate: float, duration: float
) -> dict[str, Any]:
    print(f"phase 1: {rate:,.0f} events/s for {duration:.0f}s", flush=True)
    t0 = datetime.now(UTC)
    summary = produce(settings, bench_records(settings), rate=rate, duration=duration)
    t1 = datetime.now(UTC)
    wait_caught_up(settings, conn)
    slo = compute_slo(conn, (t0, t1 + timedelta(seconds=1)), column="ingest_ts")
    return {"produce": summary.__dict__, "slo": slo, "window": [t0, t1]}


def capacity_phase(settings: Settings, conn: psycopg.Connection, backlog: int) -> dict[str, Any]:
    print(f"phase 2: backlog of {backlog:,} events as fast as possible", flush=True)
    samples: list[tuple[float, int]] = []
    start = datetime.now(UTC)
    t0 = time.monotonic()
    summary = produce(settings, bench_records(settings), count=backlog)
    produced_s = time.monotonic() - t0
    drained_at = wait_caught_up(settings, conn, samples=samples, t0=t0)
    drain_s = drained_at - t0
    row = conn.execute(
        "SELECT sum(input_rows), extract(epoch FROM max(committed_at) - min(started_at)), "
        "count(*) FROM batch_ledger WHERE query_id = %s AND started_at >= %s",
        (_query_id(settings), start),
    ).fetchone()
    assert row is not None
    rows, busy_s, batches = int(row[0] or 0), float(row[1] or 0), int(row[2])
    return {
        "backlog": backlog, "acknowledged": summary.acknowledged,
        "producer_eps": round(summary.acknowledged / produced_s, 1),
        "drain_s": round(drain_s, 2), "sustained_eps": round(summary.acknowledged / drain_s, 1),
        "batches": batches, "job_eps_while_busy": round(rows / busy_s, 1) if busy_s else None,
        "max_lag": max((n for _, n in samples), default=None), "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--backlog", type=int, default=300_000)
    ap.add_argument("--warmup", type=float, default=30, help="unmeasured seconds at --rate first")
    ap.add_argument("--out", type=Path, default=Path("results/stream"))
    args = ap.parse_args()
    settings = get_settings()
    stack = Stack(settings)
    print(stack.control("start", "streaming"), flush=True)
    conn = db.connect(settings, "reader", autocommit=True)
    while not (settings.checkpoint_dir / "metadata").exists():  # Spark start-up
        time.sleep(1)
    print("waiting until the job has committed everything already in the topic", flush=True)
    wait_caught_up(settings, conn)
    if args.warmup:  # a fresh job's first batches start Python workers: not steady state
        print(f"warm-up: {args.rate:,.0f} events/s for {args.warmup:.0f}s (not measured)")
        produce(settings, bench_records(settings), rate=args.rate, duration=args.warmup,
                progress=None)
        wait_caught_up(settings, conn)
    lat = latency_phase(settings, conn, args.rate, args.duration)
    cap = capacity_phase(settings, conn, args.backlog) if args.backlog else None
    slo = lat["slo"]
    e2e = slo.stages["end_to_end"]
    data = {
        "machine": machine(), "rate": args.rate, "duration_s": args.duration,
        "warmup_s": args.warmup,
        "latency": slo.to_dict(), "produce": lat["produce"], "capacity": cap,
        "config": {"trigger_ms": settings.stream_trigger_ms,
                   "max_offsets_per_trigger": settings.stream_max_offsets_per_trigger,
                   "spark_master": settings.spark_master},
    }
    rows = [[name, st.p50, st.p95, st.p99] for name, st in slo.stages.items()]
    md = (
        f"# Streaming job benchmark\n\nLatency over all {slo.events:,} events produced at "
        f"{args.rate:,.0f}/s for {args.duration:.0f}s after a {args.warmup:.0f}s warm-up "
        "(ms):\n\n"
        + md_table(["stage", "p50", "p95", "p99"],
                   [[r[0], *(f"{v:,.0f}" if v is not None else "-" for v in r[1:])]
                    for r in rows])
        + (f"\n\nCapacity: {cap['acknowledged']:,} events drained in {cap['drain_s']}s = "
           f"**{cap['sustained_eps']:,.0f} events/s** sustained (job while busy: "
           f"{cap['job_eps_while_busy']} events/s over {cap['batches']} batches; "
           f"max lag {cap['max_lag']:,})\n"
           if cap else "\n")
        + f"\nMachine: {data['machine']}\n"
    )
    cdf = plt.figure(figsize=(7, 4))
    plot_cdf(slo)(cdf)  # returns a draw function
    figs = {"latency-cdf": cdf}
    if cap:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([t for t, _ in cap["samples"]], [n for _, n in cap["samples"]])
        ax.set_xlabel("seconds since the backlog started")
        ax.set_ylabel("lag (records not committed)")
        ax.set_title(f"drain of {cap['backlog']:,} events: {cap['sustained_eps']:,.0f} ev/s")
        figs["lag"] = fig
    for p in write_results(args.out, "stream-bench", data, md, figs):
        print("wrote", p)
    print(f"end-to-end p50/p95/p99 ms: {e2e.p50:.0f}/{e2e.p95:.0f}/{e2e.p99:.0f}")
    if cap:
        print(f"sustained: {cap['sustained_eps']:,.0f} events/s")


if __name__ == "__main__":
    main()
