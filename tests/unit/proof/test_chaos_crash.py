"""Chaos's node crash on real processes: the streaming node's fault takes the supervisor and
both drivers, not only the running job (which is all `stack kill streaming` kills)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from clickguard import procs
from clickguard.settings import Settings
from clickguard_proof.chaos import crash_nodes, crash_streaming_node
from clickguard_stack.manager import Stack

# a supervisor: two drivers (each with a child of its own, as a driver has its JVM), the first
# one's pid in job.pid as the real supervisor writes it, then it waits (the node folder in each
# driver's argv is how the stack knows a pid is its own)
SUPERVISOR = """
import subprocess, sys, time
from pathlib import Path
tree = ("import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)")
drivers = [subprocess.Popen([sys.executable, "-c", tree, sys.argv[1]]) for _ in range(2)]
Path(sys.argv[1], "job.pid").write_text(str(drivers[0].pid))
print(" ".join(str(d.pid) for d in drivers), flush=True)
time.sleep(120)
"""


def _streaming_node(tmp_path: Path) -> tuple[Stack, subprocess.Popen[str], list[int]]:
    stack = Stack(Settings(_env_file=None, home=tmp_path), echo=lambda _m: None)
    node = stack.node("streaming")
    node.dir.mkdir(parents=True, exist_ok=True)
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(node.dir)],
                           stdout=subprocess.PIPE, text=True)
    assert sup.stdout is not None
    drivers = [int(p) for p in sup.stdout.readline().split()]
    node.pid_file.write_text(f"{sup.pid} {procs.start_time(sup.pid)}")
    deadline = time.monotonic() + 10
    while len(procs.descendants(sup.pid)) < 4:  # both drivers have started their child
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return stack, sup, drivers


def test_a_streaming_node_crash_kills_the_supervisor_and_both_drivers(tmp_path: Path) -> None:
    stack, sup, drivers = _streaming_node(tmp_path)
    tree = [sup.pid, *procs.descendants(sup.pid)]
    try:
        victims = crash_streaming_node(stack)
        assert set(victims) == set(tree) and set(drivers) < set(victims)
        assert not any(procs.is_alive(p) for p in tree)
    finally:
        crash_nodes(stack, ["streaming"])  # whatever the assertions left alive
        sup.wait(10)


def test_stack_kill_streaming_kills_only_the_running_job(tmp_path: Path) -> None:
    """Why the fault does not use `stack kill`: the standby and the supervisor survive it."""
    stack, sup, drivers = _streaming_node(tmp_path)
    try:
        assert stack.control("kill", "streaming").endswith(f"pid {drivers[0]}")
        assert not procs.is_alive(drivers[0])
        assert procs.is_alive(drivers[1]) and procs.is_alive(sup.pid)
        assert crash_nodes(stack, []) == ([], []) and procs.is_alive(sup.pid)  # no names: none
    finally:
        crash_nodes(stack, ["streaming"])
        sup.wait(10)
