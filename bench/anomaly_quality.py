"""Precision and recall of the four anomaly rules on generated traffic (a measurement).

Produces ``--rate`` events/s for ``--duration`` s with an anomaly block (cycling HIGH_FREQUENCY,
BOT_LIKE, TRAFFIC_SPIKE, ERROR_BURST) every ``--every`` normal events, waits until the streaming
job has committed everything, and scores the anomalies table against the generator's ground
truth (:mod:`streaming_job.evaluation`). TRAFFIC_SPIKE needs a few minutes of history, hence the
``--warmup`` of plain traffic first (detections are scored from 2 minutes before its end).
Needs a running stack with the streaming node. Writes
``<out>/anomaly-quality.json|.md|.png``. Usage:

    python bench/anomaly_quality.py --rate 1000 --duration 300 --every 20000
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from clickguard import db
from clickguard.kafka import end_offsets
from clickguard.producer.core import produce, register_schemas
from clickguard.producer.faults import FaultInjector
from clickguard.producer.generator import ANOMALY_TYPES, Generator, GeneratorConfig
from clickguard.proof.results import machine, md_table, write_results
from clickguard.proof.stream import wait_committed
from clickguard.settings import get_settings
from clickguard.stack.manager import Stack
from streaming_job.evaluation import detections_between, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--every", type=int, default=25_000)
    ap.add_argument("--warmup", type=float, default=180, help="seconds of normal traffic first")
    ap.add_argument("--out", type=Path, default=Path("results/stream"))
    args = ap.parse_args()
    s = get_settings()
    print(Stack(s).control("start", "streaming"), flush=True)
    contract_id, _ = register_schemas(s, s.topic_raw)
    # warm-up without anomalies first, so TRAFFIC_SPIKE has a baseline (history) to judge by;
    # the same generator throughout, so the category mix does not change at the switch
    gen = Generator(GeneratorConfig(seed=2))

    def stream() -> Iterator[dict[str, Any]]:
        yield from gen.events(int(args.rate * args.warmup))
        gen.config.anomaly_every = args.every
        yield from gen.events()

    events = stream()
    t0 = datetime.now(UTC) + timedelta(seconds=args.warmup)
    summary = produce(
        s, FaultInjector(contract_id).records(events), rate=args.rate,
        duration=args.warmup + args.duration,
    )
    t1 = datetime.now(UTC)
    targets = {p: o - 1 for p, o in end_offsets(s, s.topic_raw).items() if o > 0}
    if not wait_committed(s, targets, timeout=900, progress=print):
        raise SystemExit("the stream did not commit everything within 15 minutes")
    with db.connect(s, "reader") as conn:
        # blocks are placed up to 2 minutes before their send time
        dets = detections_between(conn, t0 - timedelta(minutes=2), t1 + timedelta(minutes=1))
    scores = score(gen.ground_truth, dets)
    data = {
        "machine": machine(), "rate": args.rate, "duration_s": args.duration,
        "every": args.every, "warmup_s": args.warmup, "produced": summary.acknowledged,
        "rules": {k: v.to_dict() for k, v in scores.items()},
        "thresholds": {
            "high_frequency_clicks": s.high_frequency_clicks, "bot_like_clicks": s.bot_like_clicks,
            "bot_like_unique_ratio": s.bot_like_unique_ratio,
            "spike_z_threshold": s.spike_z_threshold, "spike_min_events": s.spike_min_events,
            "spike_min_relative_std": s.spike_min_relative_std,
            "error_burst_per_minute": s.error_burst_per_minute,
        },
    }

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    rows = [[r, v.injected, v.detected, v.true_detections, pct(v.precision), pct(v.recall)]
            for r, v in scores.items()]
    md = (
        f"# Anomaly rules: precision and recall\n\n{summary.acknowledged:,} events at "
        f"{args.rate:,.0f}/s: {args.warmup:.0f}s of plain traffic, then {args.duration:.0f}s "
        f"with one anomaly block every {args.every:,} "
        "events; a detection counts when type and entity match and the windows overlap.\n\n"
        + md_table(["rule", "injected", "detected", "true detections", "precision", "recall"],
                   rows)
        + f"\n\nMachine: {data['machine']}\n"
    )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(ANOMALY_TYPES))
    ax.bar([x - 0.2 for x in xs], [scores[r].precision or 0 for r in ANOMALY_TYPES], 0.4,
           label="precision")
    ax.bar([x + 0.2 for x in xs], [scores[r].recall or 0 for r in ANOMALY_TYPES], 0.4,
           label="recall")
    ax.set_xticks(list(xs), ANOMALY_TYPES, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title("anomaly rules vs injected ground truth")
    for p in write_results(args.out, "anomaly-quality", data, md, {"": fig}):
        print("wrote", p)
    print(md)


if __name__ == "__main__":
    main()
