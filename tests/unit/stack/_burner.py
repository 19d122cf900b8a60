"""A process whose CPU use is known exactly (used by test_usage.py).

Reads commands on stdin, one per line, and answers "ok" on stdout when done:
``burn S`` burns S seconds of its own CPU time; ``child S`` runs a child that burns S seconds
and waits for it (its time then moves to our cutime); ``thread S`` burns S seconds in a thread
named ``burner`` (prctl PR_SET_NAME), ``bgthread S`` the same without waiting; ``hold MB``
keeps MB MiB resident; ``spawn`` starts a long-lived child that holds 64 MiB, answers its pid.
"""

import ctypes
import subprocess
import sys
import threading
import time

held: list[bytearray] = []


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def named_burn(seconds: float) -> None:
    ctypes.CDLL(None).prctl(15, b"burner", 0, 0, 0)  # PR_SET_NAME: this thread's comm
    burn(seconds)


def hold(mb: int) -> bytearray:
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    return block


print("ready", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "burn":
        burn(float(arg))
    elif cmd == "child":
        subprocess.run([sys.executable, __file__], input=f"burn {arg}\n", check=True,
                       capture_output=True, text=True)
    elif cmd == "thread":
        t = threading.Thread(target=named_burn, args=(float(arg),))
        t.start()
        t.join()
    elif cmd == "bgthread":  # answers at once; the thread burns on
        threading.Thread(target=named_burn, args=(float(arg),), daemon=True).start()
    elif cmd == "hold":
        held.append(hold(int(arg)))
    elif cmd == "spawn":
        child = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        child.stdin.write("hold 64\n")
        child.stdin.flush()
        child.stdout.readline()
        held.append(child)  # type: ignore[arg-type]
        print(child.pid, flush=True)
        continue
    print("ok", flush=True)
