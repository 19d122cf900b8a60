"""Detection quality of the four anomaly rules at their thresholds, on steady traffic with faults.

Produces generated traffic at ``--rate`` events/s in real time: ``--warmup-minutes`` of plain
traffic (a cold start: TRAFFIC_SPIKE must stay silent until it has a baseline), then
``--minutes`` minutes in which every completed minute gets ``--per-minute`` blocks each of
HIGH_FREQUENCY, BOT_LIKE and TRAFFIC_SPIKE and one ERROR_BURST (one per minute: it is global), at
sizes alternating just below and just above each rule's threshold (the thresholds are the
settings'). The steady traffic carries faults all along (``--faults``: duplicates, late events,
every malformed kind) and the streaming job is SIGKILLed half-way (the supervisor restarts it;
``--no-restart`` to skip). Then it waits until the stream has committed everything and scores
the anomalies table against the generator's ground truth (:mod:`clickguard_proof.evaluation`):
precision, recall of above-threshold blocks, below-threshold blocks flagged, false alarms per
hour of steady traffic, detection delay p50/p95 (last event's ingest → ``detected_at``).

Needs a running stack (`clickguard stack up`) with no other traffic for 30 minutes before (the
TRAFFIC_SPIKE baseline looks back that far; the report counts such minutes); starts the streaming
node if it is down. Writes
``<out>/<name>.json|.md|.png``. Usage (the full measurement, ≈ 36 minutes):

    python -m clickguard_proof.anomaly_quality --rate 1000 --minutes 30
    python -m clickguard_proof.anomaly_quality --rate 300 --minutes 3 --warmup-minutes 4 \\
        --name anomaly-quality-short          # a quick check that the command works
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from clickguard import db, ledger
from clickguard.kafka import end_offsets
from clickguard.settings import Settings, get_settings
from clickguard_producer.core import produce, register_schemas
from clickguard_producer.faults import FaultConfig, FaultInjector
from clickguard_producer.generator import ANOMALY_TYPES, Generator, GeneratorConfig
from clickguard_proof.evaluation import detections_between, ingest_times, score
from clickguard_proof.results import machine, md_table, write_results
from clickguard_stack.manager import Stack

# offsets from each threshold, alternating below / above (the rules fire on > clicks, >= errors)
HF_DELTAS = (-5, 1, -2, 3, 0, 6)  # clicks in one 10-s window vs high_frequency_clicks
BOT_SHAPES = ((-5, 2), (1, 2), (0, 2), (3, 3), (6, 6), (6, 5))  # (clicks vs threshold, distinct)
ERROR_FACTORS = (0.9, 1.02, 0.95, 1.05, 0.98, 1.1)  # minute's errors vs error_burst_per_minute
SPIKE_LEVELS = (0.75, 1.08, 0.85, 1.15, 0.92, 1.25)  # category's minute count vs firing count


def generator_config(s: Settings, seed: int, rate: float) -> GeneratorConfig:
    """The rules' thresholds, and a realistic number of concurrent sessions for the rate.

    A session then gets an event every ~20 s (it lasts minutes, as real ones do); the default
    pool (200) at 1,000 ev/s would give each a few seconds, and a handful of sessions would make
    a small category's per-minute count swing far more than a real shop's.
    """
    return GeneratorConfig(
        seed=seed, concurrent_sessions=max(200, int(rate * 20)),
        high_frequency_clicks=s.high_frequency_clicks,
        bot_like_clicks=s.bot_like_clicks, bot_like_unique_ratio=s.bot_like_unique_ratio,
        error_burst_per_minute=s.error_burst_per_minute, spike_z_threshold=s.spike_z_threshold,
        spike_min_relative_std=s.spike_min_relative_std, spike_min_events=s.spike_min_events,
        spike_dispersion=s.spike_dispersion,
    )


def blocks_for_minute(
    gen: Generator, s: Settings, i: int, per_minute: int
) -> Iterator[dict[str, Any]]:
    """The i-th minute's injections, all into the minute that just ended."""
    for j in range(per_minute):
        k = i * per_minute + j
        yield from gen.inject("HIGH_FREQUENCY", size=s.high_frequency_clicks + HF_DELTAS[k % 6])
        d, distinct = BOT_SHAPES[k % 6]
        yield from gen.inject("BOT_LIKE", size=s.bot_like_clicks + d, distinct=distinct)
        yield from gen.inject("TRAFFIC_SPIKE", level=SPIKE_LEVELS[k % 6])
    yield from gen.inject(
        "ERROR_BURST", size=round(s.error_burst_per_minute * ERROR_FACTORS[i % 6])
    )


def wait_query_committed(s: Settings, targets: dict[int, int], timeout: float) -> bool:
    """Until THIS stream's query committed up to ``targets`` ({partition: end offset}).

    Scoped to the query id: the ledger also holds other queries' rows (test streams on private
    topics) whose offsets say nothing about the raw topic.
    """
    meta = s.checkpoint_dir / "metadata"
    deadline = time.monotonic() + timeout
    last = 0.0
    while time.monotonic() < deadline:
        if meta.exists():
            qid = json.loads(meta.read_text().splitlines()[0])["id"]
            with db.connect(s, "reader") as conn:
                done = ledger.committed_offsets(conn, qid)
            left = ledger.total_lag(targets, done)
            if left == 0:
                return True
            if time.monotonic() - last > 15:
                print(f"  waiting for the stream to commit {left:,} more records", flush=True)
                last = time.monotonic()
        time.sleep(1.0)
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=1000, help="events/s of steady traffic")
    ap.add_argument("--minutes", type=int, default=30, help="minutes with injections")
    ap.add_argument("--warmup-minutes", type=int, default=5, help="plain minutes first")
    ap.add_argument("--per-minute", type=int, default=2,
                    help="blocks per minute of each session rule and of TRAFFIC_SPIKE")
    ap.add_argument("--faults", type=float, default=0.002,
                    help="rate of each fault kind in the steady traffic")
    ap.add_argument("--no-restart", action="store_true", help="do not kill the job half-way")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("docs/results/streaming"))
    ap.add_argument("--name", default="anomaly-quality")
    args = ap.parse_args()
    s = get_settings()
    stack = Stack(s)
    print(stack.control("start", "streaming"), flush=True)
    contract_id, rogue_id = register_schemas(s, s.topic_raw)
    gen = Generator(generator_config(s, args.seed, args.rate))
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    first_inject = start + timedelta(minutes=args.warmup_minutes + 1)
    end = first_inject + timedelta(minutes=args.minutes)

    def stream() -> Iterator[dict[str, Any]]:
        """Steady traffic from the next full minute; injections at each minute's end."""
        minute, i = None, 0
        for e in gen.events():
            m = datetime.fromtimestamp(e["event_ts"] / 1000, UTC).replace(second=0, microsecond=0)
            if m != minute:
                minute = m
                if m >= end:
                    return
                if m >= first_inject:
                    yield from blocks_for_minute(gen, s, i, args.per_minute)
                    i += 1
            yield e

    faults = FaultConfig.uniform(args.faults) if args.faults else FaultConfig()
    injector = FaultInjector(contract_id, faults, seed=args.seed, rogue_schema_id=rogue_id,
                             watermark_minutes=s.stream_watermark_minutes)
    kills: list[str] = []
    at = {}
    if not args.no_restart:
        half = args.rate * 60 * (args.warmup_minutes + 1 + args.minutes / 2)
        at[int(half)] = lambda: kills.append(stack.control("kill", "streaming"))
    total_min = (end - datetime.now(UTC)).total_seconds() / 60
    print(f"producing {args.rate:,.0f} ev/s until {end:%H:%M} UTC (≈ {total_min:.0f} min)",
          flush=True)
    lines = itertools.count()
    # the traffic starts on a minute boundary, so the first minute is a full one
    time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
    summary = produce(
        s, injector.records(stream()), rate=args.rate, at=at,
        progress=lambda line: print(line, flush=True) if next(lines) % 60 == 0 else None,
    )
    targets = {p: o for p, o in end_offsets(s, s.topic_raw).items() if o > 0}
    if not wait_query_committed(s, targets, timeout=1800):
        raise SystemExit("the stream did not commit everything within 30 minutes")
    truths = gen.ground_truth
    with db.connect(s, "reader") as conn:
        dets = detections_between(conn, start, end + timedelta(minutes=1))
        ingested = ingest_times(conn, [g.last_event_id for g in truths if g.last_event_id])
        # TRAFFIC_SPIKE looks back 30 minutes: earlier traffic (another run) is in its baseline
        prior = conn.execute(
            "SELECT count(*) FROM minute_counts WHERE scope = 'all' AND minute >= %s "
            "AND minute < %s", (start - timedelta(minutes=31), start),
        ).fetchone()
    hours = (end - start).total_seconds() / 3600
    scores = score(truths, dets, ingested, steady_hours=hours)
    command = "python -m clickguard_proof.anomaly_quality " + shlex.join(sys.argv[1:])
    data: dict[str, Any] = {
        "command": command, "machine": machine(), "rate": args.rate,
        "event_time": {"start": start, "first_injection_minute": first_inject, "end": end,
                       "hours": round(hours, 3)},
        "per_minute": args.per_minute, "fault_rate_each": args.faults,
        "prior_traffic_minutes": int(prior[0]) if prior else 0,
        "stream_kills": kills, "produced": summary.acknowledged,
        "per_kind": dict(Counter(summary.per_kind)),
        "rules": {k: v.to_dict() for k, v in scores.items()},
        "sizes": {"HIGH_FREQUENCY_clicks_delta": HF_DELTAS, "BOT_LIKE_clicks_delta_distinct":
                  BOT_SHAPES, "ERROR_BURST_factor": ERROR_FACTORS,
                  "TRAFFIC_SPIKE_level": SPIKE_LEVELS},
        "thresholds": {
            "high_frequency_clicks": s.high_frequency_clicks, "bot_like_clicks": s.bot_like_clicks,
            "bot_like_unique_ratio": s.bot_like_unique_ratio,
            "spike_z_threshold": s.spike_z_threshold, "spike_min_events": s.spike_min_events,
            "spike_min_relative_std": s.spike_min_relative_std,
            "spike_min_history_minutes": s.spike_min_history_minutes,
            "error_burst_per_minute": s.error_burst_per_minute,
        },
        "ground_truth": [g.to_json() for g in truths],
    }
    md = report(data, scores, hours)
    for p in write_results(args.out, args.name, data, md, {"": plot(scores)}):
        print("wrote", p)
    print(md)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def report(data: dict[str, Any], scores: dict[str, Any], hours: float) -> str:
    rows = [
        [r, v.injected, v.found, _pct(v.recall), v.injected_below, v.below_detected, v.detected,
         _pct(v.precision), v.false_alarms, _s(v.false_alarms_per_hour),
         _s(v.delay_percentile(50)), _s(v.delay_percentile(95))]
        for r, v in scores.items()
    ]
    m = data["machine"]
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(data["per_kind"].items()))
    return (
        "# Anomaly rules: detection quality at the thresholds\n\n"
        f"Command: `{data['command']}`  \n"
        f"Date: {m['measured_at']}; machine: {m['cpus']} CPUs, {m['memory_gb']} GB RAM, "
        f"load average (1/5/15 min) {m['load_avg_1_5_15']}\n\n"
        f"{data['produced']:,} records at {data['rate']:,.0f}/s over {hours * 60:.0f} minutes of "
        f"event time ({kinds}); streaming job killed mid-run: {len(data['stream_kills'])}×; "
        f"minutes with other traffic in the 31 minutes before (part of TRAFFIC_SPIKE's "
        f"baseline; 0 on a quiet stack): {data['prior_traffic_minutes']}. "
        "Blocks alternate just below and just above each threshold; a detection counts when type "
        "and entity match and the windows overlap. Delay = last event's ingest → detected_at.\n\n"
        + md_table(
            ["rule", "above", "found", "recall", "below", "below flagged", "detections",
             "precision", "false alarms", "false alarms/h", "delay p50 s", "delay p95 s"], rows)
        + "\n\nTargets: precision ≥ 95 %, recall ≥ 95 %, 0 false alarms/h.\n"
    )


def plot(scores: dict[str, Any]) -> Any:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    xs = range(len(ANOMALY_TYPES))
    ax.bar([x - 0.2 for x in xs], [scores[r].precision or 0 for r in ANOMALY_TYPES], 0.4,
           label="precision")
    ax.bar([x + 0.2 for x in xs], [scores[r].recall or 0 for r in ANOMALY_TYPES], 0.4,
           label="recall (above threshold)")
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xticks(list(xs), ANOMALY_TYPES, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("rules vs injected ground truth")
    for q, off in ((50, -0.2), (95, 0.2)):
        vals = [scores[r].delay_percentile(q) for r in ANOMALY_TYPES]
        ax2.bar([x + off for x in xs], [v if v is not None else math.nan for v in vals], 0.4,
                label=f"p{q}")
    ax2.set_xticks(list(xs), ANOMALY_TYPES, fontsize=7)
    ax2.set_ylabel("seconds")
    ax2.legend(fontsize=7)
    ax2.set_title("detection delay (last event ingest → detected_at)")
    return fig


if __name__ == "__main__":
    main()
