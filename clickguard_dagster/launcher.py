"""Dagster's local run launcher, plus the health check that lets run monitoring free the queue.

The stock ``DefaultRunLauncher`` starts each run in a process of the code server and cannot say
whether that process is still alive, so Dagster's run monitoring skips its runs. When the code
server dies or is restarted mid-run (``clickguard stack stop dagster-code``, a crash, a kill),
the run stays STARTED forever and, with ``max_concurrent_runs: 1``, the queue never launches
another run: the batch side stops without a word. This launcher answers the monitor from the
``pid`` the run worker reported when it started: alive (and not a later process that got the
same pid) = RUNNING, else FAILED, and the monitor marks the run failed and the queue moves on.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClassData

from clickguard import procs

START_SLACK_S = 5.0  # the run worker starts just before it reports its pid


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose runs run monitoring can check (same machine only)."""

    _MAX_CACHED = 256

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(inst_data)
        # run id -> (pid, reported at): a run reports its worker once, and the monitor asks
        # every poll; without this each poll re-read the run's engine events from PostgreSQL
        self._workers: dict[str, tuple[int, float]] = {}

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        started = self._workers.get(run.run_id) or worker_start(self._instance, run.run_id)
        if started is not None and run.run_id not in self._workers:
            if len(self._workers) >= self._MAX_CACHED:  # finished runs are asked no more
                self._workers.pop(next(iter(self._workers)))
            self._workers[run.run_id] = started
        if started is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run worker has not reported "
                                        "its pid yet")
        pid, reported_at = started
        if worker_alive(pid, reported_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker pid {pid} is gone (its code server was stopped, restarted or killed "
            "mid-run); the run is marked failed so that queued runs can start",
            run_worker_id=str(pid),
        )


def worker_start(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, time) of the run's "Started process for run" engine event, the newest one."""
    found = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = event.engine_event_data if event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            found = (int(str(pid.value)), entry.timestamp)
    return found


def worker_alive(pid: int, reported_at: float) -> bool:
    """Is ``pid`` still the process that reported at ``reported_at`` (epoch s)? A pid reused by
    a later process started after the report, so it does not count."""
    started = procs.start_epoch(pid)
    return (
        procs.is_alive(pid) and started is not None and started <= reported_at + START_SLACK_S
    )
