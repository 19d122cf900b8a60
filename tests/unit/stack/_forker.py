"""A process with a worker child, like uvicorn with workers (used by test_nodes.py)."""

import subprocess
import sys
import time

subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
time.sleep(120)
