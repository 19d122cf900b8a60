"""A process with a worker child and a thread, like uvicorn with workers (used by
test_nodes.py)."""

import subprocess
import sys
import threading
import time

subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
time.sleep(120)
