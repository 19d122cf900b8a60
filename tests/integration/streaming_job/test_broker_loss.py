"""A partition leader SIGKILLed and left down: the stream goes on without it.

Spark's Kafka source asks every partition's leader for its latest offset before each batch. With
the admin client's default timeouts that call waited for the dead leader until it came back, so
no batch ran for as long as the broker was down (22 s in `clickguard chaos broker-kill`). The
stream's Kafka clients now have bounded timeouts (`stream_kafka_request_timeout_ms`): the call
fails, Spark retries it with fresh metadata and finds the leaders the controller elected.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clickguard.kafka import end_offsets
from clickguard_producer.core import ProduceSummary, produce, register_schemas
from clickguard_producer.faults import FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig
from clickguard_proof.chaos import leader_of_most
from tests.integration.streaming_job.conftest import StreamRun

pytestmark = pytest.mark.integration

RATE = 200  # events/s
DOWN_S = 60.0  # how long the broker may stay down while the test waits for the stream


def _stored_since(run: StreamRun, prefix: str, since: datetime) -> int:
    """Events of this run produced after ``since`` and stored (committed) after it."""
    row = run.conn.execute(
        "SELECT count(*) FROM events WHERE event_id LIKE %s AND ingest_ts >= %s "
        "AND commit_ts >= %s", (f"{prefix}-%", since, since),
    ).fetchone()
    return int(row[0]) if row else 0


def test_the_stream_commits_while_a_killed_leader_is_still_down(
    stream_run: StreamRun, tmp_path: Path
) -> None:
    s = stream_run.settings
    contract_id, _ = register_schemas(s, s.topic_raw)
    run_id = f"b{uuid.uuid4().hex[:8]}"
    gen = Generator(GeneratorConfig(seed=11, run_id=run_id, anomaly_every=0))
    records = FaultInjector(contract_id).records(gen.events())
    stop = threading.Event()
    result: dict[str, ProduceSummary] = {}

    def producer() -> None:
        result["summary"] = produce(
            s, records, topic=s.topic_raw, rate=RATE, ledger=tmp_path / "acked.tsv", stop=stop,
            progress=None,
        )

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    stream_run.query_id()
    node = leader_of_most(s)  # the broker whose loss hurts most, as `clickguard chaos` picks
    try:
        # running: events of this run are being stored
        deadline = time.monotonic() + 600
        while _stored_since(stream_run, run_id, datetime(2000, 1, 1, tzinfo=UTC)) == 0:
            assert time.monotonic() < deadline, f"nothing stored; see {stream_run.log}"
            time.sleep(0.5)
        msg = stream_run.stack.control("kill", node)
        killed_at = datetime.now(UTC)
        t0 = time.monotonic()
        print(f"  {msg}", flush=True)
        # the broker stays down: events produced after the kill must be stored meanwhile
        while (n := _stored_since(stream_run, run_id, killed_at)) == 0:
            assert time.monotonic() - t0 < DOWN_S, (
                f"no event produced after the SIGKILL of {node} was stored in {DOWN_S:.0f} s "
                f"with it down; see {stream_run.log}"
            )
            time.sleep(0.5)
        print(f"  {n} events produced after the kill stored {time.monotonic() - t0:.1f} s "
              f"after it, {node} still down", flush=True)
        assert not stream_run.stack.node(node).status().healthy
    finally:
        stream_run.stack.up([node], timeout=180)
        stop.set()
        thread.join(timeout=300)
    summary = result["summary"]
    assert summary.failed == 0 and summary.acknowledged == summary.sent > 0
    # nothing lost or counted twice: the ledger accounts for every record of the topic
    stream_run.wait_accounted(sum(end_offsets(s, s.topic_raw).values()))
    row = stream_run.conn.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM events WHERE event_id LIKE %s",
        (f"{run_id}-%",),
    ).fetchone()
    assert row == (summary.acknowledged, summary.acknowledged)
