"""Streaming job benchmark (a measurement, not a test): latency at a fixed rate, then capacity.

Phase 1 — latency: produce at ``--rate`` events/s for ``--duration`` s, wait until the ledger has
committed everything, then per-stage latency over EVERY event of the phase (rows whose
``ingest_ts`` falls in the phase): end to end = commit_ts − ingest_ts.
Phase 2 — capacity: produce a ``--backlog`` of events as fast as possible and time how long the
job takes to commit them all (sustained events/s = backlog / drain time), sampling lag meanwhile.

Needs a running stack with the streaming node (``clickguard stack up``). Writes
``<out>/stream-bench.json|.md`` and PNGs (latency CDF, lag over time). Usage:

    python bench/stream_bench.py --rate 5000 --duration 60 --backlog 300000
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from clickguard import db
from clickguard.kafka import end_offsets
from clickguard.producer.core import produce, register_schemas
from clickguard.producer.faults import FaultInjector
from clickguard.producer.generator import Generator, GeneratorConfig
from clickguard.proof.results import machine, md_table, write_results
from clickguard.proof.slo import compute_slo, plot_cdf
from clickguard.proof.stream import LagMonitor, wait_committed
from clickguard.settings import Settings, get_settings
from clickguard.stack.manager import Stack


def _targets(settings: Settings) -> dict[int, int]:
    """Last offset per partition of the raw topic right now."""
    return {p: o - 1 for p, o in end_offsets(settings, settings.topic_raw).items() if o > 0}


def _records(settings: Settings) -> Any:
    contract_id, _ = register_schemas(settings, settings.topic_raw)
    gen = Generator(GeneratorConfig(seed=int(time.time())))
    return FaultInjector(contract_id).records(gen.events())


def latency_phase(settings: Settings, rate: float, duration: float) -> dict[str, Any]:
    print(f"phase 1: {rate:,.0f} events/s for {duration:.0f}s", flush=True)
    t0 = datetime.now(UTC)
    summary = produce(settings, _records(settings), rate=rate, duration=duration)
    t1 = datetime.now(UTC)
    if not wait_committed(settings, _targets(settings), timeout=600, progress=print):
        raise SystemExit("the stream did not commit phase 1 within 10 minutes")
    with db.connect(settings, "reader") as conn:
        slo = compute_slo(conn, (t0, t1 + timedelta(seconds=1)), column="ingest_ts")
    return {"produce": summary.__dict__, "slo": slo, "window": [t0, t1]}


def capacity_phase(settings: Settings, backlog: int) -> dict[str, Any]:
    print(f"phase 2: backlog of {backlog:,} events as fast as possible", flush=True)
    monitor = LagMonitor(settings, interval=1.0).start()
    t0 = time.monotonic()
    summary = produce(settings, _records(settings), count=backlog)
    produced_s = time.monotonic() - t0
    ok = wait_committed(settings, _targets(settings), timeout=900, progress=print)
    drain_s = time.monotonic() - t0
    monitor.stop()
    lags = [s.lag for s in monitor.samples if s.lag is not None]
    return {
        "backlog": backlog, "acknowledged": summary.acknowledged, "produce_s": round(produced_s, 2),
        "drained": ok, "drain_s": round(drain_s, 2),
        "sustained_eps": round(summary.acknowledged / drain_s, 1),
        "max_lag": max(lags) if lags else None,
        "samples": [(s.t, s.lag, s.stored_total) for s in monitor.samples],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--backlog", type=int, default=300_000)
    ap.add_argument("--out", type=Path, default=Path("results/stream"))
    args = ap.parse_args()
    settings = get_settings()
    stack = Stack(settings)
    print(stack.control("start", "streaming"), flush=True)
    # wait until the job commits (Spark start-up takes tens of seconds)
    if not wait_committed(settings, _targets(settings), timeout=600, progress=print):
        raise SystemExit("the streaming job does not commit; see `clickguard stack logs streaming`")
    lat = latency_phase(settings, args.rate, args.duration)
    cap = capacity_phase(settings, args.backlog) if args.backlog else None
    slo = lat["slo"]
    e2e = slo.stages["end_to_end"]
    data = {
        "machine": machine(), "rate": args.rate, "duration_s": args.duration,
        "latency": slo.to_dict(), "produce": lat["produce"], "capacity": cap,
        "config": {"trigger_ms": settings.stream_trigger_ms,
                   "max_offsets_per_trigger": settings.stream_max_offsets_per_trigger,
                   "spark_master": settings.spark_master},
    }
    rows = [[name, st.p50, st.p95, st.p99] for name, st in slo.stages.items()]
    md = (
        f"# Streaming job benchmark\n\nLatency over all {slo.events:,} events produced at "
        f"{args.rate:,.0f}/s for {args.duration:.0f}s (ms):\n\n"
        + md_table(["stage", "p50", "p95", "p99"],
                   [[r[0], *(f"{v:,.0f}" if v is not None else "-" for v in r[1:])]
                    for r in rows])
        + (f"\n\nCapacity: {cap['acknowledged']:,} events drained in {cap['drain_s']}s = "
           f"**{cap['sustained_eps']:,.0f} events/s** sustained (max lag {cap['max_lag']:,})\n"
           if cap else "\n")
        + f"\nMachine: {data['machine']}\n"
    )
    figs = {"latency-cdf": plot_cdf(slo)}
    if cap:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ts = [s[0] for s in cap["samples"] if s[1] is not None]
        ax.plot(ts, [s[1] for s in cap["samples"] if s[1] is not None])
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
