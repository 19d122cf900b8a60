"""One real streaming job (Kafka → Spark → PostgreSQL): exact accounting, DLQ and late topics,
anomaly detection, schema evolution, and ledger replay skipping.

Wave 1 (valid traffic, two injected session anomalies, and events from a producer on an evolved
schema) establishes the event-time watermark; wave 2 carries every kind of fault, including late
events 30 minutes older than that watermark. Expected fates come from the fault injector's labels.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

from clickguard.contract import (
    DlqReason,
    RegistryClient,
    encode,
    schema_json,
    subject,
)
from clickguard.kafka import end_offsets
from clickguard_producer.core import produce, register_schemas
from clickguard_producer.faults import DUPLICATE, LATE, VALID, FaultConfig, FaultInjector, Record
from clickguard_producer.generator import Generator, GeneratorConfig
from streaming_job.sink import BatchSink
from tests.integration.streaming_job.conftest import StreamRun

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:8]


def evolved_schema() -> dict[str, Any]:
    """The contract plus an optional field: a BACKWARD-compatible evolution."""
    schema = schema_json()
    schema["fields"].append({"name": "device", "type": ["null", "string"], "default": None})
    return schema


class Scenario:
    """What was produced, with each record's expected fate."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.gen: Generator | None = None
        self.evolved_ids: list[str] = []
        self.wave2: FaultInjector | None = None
        self.wave1_size = 0

    def kinds(self) -> Counter[str]:
        return Counter(r.kind for r in self.records)

    def valid_ids(self) -> set[str]:
        return {r.event_id for r in self.records if r.kind == VALID and r.event_id}


@pytest.fixture(scope="module")
def scenario(stream_run: StreamRun) -> Scenario:
    s = stream_run.settings
    contract_id, rogue_id = register_schemas(s, s.topic_raw)
    client = RegistryClient(s.schema_registry_url)
    evolved_id = client.register(subject(s.topic_raw), evolved_schema())  # BACKWARD: accepted
    sc = Scenario()

    # wave 1: valid traffic + HIGH_FREQUENCY and BOT_LIKE sessions + an evolved-schema producer
    sc.gen = gen = Generator(GeneratorConfig(seed=3, run_id=f"p{TAG}"))
    events = gen.take(1500) + gen.inject("HIGH_FREQUENCY") + gen.inject("BOT_LIKE")
    wave1 = list(FaultInjector(contract_id).records(events))
    parsed = fastavro.parse_schema(evolved_schema())
    for ev in gen.take(200):
        ev["event_id"] = f"evo-{TAG}-{ev['event_id']}"
        ev["device"] = "tablet"
        value = encode(ev, evolved_id, schema=parsed)
        sc.evolved_ids.append(ev["event_id"])
        wave1.append(Record(str(ev["session_id"]).encode(), value, VALID, ev["event_id"],
                            ev["event_type"]))
    summary = produce(s, wave1, topic=s.topic_raw, progress=None)
    assert summary.acknowledged == len(wave1)
    sc.records += wave1
    sc.wave1_size = len(wave1)
    stream_run.wait_accounted(len(wave1))

    # wave 2: every fault kind at 3 %, duplicates at 3 %
    sc.wave2 = inj = FaultInjector(
        contract_id, FaultConfig.uniform(0.03, duplicate_rate=0.03), seed=11,
        watermark_minutes=s.stream_watermark_minutes, rogue_schema_id=rogue_id,
    )
    wave2 = list(inj.records(gen.take(3000)))
    summary = produce(s, wave2, topic=s.topic_raw, progress=None)
    assert summary.acknowledged == len(wave2)
    sc.records += wave2
    stream_run.wait_accounted(len(sc.records))
    return sc


def _consume_all(run: StreamRun, topic: str) -> list[Any]:
    """Every message of ``topic`` (its end offsets read first)."""
    ends = end_offsets(run.settings, topic)
    c = Consumer({
        "bootstrap.servers": run.settings.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    out: list[Any] = []
    want = sum(ends.values())
    while len(out) < want:
        msgs = c.consume(500, timeout=10)
        if not msgs:
            break
        out += [m for m in msgs if m.error() is None]
    c.close()
    return out


def test_exact_accounting(stream_run: StreamRun, scenario: Scenario) -> None:
    conn, qid = stream_run.conn, stream_run.query_id()
    kinds = scenario.kinds()
    expected_dlq = {r.value: kinds[f"malformed:{r.value}"] for r in DlqReason}
    assert all(n > 0 for n in expected_dlq.values()), expected_dlq  # every kind really injected
    assert kinds[LATE] > 0 and kinds[DUPLICATE] > 0
    totals = conn.execute(
        "SELECT sum(input_rows), sum(stored), sum(dlq), sum(late), sum(duplicates) "
        "FROM batch_ledger WHERE query_id = %s", (qid,),
    ).fetchone()
    assert totals == (
        len(scenario.records), kinds[VALID], sum(expected_dlq.values()), kinds[LATE],
        kinds[DUPLICATE],
    )
    # produced = stored + DLQ + late + duplicates, batch by batch
    assert conn.execute(
        "SELECT count(*) FROM batch_ledger WHERE query_id = %s "
        "AND input_rows <> stored + dlq + late + duplicates", (qid,),
    ).fetchone() == (0,)
    ids = sorted(scenario.valid_ids())
    assert conn.execute(
        "SELECT count(*) FROM events WHERE event_id = ANY(%s)", (ids,)
    ).fetchone() == (len(ids),)
    reasons = dict(conn.execute(
        "SELECT reason, count(*) FROM dlq_events WHERE source_topic = %s GROUP BY reason",
        (stream_run.settings.topic_raw,),
    ).fetchall())
    assert reasons == expected_dlq
    late = conn.execute(
        "SELECT count(*), min(lateness_ms) FROM late_events WHERE source_topic = %s",
        (stream_run.settings.topic_raw,),
    ).fetchone()
    assert late is not None and late[0] == kinds[LATE] and late[1] > 0


def test_dlq_and_late_topics_carry_original_bytes_and_headers(
    stream_run: StreamRun, scenario: Scenario
) -> None:
    s = stream_run.settings
    kinds = scenario.kinds()
    by_offset = {}
    for m in _consume_all(stream_run, s.topic_dlq):
        h = {k.removeprefix("clickguard.error."): v.decode() for k, v in m.headers()}
        assert set(h) == {"reason", "detail", "source.topic", "source.partition",
                          "source.offset", "detected_at"}
        by_offset[(int(h["source.partition"]), int(h["source.offset"]))] = (h["reason"], m.value())
    assert Counter(r for r, _ in by_offset.values()) == Counter(
        {r.value: kinds[f"malformed:{r.value}"] for r in DlqReason}
    )
    stored = dict(
        ((p, o), bytes(v)) for p, o, v in stream_run.conn.execute(
            "SELECT source_partition, source_offset, raw_value FROM dlq_events "
            "WHERE source_topic = %s", (s.topic_raw,),
        ).fetchall()
    )
    assert {k: v for k, (_, v) in by_offset.items()} == stored  # original bytes, both places
    late_msgs = _consume_all(stream_run, s.topic_late)
    assert len(late_msgs) == kinds[LATE]
    assert all(int(dict(m.headers())["clickguard.late.lateness_ms"]) > 0 for m in late_msgs)
    late_values = {m.value() for m in late_msgs}
    assert late_values == {r.value for r in scenario.records if r.kind == LATE}


def test_session_anomalies_detected_with_the_right_type(
    stream_run: StreamRun, scenario: Scenario
) -> None:
    assert scenario.gen is not None
    truths = [g for g in scenario.gen.ground_truth if g.type in ("HIGH_FREQUENCY", "BOT_LIKE")]
    assert {g.type for g in truths} == {"HIGH_FREQUENCY", "BOT_LIKE"}
    for g in truths:
        rows = stream_run.conn.execute(
            "SELECT anomaly_type, window_start, click_count, anomaly_score, observed, threshold, "
            "details FROM anomalies WHERE session_id = %s", (g.session_id,),
        ).fetchall()
        assert {r[0] for r in rows} == {g.type}, (g, rows)
        starts = {r[1].isoformat(timespec="milliseconds") for r in rows}
        assert g.window_start in starts
        for _, _, clicks, score, observed, threshold, details in rows:
            assert clicks > threshold == 50 and observed == clicks
            assert details["clicks"] == clicks
            if g.type == "HIGH_FREQUENCY":
                assert score == pytest.approx(clicks / 50)
            else:
                ratio = details["unique_items"] / clicks
                assert ratio < 0.1
                assert score == pytest.approx(clicks / 50 * (1 - ratio))


def test_old_and_evolved_schema_producers_both_land(
    stream_run: StreamRun, scenario: Scenario
) -> None:
    conn = stream_run.conn
    assert conn.execute(
        "SELECT count(*) FROM events WHERE event_id = ANY(%s)", (scenario.evolved_ids,)
    ).fetchone() == (len(scenario.evolved_ids),)
    old_ids = [r.event_id for r in scenario.records[: scenario.wave1_size - 200]]
    assert conn.execute(
        "SELECT count(*) FROM events WHERE event_id = ANY(%s)", (old_ids,)
    ).fetchone() == (len(old_ids),)


def test_latency_columns_are_ordered(stream_run: StreamRun, scenario: Scenario) -> None:
    ids = sorted(scenario.valid_ids())
    assert stream_run.conn.execute(
        "SELECT count(*) FILTER (WHERE batch_start_ts < kafka_ts OR commit_ts < batch_start_ts), "
        "count(*) FROM events WHERE event_id = ANY(%s)", (ids,),
    ).fetchone() == (0, len(ids))


def test_replayed_batch_is_skipped_without_touching_anything(
    stream_run: StreamRun, scenario: Scenario
) -> None:
    conn, qid = stream_run.conn, stream_run.query_id()

    def snapshot() -> tuple[Any, ...]:
        return conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM dlq_events), "
            "(SELECT count(*) FROM late_events), (SELECT count(*) FROM batch_ledger), "
            "(SELECT max(updated_at) FROM anomalies)"
        ).fetchone()

    before = snapshot()
    sink = BatchSink(stream_run.settings, query_id=qid)
    try:
        # the Spark DataFrame is never touched for a committed batch, so None stands in for it
        sink.process_batch(None, 0)
    finally:
        sink.close()
    assert snapshot() == before
