"""`make test` next to a running `make run` stops at once instead of wiping the demo.

Both used the same run folder and ports: the stream fixtures deleted the demo's raw topic,
emptied its tables and stopped its stream. Here a private run folder holds a live "api" node
(a sleeping process recorded in the node's pid file, as `clickguard stack` records it), and a
test session that needs the stack must exit before it starts or touches anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clickguard import procs
from tests.conftest import ON_RUNNING_PLATFORM

REPO = Path(__file__).resolve().parents[2]


def test_a_session_needing_the_stack_refuses_a_running_platform(tmp_path: Path) -> None:
    home = tmp_path / "run"
    (home / "api").mkdir(parents=True)
    api = subprocess.Popen(["sleep", "120"])
    try:
        (home / "api" / "pid").write_text(f"{api.pid} {procs.start_time(api.pid)}")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CLICKGUARD_") and k != ON_RUNNING_PLATFORM}
        env["CLICKGUARD_HOME"] = str(home)
        res = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/integration/test_stack.py::test_three_brokers_registered"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
        out = res.stdout + res.stderr
        assert res.returncode == 3, out
        assert f"a running platform uses {home} (api up)" in out
        assert "make stop" in out and ON_RUNNING_PLATFORM in out
        # nothing was started in that run folder: only the api's folder exists
        assert sorted(p.name for p in home.iterdir()) == ["api"]
    finally:
        api.kill()
        api.wait()
