"""Short chaos run on the real platform: processes really die, nothing acknowledged is lost.

broker-kill (SIGKILL the leader of most raw partitions), postgres (immediate stop),
streaming-kill (SIGKILL the driver + JVM mid-batch) and stack-crash (every process of every running
node SIGKILLed at once, then `stack up` again) and random (two faults of a fixed seed: PostgreSQL,
then a broker and the active driver together) under steady load; each reconciles the producer's
acknowledged ledger against the events table.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from clickguard import procs
from clickguard.settings import Settings
from clickguard_proof.chaos import ChaosConfig, chaos_report, run_chaos
from clickguard_stack.manager import Stack

pytestmark = pytest.mark.e2e


def test_broker_postgres_streaming_kill_and_stack_crash_lose_nothing(
    streaming: Stack, settings: Settings, tmp_path: Path
) -> None:
    # seed 4351: `random`'s two faults are a PostgreSQL immediate stop, then a broker and the
    # active driver SIGKILLed together, 11.7 s of gaps and downtime (the shortest schedule of
    # seeds 0-4999 with a two-node fault: CI time)
    cfg = replace(ChaosConfig.from_settings(settings).short(), recover_timeout_s=150.0,
                  seed=4351, faults=2)
    scenarios = ["broker-kill", "postgres", "streaming-kill", "stack-crash", "random"]
    results = run_chaos(settings, scenarios, cfg)

    assert [r.scenario for r in results] == scenarios
    for r in results:
        rec = r.reconciliation
        assert r.skipped is None
        assert rec["acked"] > 0 and r.producer["failed"] == 0, r.scenario
        assert rec["lost"] == 0, (r.scenario, rec)
        assert rec["duplicated"] == 0, (r.scenario, rec)
        assert rec["extra"] == 0, (r.scenario, rec)
        assert rec["stored"] == rec["acked_valid_ids"] == rec["acked"], r.scenario
        # the fault was real: the killed processes are gone and a new one took over
        assert r.killed_pids, r.scenario
        assert not any(procs.is_alive(p) for p in r.killed_pids), r.scenario
        assert r.restarted_pid is not None and r.restarted_pid not in r.killed_pids
        assert r.rto_first_event_s is not None and r.rto_first_event_s > 0
    kill = results[2]
    assert len(kill.killed_pids) >= 2  # the Python driver and its Spark JVM
    # the crash took down the database, every broker and the stream together, and the same
    # nodes came back (new processes) under `stack up`
    crash = results[3]
    crashed = (crash.target or "").split(",")
    assert {"postgres", "kafka-1", "kafka-2", "kafka-3", "registry", "streaming"} <= set(crashed)
    now = {n: streaming.node(n).pid() for n in crashed}
    assert all(p is not None and p not in crash.killed_pids for p in now.values()), now
    # random: both planned faults really happened, the second took a broker and the active
    # driver (Python + JVM) together
    rand = results[4]
    faults = [m for _, m in rand.marks if m.startswith("#")]
    assert any(m.startswith("#1/2 postgres: postgres immediate stop") for m in faults), faults
    assert any(m.startswith("#2/2 broker-and-driver: SIGKILL kafka-") for m in faults), faults
    assert any(m.startswith("#2/2 broker-and-driver: SIGKILL active driver") for m in faults)
    assert len(rand.killed_pids) >= 3, rand.killed_pids
    # postgres; the broker and the driver: the plot's lines, a report row each with its own RTO
    assert len(rand.faults) == 3
    assert all(f["rto_first_commit_s"] is not None for f in rand.faults), rand.faults
    paths = chaos_report("chaos-test", results, cfg).write(tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert [s["scenario"] for s in doc["data"]["scenarios"]] == [r.scenario for r in results]
    assert doc["passed"] is True
    assert paths["png"].stat().st_size > 10_000
