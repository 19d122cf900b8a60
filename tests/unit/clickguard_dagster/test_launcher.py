"""The run launcher tells Dagster's run monitor when a run's worker died, so the run is failed
and the queue (max_concurrent_runs 1) moves on instead of waiting for it forever.

A real worker process is started and killed; the run is stored in a real (temporary SQLite)
Dagster instance configured like dagster.yaml, and Dagster's own monitor function acts on it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.launcher import WorkerStatus
from dagster._core.test_utils import create_run_for_test, instance_for_test
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from clickguard.settings import REPO_ROOT
from clickguard_dagster.launcher import LocalRunLauncher, worker_alive


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    import yaml

    shipped = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    overrides = {k: shipped[k] for k in ("run_launcher", "run_monitoring")}
    with instance_for_test(overrides=overrides) as inst:
        yield inst


def test_a_run_whose_worker_died_is_failed_by_the_run_monitor(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch,
) -> None:
    launcher = instance.run_launcher
    assert isinstance(launcher, LocalRunLauncher)
    assert launcher.supports_check_run_worker_health
    run = create_run_for_test(instance, job_name="daily_batch",
                              status=dg.DagsterRunStatus.STARTED)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.UNKNOWN  # no pid yet

    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # what the code server records when it starts a run's process (dagster/_grpc/impl.py)
        instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", run,
                                     EngineEventData.in_process(worker.pid))
        health = launcher.check_run_worker_health(run)
        assert (health.status, health.run_worker_id) == (WorkerStatus.RUNNING, str(worker.pid))
        record = instance.get_run_record_by_id(run.run_id)
        assert record is not None
        monitor_started_run(instance, None, record, logging.getLogger("test"))  # type: ignore[arg-type]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
    finally:
        worker.kill()
        worker.wait()

    # the pid is known now: later polls ask the kernel, not the run's event log again
    def no_reread(*_: object) -> None:
        raise AssertionError("the run's engine events were read again")

    monkeypatch.setattr("clickguard_dagster.launcher.worker_start", no_reread)
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED
    assert f"run worker pid {worker.pid} is gone" in (health.msg or "")
    record = instance.get_run_record_by_id(run.run_id)
    assert record is not None
    monitor_started_run(instance, None, record, logging.getLogger("test"))  # type: ignore[arg-type]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]


def test_a_reused_pid_is_not_the_worker() -> None:
    """A live process that started after the worker reported is another process."""
    import os

    assert worker_alive(os.getpid(), time.time())
    assert not worker_alive(os.getpid(), time.time() - 3600)
