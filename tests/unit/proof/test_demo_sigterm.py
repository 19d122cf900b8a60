"""`kill PID` stops the demo as Ctrl-C does (traffic stopped, report written), not abruptly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from clickguard.settings import REPO_ROOT

CHILD = """
import time
from clickguard_proof.demo import sigterm_as_ctrl_c
restore = sigterm_as_ctrl_c()
try:  # "ready" inside: the parent's SIGTERM can arrive before print() returns
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("stopped like Ctrl-C", flush=True)
finally:
    restore()
import signal
print("handler restored:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
"""


def test_sigterm_interrupts_the_demo_loop_like_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["stopped like Ctrl-C", "handler restored: True"]
    assert time.monotonic() - t0 < 10  # not the whole sleep
