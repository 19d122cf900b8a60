"""Warm-standby takeover on the real stack (two drivers, one PostgreSQL lease), under load:

* SIGKILL of the active driver's whole tree: the warm standby takes the lease and commits;
* SIGSTOP of the active driver for 30 s, then SIGCONT: the standby takes over on lease expiry,
  and the woken driver commits NOTHING (every commit is fenced by the lease epoch) and exits.

Both end with every acknowledged event stored exactly once and no batch applied twice. Takeover
times are printed, never asserted (timings on a shared machine are noise).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clickguard import procs, stream_state
from clickguard.kafka import end_offsets
from clickguard_producer.core import ProduceSummary, produce, register_schemas
from clickguard_producer.faults import FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig
from streaming_job.supervisor import REPLACE_DELAY_S
from tests.integration.streaming_job.conftest import LogTail, StreamRun

pytestmark = pytest.mark.integration

RATE = 200  # events/s
# two JVMs starting on a loaded 2-core machine (raise it on a box that is busier still)
START_TIMEOUT = float(os.environ.get("CLICKGUARD_TEST_START_TIMEOUT", "420"))
TAKEOVER_TIMEOUT = float(os.environ.get("CLICKGUARD_TEST_TAKEOVER_TIMEOUT", "120"))
PAUSE_S = 30.0
WARM_READ = re.compile(r"Kafka warm-up: read \d+ rows on the executors")


def _lease(run: StreamRun) -> tuple[str, int, datetime] | None:
    row = run.conn.execute(
        "SELECT holder, epoch, acquired_at FROM stream_lease WHERE name = %s",
        (str(run.settings.checkpoint_dir.resolve()),),
    ).fetchone()
    return (row[0], int(row[1]), row[2]) if row and row[0] else None


def _active_and_standby(run: StreamRun, exclude: set[int]) -> tuple[int, str, int]:
    """(pid, holder, epoch) of the active driver once it committed a batch with rows AND a
    warm standby is waiting (so that what follows is a warm takeover)."""
    node_dir = run.stack.node("streaming").dir
    qid = run.query_id(START_TIMEOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        drivers = stream_state.read_drivers(node_dir)
        active = [d for d in drivers if d.get("role") == "active"]
        standby = [d for d in drivers if d.get("role") == "standby" and d.get("warm")
                   and d.get("pid") not in exclude]
        lease = _lease(run)
        if active and standby and lease and f":{active[0]['pid']}@" in lease[0]:
            committed = run.conn.execute(
                "SELECT 1 FROM batch_ledger WHERE query_id = %s AND driver = %s "
                "AND input_rows > 0 LIMIT 1", (qid, lease[0]),
            ).fetchone()
            if committed:
                return int(active[0]["pid"]), lease[0], lease[1]
        assert time.monotonic() < deadline, (
            f"no active driver with a warm standby after {START_TIMEOUT}s: "
            f"{stream_state.drivers_summary(drivers, 2)}; see {run.log}")
        time.sleep(0.5)


def _successor_commit(run: StreamRun, old: str, since: datetime) -> tuple[datetime, str]:
    deadline = time.monotonic() + TAKEOVER_TIMEOUT
    while True:
        row = run.conn.execute(
            "SELECT committed_at, driver FROM batch_ledger WHERE query_id = %s "
            "AND committed_at >= %s AND driver IS DISTINCT FROM %s "
            "ORDER BY committed_at LIMIT 1", (run.query_id(), since, old),
        ).fetchone()
        if row:
            return row[0], row[1]
        assert time.monotonic() < deadline, f"no successor commit in {TAKEOVER_TIMEOUT}s"
        time.sleep(0.2)


def _kill_standby(run: StreamRun) -> int:
    """SIGKILL the standby driver; its pid once the supervisor has scheduled its replacement
    sooner than REPLACE_DELAY_S."""
    standby = next(d for d in stream_state.read_drivers(run.stack.node("streaming").dir)
                   if d.get("role") == "standby")
    pid = int(standby["pid"])
    tail = LogTail(run.log)

    def report() -> re.Match[str] | None:
        return re.search(rf"job \(slot {standby['slot']}, standby\) exited with rc -9 .*"
                         r"restart #\d+ in ([\d.]+)s", tail.text())

    procs.send(pid, signal.SIGKILL, tree=True)
    assert procs.wait_until(report, 30), (
        f"the supervisor did not report the standby's death; see {run.log}")
    found = report()
    assert found and float(found.group(1)) < REPLACE_DELAY_S, found
    return pid


@contextmanager
def _load(run: StreamRun, acked_file: Path) -> Iterator[dict[str, Any]]:
    s = run.settings
    contract_id, _ = register_schemas(s, s.topic_raw)
    gen = Generator(GeneratorConfig(seed=7, run_id=f"t{uuid.uuid4().hex[:8]}", anomaly_every=0))
    records = FaultInjector(contract_id).records(gen.events())
    stop = threading.Event()
    box: dict[str, Any] = {}

    def producer() -> None:
        box["summary"] = produce(s, records, topic=s.topic_raw, rate=RATE, ledger=acked_file,
                                 stop=stop, progress=None)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        stop.set()
        thread.join(timeout=300)


def _assert_exactly_once(run: StreamRun, box: dict[str, Any], acked_file: Path) -> None:
    summary: ProduceSummary = box["summary"]
    assert summary.failed == 0 and summary.acknowledged == summary.sent
    acked = [line.split("\t", 1)[0] for line in acked_file.read_text().splitlines()]
    assert len(acked) == summary.acknowledged == len(set(acked)) > 0
    s = run.settings
    total = sum(end_offsets(s, s.topic_raw).values())
    run.wait_accounted(total, timeout=TAKEOVER_TIMEOUT + 180)  # == total: no batch twice
    conn = run.conn
    assert conn.execute(
        "SELECT count(*) FROM events WHERE event_id = ANY(%s)", (acked,)
    ).fetchone() == (len(acked),)
    assert conn.execute(
        "SELECT sum(stored), sum(duplicates), sum(dlq), sum(late) FROM batch_ledger "
        "WHERE query_id = %s", (run.query_id(),),
    ).fetchone() == (total, 0, 0, 0)


def test_sigkill_of_the_active_driver_warm_standby_takes_over(
    stream_run: StreamRun, tmp_path: Path
) -> None:
    acked_file = tmp_path / "acked.tsv"
    with _load(stream_run, acked_file) as box:
        _active_and_standby(stream_run, set())
        # a SIGKILLed standby is replaced after its backoff, not REPLACE_DELAY_S later: no
        # takeover is under way, and until a standby is warm again a kill of the active driver
        # would be a cold start
        dead = _kill_standby(stream_run)
        pid, holder, epoch = _active_and_standby(stream_run, {dead})
        # the standby has read the raw topic on its executors (job.warm_kafka), without error
        assert procs.wait_until(lambda: WARM_READ.search(stream_run.log.read_text()), 90)
        assert "re-warm failed" not in stream_run.log.read_text()
        at = datetime.now(UTC)
        victims = [pid, *procs.descendants(pid)]
        procs.send(pid, signal.SIGKILL, tree=True)
        assert procs.wait_dead(victims, 15)
        first, successor = _successor_commit(stream_run, holder, at)
        print(f"  takeover after SIGKILL: {(first - at).total_seconds():.2f}s "
              f"({holder} epoch {epoch} -> {successor})", flush=True)
        lease = _lease(stream_run)
        assert lease is not None and lease[0] == successor and lease[1] > epoch
        time.sleep(3)  # the successor keeps committing under load
    _assert_exactly_once(stream_run, box, acked_file)


def test_paused_driver_is_fenced_and_commits_nothing(
    stream_run: StreamRun, tmp_path: Path
) -> None:
    acked_file = tmp_path / "acked.tsv"
    with _load(stream_run, acked_file) as box:
        pid, holder, epoch = _active_and_standby(stream_run, set())
        at = datetime.now(UTC)
        t0 = time.monotonic()
        tree = [pid, *procs.descendants(pid)]
        procs.send(pid, signal.SIGSTOP, tree=True)
        try:
            # SIGSTOP is delivered asynchronously: the state reads 'T' a moment later
            assert procs.wait_until(lambda: procs.is_paused(pid), 10)
            first, successor = _successor_commit(stream_run, holder, at)
            print(f"  takeover after SIGSTOP: {(first - at).total_seconds():.2f}s "
                  f"({holder} epoch {epoch} -> {successor})", flush=True)
            lease = _lease(stream_run)
            assert lease is not None and lease[0] == successor and lease[1] > epoch
            taken_at = lease[2]
            time.sleep(max(0.0, t0 + PAUSE_S - time.monotonic()))
        finally:
            procs.send(pid, signal.SIGCONT, tree=True)
        # woken: its renewal (or its next commit) finds the lease taken and it exits
        assert procs.wait_dead(tree[:1], 60), f"paused {pid} still runs; see {stream_run.log}"
        time.sleep(3)
    _assert_exactly_once(stream_run, box, acked_file)
    fenced = stream_run.conn.execute(
        "SELECT count(*) FROM batch_ledger WHERE driver = %s AND committed_at >= %s",
        (holder, taken_at),
    ).fetchone()
    assert fenced == (0,), "the paused driver committed after the takeover"
    log = stream_run.log.read_text()
    assert "was fenced" in log  # the supervisor restarted it as a standby, not a failure
