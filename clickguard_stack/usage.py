"""CPU and memory of a process tree, read from /proc (no psutil: one file per process).

A node is a process tree (the JVM, the postmaster and its backends, a supervisor and its Spark
driver and Python workers), so every figure is summed over the tree. CPU time counts the live
processes' ``utime + stime`` plus ``cutime + cstime`` (the time of children already reaped by a
member of the tree), so a short-lived child that exits between two samples still counts: its time
moves from its own fields into its parent's ``c*`` fields instead of vanishing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clickguard import procs

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state, field 3)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def cpu_ticks(pid: int, children: bool = True) -> int:
    """utime + stime (+ cutime + cstime) of one process in clock ticks; 0 when it is gone."""
    f = _stat_fields(pid)
    if f is None:
        return 0
    # stat fields 14..17 (1-based) = utime stime cutime cstime; f[0] is field 3
    own = int(f[11]) + int(f[12])
    return own + (int(f[13]) + int(f[14]) if children else 0)


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_rss_kb(pid: int) -> int:
    """VmRSS of one process (not its children); 0 when it is gone."""
    return _status_kb(pid, "VmRSS:")


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split between their users); 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class TreeSample:
    """One reading of a process tree."""

    at: float  # time.monotonic()
    pids: tuple[int, ...]
    ticks: int  # CPU clock ticks summed over the tree (reaped children included)
    rss_kb: int  # VmRSS summed over the tree (shared pages counted once per process)
    pss_kb: int  # Pss summed over the tree (shared pages split: sums across nodes add up)


def sample_tree(
    pid: int | None, with_pss: bool = True, table: procs.ProcTable | None = None,
) -> TreeSample:
    """Read ``pid`` and all its descendants now; an absent pid gives an empty sample.
    ``table`` is a /proc snapshot shared by several trees (each walk reads every process)."""
    now = time.monotonic()
    if not pid or not procs.is_alive(pid):
        return TreeSample(now, (), 0, 0, 0)
    pids = (pid, *(table if table is not None else procs.ProcTable.read()).descendants(pid))
    return TreeSample(
        at=now,
        pids=pids,
        ticks=sum(cpu_ticks(p) for p in pids),
        rss_kb=sum(process_rss_kb(p) for p in pids),
        pss_kb=sum(pss_kb(p) for p in pids) if with_pss else 0,
    )


def sample_trees(
    pids: Mapping[str, int | None], with_pss: bool = True,
) -> dict[str, TreeSample]:
    """:func:`sample_tree` of every named tree from one walk of /proc: a sampler reading a
    dozen nodes at every sample walks it once per round, not once per node."""
    table = procs.ProcTable.read()
    return {name: sample_tree(pid, with_pss, table) for name, pid in pids.items()}


def cpu_percent(before: TreeSample, after: TreeSample, cores: int | None = None) -> float:
    """CPU used between two samples in % of ONE core (or of ``cores`` cores when given).

    100 % of one core = one core busy the whole interval; a 2-core machine fully busy is 200 %
    of one core = 100 % of its cores. Negative deltas (a process left the tree taking its time
    with it) count as 0.
    """
    wall = after.at - before.at
    if wall <= 0:
        raise ValueError("samples must be in time order and distinct")
    pct = ticks_percent(after.ticks - before.ticks, wall)
    return pct / cores if cores else pct


def ticks_percent(ticks: int, seconds: float) -> float:
    """Clock ticks of CPU over ``seconds`` of wall time, in % of one core (negative = 0)."""
    return max(0, ticks) / CLK_TCK / seconds * 100.0


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot from /proc/stat (idle+iowait = idle)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    total = sum(values)
    return total - idle, total


def thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks per thread name (/proc/<pid>/task/*/comm) of ONE process: who burns CPU."""
    out: dict[str, int] = {}
    base = Path(f"/proc/{pid}/task")
    try:
        tids = [t.name for t in base.iterdir()]
    except OSError:
        return out
    for tid in tids:
        try:
            name = (base / tid / "comm").read_text().strip()
            f = (base / tid / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # threads named like "kafka-network-thread-1-..." or "GC Thread#3": group by stem
        stem = name.rstrip("0123456789#-_ ") or name
        out[stem] = out.get(stem, 0) + int(f[11]) + int(f[12])
    return out


def tree_thread_ticks(pids: tuple[int, ...]) -> dict[str, int]:
    """:func:`thread_ticks` summed over a tree, keyed ``process-comm/thread-stem``."""
    out: dict[str, int] = {}
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        for name, ticks in thread_ticks(pid).items():
            key = f"{comm}/{name}"
            out[key] = out.get(key, 0) + ticks
    return out


# HotSpot's JIT compiler threads ("C2 CompilerThread0", comm cut to 15 characters)
JIT_THREAD_PREFIXES = ("C1 CompilerThre", "C2 CompilerThre")


def jit_percent(before: dict[str, int], after: dict[str, int], seconds: float) -> float:
    """CPU of the JVMs' JIT compiler threads between two :func:`tree_thread_ticks` readings, in %
    of one core: compilation that ends once the code paths are compiled, not steady work."""
    ticks = sum(v - before.get(k, 0) for k, v in after.items()
                if k.split("/", 1)[-1].startswith(JIT_THREAD_PREFIXES))
    return round(ticks_percent(ticks, seconds), 2)


def hot_threads(
    before: dict[str, int], after: dict[str, int], seconds: float, top: int = 8
) -> list[tuple[str, float]]:
    """The ``top`` thread groups by CPU between two :func:`tree_thread_ticks` readings, in %
    of one core (threads that appeared in between count from 0)."""
    deltas = {k: v - before.get(k, 0) for k, v in after.items()}
    ranked = sorted(((k, d) for k, d in deltas.items() if d > 0), key=lambda kv: -kv[1])
    return [(k, round(ticks_percent(d, seconds), 2)) for k, d in ranked[:top]]
