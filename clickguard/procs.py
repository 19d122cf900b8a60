"""Process primitives for the local stack: start detached, pid files, signals, liveness.

We only ever signal pids we recorded ourselves, and we check ``/proc/<pid>/cmdline`` against the
recorded command so that a recycled pid is never mistaken for one of our nodes.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def proc_state(pid: int) -> str | None:
    """Kernel state letter of ``pid`` (R, S, D, T, Z, ...) or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name is in parentheses and may contain spaces: the state follows the last ')'
    return stat.rsplit(")", 1)[1].split()[0]


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def start_epoch(pid: int) -> float | None:
    """Start time of ``pid`` as a Unix time (boot time + its start ticks), None if gone."""
    ticks = start_time(pid)
    if ticks is None:
        return None
    return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


@functools.cache
def _boot_time() -> int:
    """The kernel's boot time (``btime`` of /proc/stat, Unix seconds): fixed until a reboot,
    so read once per process."""
    return next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))


def is_alive(pid: int | None) -> bool:
    """True for a running or stopped (paused) process; zombies count as dead."""
    if not pid:
        return False
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def is_paused(pid: int | None) -> bool:
    return bool(pid) and proc_state(pid) == "T"  # type: ignore[arg-type]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def environ_has(pid: int, entry: str) -> bool:
    try:
        return entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def log_since(path: Path, offset: int = 0, limit: int | None = None) -> str:
    """What a log gained after byte ``offset`` (its size when a run started: logs persist
    across runs, and an earlier run's lines must not be read as this one's), at most its last
    ``limit`` bytes. A log shorter than ``offset`` was truncated or replaced: read whole.
    Unreadable or missing: ""."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = offset if offset <= size else 0
            f.seek(start if limit is None else max(start, size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcTable:
    """One walk of /proc: each process's children. A stack's status asks for a dozen process
    trees; one snapshot answers them all (each walk reads every process's stat file)."""

    children: dict[int, list[int]]

    @classmethod
    def read(cls) -> ProcTable:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        return cls(children)

    def descendants(self, pid: int) -> list[int]:
        """All descendants of ``pid`` (children first)."""
        out: list[int] = []
        stack = list(self.children.get(pid, []))
        while stack:
            p = stack.pop()
            out.append(p)
            stack.extend(self.children.get(p, []))
        return out

    def rss_mb(self, pid: int) -> float | None:
        """Resident set size of ``pid`` and its descendants, in MiB (VmRSS: /proc/<pid>/stat's
        rss field is the kernel's approximate count, a few percent lower)."""
        total = 0
        for p in [pid, *self.descendants(pid)]:
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return round(total / 1024, 1) if total else None


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid`` (children first), read from /proc."""
    return ProcTable.read().descendants(pid)


def set_sched_idle(pid: int = 0) -> None:
    """Put thread ``pid`` (0 = the caller) under SCHED_IDLE: it runs only on a core no normal
    task wants, and a waking normal task preempts it at once. Nice 19 is not enough for that:
    under the EEVDF scheduler (Linux ≥ 6.6) a niced task that runs keeps the core for its slice
    (≈ 3 ms) before a waking API worker gets it. Threads and children inherit the policy."""
    os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


def set_nice(nice: int) -> None:
    """Lower the caller's CPU priority by ``nice`` (children inherit it), and its session's.

    With autogroup scheduling (``kernel.sched_autogroup_enabled``, on in most distributions)
    every session is one scheduling group and a task's nice only ranks it within its group: a
    node started in its own session would still get an equal share against the stream. The
    session's autogroup nice (/proc/self/autogroup, see sched(7)) ranks the group itself.
    Call it right after ``setsid``.
    """
    os.nice(nice)
    try:
        Path("/proc/self/autogroup").write_text(f"{nice}\n")
    except OSError:  # no autogroup support: the task nice above is what the scheduler uses
        pass


PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Have the kernel send ``sig`` to the caller when its parent (``parent_pid``, the process
    that started it) dies, and send it now if that already happened (the caller was reparented
    before it got here). For workers a supervisor owns: a SIGKILLed supervisor left its stream
    drivers running, unseen by `stack status` and never stopped by `make stop`, the active one
    still holding the lease. False where prctl(2) is missing (not Linux)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # it died before the prctl: no signal will come
        os.kill(os.getpid(), sig)
    return True


# the pid of the process whose death must end this one, for a child started as a new
# interpreter (uvicorn's workers, the stream supervisor's drivers), not forked with it in hand
PARENT_PID_ENV = "CLICKGUARD_PARENT_PID"


def parent_pid_env() -> dict[str, str]:
    """The environment entry that makes a child started as a new interpreter (not forked)
    watch this process: it calls :func:`die_with_parent_from_env` at start."""
    return {PARENT_PID_ENV: str(os.getpid())}


def die_with_parent_from_env(sig: signal.Signals = signal.SIGTERM) -> bool:
    """:func:`die_with_parent` for the pid its starter put in ``PARENT_PID_ENV``; False when
    there is none, or it is this very process (uvicorn's master builds the app too). The
    variable is removed here, so this process's own children do not watch their grandparent."""
    value = os.environ.get(PARENT_PID_ENV)
    if not value or int(value) == os.getpid():
        return False
    del os.environ[PARENT_PID_ENV]
    return die_with_parent(int(value), sig)


# signals a node must get with their default action whatever its starter ignored
INHERITED_IGNORE_RESET = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    sched_idle: bool = False,
    nice: int = 0,
) -> int:
    """Start ``argv`` detached in its own session, stdout+stderr appended to ``log_file``;
    ``sched_idle`` runs it (and every thread and child it makes) under SCHED_IDLE, ``nice``
    lowers its priority and its session's (:func:`set_nice`). SIGINT, SIGQUIT and SIGTERM
    start with their default action even when the caller ignores them."""

    def child_setup() -> None:  # in the child, after setsid, before exec
        # a signal ignored by the caller stays ignored across exec: started from a background
        # job of a script (`make run &`, CI), SIGINT was ignored, and Dagster's code server, which
        # maps SIGTERM to SIGINT's handler, ignored SIGTERM too (stopped by SIGKILL after 30 s)
        for sig in INHERITED_IGNORE_RESET:
            signal.signal(sig, signal.SIG_DFL)
        if sched_idle:  # SCHED_IDLE ranks tasks within their group; nice 19 ranks the group
            set_nice(19)
            set_sched_idle()
        elif nice:
            set_nice(nice)

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=child_setup,
        )
    return proc.pid


def send(pid: int, sig: signal.Signals, tree: bool = False) -> None:
    """Send ``sig`` to ``pid`` (and, with ``tree``, to its descendants first)."""
    targets = [*descendants(pid), pid] if tree else [pid]
    if sig == signal.SIGKILL:  # the parent first: it can neither see a child die nor start one
        targets = targets[-1:] + targets[:-1]
    for p in targets:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def wait_dead(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(is_alive(p) for p in pids):
            return True
        _reap(pids)
        time.sleep(0.1)
    return not any(is_alive(p) for p in pids)


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    """Wait until no process of ``pids`` exists at all, zombies included: a dead process keeps
    its pid until its parent reaps it, and ``kill(pid, 0)`` still succeeds on it (PostgreSQL's
    lock-file check, for one, then takes it for a running server)."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pids)
        if all(proc_state(p) is None for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _reap(pids: Sequence[int]) -> None:
    """Collect zombies of children we spawned in this very process (tests, `stack up`)."""
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


def terminate(pid: int, timeout: float = 20.0, tree_term: bool = False) -> None:
    """SIGTERM ``pid`` (with ``tree_term``, each of its descendants too), then SIGKILL whatever
    is left of the tree after ``timeout`` seconds."""
    terminate_all([pid], timeout, tree_term=tree_term)


def terminate_all(
    pids: Sequence[int],
    timeout: float,
    tree_term: bool = False,
    give_up: Callable[[list[int]], bool] | None = None,
    poll: float = 0.1,
) -> list[int]:
    """SIGTERM every pid at once (paused ones are resumed first), wait for their trees to end,
    and SIGKILL what is left of each tree after ``timeout`` seconds, or as soon as
    ``give_up(pids still alive)`` returns True (polled every ``poll`` seconds). Returns the
    pids (of ``pids``) that had to be killed."""
    pids = [p for p in pids if is_alive(p)]
    everyone = [q for p in pids for q in (*descendants(p), p)]
    for p in pids:
        send(p, signal.SIGCONT, tree=True)  # a paused process cannot handle SIGTERM
        send(p, signal.SIGTERM, tree=tree_term)
    deadline = time.monotonic() + timeout
    # a descendant that outlives its main process (it ignored or never got the SIGTERM) is
    # waited for and killed like the rest of its tree
    while any(is_alive(q) for q in everyone):
        _reap(pids)
        alive = [p for p in pids if is_alive(p)]
        if time.monotonic() >= deadline or (alive and give_up is not None and give_up(alive)):
            for p in alive:
                send(p, signal.SIGKILL, tree=True)  # with children born since the SIGTERM
            for q in everyone:
                if is_alive(q):
                    send(q, signal.SIGKILL)
            wait_dead(everyone, 5)
            return alive
        time.sleep(poll)
    return []


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - a probe that errors just means "not yet"
            pass
        time.sleep(interval)
    return False
