"""Supervisor of the streaming job (node ``streaming`` of ``clickguard stack``).

Runs ``python -m streaming_job.job`` as a CHILD process and restarts it with exponential backoff
(``stream_restart_backoff_s`` doubling up to ``stream_restart_backoff_max_s``; reset after a run
that lasted a minute) whenever it exits. The child's pid is kept in ``<node dir>/job.pid`` so that
``clickguard stack kill streaming`` SIGKILLs the job (driver + JVM) while the supervisor lives on
and restarts it — the new run resumes from the checkpoint. SIGTERM is forwarded for a clean stop.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from clickguard.settings import get_settings
from clickguard.stack import procs

log = logging.getLogger("streaming_job.supervisor")
JOB_PID_FILE = "job.pid"
HEALTHY_RUN_S = 60.0
STOP_GRACE_S = 20.0  # below the stack's own 30 s stop timeout


def node_dir() -> Path:
    """The node folder (set by the stack), else ``$CLICKGUARD_HOME/streaming``."""
    env = os.environ.get("CLICKGUARD_NODE")
    return Path(env) if env else get_settings().home / "streaming"


def _wait(child: subprocess.Popen[bytes], stopping: Callable[[], bool]) -> int:
    """The child's exit code; once a stop was requested, SIGKILL its tree after STOP_GRACE_S."""
    stop_seen: float | None = None
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if stopping():
            stop_seen = stop_seen or time.monotonic()
            if time.monotonic() - stop_seen > STOP_GRACE_S:
                log.warning("job pid %d ignored SIGTERM for %.0fs: SIGKILL",
                            child.pid, STOP_GRACE_S)
                procs.send(child.pid, signal.SIGKILL, tree=True)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = get_settings()
    folder = node_dir()
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / JOB_PID_FILE
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_term(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            log.info("signal %d: forwarding SIGTERM to job pid %d", signum, child.pid)
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    backoff = settings.stream_restart_backoff_s
    restarts = 0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "streaming_job.job"])
        pid_file.write_text(str(child.pid))
        log.info("job started (pid %d, restarts so far %d)", child.pid, restarts)
        rc = _wait(child, lambda: stopping)
        ran = time.monotonic() - started
        if stopping:
            log.info("job stopped (rc %s) after %.1fs", rc, ran)
            break
        if ran >= HEALTHY_RUN_S:
            backoff = settings.stream_restart_backoff_s
        restarts += 1
        log.warning(
            "job exited with rc %s after %.1fs; restart #%d in %.1fs", rc, ran, restarts, backoff
        )
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        backoff = min(backoff * 2, settings.stream_restart_backoff_max_s)
    pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
