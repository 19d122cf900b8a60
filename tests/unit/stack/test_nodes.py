"""Node control on real processes: `stack kill` of an app node ends its workers too."""

from __future__ import annotations

import signal
from pathlib import Path

from clickguard.settings import REPO_ROOT, Settings
from clickguard.stack import procs
from clickguard.stack.nodes import PythonNode


def test_kill_takes_the_worker_processes_with_it(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    node = PythonNode(
        "api", settings, None, module_argv=["tests.unit.stack._forker"],
        extra_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    pid = node.start()
    try:
        assert procs.wait_until(lambda: len(procs.descendants(pid)) == 1, 10)
        workers = procs.descendants(pid)
        assert node.status().state == "healthy"
        assert node.signal(signal.SIGKILL) == pid
        assert procs.wait_dead([pid, *workers], 10)
        assert node.status().state == "down"
    finally:
        node.stop(timeout=5)
