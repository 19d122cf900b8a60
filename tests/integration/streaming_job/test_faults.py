"""Crashes during a run: the streaming job SIGKILLed three times (through the stack's node
control, as an operator would) and PostgreSQL restarted, while a producer keeps sending.
Afterwards every acknowledged event is stored exactly once and no batch was applied twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from clickguard import procs
from clickguard.contract import RegistryClient
from clickguard.kafka import end_offsets
from clickguard_producer.core import ProduceSummary, produce, register_schemas
from clickguard_producer.faults import FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig
from tests.integration.streaming_job.conftest import StreamRun

pytestmark = pytest.mark.integration

RATE = 200  # events/s: enough to keep batches busy while the machine runs the whole stack


def _batches(run: StreamRun, qid: str) -> int:
    row = run.conn.execute(
        "SELECT count(*) FROM batch_ledger WHERE query_id = %s AND input_rows > 0", (qid,)
    ).fetchone()
    return int(row[0]) if row else 0


def _wait_new_batch(run: StreamRun, qid: str, timeout: float = 600.0) -> None:
    """Until the job commits a batch it had not committed when called (it is alive)."""
    start = _batches(run, qid)
    deadline = time.monotonic() + timeout
    while _batches(run, qid) <= start:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no new batch in {timeout}s; see {run.log}")
        time.sleep(0.5)


def test_sigkill_three_times_and_postgres_restart_lose_nothing(
    stream_run: StreamRun, tmp_path: Path
) -> None:
    s = stream_run.settings
    contract_id, _ = register_schemas(s, s.topic_raw)
    gen = Generator(GeneratorConfig(seed=5, run_id=f"f{uuid.uuid4().hex[:8]}"))
    records = FaultInjector(contract_id).records(gen.events())
    acked_file = tmp_path / "acked.tsv"
    stop = threading.Event()
    result: dict[str, ProduceSummary] = {}

    def producer() -> None:
        result["summary"] = produce(
            s, records, topic=s.topic_raw, rate=RATE, ledger=acked_file, stop=stop,
            progress=None,
        )

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    qid = stream_run.query_id()
    killed = []
    try:
        for i in range(3):
            _wait_new_batch(stream_run, qid)
            msg = stream_run.stack.control("kill", "streaming")
            print(f"  kill {i + 1}: {msg}", flush=True)
            assert "SIGKILL" in msg
            killed.append(int(msg.rsplit(" ", 1)[1]))
        _wait_new_batch(stream_run, qid)
        print("  restarting PostgreSQL", flush=True)
        stream_run.stack.control("stop", "postgres")
        time.sleep(5)
        stream_run.stack.control("start", "postgres")
        _wait_new_batch(stream_run, qid)
        # leave the stack as found: the registry's pool answers 500 until its stale
        # connections to the restarted database are replaced
        client = RegistryClient(s.schema_registry_url)
        assert procs.wait_until(
            lambda: client.set_compatibility("clickguard.test.probe-value") is None, 120
        )
    finally:
        stop.set()
        thread.join(timeout=300)
    summary = result["summary"]
    assert summary.failed == 0 and summary.acknowledged == summary.sent
    acked = [line.split("\t", 1)[0] for line in acked_file.read_text().splitlines()]
    assert len(acked) == summary.acknowledged == len(set(acked))
    assert len(set(killed)) == 3  # three different job processes were killed

    total = sum(end_offsets(s, s.topic_raw).values())
    assert total == len(acked)  # idempotent producer: nothing extra in the topic
    stream_run.wait_accounted(total)
    conn = stream_run.conn
    assert conn.execute(
        "SELECT count(*) FROM events WHERE event_id = ANY(%s)", (acked,)
    ).fetchone() == (len(acked),)
    # no batch applied twice: a replay that slipped past the ledger would count duplicates
    assert conn.execute(
        "SELECT sum(stored), sum(duplicates), sum(dlq), sum(late) FROM batch_ledger "
        "WHERE query_id = %s", (qid,),
    ).fetchone() == (len(acked), 0, 0, 0)
    log = stream_run.log.read_text()
    assert log.count("restart #") >= 3
