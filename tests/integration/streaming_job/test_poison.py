"""No record can stop the stream: the sink's last line of defence against REAL database errors.

The stream runs on private topics and a private database (``clickguard_proof.fuzz.fuzz_stream``)
whose ``events`` table has a test-only trigger that rejects a marker ``page`` with SQLSTATE 22023
— a data error that validation cannot foresee. Those records must be isolated (bisect),
dead-lettered as ``unstorable`` with the database's error, and the rest of their batch stored,
ledger intact. A non-data error (a trigger raising 42501, insufficient privilege) must still
fail the batch, as a lost connection does, and nothing may move until it is fixed.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from clickguard.contract import encode
from clickguard.kafka import end_offsets
from clickguard_proof.fuzz import POISON_MARKER, FuzzRecord, FuzzStream, account, fuzz_stream
from clickguard_stack.manager import Stack
from tests.integration.streaming_job.conftest import LogTail

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:8]
TRACE = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
         ("x-tenant", b"acme"), ("x-tenant", None), ("bin", bytes([0, 255, 1]))]


@pytest.fixture(scope="module")
def run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStream]:
    with fuzz_stream(tmp_path_factory.mktemp("checkpoint")) as r:
        yield r


def event(i: int, **kw: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {"event_id": f"poison-{TAG}-{i}", "event_ts": now, "ingest_ts": now, "source": "t",
            "session_id": 1000 + i % 7, "event_type": "click", "item_id": i, "page": "/p", **kw}


def consume_all(run: FuzzStream, topic: str) -> list[Any]:
    ends = end_offsets(run.settings, topic)
    c = Consumer({"bootstrap.servers": run.settings.bootstrap_servers,
                  "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    out: list[Any] = []
    deadline = time.monotonic() + 60
    while len(out) < sum(ends.values()) and time.monotonic() < deadline:
        out += [m for m in c.consume(500, timeout=5) if m.error() is None]
    c.close()
    return out


def test_db_rejected_records_are_dead_lettered_and_the_rest_stored(run: FuzzStream) -> None:
    poison, nul = {17, 101, 180}, {50}
    recs = []
    for i in range(200):
        ev = event(i)
        if i in poison:
            ev["page"] = f"{POISON_MARKER}-{i}"
        if i in nul:
            ev["page"] = "/x\x00y"  # the record: caught by validation, never loaded
        recs.append(FuzzRecord("t", str(i).encode(), encode(ev, run.schema_id),
                               TRACE if i in poison | nul or i % 2 else None))
    sent = run.produce(recs)
    run.wait_accounted(len(run.sent), 600)

    acc = account(run)
    assert acc.problems == []
    assert acc.fates == Counter({
        "stored": 196, "dlq:unstorable (isolated by the sink)": 3, "dlq:unstorable": 1,
    })
    assert acc.ledger["dlq"] == 4 and acc.ledger["stored"] == 196
    assert acc.ledger["unbalanced_batches"] == 0

    by_coord = {(s.partition, s.offset): i for i, s in enumerate(sent)}
    rows = run.conn.execute(
        "SELECT source_partition, source_offset, reason, detail, event_id, raw_key, raw_value,"
        " raw_header_keys, raw_header_values FROM dlq_events WHERE source_topic = %s",
        (run.settings.topic_raw,),
    ).fetchall()
    assert {by_coord[(p, o)] for p, o, *_ in rows} == poison | nul
    for p, o, reason, detail, eid, key, value, hkeys, hvalues in rows:
        i = by_coord[(p, o)]
        assert reason == "unstorable"
        if i in poison:
            assert detail == "PostgreSQL 22023: fuzz: page marker rejected"
        else:
            assert detail == "page contains U+0000 (NUL) at character 2"
        assert eid == f"poison-{TAG}-{i}"
        assert (bytes(key), bytes(value)) == (recs[i].key, recs[i].value)  # original bytes
        assert [(bytes(k).decode(), None if v is None else bytes(v))
                for k, v in zip(hkeys, hvalues, strict=True)] == TRACE
    stored = {r[0] for r in run.conn.execute("SELECT event_id FROM events").fetchall()}
    assert stored == {f"poison-{TAG}-{i}" for i in range(200)} - {
        f"poison-{TAG}-{i}" for i in poison | nul}

    # the DLQ topic: original key, value and headers, then ours (as Kafka Connect's DLQ does)
    msgs = consume_all(run, run.settings.topic_dlq)
    assert len(msgs) == 4
    for m in msgs:
        h = m.headers()
        ours = {k: v.decode() for k, v in h[len(TRACE):]}
        i = by_coord[(int(ours["clickguard.error.source.partition"]),
                      int(ours["clickguard.error.source.offset"]))]
        assert (m.key(), m.value(), h[: len(TRACE)]) == (recs[i].key, recs[i].value, TRACE)
        assert set(ours) == {f"clickguard.error.{k}" for k in (
            "reason", "detail", "source.topic", "source.partition", "source.offset",
            "detected_at")}
        assert ours["clickguard.error.reason"] == "unstorable"
        assert ours["clickguard.error.source.topic"] == run.settings.topic_raw


NOT_PERMITTED = f"""
CREATE OR REPLACE FUNCTION fuzz_not_permitted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.page = 'not-permitted-{TAG}' THEN
        RAISE EXCEPTION 'fuzz: not permitted {TAG}' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fuzz_not_permitted BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION fuzz_not_permitted();
"""


def test_a_non_data_error_fails_the_batch_until_it_is_fixed(run: FuzzStream) -> None:
    run.wait_accounted(len(run.sent), 600)  # whatever came before is committed
    run.conn.execute(NOT_PERMITTED)
    log = run.stack.node("streaming").log_file
    tail = LogTail(log)
    before = run.accounted()
    recs = [FuzzRecord("t", None, encode(event(1000 + i), run.schema_id)) for i in range(20)]
    recs.append(FuzzRecord("t", None, encode(event(2000, page=f"not-permitted-{TAG}"),
                                             run.schema_id)))
    run.produce(recs)
    failed = re.compile(rf"exited with rc 1 .*fuzz: not permitted {TAG}")

    def failures() -> int:
        """Driver runs that ended on the error since the records were sent (supervisor lines)."""
        return len(failed.findall(tail.text()))

    try:
        deadline = time.monotonic() + 400
        while failures() < 1:
            assert time.monotonic() < deadline, f"the error never showed in {log}"
            time.sleep(2)
        # records of the 21 that a batch before the failing one took may have committed: the
        # producer's sends can span two micro-batches (seen: 4 of them)
        stuck = run.accounted()
        assert stuck < before + len(recs)
        while failures() < 2:  # the next driver replays the batch and fails again
            assert time.monotonic() < deadline, f"the batch failed only once; see {log}"
            time.sleep(2)
        assert run.accounted() == stuck  # nothing of the failing batch committed meanwhile
        assert run.conn.execute(
            "SELECT count(*) FROM dlq_events WHERE event_id = %s", (f"poison-{TAG}-2000",)
        ).fetchone() == (0,)
    finally:
        run.conn.execute("DROP TRIGGER fuzz_not_permitted ON events")
    run.wait_accounted(before + len(recs), 600)  # fixed: the same batch now commits
    acc = account(run)
    assert acc.problems == []
    assert run.conn.execute(
        "SELECT count(*) FROM events WHERE event_id = %s", (f"poison-{TAG}-2000",)
    ).fetchone() == (1,)
