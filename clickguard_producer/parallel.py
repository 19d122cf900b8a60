"""Parallel `clickguard produce`: a run cut into fixed shards, spread over worker processes.

Python generation + encoding is the producer's bottleneck (one core: ~50k events/s), so a run is
cut into ``SHARDS`` independent generator streams (`GeneratorConfig.shard`) and each worker
process sends its shards with its own idempotent librdkafka producer. The shard count is fixed
and the worker count is not part of the data: the same seed and count give the same multiset of
records with 1 worker or 4 (only the order and the clock-driven timestamps differ). Workers are
forked (no librdkafka instance exists in the parent yet), report live counters through shared
memory, and return their summary, raw delivery latencies and ground truth; the parent merges
them and concatenates the per-worker ledgers into the one ``--ledger`` file. Ctrl-C belongs to
the parent: workers are forked with SIGINT ignored (a worker still generating its first records
would otherwise die of it) and stop at their next chunk, then flush, when the parent sets ``stop``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import multiprocessing as mp
import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clickguard.procs import die_with_parent
from clickguard.settings import Settings
from clickguard_producer.core import ProducerError, ProduceSummary, latency_percentiles, produce
from clickguard_producer.faults import FaultConfig, FaultInjector, Record
from clickguard_producer.generator import ANOMALY_TYPES, Generator, GeneratorConfig, GroundTruth

SHARDS = 4  # fixed: the data of a seed must not depend on the machine's core count
INTERLEAVE = 256  # records taken from one shard before the next (a worker sending >1 shard)


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides the records of a run (and nothing that decides its speed)."""

    seed: int
    run_id: str
    schema_id: int
    rogue_id: int | None = None
    anomaly_every: int = 20_000
    faults: FaultConfig = field(default_factory=FaultConfig)
    watermark_minutes: float = 10.0
    count: int | None = None  # records of the whole run (None = until stopped)
    shards: int = SHARDS


def shard_count(count: int, shard: int, shards: int) -> int:
    """Records of ``shard``: an even split, the first ``count % shards`` shards one more."""
    return count // shards + (1 if shard < count % shards else 0)


def auto_workers(rate: float | None, replay: bool = False) -> int:
    """Worker processes for a run: every core when unpaced or fast, one for a modest --rate."""
    if replay or (rate is not None and rate < 20_000):
        return 1  # one core paces this easily; no extra process start-up
    return max(1, min(os.cpu_count() or 1, SHARDS))


def shard_records(
    spec: RunSpec, shard_ids: list[int], clock: Callable[[], float] = time.time
) -> tuple[Iterator[Record], list[Generator]]:
    """The interleaved records of ``shard_ids`` and their generators (for the ground truth)."""
    gens: list[Generator] = []
    streams: list[Iterator[Record]] = []
    for shard in shard_ids:
        # each shard starts the anomaly cycle at another type, so a short run still gets the
        # first types of the cycle, as the single stream did
        k = shard % len(ANOMALY_TYPES)
        gen = Generator(
            GeneratorConfig(seed=spec.seed, run_id=spec.run_id, anomaly_every=spec.anomaly_every,
                            anomaly_types=(*ANOMALY_TYPES[k:], *ANOMALY_TYPES[:k]),
                            shard=shard, shards=spec.shards),
            clock=clock,
        )
        inj = FaultInjector(
            spec.schema_id, spec.faults, seed=_injector_seed(spec, shard),
            rogue_schema_id=spec.rogue_id, watermark_minutes=spec.watermark_minutes, clock=clock,
        )
        if spec.count is None:
            records = inj.records(gen.events())
        else:  # the event limit never cuts an anomaly block (duplicates only add records)
            n = shard_count(spec.count, shard, spec.shards)
            records = itertools.islice(inj.records(gen.events(n)), n)
        gens.append(gen)
        streams.append(records)
    return _interleave(streams), gens


def _injector_seed(spec: RunSpec, shard: int) -> int:
    if spec.shards == 1:
        return spec.seed  # the classic single stream: same faults as before sharding
    digest = hashlib.sha256(f"faults/{spec.seed}/{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _interleave(streams: list[Iterator[Record]]) -> Iterator[Record]:
    if len(streams) == 1:
        yield from streams[0]
        return
    live = list(streams)
    while live:
        for s in list(live):
            # one record at a time: a record is encoded, and gets its ingest_ts, when the sender
            # asks for it. Pulled 256 at once, a paced run sent them over the next 256 records'
            # time slots: at 1,000 events/s produce→Kafka p50 was 159 ms instead of ≈ 35 ms
            taken = 0
            for rec in itertools.islice(s, INTERLEAVE):
                taken += 1
                yield rec
            if taken < INTERLEAVE:
                live.remove(s)


def merge_ground_truth(parts: list[list[GroundTruth]]) -> list[GroundTruth]:
    """One row per (type, entity, window): blocks of several shards there are ONE anomaly."""
    merged: dict[tuple[str, str, str], GroundTruth] = {}
    for truth in itertools.chain.from_iterable(parts):
        key = (truth.type, truth.entity, truth.window_start)
        if key in merged:
            merged[key] = replace(merged[key], events=merged[key].events + truth.events)
        else:
            merged[key] = truth
    return list(merged.values())


@dataclass
class ParallelResult:
    summary: ProduceSummary
    ground_truth: list[GroundTruth]
    workers: int


def produce_parallel(
    settings: Settings,
    spec: RunSpec,
    *,
    workers: int,
    topic: str | None = None,
    rate: float | None = None,
    duration: float | None = None,
    ledger: Path | None = None,
    progress: Callable[[str], None] | None = print,
    flush_timeout: float | None = None,
    **config_overrides: Any,  # librdkafka settings: any value type
) -> ParallelResult:
    """Send the run of ``spec`` with ``workers`` processes (1 = in this process) and merge."""
    workers = max(1, min(workers, spec.shards))
    if workers == 1:
        records, gens = shard_records(spec, list(range(spec.shards)))
        summary = produce(settings, records, topic=topic, rate=rate, duration=duration,
                          ledger=ledger, progress=progress, flush_timeout=flush_timeout,
                          **config_overrides)
        summary.raw_latencies = []  # merged already; keep the summary light
        return ParallelResult(summary, merge_ground_truth([g.ground_truth for g in gens]), 1)
    def args(w: int, counters: Any, results: Any, stop: Any) -> tuple:
        shard_ids = list(range(w, spec.shards, workers))
        part = _ledger_part(ledger, w) if ledger else None
        share = len(shard_ids) / spec.shards
        return (functools.partial(shard_records, spec, shard_ids), settings, topic,
                rate * share if rate else None, duration, part, flush_timeout, config_overrides,
                counters, w, results, stop)

    outcomes, procs, counters = _run_workers(workers, _worker, args, progress)
    errors = [o["error"] for o in outcomes.values() if o.get("error")]
    if ledger:
        _concat_ledgers(ledger, workers)
    done = [o["summary"] for o in outcomes.values() if o.get("summary")]
    if errors and not done:
        raise ProducerError("; ".join(sorted(set(errors))))
    summary = _merge(done, outcomes, rate, ledger) if done else ProduceSummary(
        topic=topic or settings.topic_raw, rate_target=rate)
    for w, proc in enumerate(procs):
        o = outcomes.get(w, {})
        if o.get("summary"):
            continue
        # a worker that died (or failed) after sending: what it last reported counts, and every
        # record it sent without a known acknowledgement is failed; the exit code says so
        sent, acked, failed = counters[3 * w], counters[3 * w + 1], counters[3 * w + 2]
        why = o.get("error") or f"producer worker {w} died (exit code {proc.exitcode})"
        summary.sent += sent
        summary.acknowledged += acked
        summary.failed += max(1, sent - acked, failed)
        summary.errors = {**summary.errors, why: max(1, sent - acked, failed)}
    gts = merge_ground_truth([o.get("ground_truth", []) for o in outcomes.values()])
    return ParallelResult(summary, gts, workers)


def _run_workers(
    workers: int, target: Callable[..., None],
    args: Callable[[int, Any, Any, Any], tuple], progress: Callable[[str], None] | None,
) -> tuple[dict[int, dict[str, Any]], list[Any], Any]:
    """Fork ``workers`` processes running ``target(*args(w, counters, results, stop))`` and
    collect what each reports; returns (outcomes by worker, processes, live counters)."""
    ctx = mp.get_context("fork")
    counters = ctx.Array("q", 3 * workers, lock=False)  # sent, acked, failed per worker
    results: Any = ctx.Queue()
    stop = ctx.Event()
    procs = []
    parent_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by every fork
    try:
        for w in range(workers):
            proc = ctx.Process(target=target, args=args(w, counters, results, stop),
                               name=f"clickguard-produce-{w}", daemon=True)
            proc.start()
            procs.append(proc)
    finally:
        signal.signal(signal.SIGINT, parent_sigint)
    return _collect(procs, results, counters, workers, progress, stop), procs, counters


def _ledger_part(ledger: Path, w: int) -> Path:
    return ledger.with_name(f"{ledger.name}.part{w}")


def _concat_ledgers(ledger: Path, workers: int) -> None:
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("wb") as out:
        for w in range(workers):
            part = _ledger_part(ledger, w)
            if part.exists():
                with part.open("rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
                part.unlink()


def _worker(
    make_records: Callable[[], tuple[Iterable[Record], list[Generator]]],
    settings: Settings,
    topic: str | None,
    rate: float | None,
    duration: float | None,
    ledger: Path | None,
    flush_timeout: float | None,
    overrides: dict[str, Any],
    counters: Any,
    w: int,
    results: Any,
    stop: Any,
) -> None:
    """One forked producer: sends what ``make_records`` yields (built in the child, so a
    generator's state is never shared) and reports its summary and ground truth."""
    out: dict[str, Any] = {"worker": w}
    # the parent SIGKILLed: its workers sent on forever (a run without --count), orphaned; now
    # its death is a SIGTERM here, which stops the sending at the next chunk, then flushes
    signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
    parent = mp.parent_process()  # the process that forked this one (not a reaper after it died)
    if parent is None or parent.pid is None:
        raise RuntimeError("a producer worker runs only as a multiprocessing child")
    parent_pid = parent.pid
    die_with_parent(parent_pid)
    try:
        records, gens = make_records()

        def stats(sent: int, acked: int, failed: int) -> None:
            counters[3 * w], counters[3 * w + 1], counters[3 * w + 2] = sent, acked, failed

        summary = produce(settings, records, topic=topic, rate=rate, duration=duration,
                          ledger=ledger, progress=None, flush_timeout=flush_timeout, stats=stats,
                          stop=stop, **overrides)
        out.update(summary=summary, end=time.time(),
                   ground_truth=[t for g in gens for t in g.ground_truth])
    except ProducerError as exc:
        out["error"] = str(exc)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, never silently lost
        out["error"] = f"worker {w}: {type(exc).__name__}: {exc}"
    results.put(out)
    if os.getppid() != parent_pid:  # nobody reads the queue: exit without waiting to flush
        results.cancel_join_thread()  # it (a large result blocked the exit on a full pipe)


def _collect(
    procs: list[Any], results: Any, counters: Any, workers: int,
    progress: Callable[[str], None] | None, stop: Any,
) -> dict[int, dict[str, Any]]:
    """Results of every worker (read before join: a full pipe would block the child); Ctrl-C
    sets ``stop`` for the workers and keeps collecting until each has flushed and reported."""
    outcomes: dict[int, dict[str, Any]] = {}
    t0 = last_t = time.monotonic()
    last_sent = 0
    interrupted = False
    while len(outcomes) < workers:
        try:  # Ctrl-C anywhere in here: the workers are told to stop; they flush, then report
            try:
                got = results.get(timeout=1.0)
                outcomes[got["worker"]] = got
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and results.empty():
                    break  # a worker died without a word (killed): do not wait forever
            now = time.monotonic()
            if progress and now - last_t >= 1.0 and len(outcomes) < workers:
                sent = sum(counters[3 * i] for i in range(workers))
                acked = sum(counters[3 * i + 1] for i in range(workers))
                failed = sum(counters[3 * i + 2] for i in range(workers))
                progress(f"sent={sent} acked={acked} failed={failed} "
                         f"rate={(sent - last_sent) / (now - last_t):,.0f}/s workers={workers} "
                         f"elapsed={now - t0:.0f}s")
                last_sent, last_t = sent, now
        except KeyboardInterrupt:
            stop.set()
            if not interrupted and progress:
                progress("interrupted: waiting for the records already sent to be acknowledged")
            interrupted = True
    for p in procs:
        p.join(timeout=30)
    return outcomes


def _merge(
    parts: list[ProduceSummary], outcomes: dict[int, dict[str, Any]], rate: float | None,
    ledger: Path | None,
) -> ProduceSummary:
    out = ProduceSummary(topic=parts[0].topic, rate_target=rate,
                         ledger=str(ledger) if ledger else None)
    kinds: Counter[str] = Counter()
    types: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for s in parts:
        out.sent += s.sent
        out.acknowledged += s.acknowledged
        out.failed += s.failed
        kinds.update(s.per_kind)
        types.update(s.per_event_type)
        errors.update(s.errors)
        latencies.extend(s.raw_latencies)
        out.send_s = max(out.send_s, s.send_s)
    ends = [o["end"] for o in outcomes.values() if o.get("summary")]
    starts = [o["end"] - o["summary"].duration_s for o in outcomes.values() if o.get("summary")]
    out.duration_s = round(max(ends) - min(starts), 3)
    out.throughput_eps = round(out.acknowledged / out.duration_s, 1) if out.duration_s else 0.0
    out.per_kind, out.per_event_type, out.errors = dict(kinds), dict(types), dict(errors)
    out.latency_ms = latency_percentiles(latencies)
    return out


def produce_records_parallel(
    settings: Settings,
    records: list[Record],
    *,
    workers: int,
    topic: str | None = None,
    progress: Callable[[str], None] | None = print,
) -> ProduceSummary:
    """Send already-encoded ``records`` with ``workers`` forked processes, every ``workers``-th
    record each, and merge their summaries (the producer bench's both-cores phase).

    One Python process tops out at one produce() call plus one delivery callback per record
    (~2.5 µs); a second process lifts that cap only where cores are spare: on 2 cores shared
    with 3 brokers it was slower than one (docs/results/bench-producer.md). Workers are forked
    after ``records`` exist: they share its pages.
    """
    def args(w: int, counters: Any, results: Any, stop: Any) -> tuple:
        def make() -> tuple[Iterable[Record], list[Generator]]:
            return itertools.islice(records, w, None, workers), []

        return (make, settings, topic, None, None, None, None, {}, counters, w, results, stop)

    outcomes, _procs, _counters = _run_workers(workers, _worker, args, progress)
    errors = [o["error"] for o in outcomes.values() if o.get("error")]
    done = [o["summary"] for o in outcomes.values() if o.get("summary")]
    if errors or len(done) < workers:
        raise ProducerError("; ".join(sorted(set(errors))) or "a producer worker died")
    return _merge(done, outcomes, None, None)

