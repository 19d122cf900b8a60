"""`bench cpu` input checks and verdict: bad input is a clear error, a down stack is named."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from clickguard.settings import Settings
from clickguard_proof import bench_cpu
from clickguard_proof.bench_cpu import cpu, plot, run_cpu_bench, table_rows, verdict


@pytest.mark.parametrize("args", [["--steps", "0,abc"], ["--steps", "-5"], ["--step-s", "0"],
                                  ["--prewarm-s", "-1"]])
def test_bad_options_are_clear_errors(args: list[str]) -> None:
    res = CliRunner().invoke(cpu, args)
    assert res.exit_code == 2 and "Invalid value" in res.output, res.output


def test_a_down_stack_is_named_not_measured(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)  # nothing runs from this folder
    with pytest.raises(click.ClickException, match="nodes down: postgres, kafka-1"):
        run_cpu_bench(settings, [0], 1.0, 0.0, 0.5, echo=lambda _m: None)


def _step(rate: int, pct: float, rss: float) -> dict:
    node = {"cpu_pct_one_core": pct * 2, "rss_mb_max": rss}
    return {"rate": rate, "cores": 2, "nodes": {"kafka-1": node}, "stack_cpu_pct_machine": pct,
            "stack_cpu_pct_one_core": pct * 2, "stack_rss_mb_max": rss,
            "stack_jit_pct_one_core": pct / 4, "machine_busy_pct": 50.0}


def test_verdict_checks_only_the_steps_run() -> None:
    assert verdict([_step(0, 5.0, 100)]) == {
        "idle_le_5pct": True, "rate_1000_le_40pct": None, "rss_5000_le_4gb": None,
    }
    assert verdict([_step(0, 5.1, 1), _step(1000, 40.0, 1), _step(5000, 1, 4097)]) == {
        "idle_le_5pct": False, "rate_1000_le_40pct": True, "rss_5000_le_4gb": False,
    }


def test_a_step_whose_producer_fell_short_is_not_checked() -> None:
    short = {**_step(1000, 10.0, 1), "reached_rate": False, "produced_eps": 337.0}
    assert verdict([short])["rate_1000_le_40pct"] is None


def test_table_has_a_row_per_node_and_the_totals() -> None:
    with_producer = _step(1000, 20.0, 120)
    with_producer["nodes"]["producer"] = {"cpu_pct_one_core": 9.0, "rss_mb_max": 80}
    rows = table_rows({"steps": [_step(0, 3.0, 100), with_producer]})
    assert [r["node"] for r in rows] == [
        "kafka-1", "**stack total**", "stack, % of 2 cores",
        "of it, JVM JIT compiler threads (% of 1 core)", "whole machine busy %",
        "of it, this sampler (% of the cores)", "Dagster runs during the step",
        "producer ev/s reached", "producer",
    ]
    assert rows[0]["CPU % 1 core @1000"] == 40.0 and rows[1]["RSS MiB @0"] == 100
    assert rows[3]["CPU % 1 core @0"] == 0.75 and rows[3]["RSS MiB @0"] is None
    assert rows[-1]["CPU % 1 core @0"] is None and rows[-1]["CPU % 1 core @1000"] == 9.0


def test_plot_names_each_node_once_even_when_it_joins_later() -> None:
    """The producer is in the 1,000 and 5,000 steps only: one tick, one bar per step it ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [_step(0, 3.0, 100), _step(1000, 20.0, 120), _step(5000, 30.0, 130)]
    for s in steps[1:]:
        s["nodes"]["producer"] = {"cpu_pct_one_core": 9.0, "rss_mb_max": 80}
    steps[1]["nodes"]["kafka-1"]["jit_pct_one_core"] = 2.5
    fig = plt.figure()
    try:
        plot({"steps": steps})(fig)
        cpu_axis = fig.axes[0]
        assert [t.get_text() for t in cpu_axis.get_xticklabels()] == ["kafka-1", "producer"]
        load = [round(b.get_height(), 1) for b in cpu_axis.patches if not b.get_hatch()]
        assert load == [6.0, 0, 40.0, 9.0, 60.0, 9.0]  # per step: kafka-1, producer
        # the JIT share, hatched inside the same bars
        jit = [round(b.get_height(), 1) for b in cpu_axis.patches if b.get_hatch()]
        assert jit == [0, 0, 2.5, 0, 0, 0]
    finally:
        plt.close(fig)


def test_pss_is_read_every_nth_sample_and_the_sampler_counts_its_own_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PSS walks every mapping of every process (≈ 0.1 s of CPU per whole-stack sample), so it
    is read at every 5th sample; what the sampler itself costs the machine is in the result."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    flags: list[bool] = []
    real = bench_cpu.usage.sample_trees
    burn_s = 0.03

    def sample_and_burn(pids, with_pss=True):  # type: ignore[no-untyped-def]
        flags.append(with_pss)
        end = time.thread_time() + burn_s
        while time.thread_time() < end:
            pass
        return real(pids, with_pss)

    monkeypatch.setattr(bench_cpu.usage, "sample_trees", sample_and_burn)
    try:
        m = bench_cpu.measure({"sleeper": sleeper.pid}, seconds=2.0, sample_s=0.1, pss_every=5)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert flags[0] is True and len(flags) >= 10
    assert flags[1:] == [i % 5 == 0 for i in range(1, len(flags))]
    assert m["nodes"]["sleeper"]["pss_mb_mean"] > 0
    burned = 100 * burn_s * len(flags) / m["seconds"] / (os.cpu_count() or 1)
    assert burned * 0.8 <= m["sampler_cpu_pct_machine"] <= burned * 3


# a stand-in for Dagster's code server: it starts a run the way Dagster does, in a
# multiprocessing spawn child (``... spawn_main ...`` on its command line)
CODE_SERVER = """
import multiprocessing as mp, time
if __name__ == "__main__":
    mp.get_context("spawn").Process(target=time.sleep, args=(60,)).start()
    time.sleep(60)
"""


@pytest.mark.parametrize("with_run", [True, False])
def test_a_dagster_run_during_a_step_is_counted_and_named(
    with_run: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """A run left going by a sensor took a core in an "idle" step (dagster-code 101 % of a
    core); the step now says how many runs it measured."""
    from clickguard import procs
    from clickguard_stack.nodes import run_workers

    argv = [sys.executable, "-c", CODE_SERVER if with_run else "import time; time.sleep(60)"]
    code = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 30
        while with_run and not run_workers(code.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        monkeypatch.setattr(bench_cpu, "node_pids", lambda _s: {"dagster-code": code.pid})
        lines: list[str] = []
        result = run_cpu_bench(Settings(), [0], step_s=0.6, warmup_s=0, sample_s=0.2,
                               echo=lines.append, workdir=tmp_path)
    finally:
        for p in procs.descendants(code.pid):
            os.kill(p, 9)
        code.kill()
        code.wait()
    step = result["steps"][0]
    assert step["dagster_runs"] == (1 if with_run else 0)
    warned = [line for line in lines if "Dagster run(s) ran during the step" in line]
    assert len(warned) == (1 if with_run else 0), lines
    row = next(r for r in table_rows(result) if r["node"] == "Dagster runs during the step")
    assert row["CPU % 1 core @0"] == step["dagster_runs"]
