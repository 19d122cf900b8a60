"""The supervisor: a stop request ends the job even while Spark is stuck starting up, and its
drivers do not outlive it when it is SIGKILLed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from clickguard import procs
from clickguard_stack.manager import Stack
from clickguard_stack.nodes import Node
from tests.integration.streaming_job.conftest import private_stream

pytestmark = pytest.mark.integration


# nothing listens on port 9: the Kafka source waits for brokers forever (the driver's own
# wait for Kafka before it is cut to 1 s: it took 120 s of this test)
STUCK_KAFKA = {"CLICKGUARD_KAFKA_BOOTSTRAP": "127.0.0.1:9", "CLICKGUARD_STREAM_KAFKA_WAIT_S": "1"}


def _inside_startup(node: Node) -> tuple[int, list[int]]:
    """Start the supervisor and wait until the active driver's JVM is up; (supervisor, tree)."""
    # the active driver writes job.pid once warm and holding the lease, right before it
    # starts the query (which then waits for the missing brokers); the supervisor removes an
    # old one when it starts, which the wait below could otherwise beat
    job_pid_file = node.dir / "job.pid"
    job_pid_file.unlink(missing_ok=True)
    supervisor = node.start()
    assert supervisor is not None
    assert procs.wait_until(job_pid_file.exists, 300)
    job = int(job_pid_file.read_text())
    # wait until the JVM is up (a child of the job), so what comes next lands inside start-up
    assert procs.wait_until(lambda: any(
        "java" in " ".join(procs.cmdline(p)) for p in procs.descendants(job)), 120)
    time.sleep(3)
    return supervisor, [supervisor, *procs.descendants(supervisor)]  # every driver, its JVM


def test_stop_during_startup_leaves_no_process(stack: Stack, tmp_path: Path) -> None:
    # started without `stack start`'s wait for a running query, which never comes here
    with private_stream(tmp_path, STUCK_KAFKA, start=False) as run:
        _supervisor, tree = _inside_startup(run.stack.node("streaming"))
        t0 = time.monotonic()
        run.stack.control("stop", "streaming")
        took = time.monotonic() - t0
        assert procs.wait_dead(tree, 10), [p for p in tree if procs.is_alive(p)]
        assert took < 25  # the job exits at once; the stack never had to escalate
        assert "before the query started: exiting" in run.log.read_text()


def test_a_sigkilled_supervisor_takes_its_drivers_along(stack: Stack, tmp_path: Path) -> None:
    """The supervisor alone SIGKILLed: its drivers ran on, unseen by `stack status`, the active
    one holding the lease. Each now learns its parent from the environment and gets a SIGTERM
    when that parent dies, which stops it cleanly."""
    with private_stream(tmp_path, STUCK_KAFKA, start=False) as run:
        supervisor, tree = _inside_startup(run.stack.node("streaming"))
        drivers = [p for p in procs.descendants(supervisor)
                   if "streaming_job.job" in " ".join(procs.cmdline(p))]
        assert drivers  # the active one, and the standby once started
        procs.send(supervisor, signal.SIGKILL)  # not its tree: the supervisor alone
        assert procs.wait_dead(tree, 30), [p for p in tree if procs.is_alive(p)]
        assert "before the query started: exiting" in run.log.read_text()
