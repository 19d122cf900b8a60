"""What the stack costs while a benchmark runs: CPU per node from /proc, and a whole-stack check.

Capacity and latency figures only mean something "as a user runs it": with the API and Dagster
up beside the stream (they share the 2 cores). :func:`require_whole_stack` refuses to measure
otherwise, and :class:`CpuSampler` records each node's CPU (its whole process tree, so Spark's
JVM under the streaming supervisor counts) so every step of a ladder states what it cost.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from clickguard.settings import Settings

# nodes a user's stack runs beside the stream; a benchmark without them flatters the stream
WHOLE_STACK = ("streaming", "api", "dagster-webserver", "dagster-daemon")
TICKS = os.sysconf("SC_CLK_TCK")


def node_pids(settings: Settings) -> dict[str, int]:
    """Running node name -> pid, from the stack's own pid files."""
    from clickguard_stack.manager import Stack

    return {r.name: r.pid for r in Stack(settings, echo=lambda _m: None).status() if r.pid}


def missing_nodes(settings: Settings) -> list[str]:
    """The nodes of :data:`WHOLE_STACK` that are not healthy."""
    from clickguard_stack.manager import Stack

    rows = {r.name: r for r in Stack(settings, echo=lambda _m: None).status()}
    return [n for n in WHOLE_STACK if n not in rows or not rows[n].healthy]


def require_whole_stack(settings: Settings) -> None:
    """Fail with a clear message unless the stream, the API and Dagster are all healthy."""
    missing = missing_nodes(settings)
    if missing:
        raise click.ClickException(
            f"not healthy: {', '.join(missing)}. This benchmark measures the whole stack as a "
            "user runs it: start it with `clickguard stack up` (or pass --partial-stack to "
            "measure anyway, labelled as such)."
        )


def _read_stats() -> dict[int, tuple[int, int]]:
    """Every process: pid -> (parent pid, utime + stime in clock ticks), in one /proc pass."""
    out: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def tree_ticks(pids: dict[str, int]) -> dict[str, int]:
    """utime + stime (clock ticks) of each node's pid and its live descendants."""
    stats = _read_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[str, int] = {}
    for name, root in pids.items():
        total, todo = 0, [root]
        while todo:
            p = todo.pop()
            total += stats.get(p, (0, 0))[1]
            todo.extend(children.get(p, []))
        out[name] = total
    return out


@dataclass
class CpuSampler:
    """Samples every node's process-tree CPU every ``interval`` s in a background thread."""

    pids: dict[str, int]
    interval: float = 1.0
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def mark(self) -> float:
        """A time to pass to :meth:`percent` (takes a sample now)."""
        self._sample()
        return self.samples[-1][0]

    def _sample(self) -> None:
        self.samples.append((time.monotonic(), tree_ticks(self.pids)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def percent(self, t_from: float, t_to: float) -> dict[str, float]:
        """Mean CPU per node between two sample times, in % of ONE core, plus ``total`` in %
        of all the machine's cores. Empty when fewer than two samples fall in the interval."""
        inside = [s for s in list(self.samples) if t_from <= s[0] <= t_to]
        if len(inside) < 2:
            return {}
        (a_t, a), (b_t, b) = inside[0], inside[-1]
        secs = (b_t - a_t) * TICKS
        if secs <= 0:
            return {}
        out = {n: round(100.0 * (b[n] - a.get(n, b[n])) / secs, 1) for n in b}
        out["total"] = round(sum(out.values()) / (os.cpu_count() or 1), 1)
        return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_stream_running(settings: Settings, timeout: float = 600.0, echo: object = print) -> None:
    """Wait (bounded) until the streaming query itself runs: a fresh ``streaming_driver``
    heartbeat with status ``running`` (the node is "healthy" while Spark is still starting,
    and events produced then would be measured with the start-up in their latency)."""
    from clickguard import db, stream_state

    deadline, said = time.monotonic() + timeout, False
    while True:
        try:
            with db.connect(settings, "reader", autocommit=True) as conn:
                row = conn.execute(
                    "SELECT 1 FROM stream_heartbeat WHERE component = %s AND status = 'running' "
                    "AND beat_at > clock_timestamp() - interval '12 seconds'",
                    (stream_state.DRIVER_COMPONENT,),
                ).fetchone()
        except Exception:  # noqa: BLE001 - the database may be starting too: keep waiting
            row = None
        if row:
            return
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"the streaming query is not running after {timeout:.0f} s "
                "(see `clickguard stack logs streaming`)"
            )
        if not said and callable(echo):
            echo("waiting for the streaming query to run (Spark start-up)")
            said = True
        time.sleep(2.0)
