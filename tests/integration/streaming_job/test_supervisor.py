"""The supervisor: a stop request ends the job even while Spark is stuck starting up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clickguard import procs
from clickguard_stack.manager import Stack
from tests.integration.streaming_job.conftest import private_stream

pytestmark = pytest.mark.integration


def test_stop_during_startup_leaves_no_process(stack: Stack, tmp_path: Path) -> None:
    # nothing listens on port 9: the Kafka source waits for brokers forever (the driver's own
    # wait for Kafka before it is cut to 1 s: it took 120 s of this test)
    # started without `stack start`'s wait for a running query, which never comes here
    with private_stream(tmp_path, {"CLICKGUARD_KAFKA_BOOTSTRAP": "127.0.0.1:9",
                                   "CLICKGUARD_STREAM_KAFKA_WAIT_S": "1"},
                        start=False) as run:
        node = run.stack.node("streaming")
        supervisor = node.start()
        assert supervisor is not None
        # the active driver writes job.pid once warm and holding the lease, right before it
        # starts the query (which then waits for the missing brokers)
        job_pid_file = node.dir / "job.pid"
        assert procs.wait_until(job_pid_file.exists, 300)
        job = int(job_pid_file.read_text())
        # wait until the JVM is up (a child of the job), so the stop lands inside start-up
        assert procs.wait_until(lambda: any(
            "java" in " ".join(procs.cmdline(p)) for p in procs.descendants(job)), 120)
        time.sleep(3)
        tree = [supervisor, *procs.descendants(supervisor)]  # every driver and its JVM
        t0 = time.monotonic()
        run.stack.control("stop", "streaming")
        took = time.monotonic() - t0
        assert procs.wait_dead(tree, 10), [p for p in tree if procs.is_alive(p)]
        assert took < 25  # the job exits at once; the stack never had to escalate
        assert "before the query started: exiting" in run.log.read_text()
