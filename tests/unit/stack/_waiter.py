"""A server that, on SIGTERM, waits for its worker child to end (as Dagster's code server waits
for a run worker), then records how the child ended (used by test_nodes.py)."""

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

child: subprocess.Popen | None = None


def on_term(_signum: int, _frame: Any) -> None:
    assert child is not None
    Path("child-exit").write_text(str(child.wait()))
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
time.sleep(120)
