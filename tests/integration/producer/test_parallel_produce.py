"""`clickguard produce` with worker processes against the real brokers: exact counts, one ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from clickguard import procs
from clickguard.settings import Settings
from clickguard_producer.core import register_schemas
from clickguard_producer.faults import FaultConfig, expected_counts
from clickguard_producer.parallel import RunSpec, shard_records
from clickguard_producer.scratch import read_all
from clickguard_producer.wire import event_id_of

COUNT = 40_001  # not a multiple of the shard count


def _produce(topic: str, out: Path, workers: int, run_id: str) -> dict:
    """The literal command, as a user runs it (real fork of worker processes)."""
    res = subprocess.run(
        [sys.executable, "-m", "clickguard_cli", "produce", "--count", str(COUNT),
         "--topic", topic, "--seed", "8", "--run-id", run_id, "--faults", "0.005",
         "--anomaly-every", "5000", "--workers", str(workers),
         "--ledger", str(out / "ledger.tsv"), "--ground-truth", str(out / "gt.jsonl"),
         "--summary", str(out / "summary.json")],
        env=os.environ.copy(), capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


def test_workers_send_every_record_exactly_once(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    s = _produce(topic, tmp_path, workers=2, run_id="par2")
    assert (s["sent"], s["acknowledged"], s["failed"], s["workers"]) == (COUNT, COUNT, 0, 2)
    # the plan: the same shards generated here (fault kinds do not depend on the clock)
    schema_id, rogue_id = register_schemas(settings)
    spec = RunSpec(seed=8, run_id="par2", schema_id=schema_id, rogue_id=rogue_id,
                   anomaly_every=5000, faults=FaultConfig.uniform(0.005),
                   watermark_minutes=settings.stream_watermark_minutes, count=COUNT)
    planned, _ = shard_records(spec, list(range(spec.shards)))
    planned = list(planned)
    assert s["per_kind"] == expected_counts(planned)
    got = read_all(settings, topic)
    assert len(got) == COUNT
    # one ledger for both workers: every record read is in it once, at its partition/offset
    rows = [line.split("\t") for line in (tmp_path / "ledger.tsv").read_text().splitlines()]
    assert len(rows) == COUNT
    by_pos = {(int(p), int(o)): (eid, kind) for eid, kind, p, o in rows}
    assert set(by_pos) == {(m.partition(), m.offset()) for m in got}
    for m in got:
        eid, kind = by_pos[(m.partition(), m.offset())]
        if kind in ("valid", "late"):
            assert event_id_of(m.value()) == eid
    valid_ids = [eid for eid, kind in by_pos.values() if kind == "valid"]
    assert len(set(valid_ids)) == len(valid_ids)
    assert set(valid_ids) == {r.event_id for r in planned if r.kind == "valid"}
    gt = [json.loads(x) for x in (tmp_path / "gt.jsonl").read_text().splitlines()]
    assert len(gt) == s["anomalies_injected"] >= 4
    keys = Counter((g["type"], g["entity"], g["window_start"]) for g in gt)
    assert max(keys.values()) == 1  # blocks of several shards in one window are one anomaly


def test_one_worker_sends_the_same_records(settings: Settings, topic: str, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    a = _produce(topic, one, workers=1, run_id="same")
    b = _produce(topic, two, workers=2, run_id="same")
    assert a["per_kind"] == b["per_kind"] and a["per_event_type"] == b["per_event_type"]
    assert a["acknowledged"] == b["acknowledged"] == COUNT

    def ids(out: Path) -> Counter[tuple[str, str]]:
        rows = (out / "ledger.tsv").read_text().splitlines()
        return Counter((r.split("\t")[0], r.split("\t")[1]) for r in rows)

    assert ids(one) == ids(two)


def _sending(args: list[str], **popen: Any) -> subprocess.Popen[str]:
    """`clickguard produce ARGS` started, returned once a progress line says records were sent
    (the workers are sending then)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "clickguard_cli", "produce", *args], env=os.environ.copy(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if line.startswith("sent=") and not line.startswith("sent=0 "):
            return proc
        assert time.monotonic() < deadline, "no progress line with records sent"
    raise AssertionError(f"the producer ended before it sent anything: exit {proc.wait()}")


def test_a_killed_worker_fails_the_run_loudly(topic: str, tmp_path: Path) -> None:
    """SIGKILL one worker for real: the command exits 1 and names it; the other one finishes."""
    out = tmp_path / "summary.json"
    proc = _sending(["--duration", "15", "--topic", topic, "--workers", "2", "--summary", str(out)])
    assert proc.stderr is not None
    children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                .read_text().split()]
    assert len(children) >= 2, children  # the workers (and the queue's feeder, if any)
    os.kill(children[0], signal.SIGKILL)
    proc.stderr.read()
    assert proc.wait(timeout=180) == 1
    s = json.loads(out.read_text())
    assert any("died (exit code -9)" in e for e in s["errors"]), s["errors"]
    assert s["failed"] >= 1 and s["acknowledged"] > 0


def _like_a_terminal_job() -> None:
    """In the child: its own process group, SIGINT at its default as in a foreground job.

    A test session started in the background (``make test &``, a CI runner under nohup) has
    SIGINT ignored, and children inherit that: Python then installs no KeyboardInterrupt
    handler and the producer would run to --duration whatever the test sends."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_every_worker_with_nothing_lost(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    """SIGINT to the whole process group, as a terminal sends it: every sent record is acked."""
    out, ledger = tmp_path / "summary.json", tmp_path / "ledger.tsv"
    proc = _sending(["--duration", "120", "--topic", topic, "--workers", "2", "--summary",
                     str(out), "--ledger", str(ledger)], preexec_fn=_like_a_terminal_job)
    assert proc.stderr is not None
    os.killpg(proc.pid, signal.SIGINT)
    proc.stderr.read()
    assert proc.wait(timeout=180) == 0
    s = json.loads(out.read_text())
    assert s["failed"] == 0 and s["sent"] == s["acknowledged"] > 0
    assert s["duration_s"] < 110  # it stopped on the signal, not at --duration
    assert len(ledger.read_text().splitlines()) == s["acknowledged"]
    assert len(read_all(settings, topic)) == s["acknowledged"]


def test_workers_of_a_sigkilled_producer_stop_and_keep_their_acks(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    """The parent alone SIGKILLed (no --count, no --duration): its workers sent on forever,
    orphaned, and one that stopped could hang on exit writing its result into a pipe nobody
    read. Now they stop, flush and exit; every record their ledgers list is in the topic."""
    ledger = tmp_path / "ledger.tsv"
    proc = _sending(["--rate", "2000", "--topic", topic, "--workers", "2", "--ledger", str(ledger)])
    workers = procs.descendants(proc.pid)
    assert len(workers) >= 2, workers
    proc.kill()
    proc.wait(timeout=10)
    assert procs.wait_dead(workers, 30), "a worker outlived its producer"
    parts = sorted(tmp_path.glob("ledger.tsv.part*"))
    acked = [line for part in parts for line in part.read_text().splitlines()]
    in_topic = {(r.partition(), r.offset()) for r in read_all(settings, topic)}
    assert acked and {(int(p), int(o)) for *_, p, o in (a.split("\t") for a in acked)} <= in_topic
