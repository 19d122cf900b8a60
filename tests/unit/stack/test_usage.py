"""/proc sampling maths on real processes whose CPU and memory use are known exactly."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickguard_stack import usage

BURNER = Path(__file__).with_name("_burner.py")
TICK_S = 1 / usage.CLK_TCK
# command round-trips cost a few ticks of interpreter time besides the burn itself
SLACK_TICKS = 5


class Burner:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(BURNER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self._read() == "ready"

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def do(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()


@pytest.fixture
def burner() -> Iterator[Burner]:
    b = Burner()
    yield b
    b.proc.kill()  # its children are killed by their own stdin closing (EOF ends the loop)
    b.proc.wait(10)


def test_cpu_percent_is_the_burned_cpu_time_over_the_wall_time(burner: Burner) -> None:
    before = usage.sample_tree(burner.proc.pid)
    assert burner.do("burn 0.5") == "ok"
    after = usage.sample_tree(burner.proc.pid)
    ticks = after.ticks - before.ticks
    assert 0.5 / TICK_S - 1 <= ticks <= 0.5 / TICK_S + SLACK_TICKS
    wall = after.at - before.at
    assert usage.cpu_percent(before, after) == pytest.approx(ticks * TICK_S / wall * 100)
    assert usage.cpu_percent(before, after, cores=2) == pytest.approx(
        usage.cpu_percent(before, after) / 2
    )
    with pytest.raises(ValueError):
        usage.cpu_percent(after, before)


def test_a_reaped_child_keeps_its_cpu_time_in_the_tree(burner: Burner) -> None:
    """A child that burned 0.5 s and exited between two samples still counts (cutime)."""
    own0 = usage.cpu_ticks(burner.proc.pid, children=False)
    before = usage.sample_tree(burner.proc.pid)
    assert burner.do("child 0.5") == "ok"
    after = usage.sample_tree(burner.proc.pid)
    assert after.pids == before.pids == (burner.proc.pid,)  # the child is gone
    assert after.ticks - before.ticks >= 0.5 / TICK_S - 1
    # the parent itself only waited: without the reaped child's time the sum would be wrong
    assert usage.cpu_ticks(burner.proc.pid, children=False) - own0 < 0.5 / TICK_S / 2


def test_rss_is_summed_over_the_process_tree(burner: Burner) -> None:
    child = int(burner.do("spawn"))  # a child holding 64 MiB
    assert burner.do("hold 32") == "ok"
    tree = usage.sample_tree(burner.proc.pid, with_pss=True)
    assert tree.pids == (burner.proc.pid, child)
    parent, leaf = (usage.process_rss_kb(p) for p in tree.pids)
    assert tree.rss_kb == parent + leaf  # nothing allocates between the reads
    assert parent >= 32 * 1024 and leaf >= 64 * 1024
    assert usage.sample_tree(child).rss_kb == leaf  # a leaf's tree is itself
    assert tree.pss_kb <= tree.rss_kb and tree.pss_kb >= 96 * 1024


def test_named_trees_are_sampled_from_one_walk_of_proc(
    burner: Burner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    child = int(burner.do("spawn"))
    reads = []
    real_read = usage.procs.ProcTable.read
    monkeypatch.setattr(usage.procs.ProcTable, "read",
                        classmethod(lambda cls: reads.append(1) or real_read()))
    got = usage.sample_trees({"burner": burner.proc.pid, "leaf": child, "none": None})
    assert len(reads) == 1
    assert got["burner"].pids == (burner.proc.pid, child)
    assert got["leaf"].pids == (child,)
    assert got["leaf"].rss_kb == usage.process_rss_kb(child)
    assert got["none"].pids == ()


def test_a_missing_process_is_an_empty_sample() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    s = usage.sample_tree(proc.pid)
    assert (s.pids, s.ticks, s.rss_kb) == ((), 0, 0)
    assert usage.sample_tree(None).pids == ()


def test_hot_threads_name_the_thread_that_burns(burner: Burner) -> None:
    pids = (burner.proc.pid,)
    t0 = usage.tree_thread_ticks(pids)
    assert burner.do("bgthread 2") == "ok"  # 2 s of CPU: still burning when we read again
    time.sleep(0.5)
    t1 = usage.tree_thread_ticks(pids)
    hot = usage.hot_threads(t0, t1, 0.5)
    name, pct = hot[0]
    assert name.endswith("/burner") and pct > 0
    assert hot == sorted(hot, key=lambda kv: -kv[1])
    # the thread's share is its ticks over the window, in % of one core
    assert pct == pytest.approx((t1[name] - t0.get(name, 0)) * TICK_S / 0.5 * 100)


def test_stack_status_prints_the_whole_stack_rss() -> None:
    from clickguard_stack.manager import format_status
    from clickguard_stack.nodes import NodeStatus

    rows = [NodeStatus("kafka-1", 1, 9092, "healthy", 400.5),
            NodeStatus("api", 2, 8000, "healthy", 200.25), NodeStatus("x", None, None, "down")]
    last = format_status(rows).splitlines()[-1]
    assert last.split()[:2] == ["TOTAL", "600.8"]


def test_stack_status_tells_the_dagster_runs_in_progress_apart() -> None:
    from clickguard_stack.manager import format_status
    from clickguard_stack.nodes import NodeStatus

    rows = [NodeStatus("kafka-1", 1, 9092, "healthy", 400.5),
            NodeStatus("dagster-code", 2, 3001, "healthy", 1700.0, "1 run in progress", 1500.0)]
    last = format_status(rows).splitlines()[-1]
    assert last.split()[:2] == ["TOTAL", "2100.5"]
    assert "1,500.0 of it Dagster runs in progress, 600.5 without them" in last


def test_run_workers_are_the_spawned_children_and_their_trees_count_once() -> None:
    """A real ``multiprocessing`` spawn child, as Dagster's code server starts a run, with a
    child of its own (the run's Spark JVM) whose argv says spawn_main too: one run worker, the
    outer one (whose tree's RSS includes the inner)."""
    import multiprocessing
    import os
    import signal

    from clickguard import procs
    from clickguard_stack.nodes import run_workers

    worker = multiprocessing.get_context("spawn").Process(target=_run_with_a_child)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not procs.descendants(worker.pid or 0):  # its child has started
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert run_workers(os.getpid()) == [worker.pid]
    finally:
        procs.send(worker.pid or 0, signal.SIGKILL, tree=True)
        worker.join(10)
    assert run_workers(os.getpid()) == []


def _run_with_a_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "spawn_main"])
    child.wait()


def test_jit_percent_counts_only_the_compiler_threads() -> None:
    before = {"java/C2 CompilerThre": 100, "java/C1 CompilerThre": 50, "java/data-plane-kafk": 0}
    after = {"java/C2 CompilerThre": 200, "java/C1 CompilerThre": 75, "java/data-plane-kafk": 900,
             "python3/python": 500}
    assert usage.jit_percent(before, after, 10.0) == round(125 / usage.CLK_TCK / 10 * 100, 2)


def test_a_warming_jvm_shows_its_compiler_threads(tmp_path: Path) -> None:
    """A real JVM running a hot loop for the first time: its C1/C2 threads burn CPU."""
    src = tmp_path / "Hot.java"
    src.write_text(
        "public class Hot { public static void main(String[] a) { long s = 0;"
        " long end = System.nanoTime() + 4_000_000_000L; while (System.nanoTime() < end)"
        " for (int i = 0; i < 1000; i++) s += Integer.toString(i).hashCode();"
        " System.out.println(s); } }"
    )
    proc = subprocess.Popen(["java", str(src)], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        before = usage.tree_thread_ticks((proc.pid,))
        time.sleep(2.5)
        after = usage.tree_thread_ticks((proc.pid,))
    finally:
        proc.kill()
        proc.wait()
    jit = usage.jit_percent(before, after, 2.5)
    total = sum(v - before.get(k, 0) for k, v in after.items()) / usage.CLK_TCK / 2.5 * 100
    assert 0 < jit < total, (jit, total, after)
