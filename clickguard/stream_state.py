"""Run state of the streaming job as its supervisor sees it: running, restarting, crash-looping.

A job that fails the same micro-batch again and again is restarted forever by the supervisor
while nothing moves; the process is alive, so a liveness probe calls it healthy. The supervisor
therefore records every failed run (exit code, last error, batch, whether the ledger advanced)
and, after ``stream_crash_loop_runs`` consecutive failed runs without ledger progress, declares
``crash-looping``. The state is kept in two places, written by :mod:`streaming_job.supervisor`:

* ``<node dir>/stream-status.json`` — read by ``clickguard stack status`` (works with the
  database down);
* the ``stream_heartbeat`` row ``streaming_supervisor`` (status = state, details = this
  dataclass) — read by the API (``/health``, ``/stream``) and Dagster's stream health sensor.

The job itself leaves ``<node dir>/job-exit.json`` (its last error and batch) before it exits;
with several drivers (``stream_drivers``: one active, the others warm standbys, see
:mod:`streaming_job.lease`) each has its slot's ``job-exit-<slot>.json`` and publishes its role
in ``driver-<slot>.json`` (:func:`drivers_summary` for ``clickguard stack status``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# the components that write stream_heartbeat rows: the sink after each batch, each driver
# between batches, the supervisor about its restart state
SINK_COMPONENT = "streaming_job"
DRIVER_COMPONENT = "streaming_driver"
SUPERVISOR_COMPONENT = "streaming_supervisor"
# one row per component of the stream (the sink, each driver, the supervisor): (component,
# status, details json). Here, not in streaming_job.sink: the supervisor writes it too, and
# importing the sink (pyarrow, numpy) cost its process 62 MB of RSS
HEARTBEAT = """
INSERT INTO stream_heartbeat (component, beat_at, status, details)
VALUES (%s, clock_timestamp(), %s, %s)
ON CONFLICT (component) DO UPDATE
SET beat_at = EXCLUDED.beat_at, status = EXCLUDED.status, details = EXCLUDED.details
"""
STATUS_FILE = "stream-status.json"
EXIT_FILE = "job-exit.json"
DRIVER_ROLES = ("starting", "standby", "active", "fenced", "stopped")

RUNNING = "running"  # the job runs (or is starting) and nothing failed since the last progress
RESTARTING = "restarting"  # failed runs without progress, fewer than the threshold
CRASH_LOOPING = "crash-looping"  # threshold reached: the stream is stuck, someone must look
STOPPED = "stopped"  # the supervisor stopped on request
STATES = (RUNNING, RESTARTING, CRASH_LOOPING, STOPPED)
KEEP_FAILURES = 5  # failed runs kept in the state for the record
# "psycopg.errors.InsufficientPrivilege: ...", "java.lang.IllegalStateException: ...",
# "py4j.protocol.Py4JJavaError: ..." — a (dotted) CamelCase exception name, colon, message
EXCEPTION_LINE = re.compile(r"^\s*(?:[A-Za-z_]\w*\.)*[A-Z]\w+: \S")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def short_error(text: str | None, limit: int = 200) -> str | None:
    """One line of an error: the last line that names an exception, trimmed to ``limit``.

    Py4J/Spark errors are many lines (Java stack + Python traceback); the informative line is
    the last ``SomeError: message`` one.
    """
    if not text:
        return None
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return None
    named = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
    line = (named or lines)[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class FailedRun:
    """One run of the job that ended with a non-zero exit code."""

    exit_code: int | None
    error: str | None
    batch_id: int | None  # the micro-batch the job was processing when it failed
    ledger_advanced: bool | None  # None = unknown (database unreachable)
    ran_s: float
    ended_at: str = field(default_factory=now_iso)


@dataclass
class StreamRunState:
    """What the supervisor knows; ``since`` is when the current state began."""

    state: str = RUNNING
    consecutive_failures: int = 0  # failed runs since the ledger last advanced
    threshold: int = 3
    restarts: int = 0
    last_error: str | None = None
    last_exit_code: int | None = None
    last_batch_id: int | None = None
    ledger_advanced: bool | None = None  # of the last failed run
    ledger_position: str | None = None  # newest batch_ledger.committed_at seen (ISO)
    stream: str | None = None  # database and checkpoint the position belongs to
    since: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    supervisor_pid: int | None = None
    recent_failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_error_at(self) -> str | None:
        """When the newest failed run ended (ISO), so readers can date ``last_error``."""
        return self.recent_failures[-1].get("ended_at") if self.recent_failures else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> StreamRunState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def record_failure(self, run: FailedRun) -> None:
        """Count a failed run; ``threshold`` consecutive ones without progress = crash-looping."""
        self.restarts += 1
        self.consecutive_failures = 0 if run.ledger_advanced else self.consecutive_failures + 1
        self.last_error, self.last_exit_code = run.error, run.exit_code
        self.last_batch_id, self.ledger_advanced = run.batch_id, run.ledger_advanced
        self.recent_failures = [*self.recent_failures, asdict(run)][-KEEP_FAILURES:]
        if self.consecutive_failures >= self.threshold:
            self._enter(CRASH_LOOPING)
        elif self.consecutive_failures > 0:
            self._enter(RESTARTING)
        else:
            self._enter(RUNNING)

    def record_progress(self) -> bool:
        """The ledger advanced: the stream flows again. True when this changed the state."""
        changed = self.state != RUNNING or self.consecutive_failures != 0
        self.consecutive_failures = 0
        self._enter(RUNNING)
        return changed

    def stop(self) -> None:
        self._enter(STOPPED)

    def _enter(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, now_iso()
        self.updated_at = now_iso()

    def summary(self) -> str:
        """Short human text for `stack status` and alert titles."""
        if self.state in (CRASH_LOOPING, RESTARTING):
            batch = "" if self.last_batch_id is None else f" at batch {self.last_batch_id}"
            return (f"{self.consecutive_failures} failed run(s) without progress{batch}: "
                    f"{self.last_error or f'exit code {self.last_exit_code}'}")
        return self.state

    def headline(self) -> str:
        """Shortest form for alert titles: which batch, how often, the error."""
        what = "the job" if self.last_batch_id is None else f"batch {self.last_batch_id}"
        error = self.last_error or f"exit code {self.last_exit_code}"
        return f"{what} failed {self.consecutive_failures} times: {error}"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic replace: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_status(node_dir: Path) -> StreamRunState | None:
    data = read_json(node_dir / STATUS_FILE)
    return StreamRunState.from_dict(data) if data else None


def effective_state(
    details: dict[str, Any] | None, last_commit_at: datetime | None
) -> StreamRunState | None:
    """The supervisor's state from its heartbeat details, as of the newest ledger commit.

    A batch committed after the crash loop began means the stream flows again even if the
    supervisor has not noticed yet (it checks every few seconds): report ``running`` then.
    """
    if not details:
        return None
    st = StreamRunState.from_dict(details)
    if st.state in (CRASH_LOOPING, RESTARTING) and last_commit_at is not None:
        try:
            since = datetime.fromisoformat(st.since)
        except ValueError:
            return st
        if last_commit_at > since:
            st.record_progress()
    return st


def exit_file(slot: str | int | None) -> str:
    """The job's exit-status file name: per slot when the supervisor runs several drivers."""
    return EXIT_FILE if slot in (None, "") else f"job-exit-{slot}.json"


def driver_file(slot: str | int | None) -> str:
    return f"driver-{'x' if slot in (None, '') else slot}.json"


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, TypeError, IndexError):
        return False


def read_drivers(node_dir: Path) -> list[dict[str, Any]]:
    """Role files of the drivers whose process is alive, by slot."""
    out = []
    for path in sorted(node_dir.glob("driver-*.json")):
        info = read_json(path)
        if info and _alive(info.get("pid")):
            out.append(info)
    return out


def query_running(drivers: list[dict[str, Any]]) -> bool:
    """A driver holding the lease has started the streaming query (it published ``query``)."""
    return any(d.get("role") == "active" and d.get("query") for d in drivers)


def is_warm_standby(driver: dict[str, Any]) -> bool:
    """A standby that finished a background warm-up round (``rewarms`` >= 1): what `stack up`
    waits for and chaos waits for between kills. ``warm`` alone means only "ready": its first
    takeover still compiles what the round would have."""
    return driver.get("role") == "standby" and bool(driver.get("rewarms"))


def standbys_warm(drivers: list[dict[str, Any]]) -> int:
    """Standby drivers that finished a background warm-up round (:func:`is_warm_standby`)."""
    return sum(1 for d in drivers if is_warm_standby(d))


def drivers_summary(drivers: list[dict[str, Any]], expected: int | None = None) -> str:
    """``active d0 pid 123 epoch 7; standby d1 pid 456 warm`` (``no standby`` when missing)."""
    if not drivers:  # none published yet (or the node runs an older job): say nothing
        return ""
    parts = []
    for d in sorted(drivers, key=lambda d: (d.get("role") != "active", str(d.get("slot")))):
        text = f"{d.get('role')} d{d.get('slot')} pid {d.get('pid')}"
        if d.get("role") == "active":
            text += f" epoch {d.get('epoch')}"
        elif d.get("role") == "standby":
            # "warm" means what `stack up` waits for: a background warm-up round done
            # (standbys_warm); "ready" a standby that could take over, still warming
            text += (" warm" if is_warm_standby(d) else " ready, warming" if d.get("warm")
                     else " warming")
        parts.append(text)
    if expected and expected > 1 and not any(d.get("role") == "standby" for d in drivers):
        parts.append("no warm standby yet")
    return "; ".join(parts)
