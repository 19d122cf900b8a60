"""Process primitives on real processes: liveness, pause detection, tree termination."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clickguard import procs
from clickguard.jars import artifact as _artifact

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
PARENT = [
    sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(60)']); time.sleep(60)",
]


def test_spawn_alive_pause_resume_kill(tmp_path: Path) -> None:
    pid = procs.spawn(SLEEPER, tmp_path / "log")
    assert procs.is_alive(pid)
    procs.send(pid, signal.SIGSTOP)
    assert procs.wait_until(lambda: procs.is_paused(pid), 5)
    procs.send(pid, signal.SIGCONT)
    assert procs.wait_until(lambda: not procs.is_paused(pid), 5)
    procs.send(pid, signal.SIGKILL)
    assert procs.wait_dead([pid], 5)
    assert not procs.is_alive(pid)


def test_terminate_ends_the_whole_tree(tmp_path: Path) -> None:
    pid = procs.spawn(PARENT, tmp_path / "log")
    assert procs.wait_until(lambda: len(procs.descendants(pid)) == 1, 10)
    (child,) = procs.descendants(pid)
    procs.send(pid, signal.SIGSTOP, tree=True)  # a paused tree must still terminate
    procs.terminate(pid, timeout=5)
    time.sleep(0.2)
    assert not procs.is_alive(pid)
    assert procs.wait_dead([child], 10)


STUBBORN = [  # ignores SIGTERM, as a broker still waiting for its controlled-shutdown grant
    sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
]


def test_terminate_all_kills_only_what_outlives_give_up_or_timeout(tmp_path: Path) -> None:
    polite = procs.spawn(SLEEPER, tmp_path / "polite.log")
    stubborn = procs.spawn(STUBBORN, tmp_path / "stubborn.log")
    # the stubborn one must have installed its handler before the SIGTERM
    time.sleep(1.0)
    seen: list[list[int]] = []

    def give_up(alive: list[int]) -> bool:
        seen.append(alive)
        return alive == [stubborn]

    t0 = time.monotonic()
    killed = procs.terminate_all([polite, stubborn], timeout=30, give_up=give_up)
    assert killed == [stubborn]
    assert time.monotonic() - t0 < 10  # given up on, not waited for the 30 s timeout
    assert not procs.is_alive(polite) and not procs.is_alive(stubborn)
    assert seen[-1] == [stubborn]

    stubborn = procs.spawn(STUBBORN, tmp_path / "stubborn.log")
    time.sleep(1.0)
    t0 = time.monotonic()
    assert procs.terminate_all([stubborn], timeout=1.0) == [stubborn]
    assert 1.0 <= time.monotonic() - t0 < 8
    assert not procs.is_alive(stubborn)


# Dagster's code server maps SIGTERM to whatever SIGINT does (setup_interrupt_handlers)
SIGINT_AS_SIGTERM = [
    sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT)); "
    "time.sleep(60)",
]


def ignored_signals(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                if x.startswith("SigIgn:"))
    return int(line.split()[1], 16)


def test_a_node_started_by_a_caller_ignoring_sigint_still_ends_on_sigterm(tmp_path: Path) -> None:
    """As a background job of a script (`make run &`, CI) the caller ignores SIGINT; before,
    the code server then ignored SIGTERM too and was SIGKILLed after the stop timeout."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pid = procs.spawn(SIGINT_AS_SIGTERM, tmp_path / "log")
        # and from another thread of the caller, as the stack's supervisors do
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(procs.spawn, SLEEPER, tmp_path / "other.log").result()
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(1.0)  # its handler is set
    for p in (pid, other):
        assert not ignored_signals(p) & (1 << (signal.SIGINT - 1)), p
    assert procs.terminate_all([pid, other], timeout=10) == []


def test_environment_marker_identifies_our_processes(tmp_path: Path) -> None:
    import os

    os.environ["CLICKGUARD_NODE"] = str(tmp_path)
    try:
        pid = procs.spawn(SLEEPER, tmp_path / "log")
    finally:
        del os.environ["CLICKGUARD_NODE"]
    try:
        # until the child has exec'd, /proc/<pid>/environ is still the parent's copy
        assert procs.wait_until(lambda: procs.environ_has(pid, f"CLICKGUARD_NODE={tmp_path}"), 10)
        assert not procs.environ_has(pid, "CLICKGUARD_NODE=/elsewhere")
    finally:
        procs.terminate(pid, 5)


def test_port_probe(tmp_path: Path) -> None:
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert procs.port_open(port)
    assert not procs.port_open(port)


def test_artifact_names_strip_versions() -> None:
    assert _artifact("kafka-clients-3.9.1.jar") == "kafka-clients"
    assert _artifact("spark-sql-kafka-0-10_2.13-4.1.1.jar") == "spark-sql-kafka-0-10_2.13"
    assert _artifact("commons-pool2-2.12.1.jar") == "commons-pool2"


# a worker that asks to die with its parent; its SIGTERM handler leaves a mark, as the stream
# driver's clean stop does
WORKER = (
    "import os, signal, sys, time\n"
    "from pathlib import Path\n"
    "from clickguard import procs\n"
    "def on_term(*_):\n"
    "    Path(sys.argv[1]).write_text('sigterm'); os._exit(0)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "Path(sys.argv[1] + '.ready').write_text(str(procs.die_with_parent(int(sys.argv[2]))))\n"
    "time.sleep(60)\n"
)


def test_a_worker_dies_with_its_sigkilled_parent(tmp_path: Path) -> None:
    """The stream supervisor SIGKILLed: its drivers used to run on, orphaned and unseen."""
    mark = tmp_path / "mark"
    parent = [sys.executable, "-c",
              "import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              f"{WORKER!r}, {str(mark)!r}, str(os.getpid())]); time.sleep(60)"]
    pid = procs.spawn(parent, tmp_path / "log", cwd=Path(__file__).resolve().parents[3])
    try:
        assert procs.wait_until(lambda: (tmp_path / "mark.ready").exists(), 20)
        assert (tmp_path / "mark.ready").read_text() == "True"
        worker = procs.descendants(pid)[0]
        procs.send(pid, signal.SIGKILL)  # the parent alone
        assert procs.wait_until(lambda: mark.exists(), 10), "the worker outlived its parent"
        assert mark.read_text() == "sigterm" and procs.wait_dead([worker], 5)
    finally:
        procs.terminate(pid, 1)


def test_a_worker_whose_parent_is_already_gone_stops_at_once(tmp_path: Path) -> None:
    """Reparented before it asked (the parent died during the worker's start-up)."""
    mark = tmp_path / "mark"
    pid = procs.spawn([sys.executable, "-c", WORKER, str(mark), "1"], tmp_path / "log",
                      cwd=Path(__file__).resolve().parents[3])
    assert procs.wait_until(lambda: mark.exists(), 20), "no SIGTERM for a missing parent"
    assert mark.read_text() == "sigterm" and procs.wait_dead([pid], 5)


def test_the_parent_pid_in_the_environment_is_taken_once() -> None:
    """uvicorn's workers and the stream's drivers learn their parent from PARENT_PID_ENV; the
    process that acts on it removes it, so its own children (Spark's workers under a driver)
    do not take their grandparent for theirs, and a process named in it ignores it."""
    probe = ("import os, json, sys\nfrom clickguard import procs\n"
             "if sys.argv[1:] == ['self']: os.environ.update(procs.parent_pid_env())\n"
             "armed = procs.die_with_parent_from_env()\n"
             "print(json.dumps([armed, os.environ.get(procs.PARENT_PID_ENV) == str(os.getpid()),"
             " procs.PARENT_PID_ENV in os.environ]))\n")
    root = Path(__file__).resolve().parents[3]

    def run(*args: str, parent: str | None = None) -> list[bool]:
        env = {k: v for k, v in os.environ.items() if k != procs.PARENT_PID_ENV}
        if parent is not None:
            env |= procs.parent_pid_env()  # as the supervisor hands it to a driver
            assert env[procs.PARENT_PID_ENV] == parent
        out = subprocess.run([sys.executable, "-c", probe, *args], env=env, cwd=root,
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    assert run() == [False, False, False]  # not set: nothing to watch
    assert run(parent=str(os.getpid())) == [True, False, False]  # armed, and taken out
    assert run("self") == [False, True, True]  # named itself: left for the children it starts


def test_log_since_reads_what_the_log_gained(tmp_path: Path) -> None:
    """Only this run's lines; the last ``limit`` bytes of them; a log replaced by a shorter one
    read whole; a missing log reads as nothing."""
    log = tmp_path / "node.log"
    log.write_text("an earlier run's ERROR\n")
    start = log.stat().st_size
    with log.open("a") as f:
        f.write("this run: started\nthis run: ERROR b\u00e9\n")
    assert procs.log_since(log, start) == "this run: started\nthis run: ERROR b\u00e9\n"
    assert procs.log_since(log, start, limit=12) == ": ERROR b\u00e9\n"  # 12 bytes: é is 2
    assert procs.log_since(log, 0, limit=12) == procs.log_since(log, start, limit=12)
    log.write_text("new\n")  # rotated: shorter than the offset
    assert procs.log_since(log, start) == "new\n"
    assert procs.log_since(tmp_path / "absent.log", 0) == ""
