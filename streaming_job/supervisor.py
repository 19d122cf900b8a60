"""Supervisor of the streaming job (node ``streaming`` of ``clickguard stack``).

Runs ``stream_drivers`` CHILD processes ``python -m streaming_job.job`` (slot 0, 1, ...): all
start Spark and warm up, the holder of the stream's lease runs the query and the others are warm
standbys (:mod:`streaming_job.lease`); a standby takes over within seconds when the active one
dies. A child that exits with ``FENCED_RC`` lost the lease (it was paused and woke up after a
takeover): it is restarted at once as a standby, and that is not a failure. Any other exit is
restarted with exponential backoff
(``stream_restart_backoff_s`` doubling up to ``stream_restart_backoff_max_s``; reset after a run
that lasted a minute) whenever it exits. Each failed run is recorded (exit code, last error,
batch, whether ``batch_ledger`` advanced); ``stream_crash_loop_runs`` failed runs in a row without
progress make the state ``crash-looping`` (see :mod:`clickguard.stream_state`), published in
``<node dir>/stream-status.json`` and the ``stream_heartbeat`` row ``streaming_supervisor``, and
cleared as soon as the ledger advances again. The ACTIVE child writes its pid to
``<node dir>/job.pid`` so that ``clickguard stack kill streaming`` SIGKILLs the active job
(driver + JVM) while the supervisor lives on and restarts it — the standby (or, with one driver,
the new run) resumes from the checkpoint. SIGTERM is forwarded for a clean stop.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from clickguard import db, ledger, procs, stream_state
from clickguard.settings import Settings, get_settings
from clickguard.stream_state import FailedRun, StreamRunState
from streaming_job.lease import FENCED_RC

log = logging.getLogger("streaming_job.supervisor")
JOB_PID_FILE = "job.pid"
HEALTHY_RUN_S = 60.0
STAGGER_MAX_S = 180.0  # standbys start once a first driver is warm, or after this long
# a dead active driver's replacement waits this long while another driver is alive: its JVM
# start-up would otherwise compete on a small machine with the successor's first batches (the
# takeover). A dead standby is replaced after its backoff: no takeover is under way, and until its
# replacement is warm a kill of the active driver means a cold start (36 s measured).
REPLACE_DELAY_S = 20.0
STOP_GRACE_S = 20.0  # below the stack's own 30 s stop timeout
PROGRESS_CHECK_S = 5.0  # while restarting/crash-looping: how often to look at the ledger
SUPERVISOR_BEAT_S = 30.0  # refresh of the supervisor's heartbeat row while nothing changes
UNKNOWN = "unknown"  # ledger position when the database cannot be read
LOG_ERROR = re.compile(r" (ERROR|CRITICAL) ")  # a log record at error level


def node_dir() -> Path:
    """The node folder (set by the stack), else ``$CLICKGUARD_HOME/streaming``."""
    env = os.environ.get("CLICKGUARD_NODE")
    return Path(env) if env else get_settings().home / "streaming"


class Reporter:
    """Reads the ledger position and publishes the run state (status file + heartbeat row)."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        # a beat every 30 s on one connection; autocommit, so an error leaves it usable and
        # KeptConnection.call replaces it when it died
        self.pg = db.KeptConnection(settings, "writer")

    def ledger_position(self) -> str | None:
        """Newest ``batch_ledger.committed_at`` (ISO), None if empty, UNKNOWN if unreadable."""
        try:
            last = self.pg.call(ledger.freshness).last_batch_at
        except Exception as exc:  # noqa: BLE001 - a down database only makes progress unknown
            log.warning("ledger position unknown: %s", str(exc).strip().splitlines()[0])
            return UNKNOWN
        return last.isoformat() if last else None

    def save(self, state: StreamRunState) -> None:
        stream_state.write_json(self.folder / stream_state.STATUS_FILE, state.to_dict())
        try:
            self.pg.execute(stream_state.HEARTBEAT, (stream_state.SUPERVISOR_COMPONENT, state.state,
                                                     json.dumps(state.to_dict(), default=str)))
        except Exception as exc:  # noqa: BLE001 - the status file still says it
            log.warning("supervisor heartbeat failed: %s", str(exc).strip().splitlines()[0])


def initial_state(reporter: Reporter, settings: Settings) -> StreamRunState:
    """A crash loop survives a supervisor restart unless the ledger moved in between."""
    position = reporter.ledger_position()
    previous = stream_state.read_status(reporter.folder)
    stream = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_db} {settings.checkpoint_dir}"
    keep = (
        previous is not None
        and previous.state in (stream_state.RESTARTING, stream_state.CRASH_LOOPING)
        and previous.stream == stream
        and position not in (UNKNOWN, None) and position == previous.ledger_position
    )
    state = previous if keep and previous else StreamRunState()
    state.stream = stream
    state.threshold = settings.stream_crash_loop_runs
    state.supervisor_pid = os.getpid()
    if position != UNKNOWN:
        state.ledger_position = position
    if not keep:
        state.since = state.updated_at = stream_state.now_iso()
    return state


def log_path() -> Path | None:
    """The file our stdout appends to (the node log the child inherits), if it is a file."""
    try:
        path = Path(os.readlink("/proc/self/fd/1"))
    except OSError:
        return None
    return path if path.is_file() else None


def error_from_log(path: Path | None, offset: int, limit: int = 65536) -> str | None:
    """Last exception line the child wrote to the shared log after ``offset``."""
    if path is None:
        return None
    lines = procs.log_since(path, offset, limit).splitlines()
    named = [ln for ln in lines if stream_state.EXCEPTION_LINE.match(ln)]
    logged = [ln for ln in lines if LOG_ERROR.search(ln)]
    found = named or logged
    return stream_state.short_error(found[-1]) if found else None


def failed_run(
    rc: int, ran: float, folder: Path, log_file: Path | None, log_offset: int,
    before: str | None, after: str | None, exit_name: str = stream_state.EXIT_FILE,
) -> FailedRun:
    """What one failed run left: the job's exit file, else the log, else the exit code."""
    info = stream_state.read_json(folder / exit_name) or {}
    error = info.get("error") or (f"killed by signal {-rc}" if rc < 0 else None)
    error = error or error_from_log(log_file, log_offset) or f"exit code {rc}"
    if after == UNKNOWN or before == UNKNOWN:  # database down: trust the job's own count
        advanced = bool(info.get("batches_committed")) if info else None
    else:
        advanced = after != before
    return FailedRun(exit_code=rc, error=error, batch_id=info.get("batch_id"),
                     ledger_advanced=advanced, ran_s=round(ran, 1))


def _sleep(seconds: float, stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stopping() and time.monotonic() < deadline:
        time.sleep(0.1)


class Slot:
    """One driver process the supervisor keeps alive (its own restart backoff)."""

    def __init__(self, index: int, slots: int, settings: Settings) -> None:
        self.index = index
        self.slots = slots
        self.backoff = settings.stream_restart_backoff_s
        self.child: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.restart_at = 0.0  # monotonic time of the next start
        self.log_offset = 0
        self.before: str | None = None
        self.kill_at: float | None = None  # SIGKILL deadline once asked to stop
        self.starts = 0  # the first start of a slot is the stack's start: no backlog waits

    @property
    def exit_name(self) -> str:
        # one driver keeps today's file names (job-exit.json)
        return stream_state.exit_file(self.index if self.slots > 1 else None)

    def start(self, folder: Path, log_file: Path | None, position: str | None) -> None:
        (folder / self.exit_name).unlink(missing_ok=True)
        self.log_offset = log_file.stat().st_size if log_file else 0
        self.before = position
        env = {**os.environ, **procs.parent_pid_env(),
               "CLICKGUARD_DRIVER_SLOT": str(self.index),
               "CLICKGUARD_JOB_EXIT_FILE": self.exit_name,
               "CLICKGUARD_DRIVER_FRESH": "1" if self.starts == 0 else "0"}
        self.starts += 1
        self.child = subprocess.Popen([sys.executable, "-m", "streaming_job.job"], env=env)
        self.started = time.monotonic()
        self.kill_at = None


def last_role(folder: Path, slot: int) -> str:
    """What a dead driver last was, from its role file: "active" once it held the lease (its
    file then has an epoch, and reads "stopped" if it failed with an error, "active" if it was
    killed), else its last published role ("starting", "standby")."""
    published = stream_state.read_json(folder / stream_state.driver_file(slot)) or {}
    return "active" if published.get("epoch") is not None else published.get("role", "starting")


def replace_delay(backoff: float, was_active: bool, others_alive: bool) -> float:
    """Seconds before a dead driver's slot starts again: its backoff, or :data:`REPLACE_DELAY_S`
    when it was the active driver and another one (its successor) is alive."""
    return max(backoff, REPLACE_DELAY_S if was_active and others_alive else 0.0)


def is_fenced_exit(rc: int) -> bool:
    """The driver lost its lease (another one took over): restart it as a standby at once."""
    return rc == FENCED_RC


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = get_settings()
    folder = node_dir()
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / JOB_PID_FILE
    pid_file.unlink(missing_ok=True)  # written by the active driver once it holds the lease
    for old in folder.glob("driver-*.json"):
        old.unlink(missing_ok=True)
    slots = [Slot(i, settings.stream_drivers, settings) for i in range(settings.stream_drivers)]
    # the first driver starts alone: on a small machine two JVMs starting at once delay the
    # stream's first batch; the standbys follow once it is warm (or after STAGGER_MAX_S)
    launched_at = time.monotonic()
    for slot in slots[1:]:
        slot.restart_at = launched_at + STAGGER_MAX_S

    def first_driver_warm() -> bool:
        return any(d.get("role") in ("standby", "active")
                   for d in stream_state.read_drivers(folder))

    stopping = False

    def children() -> list[subprocess.Popen[bytes]]:
        return [s.child for s in slots if s.child is not None and s.child.poll() is None]

    def on_term(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children():
            log.info("signal %d: forwarding SIGTERM to job pid %d", signum, child.pid)
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    reporter = Reporter(settings, folder)
    state = initial_state(reporter, settings)
    reporter.save(state)
    if state.state == stream_state.CRASH_LOOPING:
        log.error("still crash-looping (ledger has not moved): %s", state.summary())
    log_file = log_path()
    last_save = last_check = time.monotonic()

    def check_progress() -> None:
        """While failures are open, clear them as soon as the ledger advances; beat anyway."""
        nonlocal last_save
        changed = False
        if state.state != stream_state.RUNNING:
            position = reporter.ledger_position()
            if position not in (UNKNOWN, state.ledger_position):
                state.ledger_position = position
                changed = state.record_progress()
                log.info("ledger advanced: stream running again")
        if changed or time.monotonic() - last_save >= SUPERVISOR_BEAT_S:
            state.updated_at = stream_state.now_iso()
            reporter.save(state)
            last_save = time.monotonic()

    def on_exit(slot: Slot, rc: int) -> None:
        ran = time.monotonic() - slot.started
        slot.child = None
        if ran >= HEALTHY_RUN_S:
            slot.backoff = settings.stream_restart_backoff_s
        if is_fenced_exit(rc):
            log.warning("driver slot %d was fenced after %.1fs (another driver took over the "
                        "lease): restarting it as a standby in %.0fs", slot.index, ran,
                        REPLACE_DELAY_S)
            slot.restart_at = time.monotonic() + REPLACE_DELAY_S
            return
        if rc == 0:  # asked to stop by someone else (SIGTERM to the job): not a failure
            log.info("job (slot %d) ended cleanly after %.1fs; restarting in %.1fs",
                     slot.index, ran, slot.backoff)
            slot.restart_at = time.monotonic() + slot.backoff
            return
        others_alive = any(o is not slot and o.child is not None and o.child.poll() is None
                           for o in slots)
        role = last_role(folder, slot.index)
        was_active = role == "active"
        after = reporter.ledger_position()
        run = failed_run(rc, ran, folder, log_file, slot.log_offset, slot.before, after,
                         slot.exit_name)
        if after != UNKNOWN:
            state.ledger_position = after
        state.record_failure(run)
        reporter.save(state)
        delay = replace_delay(slot.backoff, was_active, others_alive)
        level = logging.ERROR if state.state == stream_state.CRASH_LOOPING else logging.WARNING
        log.log(
            level, "job (slot %d, %s) exited with rc %s after %.1fs (batch %s, ledger advanced: "
            "%s): %s; state %s (%d/%d failed runs without progress); restart #%d in %.1fs",
            slot.index, role, rc, ran, run.batch_id,
            run.ledger_advanced, run.error, state.state, state.consecutive_failures,
            state.threshold, state.restarts, delay,
        )
        slot.restart_at = time.monotonic() + delay
        slot.backoff = min(slot.backoff * 2, settings.stream_restart_backoff_max_s)

    while True:
        now = time.monotonic()
        if now < launched_at + STAGGER_MAX_S and any(
            s.restart_at == launched_at + STAGGER_MAX_S for s in slots[1:]
        ) and first_driver_warm():
            for slot in slots[1:]:
                if slot.child is None and slot.restart_at == launched_at + STAGGER_MAX_S:
                    slot.restart_at = now
        for slot in slots:
            if slot.child is not None:
                rc = slot.child.poll()
                if rc is None:
                    if stopping:
                        slot.kill_at = slot.kill_at or now + STOP_GRACE_S
                        if now > slot.kill_at:
                            log.warning("job pid %d ignored SIGTERM for %.0fs: SIGKILL",
                                        slot.child.pid, STOP_GRACE_S)
                            procs.send(slot.child.pid, signal.SIGKILL, tree=True)
                    continue
                if stopping:
                    log.info("job (slot %d) stopped (rc %s) after %.1fs", slot.index, rc,
                             now - slot.started)
                    slot.child = None
                    continue
                on_exit(slot, rc)
            if not stopping and slot.child is None and now >= slot.restart_at:
                slot.start(folder, log_file, state.ledger_position)
                assert slot.child is not None
                log.info("job started (slot %d of %d, pid %d, restarts so far %d)",
                         slot.index, len(slots), slot.child.pid, state.restarts)
        if stopping and not children():
            break
        if not stopping and time.monotonic() - last_check >= PROGRESS_CHECK_S:
            last_check = time.monotonic()
            check_progress()
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    if state.state == stream_state.CRASH_LOOPING:
        state.updated_at = stream_state.now_iso()  # stopped, but the stream is still stuck
    else:
        state.stop()
    reporter.save(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
