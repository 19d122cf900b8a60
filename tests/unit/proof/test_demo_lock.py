"""One demo per stack: a second `make run` while a demo streams says so instead of doubling the
traffic; a demo that died (even by SIGKILL) leaves no lock behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clickguard.settings import REPO_ROOT, Settings
from clickguard_proof.demo import DemoRunning, hold_demo_lock

CHILD = """
import sys, time
from pathlib import Path
from clickguard.settings import Settings
from clickguard_proof.demo import hold_demo_lock
lock = hold_demo_lock(Settings(home=Path(sys.argv[1])), 1000.0)
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_demo_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO_ROOT,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding", proc.stderr
        s = Settings(home=tmp_path)
        with pytest.raises(DemoRunning) as refused:
            hold_demo_lock(s, 500.0)
        message = refused.value.format_message()
        assert f"pid {proc.pid}" in message and "1,000 events/s" in message
        assert f"kill -TERM {proc.pid}" in message
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # killed without a chance to clean up: the kernel released its lock
    lock = hold_demo_lock(s, 500.0)
    try:
        assert '"rate": 500.0' in (tmp_path / "demo" / "demo.lock").read_text()
    finally:
        lock.close()
