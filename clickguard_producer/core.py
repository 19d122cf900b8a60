"""Durable, fast sending of records to Kafka, with a summary and an acknowledged-id ledger.

Durability comes from `clickguard.kafka.producer_config` (acks=all, idempotence, unbounded retries
with backoff inside a delivery timeout). Speed comes from keeping Python out of the hot path:
records arrive pre-encoded (`Record.value`), one shared delivery callback only counts and keeps
librdkafka's own per-message latency (`msg.latency()`, produce() call -> delivery report), and
`poll(0)` runs once per 1024 records, not per record.
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from clickguard.contract import RegistryClient, register_contract
from clickguard.kafka import producer_config
from clickguard.settings import Settings
from clickguard_producer.faults import ROGUE_SUBJECT, Record, rogue_schema

POLL_EVERY = 1024
_KIND = operator.attrgetter("kind")
_TYPE = operator.attrgetter("event_type")


class ProducerError(RuntimeError):
    """A condition the user must fix (cluster down, registry down); the message says how."""


@dataclass
class ProduceSummary:
    """What happened: counts, per kind/type, throughput and delivery latency percentiles."""

    topic: str
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    per_event_type: dict[str, int] = field(default_factory=dict)
    per_kind: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0  # first produce() to last delivery report
    send_s: float = 0.0  # first produce() to last produce()
    throughput_eps: float = 0.0  # acknowledged / duration_s
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50/p95/p99/max
    errors: dict[str, int] = field(default_factory=dict)  # delivery error -> count
    rate_target: float | None = None
    ledger: str | None = None
    # every delivery latency (s), so parallel workers' percentiles can be merged exactly
    raw_latencies: Sequence[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("raw_latencies")
        return out


class TokenBucket:
    """Fixed-rate pacing: at most ``rate`` tokens per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 100)
        self.tokens = self.burst
        self.last = time.monotonic()

    def take(self, n: int = 1) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= n:
                self.tokens -= n
                return
            time.sleep((n - self.tokens) / self.rate)


def register_schemas(settings: Settings, topic: str | None = None) -> tuple[int, int]:
    """Register the contract (BACKWARD) and the rogue no-event_id schema; (contract, rogue) ids."""
    client = RegistryClient(settings.schema_registry_url)
    try:
        contract_id = register_contract(client, topic or settings.topic_raw)
        rogue_id = client.register(ROGUE_SUBJECT, rogue_schema())
    except httpx.HTTPError as exc:
        raise ProducerError(
            f"schema registry at {client.url} is unreachable ({exc}); "
            "start it with `clickguard stack up`"
        ) from exc
    finally:
        client.close()
    return contract_id, rogue_id


def check_cluster(producer: Producer, settings: Settings, topic: str, timeout: float = 10.0) -> int:
    """Partitions of ``topic``; ProducerError naming `clickguard stack up` when unreachable."""
    try:
        md = producer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise ProducerError(
            f"Kafka at {settings.bootstrap_servers} is unreachable ({exc.args[0]}); "
            "start it with `clickguard stack up`"
        ) from exc
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        raise ProducerError(
            f"topic {topic!r} does not exist ({t.error if t else 'absent'}); "
            "`clickguard stack up` creates the platform's topics"
        )
    return len(t.partitions)


class _Deliveries:
    """Delivery-report sink shared by every message: latencies (= acks), errors, ledger."""

    def __init__(self, ledger: IO[str] | None) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.ledger = ledger
        keep, errors = self.latencies.append, self.errors

        # a plain closure, not a bound method: it runs once per message on the hot path
        def callback(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                if (latency := msg.latency()) is not None:
                    keep(latency)
            else:
                errors[err.str()] += 1

        self.callback = callback

    @property
    def acked(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def with_ledger(self, rec: Record) -> Callable[[KafkaError | None, Message], None]:
        callback, ledger = self.callback, self.ledger
        if ledger is None:
            raise ValueError("with_ledger() needs a ledger file")

        def cb(err: KafkaError | None, msg: Message) -> None:
            callback(err, msg)
            if err is None:
                ledger.write(
                    f"{rec.event_id if rec.event_id is not None else '-'}\t{rec.kind}\t"
                    f"{msg.partition()}\t{msg.offset()}\n"
                )

        return cb


def produce(
    settings: Settings,
    records: Iterable[Record],
    *,
    topic: str | None = None,
    rate: float | None = None,
    duration: float | None = None,
    count: int | None = None,
    ledger: Path | None = None,
    progress: Callable[[str], None] | None = print,
    at: dict[int, Callable[[], None]] | None = None,
    stop: threading.Event | None = None,
    flush_timeout: float | None = None,
    stats: Callable[[int, int, int], None] | None = None,
    **config_overrides: object,
) -> ProduceSummary:
    """Send ``records`` (lazily pulled, so their ingest_ts is the send time) and wait for acks.

    ``rate`` = records/s (None = as fast as possible); stops after ``count`` records, ``duration``
    seconds, when ``records`` ends, or when ``stop`` is set. ``at`` maps a sent-count to an action
    started in a background thread at that point (the bench kills a broker mid-run that way).
    ``ledger`` gets one TSV line per ACKNOWLEDGED record: event_id, kind, partition, offset.
    ``stats(sent, acked, failed)`` is called about once a second and at the end (the parallel
    producer's live counters).
    """
    topic = topic or settings.topic_raw
    p = Producer(producer_config(settings, **config_overrides))
    check_cluster(p, settings, topic)
    summary = ProduceSummary(topic=topic, rate_target=rate, ledger=str(ledger) if ledger else None)
    ledger_file = ledger.open("w", buffering=1 << 20) if ledger else None
    dr = _Deliveries(ledger_file)
    kinds: Counter[str] = Counter()
    types: Counter[str] = Counter()
    # records go out in chunks: pacing, progress, fault actions and bookkeeping run per chunk,
    # so the per-record work is a single produce() call
    chunk_size = POLL_EVERY if not rate else max(1, min(POLL_EVERY, int(rate / 200)))
    # 50 ms of burst lets the bucket catch up after a late wake-up on a busy machine
    bucket = TokenBucket(rate, burst=max(1.0, rate / 20, chunk_size)) if rate else None
    actions = sorted((at or {}).items())
    threads: list[threading.Thread] = []
    source = iter(itertools.islice(records, count) if count is not None else records)
    t0 = time.monotonic()
    deadline = t0 + duration if duration else None
    next_report = t0 + 1.0
    last_sent = sent = 0
    interrupted = False
    chunk: list[Record] = []
    produce_fn, poll, shared_cb = p.produce, p.poll, dr.callback
    try:
        while True:
            while actions and sent >= actions[0][0]:  # due fault/test actions, off the hot path
                th = threading.Thread(target=actions.pop(0)[1], daemon=True)
                th.start()
                threads.append(th)
            n = min(chunk_size, actions[0][0] - sent) if actions else chunk_size
            chunk = list(itertools.islice(source, n))
            if not chunk:
                break
            if bucket is not None:
                bucket.take(len(chunk))
            for rec in chunk:
                cb = dr.with_ledger(rec) if ledger_file else shared_cb
                try:  # positional (partition -1 = by key): cheaper than keyword arguments
                    produce_fn(topic, rec.value, rec.key, -1, cb)
                except BufferError:  # local queue full: let librdkafka drain it, then retry
                    while True:
                        poll(0.05)
                        try:
                            produce_fn(topic, rec.value, rec.key, -1, cb)
                            break
                        except BufferError:
                            continue
            sent += len(chunk)
            kinds.update(map(_KIND, chunk))
            types.update(map(_TYPE, chunk))
            poll(0)
            now = time.monotonic()
            if now >= next_report:
                if stats:
                    stats(sent, dr.acked, dr.failed)
                if progress:
                    progress(
                        f"sent={sent} acked={dr.acked} failed={dr.failed} "
                        f"rate={(sent - last_sent) / (now - next_report + 1.0):,.0f}/s "
                        f"in-flight={len(p)}"
                    )
                last_sent, next_report = sent, now + 1.0
            if (deadline and now >= deadline) or (stop is not None and stop.is_set()):
                break
    except KeyboardInterrupt:
        interrupted = True
        if progress:
            progress("interrupted: waiting for the records already sent to be acknowledged")
    summary.send_s = time.monotonic() - t0
    remaining = flush_timeout if flush_timeout is not None else 180.0
    end = time.monotonic() + remaining
    while len(p) > 0 and time.monotonic() < end:
        p.flush(1.0)  # returns as soon as the last delivery report has been served
        if progress and len(p) > 0:
            progress(f"flushing: acked={dr.acked} failed={dr.failed} in-flight={len(p)}")
    done = time.monotonic()
    if len(p) > 0:  # flush timed out: purge, so the undelivered are reported (as failed) now
        p.purge()
        p.poll(1.0)
    for th in threads:
        th.join(timeout=300)
    if ledger_file:
        ledger_file.close()
    if interrupted:  # Ctrl-C may land mid-chunk: librdkafka knows how many it was given
        produced = dr.acked + dr.failed + len(p)
        if sent < produced <= sent + len(chunk):
            kinds.update(map(_KIND, chunk[: produced - sent]))
            types.update(map(_TYPE, chunk[: produced - sent]))
            sent = produced
    summary.sent = sent
    summary.acknowledged = dr.acked
    # handed to librdkafka without a delivery report (the flush timed out) = not delivered;
    # not len(p), which also counts protocol requests: a metadata refresh queued while the
    # bench stopped a broker made one acknowledged run report "1 failed"
    summary.failed = dr.failed + max(0, sent - dr.acked - dr.failed)
    summary.per_kind = dict(kinds)
    summary.per_event_type = dict(types)
    summary.errors = dict(dr.errors)
    summary.duration_s = round(done - t0, 3)
    summary.send_s = round(summary.send_s, 3)
    summary.throughput_eps = round(dr.acked / summary.duration_s, 1) if summary.duration_s else 0.0
    summary.latency_ms = latency_percentiles(dr.latencies)
    summary.raw_latencies = array("d", dr.latencies)
    if stats:
        stats(sent, summary.acknowledged, summary.failed)
    return summary


def latency_percentiles(latencies_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of delivery latencies given in seconds."""
    if not latencies_s:
        return {}
    import numpy as np

    arr = np.asarray(latencies_s) * 1000.0
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(arr.max()), 2),
    }
