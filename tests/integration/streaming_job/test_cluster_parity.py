"""The same input through the stream on ``local[2]`` and on the standalone cluster with 2 workers
gives identical results (issue 11): ``events``, ``dlq_events``, ``late_events``, ``anomalies`` and
the ledger totals.

The records are generated once (``clickguard_proof.fuzz.adversarial_records``: valid events,
hostile strings and numbers, out-of-range and late timestamps, byte mutations, exact duplicates
and database poison; plus a click burst that two anomaly rules flag) and sent, byte for byte,
through two private streams (own topics, checkpoint and database; ``fuzz_stream``). Only the
schema id in the wire header is re-framed to the id each private topic registered. Before the
records, one event with a fixed event time is sent and committed, so both streams route late
events against the same watermark, not against the first batch's none.

The local run uses the driver sink (the batch collected to the driver); the cluster run uses the
executor-side sink (``CLICKGUARD_STREAM_DECODE=executors``: the two workers' tasks decode,
classify, route and stage their partitions, the driver commits the move), so the test proves
both that the cluster is a matter of configuration and that the executor-side sink writes
exactly what the driver sink writes, poison records included (those batches take the driver's
isolation path).
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clickguard.contract import encode
from clickguard.settings import Settings
from clickguard_proof.fuzz import (
    COMPARED,
    FuzzRecord,
    FuzzStream,
    account,
    adversarial_records,
    base_event,
    fuzz_stream,
)
from clickguard_stack.manager import Stack

pytestmark = pytest.mark.integration

RECORDS = 600
SCHEMA_ID = 1  # the records are generated with it, and re-framed to each run's id when sent
WORKERS = 2
CLUSTER_NODES = ["spark-master", *(f"spark-worker-{n}" for n in range(1, WORKERS + 1))]


@pytest.fixture(scope="module")
def cluster(stack: Stack, settings: Settings) -> Iterator[str]:
    """The stack's standalone master with 2 one-core workers; its URL."""
    s = Stack(settings.model_copy(update={"spark_workers": WORKERS}), echo=lambda _m: None)
    try:
        s.up(CLUSTER_NODES, timeout=180)
        yield f"spark://127.0.0.1:{settings.spark_master_port}"
    finally:
        for name in reversed(CLUSTER_NODES):
            s.node(name).stop()


def reframe(value: bytes | None, old_id: int, new_id: int) -> bytes | None:
    """``value`` with its Confluent header's schema id moved from ``old_id`` to ``new_id``
    (anything else, e.g. a mutated header, is left as sent)."""
    old = b"\x00" + struct.pack(">I", old_id)
    if value is not None and value.startswith(old):
        return b"\x00" + struct.pack(">I", new_id) + value[5:]
    return value


UNKNOWN_ID_BIT = 0x4000_0000  # far above any id the registry hands out in a test session


def frame_for(value: bytes | None, run_id: int) -> bytes | None:
    """``value`` as sent to a run: the contract's id re-framed to the run's, and any other id
    in a wire header (a mutated one) moved out of the registry's range. Each run registers its
    own subject, so a small mutated id may name a schema in one run and nothing in the other;
    this way it names nothing in both."""
    if value is None or len(value) < 5 or value[0] != 0:
        return value
    (sid,) = struct.unpack(">I", value[1:5])
    if sid == SCHEMA_ID:
        return reframe(value, SCHEMA_ID, run_id)
    return b"\x00" + struct.pack(">I", sid | UNKNOWN_ID_BIT) + value[5:]


def outcome(run: FuzzStream, warmup: int) -> dict[str, Any]:
    """Everything the stream wrote for the records after the ``warmup`` ones, comparable
    between two runs (no ids, offsets or timestamps of the run)."""
    acc = account(run)
    assert acc.problems == []
    sent = run.sent[warmup:]
    topic, conn = run.settings.topic_raw, run.conn
    coords = ([s.partition for s in sent], [s.offset for s in sent])
    events = sorted(map(repr, conn.execute(
        f"SELECT {', '.join(COMPARED)}, event_ts, price FROM events e "
        "JOIN unnest(%s::int[], %s::bigint[]) AS k(p, o) "
        "ON e.kafka_partition = k.p AND e.kafka_offset = k.o", coords).fetchall()))
    dlq = Counter(repr((reason, event_id, reframe(raw, run.schema_id, SCHEMA_ID), key))
                  for reason, event_id, raw, key in conn.execute(
        "SELECT reason, event_id, raw_value, raw_key FROM dlq_events d "
        "JOIN unnest(%s::int[], %s::bigint[]) AS k(p, o) "
        "ON d.source_partition = k.p AND d.source_offset = k.o WHERE d.source_topic = %s",
        (*coords, topic)).fetchall())
    late = sorted(map(repr, conn.execute(  # (the payload carries the run's Kafka coordinates)
        "SELECT event_id, event_ts, session_id, event_type FROM late_events l "
        "JOIN unnest(%s::int[], %s::bigint[]) AS k(p, o) "
        "ON l.source_partition = k.p AND l.source_offset = k.o WHERE l.source_topic = %s",
        (*coords, topic)).fetchall()))
    anomalies = sorted(map(repr, conn.execute(
        "SELECT anomaly_type, entity, session_id, window_start, window_end, click_count, "
        "unique_items, observed FROM anomalies").fetchall()))
    ledger = {k: v for k, v in acc.ledger.items() if k != "batches"}
    fates = Counter(acc.fates)
    fates["stored"] -= warmup  # the warm-up events
    ledger["input_rows"] -= warmup
    ledger["stored"] -= warmup
    return {"fates": fates, "ledger": ledger, "events": events, "dlq": dlq, "late": late,
            "anomalies": anomalies}


def click_burst(now_ms: int, n: int = 60) -> list[FuzzRecord]:
    """``n`` clicks of one session on one item within 5 s of one 10 s window: HIGH_FREQUENCY
    and BOT_LIKE (the rules count the events table per window, whatever the batches were)."""
    start = (now_ms - 60_000) // 10_000 * 10_000
    rng = random.Random(1)
    out = []
    for i in range(n):
        ev = base_event(rng, "burst", i, now_ms) | {
            "event_ts": start + i * 80, "session_id": 424_242, "event_type": "click",
            "item_id": 7, "price": None, "quantity": None}
        out.append(FuzzRecord("valid", b"424242", encode(ev, SCHEMA_ID)))
    return out


def streaming_apps(settings: Settings) -> list[tuple[str, int]]:
    """(state, cores) of the streaming applications the standalone master runs."""
    url = f"http://127.0.0.1:{settings.spark_master_ui_port}/json/"
    apps = httpx.get(url, timeout=10).json()["activeapps"]
    return [(a["state"], a["cores"]) for a in apps if a["name"] == "clickguard-streaming"]


def run_through(
    master: str, records: list[FuzzRecord], now_ms: int, tmp: Any,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    env = {"CLICKGUARD_SPARK_MASTER": master, **(extra or {})}
    with fuzz_stream(tmp, extra_env=env) as run:
        # the same event time in both runs (5 min before the records): the first watermark,
        # and the per-minute counts, do not depend on when each run started
        warm = base_event(random.Random(0), "warm", 0, now_ms - 300_000) | {
            "event_ts": now_ms - 300_000}
        run.produce([FuzzRecord("valid", b"0", encode(warm, run.schema_id))])
        run.wait_accounted(1, timeout=600)
        run.produce([FuzzRecord(r.kind, r.key, frame_for(r.value, run.schema_id),
                                r.headers) for r in records])
        run.wait_accounted(len(run.sent), timeout=600)
        if master.startswith("spark://"):  # the batches really ran on both workers
            assert streaming_apps(run.settings) == [("RUNNING", WORKERS)]
        if (extra or {}).get("CLICKGUARD_STREAM_DECODE") == "executors":
            half = len(run.sent) // 2
            assert staged_rows(run, at_least=half) >= half  # the executors staged the rows
            # ... and every batch's commit moved and deleted them
            assert run.conn.execute("SELECT count(*) FROM stream_stage").fetchone() == (0,)
        return outcome(run, warmup=1)


def staged_rows(run: FuzzStream, at_least: int, timeout: float = 30.0) -> int:
    """Rows ever inserted into ``stream_stage`` of the run's private database (PostgreSQL's
    statistics). Each writing session flushes its counts on its own schedule (at most once a
    second while busy, within 10 s when idle, at exit), so the sum is polled until it reaches
    ``at_least`` or the timeout: the first non-zero sum can be a part of the rows (CI once read
    291 of them before the other sessions had flushed)."""
    deadline = time.monotonic() + timeout
    while True:
        run.conn.execute("SELECT pg_stat_clear_snapshot()")
        (n,) = run.conn.execute(
            "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables "
            "WHERE relname = 'stream_stage'").fetchone() or (0,)
        if n >= at_least or time.monotonic() > deadline:
            return int(n)
        time.sleep(1)


def test_local_and_a_two_worker_cluster_store_the_same(
    cluster: str, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    now_ms = int(time.time() * 1000)
    records = [*adversarial_records(RECORDS, SCHEMA_ID, seed=11, tag="parity"),
               *click_burst(now_ms)]
    local = run_through("local[2]", records, now_ms, tmp_path_factory.mktemp("ck"))
    on_cluster = run_through(
        cluster, records, now_ms, tmp_path_factory.mktemp("ck"),
        # one driver, no standby: the active driver takes both workers' executors
        {"CLICKGUARD_STREAM_DRIVERS": "1", "CLICKGUARD_STREAM_DECODE": "executors"},
    )
    kinds = local["fates"]
    assert kinds["stored"] > 0 and kinds["late"] > 0 and kinds["duplicate"] > 0
    assert any(k.startswith("dlq:") for k in kinds)
    assert {"HIGH_FREQUENCY", "BOT_LIKE"} <= {a.split("'")[1] for a in local["anomalies"]}
    for part in ("fates", "ledger", "events", "dlq", "late", "anomalies"):
        assert on_cluster[part] == local[part], part
    print(f"parity: fates {dict(local['fates'])}, ledger {local['ledger']}, "
          f"{len(local['anomalies'])} anomalies")
